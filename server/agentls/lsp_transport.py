"""The LSP wire: framing, message validation and the server's lifecycle, hardened.

pygls 2.1's reader and dispatcher have failure modes a language server cannot afford (each is
marked ``pygls bug`` below, to be reported upstream): a bad ``Content-Length`` leaves the
reader deaf until a stray blank line arrives, a huge one allocates it and dies, invalid JSON
and malformed messages get no reply, a request whose params fail to parse (or that merely
*contains* an object with a ``jsonrpc`` key) is dropped so the client waits forever, ``exit``
always ends with status 0, requests after ``shutdown`` are dropped and requests before
``initialize`` fail with an internal error, and every notification leaves a Future behind.

This module replaces the reader loop (``serve_stdio``, ``serve_tcp``) and wraps the protocol
(``AgentProtocol``, passed to pygls as ``protocol_cls``). Handlers, the converter, and the way
results and errors are sent stay pygls'.

The rules, from the LSP and JSON-RPC 2.0 specifications and vscode-languageserver's practice:

- Every request with a usable id gets exactly one reply. Invalid JSON: -32700 with id null.
  A message that is not a valid request, notification or response: -32600 (its id if it had a
  usable one, else null). Params that do not fit the method: -32602.
- Frames are ``Content-Length: N\\r\\n`` (other headers ignored), a blank line, N bytes. A
  broken frame is answered with an id-null error and skipped; the reader resynchronises on the
  next ``Content-Length`` header, which can never occur inside valid JSON (a JSON text has no
  bare words and no raw CR/LF inside strings), so a resync never lands inside a real body.
- Before ``initialize``: requests get -32002, notifications other than ``exit`` are dropped.
  After ``shutdown``: requests get -32600, notifications other than ``exit`` are dropped.
  ``exit`` ends the process with 0 after ``shutdown``, else 1; so does the end of the input
  stream and the death of the client process named in ``initialize`` (checked every 3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
)
from pygls.protocol.language_server import lsp_method

if TYPE_CHECKING:
    from concurrent.futures import Future

    from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)

# The largest message body accepted. The biggest legitimate messages are didOpen/didChange of
# a whole file and a client's reply to workspace/configuration; 64 MiB is far above any source
# file an editor will sync, and far below what would take a laptop's memory. A larger
# Content-Length is refused before a byte of it is buffered (pygls bug: it allocates whatever
# the header says; 10**12 raised MemoryError and killed the server).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A header block is one or two short lines; 8 KiB without the blank line that ends it means
# the stream is not LSP framing (or lost its place) and the reader resynchronises.
MAX_HEADER_BYTES = 8 * 1024
# Bytes read from the input per system call.
READ_CHUNK = 64 * 1024
# Chunks buffered between the reader thread and the event loop: bounds memory when the client
# writes faster than the server handles (the thread then blocks, and so does the client).
READ_QUEUE_CHUNKS = 4
# vscode-languageserver checks that the client process (InitializeParams.processId) is alive
# every 3 seconds and exits when it is gone; the LSP spec asks for the same.
PARENT_CHECK_SECONDS = 3.0
# After exit, running handlers get this long to finish their cleanup (close model streams,
# remove sandbox copies) before the process ends regardless.
EXIT_GRACE_SECONDS = 5.0

PARSE_ERROR = types.ErrorCodes.ParseError.value  # -32700
INVALID_REQUEST = types.ErrorCodes.InvalidRequest.value  # -32600
INVALID_PARAMS = types.ErrorCodes.InvalidParams.value  # -32602
INTERNAL_ERROR = types.ErrorCodes.InternalError.value  # -32603
SERVER_NOT_INITIALIZED = types.ErrorCodes.ServerNotInitialized.value  # -32002

# A Content-Length header line, where a resynchronising reader may pick the stream up again.
# Matched anywhere (not only at a line start): after a too-short Content-Length the rest of
# the old body runs straight into the next header.
_HEADER_RE = re.compile(rb"content-length[ \t]{0,8}:[ \t]{0,8}(\d{1,20})[ \t]{0,8}\r\n", re.I)
# Long enough to hold any partial match of _HEADER_RE at the end of a discarded buffer.
_HEADER_TAIL = 80
_TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MISSING = object()


# ---- framing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameError:
    """A stretch of input that is not a message; the decoder has skipped past it."""

    message: str
    code: int = PARSE_ERROR


class FrameDecoder:
    """Split a byte stream into message bodies, resynchronising after anything malformed.

    Feed bytes with :meth:`feed`; :meth:`events` yields each complete body (``bytes``) or a
    :class:`FrameError`, in stream order. Memory stays bounded by the largest accepted body:
    an oversized or unframed stretch is discarded as it arrives, never buffered whole.
    """

    def __init__(self, max_body: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        self._state = "header"  # "header" | "body" | "skip"
        self._length = 0
        self._scanned = 0  # how far into a pending body the header scan has looked

    def feed(self, data: bytes) -> None:
        """Append input."""
        self._buf += data

    def events(self) -> Iterator[bytes | FrameError]:
        """Yield what the buffered input completes: bodies and errors."""
        while True:
            event = self._step()
            if event is None:
                return
            if event is not _MISSING:
                yield event

    def _resync(self, start: int) -> None:
        """Drop input up to ``start`` and look for the next header from there on."""
        del self._buf[:start]
        self._state = "skip"

    def _step(self) -> Any:
        """One state transition: a body, a FrameError, _MISSING (progress, nothing to yield)
        or None (needs more input)."""
        buf = self._buf
        if self._state == "skip":
            match = _HEADER_RE.search(buf)
            if match is None:
                # Keep a tail that may hold the start of a header split across reads.
                if len(buf) > _HEADER_TAIL:
                    del buf[: len(buf) - _HEADER_TAIL]
                return None
            del buf[: match.start()]
            self._state = "header"
            return _MISSING
        if self._state == "header":
            return self._header()
        return self._body()

    def _header(self) -> Any:
        buf = self._buf
        # Stray line breaks between messages are harmless; skip them silently.
        blank = 0
        while blank < len(buf) and buf[blank] in (10, 13):
            blank += 1
        if blank:
            del buf[:blank]
        if not buf:
            return None
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                self._resync(1)
                return FrameError(f"no end of headers within {MAX_HEADER_BYTES} bytes")
            # Junk that cannot become a header is reported now, not after 8 KiB: a client that
            # wrote it is waiting for an answer.
            if not _could_be_header(bytes(buf)):
                self._resync(1)
                return FrameError(f"expected a Content-Length header, got {_show(buf)}")
            return None
        block = bytes(buf[:end])
        length, problem = _content_length(block)
        if problem:
            self._resync(1)
            return FrameError(problem)
        assert length is not None
        if length > self._max_body:
            # Skip it without buffering; its body cannot contain a header (see module doc).
            self._resync(end + 4)
            return FrameError(
                f"message of {length} bytes is larger than the {self._max_body} byte limit;"
                " skipped",
                INVALID_REQUEST,
            )
        del buf[: end + 4]
        self._state, self._length, self._scanned = "body", length, 0
        return _MISSING

    def _body(self) -> Any:
        buf = self._buf
        length = self._length
        # A header inside the announced body means the Content-Length was too large and the
        # next message has begun: report the broken one and pick up the next. Only new bytes
        # are scanned (with a small overlap for a header split across reads).
        window_end = min(len(buf), length)
        start = max(0, self._scanned - _HEADER_TAIL)
        if buf.find(b"\n", start, window_end) >= 0:
            match = _HEADER_RE.search(buf, start, window_end + _HEADER_TAIL)
            if match is not None and match.start() < length:
                got = match.start()
                del buf[:got]
                self._state = "header"
                return FrameError(
                    f"Content-Length said {length} bytes but the next message began after {got}"
                )
        self._scanned = window_end
        if len(buf) < length:
            return None
        body = bytes(buf[:length])
        del buf[:length]
        self._state = "header"
        return body


def _show(data: bytes | bytearray, limit: int = 40) -> str:
    text = bytes(data[:limit]).decode("utf-8", "backslashreplace")
    return repr(text) + ("..." if len(data) > limit else "")


def _could_be_header(partial: bytes) -> bool:
    """Whether an incomplete header block can still become a valid one."""
    *complete, last = partial.split(b"\r\n")
    for line in complete:
        name, sep, _ = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            return False
    name, sep, _ = last.partition(b":")
    # An unfinished last line: a token so far (or nothing), then possibly ": value...".
    return (not name or _TOKEN_RE.fullmatch(name) is not None) and bool(sep or len(name) <= 256)


def _content_length(block: bytes) -> tuple[int | None, str]:
    """The Content-Length of a header block, or a description of what is wrong with it."""
    lengths: list[bytes] = []
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            return None, f"malformed header line {_show(line)}"
        if name.lower() == b"content-length":
            lengths.append(value.strip())
    if not lengths:
        return None, "header block without Content-Length"
    if len(set(lengths)) > 1:
        return None, "conflicting Content-Length headers"
    value = lengths[0]
    if not value.isdigit() or len(value) > 20:
        return None, f"invalid Content-Length {_show(value)}"
    return int(value), ""


# ---- writing -------------------------------------------------------------------------------


class FrameWriter:
    """Writes frames to a byte stream; after the stream breaks, writes are dropped quietly.

    pygls' StdoutWriter re-raises BrokenPipeError into whichever handler happened to send, and
    its error reporting then tries to send again; here a lost client is noted once and the
    server is told to stop (``on_lost``).
    """

    def __init__(self, stream: BinaryIO, on_lost: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # pygls may send from worker threads too
        self._closed = False
        self._on_lost = on_lost

    def write(self, data: bytes) -> None:
        """Write one frame (pygls passes header and body together) and flush."""
        with self._lock:
            if self._closed:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError) as exc:  # broken pipe, closed file
                self._closed = True
                log.warning("the client's input is gone (%s); stopping", exc)
                if self._on_lost is not None:
                    self._on_lost()

    def close(self) -> None:
        """Flush and stop writing; the stream itself is left to the process exit."""
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(OSError, ValueError):
                    self._stream.flush()


class _StreamWriterAdapter:
    """pygls' writer interface over an asyncio StreamWriter (TCP)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed or self._writer.is_closing():
            return
        self._writer.write(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()


# ---- the protocol --------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """A short account of a cattrs structuring failure: which fields, what was wrong."""
    if isinstance(exc, cattrs.BaseValidationError):
        with contextlib.suppress(Exception):
            return "; ".join(cattrs.transform_error(exc))[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _strict_scalars(converter: cattrs.Converter) -> None:
    """Make the converter refuse scalars of the wrong JSON type instead of coercing them.

    cattrs' defaults call ``str()``, ``int()``, ``bool()`` on whatever arrives: a didChange
    with ``"text": null`` put the four letters ``None`` into the user's buffer, ``"line": 0.5``
    became line 0 and ``"applied": "false"`` became True. (lsprotocol builds a fresh converter
    per call, so this changes only ours.)
    """

    def expect(kind: type, name: str) -> Callable[[Any, Any], Any]:
        def structure(value: Any, _: Any) -> Any:
            if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
                return value
            raise TypeError(f"expected {name}, got {type(value).__name__}")

        return structure

    converter.register_structure_hook(str, expect(str, "a string"))
    converter.register_structure_hook(int, expect(int, "an integer"))
    converter.register_structure_hook(bool, expect(bool, "a boolean"))
    number = expect(int | float, "a number")  # type: ignore[arg-type]
    converter.register_structure_hook(float, number)


def _valid_id(value: Any) -> bool:
    # LSP ids are integer | string; bool is an int in Python but not in JSON.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class AgentProtocol(LanguageServerProtocol):
    """pygls' LanguageServerProtocol with a validating front door and a correct lifecycle.

    ``handle_frame`` takes one message body from the transport; what passes validation goes
    to pygls' own ``handle_message`` as a structured message, so handlers run as before.
    """

    def __init__(self, server: LanguageServer, converter: Any) -> None:
        # Set before pygls' __init__, which reads every attribute while registering features.
        self.exit_code: int | None = None
        self._initialize_seen = False
        self._shutdown_seen = False
        self._stop: Callable[[], None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        # Cheap ids for our requests to the client (pygls makes a uuid4 for each).
        self._internal_ids = itertools.count(1)
        _strict_scalars(converter)
        super().__init__(server, converter)

    # -- wiring to the transport --

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Register what ends the read loop (exit, a dead client, a lost output stream)."""
        self._stop = stop

    def finish(self, code: int) -> None:
        """End the session with ``code`` (the first reason given wins)."""
        if self.exit_code is None:
            self.exit_code = code
        if self._stop is not None:
            self._stop()

    @property
    def shutdown_received(self) -> bool:
        """Whether the client sent the ``shutdown`` request."""
        return self._shutdown_seen

    # -- replies the transport itself makes --

    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        """A JSON-RPC error response (``msg_id`` None becomes ``"id": null``)."""
        # A plain dict: lsprotocol's converter would leave out a None id, and JSON-RPC wants
        # the member present as null.
        self._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    def handle_frame_error(self, error: FrameError) -> None:
        """A broken frame: log it and answer with an id-null error (the client's log shows it)."""
        log.warning("bad frame from the client: %s", error.message)
        self.send_error(None, error.code, error.message)

    def handle_frame(self, body: bytes) -> None:
        """Validate one message body and hand it to pygls; every request gets one reply."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            log.warning("unparsable message: %s", exc)
            self.send_error(None, PARSE_ERROR, f"Parse error: {exc}"[:500])
            return
        msg_id: Any = None
        try:
            if not isinstance(data, dict):
                kind = "a batch (array)" if isinstance(data, list) else type(data).__name__
                self.send_error(
                    None, INVALID_REQUEST, f"Invalid Request: a message is an object, not {kind}"
                )
                return
            raw_id = data.get("id", _MISSING)
            msg_id = raw_id if _valid_id(raw_id) else None
            if (
                "method" not in data
                and "result" not in data
                and "error" not in data
                and msg_id is not None
                and msg_id in self._result_types  # one of our requests, still unanswered
            ):
                # An answer to one of our requests that left out "result": read it as null
                # rather than leave our side waiting (and answer the client's answer).
                log.warning("response %r without result or error; taken as null", msg_id)
                data["result"] = None
            problem = self._envelope_problem(data, raw_id)
            if problem:
                log.warning("invalid message: %s", problem)
                # Only a request's id is echoed: the id of a message without "method" is not
                # a request of the client's, and may even be one still running.
                reply_to = msg_id if "method" in data else None
                self.send_error(reply_to, INVALID_REQUEST, f"Invalid Request: {problem}")
                return
            if "method" not in data:
                self._handle_client_response(data)
            elif raw_id is _MISSING:
                self._handle_client_notification(data)
            else:
                self._handle_client_request(data)
        except Exception as exc:  # never leave a request unanswered, never die
            log.exception("failed to handle a message")
            if msg_id is not None and isinstance(data, dict) and "method" in data:
                self.send_error(msg_id, INTERNAL_ERROR, f"Internal error: {exc}"[:500])

    @staticmethod
    def _envelope_problem(data: dict[str, Any], raw_id: Any) -> str:
        if data.get("jsonrpc") != "2.0":
            return 'the "jsonrpc" member must be "2.0"'
        if raw_id is not _MISSING and not _valid_id(raw_id):
            # A response to our parse error may carry id null; it answers nothing we sent.
            if raw_id is None and "method" not in data and ("error" in data or "result" in data):
                return ""
            return '"id" must be an integer or a string'
        if "method" in data:
            method = data["method"]
            if not isinstance(method, str) or not method:
                return '"method" must be a non-empty string'
            return ""
        if raw_id is _MISSING:
            return 'a message needs a "method" (request, notification) or an "id" (response)'
        if "result" not in data and "error" not in data:
            return 'a message without "method" must be a response with "result" or "error"'
        return ""

    def _structure(self, data: dict[str, Any], is_request: bool) -> Any:
        """The message as pygls' handlers expect it (lsprotocol types for LSP methods)."""
        method = data["method"]
        msg_type = self.get_message_type(method)
        if msg_type is None:
            # Custom methods: pygls' generic message, params as namedtuples (as before). Its
            # structure hook passes every member as a keyword: keep only the known ones, and
            # let params be left out (JSON-RPC allows it).
            known = ("jsonrpc", "id", "method") if is_request else ("jsonrpc", "method")
            data = {key: data[key] for key in known} | {"params": data.get("params")}
            msg_type = JsonRPCRequestMessage if is_request else JsonRPCNotification
        # Only the top level is structured: pygls used json.loads(object_hook=...), which
        # also treated every *nested* object with a "jsonrpc" key as a message (pygls bug).
        return self._converter.structure(data, msg_type)

    @staticmethod
    def _params_problem(data: dict[str, Any]) -> str:
        params = data.get("params")
        if params is not None and not isinstance(params, dict | list):
            return f'"params" must be an object or an array, not {type(params).__name__}'
        if data["method"] == types.WORKSPACE_EXECUTE_COMMAND and isinstance(params, dict):
            # cattrs reads a string as a sequence of characters: "abc" became three arguments.
            arguments = params.get("arguments")
            if arguments is not None and not isinstance(arguments, list):
                return f'"arguments" must be an array, not {type(arguments).__name__}'
        return ""

    def _handle_client_request(self, data: dict[str, Any]) -> None:
        msg_id, method = data["id"], data["method"]
        if method == types.INITIALIZE and self._initialize_seen:
            self.send_error(msg_id, INVALID_REQUEST, "initialize may only be sent once")
            return
        if method != types.INITIALIZE and not self._initialize_seen:
            self.send_error(
                msg_id, SERVER_NOT_INITIALIZED, f"{method}: the server is not initialized yet"
            )
            return
        if self._shutdown_seen:
            self.send_error(
                msg_id, INVALID_REQUEST, f"{method}: the server is shutting down (send exit)"
            )
            return
        problem = self._params_problem(data)
        if problem:
            self.send_error(msg_id, INVALID_PARAMS, f"Invalid params for {method}: {problem}")
            return
        try:
            message = self._structure(data, is_request=True)
        except Exception as exc:
            log.warning("invalid params for %s (id %r): %s", method, msg_id, _describe(exc))
            self.send_error(
                msg_id, INVALID_PARAMS, f"Invalid params for {method}: {_describe(exc)}"
            )
            return
        if getattr(message, "id", None) is None:
            # A notification's method sent with an id: it would be handled and never answered.
            self.send_error(
                msg_id, INVALID_REQUEST, f"{method} is a notification; send it without an id"
            )
            return
        if method == types.INITIALIZE:
            self._initialize_seen = True
            self._watch_parent(message.params.process_id)
        elif method == types.SHUTDOWN:
            self._shutdown_seen = True
        self.handle_message(message)

    def _handle_client_notification(self, data: dict[str, Any]) -> None:
        method = data["method"]
        if method != types.EXIT:
            if not self._initialize_seen:
                log.warning("dropped %s: the server is not initialized yet", method)
                return
            if self._shutdown_seen:
                log.warning("dropped %s: the server is shutting down", method)
                return
        problem = self._params_problem(data)
        if problem:
            log.warning("dropped %s: %s", method, problem)
            return
        try:
            message = self._structure(data, is_request=False)
        except Exception as exc:
            # No reply is possible; say what was wrong where the user's editor logs stderr.
            log.warning("dropped %s with invalid params: %s", method, _describe(exc))
            return
        if getattr(message, "id", None) is not None:
            log.warning("dropped %s: a request sent without an id", method)
            return
        self.handle_message(message)

    def _handle_client_response(self, data: dict[str, Any]) -> None:
        """A reply to one of our requests (workspace/configuration, applyEdit, ...)."""
        msg_id = data.get("id")
        if msg_id is None:
            log.warning("the client reported an error: %s", data.get("error"))
            return
        # pygls keeps the client's requests and ours in one dict (_request_futures); only ids
        # in _result_types are ours, so a stray "response" cannot complete a client request.
        if msg_id not in self._result_types:
            log.warning("response to unknown request %r", msg_id)
            return
        result_type = self._result_types.pop(msg_id)
        future = self._request_futures.pop(msg_id, None)
        if future is None or future.done():
            # Our side stopped waiting (timeout, cancel); pygls would raise InvalidStateError
            # here and lose the rest of the message loop's iteration (pygls bug, #621).
            return
        if "error" in data:
            try:
                error = self._converter.structure(data["error"], types.ResponseError)
            except Exception:
                error = types.ResponseError(
                    code=INTERNAL_ERROR, message=f"malformed error response: {data['error']!r}"
                )
            future.set_exception(JsonRpcException.from_error(error))
            return
        try:
            message = self._converter.structure(data, result_type or JsonRPCResponseMessage)
        except Exception as exc:
            # A result we cannot read still ends the wait (pygls dropped it: a hung await).
            future.set_exception(
                JsonRpcInternalError(message=f"malformed response to {msg_id}: {_describe(exc)}")
            )
            return
        future.set_result(message.result)

    # -- lifecycle --

    def _watch_parent(self, pid: Any) -> None:
        if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._watchdog = loop.create_task(self._check_parent(pid))

    async def _check_parent(self, pid: int) -> None:
        while self.exit_code is None:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.warning("the client process %d is gone; exiting", pid)
                self.finish(0 if self._shutdown_seen else 1)
                return
            except OSError:  # EPERM: alive, just not ours to signal
                pass

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        """exit: 0 after shutdown, else 1 (pygls bug: its sys.exit(1) was swallowed as 0)."""
        if (user_handler := self.fm.features.get(types.EXIT)) is not None:
            yield user_handler, args, None
        self.finish(0 if self._shutdown_seen else 1)

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Generator[Any, Any, None]:
        """shutdown: cancel what is running, then answer null."""
        if (user_handler := self.fm.features.get(types.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current = self.msg_id
        # A copy: cancelling runs done-callbacks that remove entries (pygls iterates the live
        # dict and raised "dictionary changed size during iteration" with a command running).
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current and not future.done():
                future.cancel()
        self._shutdown = True
        return None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        """Apply edits the way VS Code's TextDocument does (pygls differs, see apply_change)."""
        uri = params.text_document.uri
        document = self.workspace.text_documents.get(unquote(uri))
        if document is None:
            log.warning("didChange for %s, which is not open; ignored", uri)
            return
        encoding = str(getattr(document.position_codec, "encoding", "utf-16"))
        text = document.source
        for change in params.content_changes:
            text = apply_change(text, change, encoding)
        document.apply_change(types.TextDocumentContentChangeWholeDocument(text=text))
        document.version = params.text_document.version
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield user_handler, (params,), None

    # -- bookkeeping pygls leaks --

    def _execute_handler(
        self,
        msg_id: Any,
        handler: Any,
        callback: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        # pygls stores the future of every async, threaded or generator handler in
        # _request_futures; for notifications (and the sub-handlers generators call) nothing
        # ever removes it: about 1.8 KB per didChange, forever (pygls bug). Forget each one
        # when it is done; a request's own entry is removed by pygls when it replies.
        super()._execute_handler(msg_id, handler, callback=callback, args=args, kwargs=kwargs)
        future = self._request_futures.get(msg_id)
        if future is not None:
            future.add_done_callback(partial(self._forget, msg_id))

    def _forget(self, msg_id: Any, future: Future[Any] | asyncio.Future[Any]) -> None:
        if self._request_futures.get(msg_id) is future:
            del self._request_futures[msg_id]

    def on_cancel(self, msg_id: Any, callback: Callable[[], None]) -> None:
        """Call ``callback`` if the client cancels its pending request ``msg_id``.

        pygls answers ``$/cancelRequest`` by cancelling the request's future, which it keeps in
        a private dict with no public accessor; a handler running as a task of its own (a
        command, which pygls' executeCommand starts separately) learns of it only this way.
        """
        future = self._request_futures.get(msg_id)
        if future is None:  # already answered, or never ours to wait for
            return

        def done(finished: Future[Any] | asyncio.Future[Any]) -> None:
            if finished.cancelled():
                callback()

        future.add_done_callback(done)

    def send_request(
        self,
        method: str,
        params: Any | None = None,
        callback: Callable[[Any], None] | None = None,
        msg_id: Any = None,
    ) -> Future[Any]:
        """pygls' send_request, forgetting requests the client never answers once we stop
        waiting (pygls keeps their result type forever, #608)."""
        if msg_id is None:
            msg_id = f"agentls-{next(self._internal_ids)}"
        future = super().send_request(method, params, callback=callback, msg_id=msg_id)

        def forget(done: Future[Any]) -> None:
            if done.cancelled() and self._request_futures.get(msg_id) is done:
                del self._request_futures[msg_id]
                self._result_types.pop(msg_id, None)

        future.add_done_callback(forget)
        return future


# ---- documents -----------------------------------------------------------------------------

_EOL_RE = re.compile(r"\r\n|\r|\n")


def _units(char: str, encoding: str) -> int:
    if encoding == types.PositionEncodingKind.Utf8:
        return len(char.encode("utf-8", "surrogatepass"))
    if encoding == types.PositionEncodingKind.Utf32:
        return 1
    return 2 if ord(char) > 0xFFFF else 1


def offset_at(text: str, position: types.Position, encoding: str) -> int:
    """The string index of an LSP position, clamped the way VS Code's TextDocument clamps.

    Only ``\\n``, ``\\r\\n`` and ``\\r`` end lines (pygls uses ``str.splitlines``, which also
    splits at form feeds, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028/2029; so its line numbers drift
    from the editor's on such files and edits land on the wrong line: pygls bug). A line past
    the end is the end of the text; a character past the end of a line is the line's end (the
    spec's rule); a position inside a UTF-16 surrogate pair rounds down to the character.
    """
    start = 0
    if position.line > 0:
        for index, match in enumerate(_EOL_RE.finditer(text), start=1):
            if index == position.line:
                start = match.end()
                break
        else:
            return len(text)
    eol = _EOL_RE.search(text, start)
    end = eol.start() if eol else len(text)
    wanted = position.character
    if encoding == types.PositionEncodingKind.Utf32 or (
        encoding == types.PositionEncodingKind.Utf16 and text[start:end].isascii()
    ):
        return start + min(wanted, end - start)
    units = 0
    offset = start
    while offset < end:
        step = _units(text[offset], encoding)
        if units + step > wanted:
            break
        units += step
        offset += 1
    return offset


def apply_change(text: str, change: Any, encoding: str = "utf-16") -> str:
    """``text`` after one didChange content change (whole-document or ranged).

    A range given end-first is applied start-first, as VS Code does.
    """
    rng = getattr(change, "range", None)
    if rng is None:
        return str(change.text)
    a = offset_at(text, rng.start, encoding)
    b = offset_at(text, rng.end, encoding)
    if a > b:
        a, b = b, a
    return text[:a] + str(change.text) + text[b:]


# ---- serving -------------------------------------------------------------------------------


async def _read_loop(protocol: AgentProtocol, read: Callable[[], Awaitable[bytes]]) -> None:
    """Feed input through the decoder to the protocol until EOF or a stop."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        # Thread-safe: a stop may come from a signal handler or a writer on another thread,
        # also after the loop has closed.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stopped.set)

    protocol.on_stop(stop)
    stop_wait = asyncio.ensure_future(stopped.wait())
    decoder = FrameDecoder()
    try:
        while protocol.exit_code is None:
            read_task = asyncio.ensure_future(read())
            await asyncio.wait({read_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not read_task.done():
                read_task.cancel()
                break
            chunk = read_task.result()
            if not chunk:
                log.info("end of input")
                # vscode-languageserver: the input closing ends the server, 0 after shutdown.
                protocol.finish(0 if protocol.shutdown_received else 1)
                break
            decoder.feed(chunk)
            for event in decoder.events():
                if isinstance(event, FrameError):
                    protocol.handle_frame_error(event)
                else:
                    protocol.handle_frame(event)
                if protocol.exit_code is not None:
                    break
                # Let started handlers run between messages of a burst.
                await asyncio.sleep(0)
    finally:
        stop_wait.cancel()


def _start_reader_thread(fd: int, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes]:
    """Read ``fd`` on a daemon thread into a bounded queue; b"" marks the end.

    A daemon thread, not the loop's executor: a read blocked on an idle client must not keep
    the process alive after exit (pygls' executor thread did, until stdin closed).
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=READ_QUEUE_CHUNKS)

    def pump() -> None:
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError as exc:
                log.warning("reading the client's messages failed: %s", exc)
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            except Exception:  # the loop is gone: the server is exiting
                return
            if not chunk:
                return

    threading.Thread(target=pump, name="agentls-stdin", daemon=True).start()
    return queue


def _protect_stdout() -> BinaryIO:
    """Take fd 1 for the LSP stream and point everything else that writes to stdout at stderr.

    A stray ``print`` (ours, a library's, a child process inheriting fd 1) would corrupt the
    client's stream; vscode-languageserver likewise routes console output away from it.
    """
    sys.stdout.flush()
    lsp_fd = os.dup(1)
    try:
        os.dup2(2, 1)
    except OSError:  # no usable stderr: keep fd 1 as it is rather than fail to start
        pass
    else:
        sys.stdout = sys.stderr
    return os.fdopen(lsp_fd, "wb")


async def _cancel_remaining(grace: float) -> None:
    """Cancel every other task and give them ``grace`` seconds to clean up."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            log.warning("%d task(s) did not stop within %.0f s of exit", len(pending), grace)


def _run_session(
    server: LanguageServer, session: Callable[[AgentProtocol], Awaitable[None]]
) -> int:
    protocol = server.protocol
    if not isinstance(protocol, AgentProtocol):
        raise TypeError("the server must be built with protocol_cls=AgentProtocol")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(session(protocol))
        loop.run_until_complete(_cancel_remaining(EXIT_GRACE_SECONDS))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        pool = getattr(server, "_thread_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        asyncio.set_event_loop(None)
        loop.close()
    code = protocol.exit_code if protocol.exit_code is not None else 1
    _exit_watchdog(code)
    return code


def _exit_watchdog(code: int) -> None:
    """If a non-daemon thread (a stuck worker) would keep the process alive after exit, end
    it after a grace period anyway: an editor waits for its server to go."""
    others = [
        t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon
    ]
    if not others:
        return

    def force() -> None:
        threading.Event().wait(EXIT_GRACE_SECONDS)
        log.warning(
            "threads still running %.0f s after exit; ending the process", EXIT_GRACE_SECONDS
        )
        os._exit(code)

    threading.Thread(target=force, name="agentls-exit", daemon=True).start()


def serve_stdio(server: LanguageServer) -> int:
    """Serve LSP on stdin/stdout until exit or end of input; returns the exit status."""
    out = _protect_stdout()

    async def session(protocol: AgentProtocol) -> None:
        loop = asyncio.get_running_loop()

        def lost() -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(protocol.finish, 0 if protocol.shutdown_received else 1)

        writer = FrameWriter(out, on_lost=lost)
        protocol.set_writer(writer)
        queue = _start_reader_thread(sys.stdin.fileno(), loop)
        try:
            await _read_loop(protocol, queue.get)
        finally:
            writer.close()

    return _run_session(server, session)


def serve_tcp(server: LanguageServer, host: str, port: int) -> int:
    """Serve LSP to one TCP client (as pygls does) until exit or disconnect."""

    async def session(protocol: AgentProtocol) -> None:
        done = asyncio.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if done.is_set():
                writer.close()
                return
            adapter = _StreamWriterAdapter(writer)
            protocol.set_writer(adapter)
            try:
                await _read_loop(protocol, partial(reader.read, READ_CHUNK))
            finally:
                adapter.close()
                done.set()

        tcp = await asyncio.start_server(connection, host, port)
        log.info("serving LSP on %s:%s", host, port)
        async with tcp:
            await done.wait()

    return _run_session(server, session)
