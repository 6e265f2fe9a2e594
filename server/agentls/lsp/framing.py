"""LSP framing: ``Content-Length`` frames decoded from a byte stream, hardened, and written.

pygls 2.1's reader leaves a server deaf after a bad ``Content-Length`` until a stray blank line
arrives, and allocates whatever a huge one says (``pygls bug``). Here frames are
``Content-Length: N\r\n`` (other headers ignored), a blank line, N bytes. A broken frame is
reported as a :class:`FrameError` (answered with an id-null error) and skipped; the decoder
resynchronises on the next ``Content-Length`` header, which can never occur inside valid JSON
(a JSON text has no bare words and no raw CR/LF inside strings), so a resync never lands
inside a real body.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from lsprotocol import types

if TYPE_CHECKING:
    pass

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
_MISSING = object()  # no event decoded yet
_TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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
