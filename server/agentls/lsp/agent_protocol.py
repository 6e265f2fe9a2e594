"""The LSP wire: framing, message validation and the server's lifecycle, hardened.

pygls 2.1's reader and dispatcher have failure modes a language server cannot afford (each is
marked ``pygls bug`` below, to be reported upstream): a bad ``Content-Length`` leaves the
reader deaf until a stray blank line arrives, a huge one allocates it and dies, invalid JSON
and malformed messages get no reply, a request whose params fail to parse (or that merely
*contains* an object with a ``jsonrpc`` key) is dropped so the client waits forever, ``exit``
always ends with status 0, requests after ``shutdown`` are dropped and requests before
``initialize`` fail with an internal error, and every notification leaves a Future behind.

This module wraps the protocol (``AgentProtocol``, passed to pygls as ``protocol_cls``);
:mod:`agentls.lsp.framing` reads and writes frames, :mod:`agentls.lsp.transport` runs the
reader loop (``serve_stdio``, ``serve_tcp``) and :mod:`agentls.lsp.text_sync` applies
``didChange``. Handlers, the converter, and the way results and errors are sent stay pygls'.

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
from collections.abc import Callable, Generator
from functools import partial
from typing import TYPE_CHECKING, Any
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

from agentls.lsp.framing import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    SERVER_NOT_INITIALIZED,
    FrameError,
)
from agentls.lsp.text_sync import apply_change

if TYPE_CHECKING:
    from concurrent.futures import Future

    from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)

# vscode-languageserver checks that the client process (InitializeParams.processId) is alive
# every 3 seconds and exits when it is gone; the LSP spec asks for the same.
PARENT_CHECK_SECONDS = 3.0

_NO_ID = object()  # a message without an "id" key (None would be an id of null)


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
            raw_id = data.get("id", _NO_ID)
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
            elif raw_id is _NO_ID:
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
        if raw_id is not _NO_ID and not _valid_id(raw_id):
            # A response to our parse error may carry id null; it answers nothing we sent.
            if raw_id is None and "method" not in data and ("error" in data or "result" in data):
                return ""
            return '"id" must be an integer or a string'
        if "method" in data:
            method = data["method"]
            if not isinstance(method, str) or not method:
                return '"method" must be a non-empty string'
            return ""
        if raw_id is _NO_ID:
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
