"""Fault injection against the real server: a raw-bytes LSP client, a scoreboard, a hostile
model server.

``RawServer`` spawns ``python -m agentls`` and speaks bytes on its stdio, so a test can send
what no well-behaved client library would (broken headers, half frames, invalid JSON). Its
reader parses the server's output strictly: a malformed frame from the server fails the test.

Every fault test is wrapped in ``@fault(category)``; the outcome (held: the server behaved as a
client needs, failed: it did not) is collected per category. With ``AGENTLS_FAULT_TABLE`` set,
``write_table`` (a module-scoped fixture in each fault module calls it) writes the table to
``bench/results/faults-<date>.md``; ``python bench/faults.py`` runs both modules and does so.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import http.server
import inspect
import itertools
import json
import os
import queue
import select
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from lsp_support import MODEL, server_env

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# Bounded waits: a reply that takes longer than this is a reply that never came.
REPLY_TIMEOUT = 20.0
EXIT_TIMEOUT = 20.0

# LSP / JSON-RPC error codes the tests expect.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800
REQUEST_FAILED = -32803


def frame(body: bytes | str) -> bytes:
    """``body`` with a correct Content-Length header."""
    data = body.encode() if isinstance(body, str) else body
    return b"Content-Length: %d\r\n\r\n" % len(data) + data


def message(**members: Any) -> bytes:
    """A framed JSON-RPC message with ``jsonrpc: 2.0`` and the given members."""
    return frame(json.dumps({"jsonrpc": "2.0", **members}))


class ServerGone(AssertionError):
    """The server's output ended (it exited or closed stdout)."""


class RawServer:
    """``python -m agentls`` on pipes, driven with raw bytes.

    Messages from the server are collected in arrival order (``received``); server requests
    (workspace/configuration, progress create, applyEdit) are answered with ``null`` so runs
    never wait on the client.
    """

    def __init__(self, cache: Path, *, extra_env: dict[str, str] | None = None) -> None:
        env = server_env(cache)
        env.update(extra_env or {})
        self.stderr_path = cache.parent / f"{cache.name}-stderr.log"
        cache.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentls"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=str(cache),
        )
        self.received: list[dict[str, Any]] = []
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.protocol_errors: list[str] = []
        # How server requests are answered: the members of the reply (None: no reply).
        self.answer: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda _: {"result": None}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- output side --

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                headers: dict[str, str] = {}
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    if not line.endswith(b"\r\n") or b":" not in line:
                        self.protocol_errors.append(f"bad header line from server: {line!r}")
                        return
                    name, _, value = line.decode("ascii").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers["content-length"])
                body = out.read(length)
                if len(body) < length:
                    return
                msg = json.loads(body)
                with self._lock:
                    self.received.append(msg)
                if "method" in msg and "id" in msg:
                    members = self.answer(msg)
                    if members is not None:
                        self.send(id=msg["id"], **members)
                self._inbox.put(msg)
        except Exception as exc:  # a malformed frame from the server is a finding
            self.protocol_errors.append(f"server output unreadable: {exc!r}")
        finally:
            self._inbox.put(None)

    def next_message(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The next message from the server, in order."""
        try:
            msg = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the server within {timeout} s") from None
        if msg is None:
            self._inbox.put(None)  # keep reporting the end
            raise ServerGone(f"the server's output ended (exit code {self.proc.poll()})")
        return msg

    def reply(self, msg_id: Any, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """Wait for the response with ``msg_id`` (other messages are kept in ``received``)."""
        deadline = time.monotonic() + timeout
        while True:
            earlier = self.responses(msg_id)
            if earlier:
                return earlier[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to id {msg_id!r} within {timeout} s")
            self.next_message(left)

    def wait_until(
        self, check: Callable[[], bool], what: str, timeout: float = REPLY_TIMEOUT
    ) -> None:
        """Read messages until ``check()`` holds."""
        deadline = time.monotonic() + timeout
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{what}: not within {timeout} s")
            with _suppress_timeout():
                self.next_message(min(left, 0.5))

    def responses(self, msg_id: Any) -> list[dict[str, Any]]:
        """Every response received so far carrying ``msg_id``."""
        with self._lock:
            return [m for m in self.received if "method" not in m and m.get("id") == msg_id]

    def null_id_errors(self) -> list[dict[str, Any]]:
        """Error responses with ``id: null`` received so far."""
        with self._lock:
            return [m for m in self.received if "method" not in m and m.get("id", 0) is None]

    # -- input side --

    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes to the server's stdin."""
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(data)
        stdin.flush()

    def send(self, **members: Any) -> None:
        """A well-formed message with the given members."""
        self.send_bytes(message(**members))

    def new_id(self) -> int:
        """A fresh request id."""
        return 10_000 + next(self._ids)

    def request(self, method: str, params: Any = None, **extra: Any) -> int:
        """Send a request; returns its id."""
        msg_id = self.new_id()
        members: dict[str, Any] = {"id": msg_id, "method": method, **extra}
        if params is not None:
            members["params"] = params
        self.send(**members)
        return msg_id

    def call(self, method: str, params: Any = None, timeout: float = REPLY_TIMEOUT) -> Any:
        """Request and wait for its reply (the whole response message)."""
        return self.reply(self.request(method, params), timeout)

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification."""
        members: dict[str, Any] = {"method": method}
        if params is not None:
            members["params"] = params
        self.send(**members)

    # -- lifecycle --

    def initialize(
        self,
        root: Path,
        init_options: dict[str, Any] | None = None,
        capabilities: dict[str, Any] | None = None,
    ) -> None:
        """initialize and initialized; by default a plain client (no configuration pull, no
        progress)."""
        answer = self.call(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "capabilities": capabilities or {},
                "initializationOptions": init_options or {},
            },
        )
        assert "result" in answer, answer
        self.notify("initialized", {})

    def status(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """agent/status; asserts it is answered with a result (the server still serves)."""
        answer = self.call("agent/status", {}, timeout)
        assert "result" in answer, f"agent/status failed: {answer}"
        result: dict[str, Any] = answer["result"]
        return result

    def open(self, path: Path, text: str, version: int = 1) -> str:
        """didOpen ``path`` with ``text``; returns its URI."""
        uri = path.as_uri()
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": "python",
                    "version": version,
                    "text": text,
                }
            },
        )
        return uri

    def shutdown_and_exit(self) -> int:
        """shutdown, exit, and the exit status."""
        answer = self.call("shutdown")
        assert answer.get("result", "missing") is None, answer
        self.notify("exit")
        return self.wait_exit()

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """The exit status, waiting at most ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit within {timeout} s") from None

    def rss_bytes(self) -> int:
        """The server's resident set size, from /proc/PID/status."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def stderr_text(self) -> str:
        """What the server logged so far."""
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        """Stop the process (if still running) and release the pipes."""
        if self.proc.poll() is None:
            with _suppress():
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with _suppress():
                if stream is not None:
                    stream.close()
        self._stderr.close()
        assert not self.protocol_errors, self.protocol_errors


@contextmanager
def _suppress_timeout() -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:
        if isinstance(exc, ServerGone):
            raise


def _suppress() -> contextlib.suppress:
    return contextlib.suppress(OSError, ValueError, AssertionError)


@contextmanager
def raw_server(
    tmp_path: Path,
    init_options: dict[str, Any] | None = None,
    *,
    initialize: bool = True,
    root: Path | None = None,
    capabilities: dict[str, Any] | None = None,
    answer: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> Iterator[RawServer]:
    """A started (by default initialized) RawServer on ``root`` (default ``tmp_path/proj``);
    ``answer`` replaces how it answers the server's requests."""
    root = root or tmp_path / "proj"
    root.mkdir(exist_ok=True)
    server = RawServer(tmp_path / "server-cache")
    if answer is not None:
        server.answer = answer
    try:
        if initialize:
            server.initialize(root, init_options, capabilities)
        yield server
    finally:
        server.close()


def model_options(base_url: str, **extra: Any) -> dict[str, Any]:
    """initializationOptions pointing at a (scripted) Ollama."""
    return {"backend": "ollama", "baseUrl": base_url, "model": MODEL, **extra}


def assert_error(answer: dict[str, Any], code: int) -> None:
    """``answer`` is an error response with ``code``."""
    assert "error" in answer, f"expected error {code}, got {answer}"
    assert answer["error"]["code"] == code, f"expected error {code}, got {answer['error']}"


def assert_one_reply(server: RawServer, msg_id: Any) -> dict[str, Any]:
    """The reply to ``msg_id``, after checking (past a later round trip) that it is the only
    one: the server handles messages in order, so a second reply would come before it."""
    answer = server.reply(msg_id)
    server.status()
    replies = server.responses(msg_id)
    assert len(replies) == 1, f"{len(replies)} replies to id {msg_id!r}: {replies}"
    return answer


# ---- the scoreboard ------------------------------------------------------------------------

# module -> category -> [(case, held)]; keyed by module because one pytest process may run
# both fault modules.
_OUTCOMES: dict[str, dict[str, list[tuple[str, bool]]]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def fault(category: str) -> Callable[[F], F]:
    """Record the decorated async test as one case of ``category``: held if it passes.

    A parametrised test names its cases by its ``case`` argument (``str(case)``).
    """

    def decorate(test: F) -> F:
        def name_of(kwargs: dict[str, Any]) -> str:
            name = test.__name__.removeprefix("test_")
            return f"{name}[{kwargs['case']}]" if "case" in kwargs else name

        def note(kwargs: dict[str, Any], held: bool) -> None:
            module = test.__module__.rpartition(".")[2]
            cases = _OUTCOMES.setdefault(module, {}).setdefault(category, [])
            cases.append((name_of(kwargs), held))

        if inspect.iscoroutinefunction(test):

            @functools.wraps(test)
            async def run_async(*args: Any, **kwargs: Any) -> None:
                try:
                    await test(*args, **kwargs)
                except BaseException:
                    note(kwargs, False)
                    raise
                note(kwargs, True)

            return run_async  # type: ignore[return-value]

        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                test(*args, **kwargs)
            except BaseException:
                note(kwargs, False)
                raise
            note(kwargs, True)

        return run  # type: ignore[return-value]

    return decorate


def table_path() -> Path:
    """bench/results/faults-<today>.md."""
    return RESULTS / f"faults-{datetime.date.today().isoformat()}.md"


def write_table(module: str) -> Path | None:
    """Merge this module's outcomes into today's table (when AGENTLS_FAULT_TABLE is set).

    Outcomes are kept per module in a JSON file next to the table, so running one module
    updates its rows and keeps the other's.
    """
    if not os.environ.get("AGENTLS_FAULT_TABLE"):
        return None
    path = table_path()
    store = path.with_suffix(".json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, dict[str, list[list[Any]]]] = (
        json.loads(store.read_text()) if store.exists() else {}
    )
    outcomes = _OUTCOMES.get(module, {})
    data[module] = {cat: [[n, h] for n, h in cases] for cat, cases in outcomes.items()}
    store.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    path.write_text(render_table(data))
    return path


def render_table(data: dict[str, dict[str, list[list[Any]]]]) -> str:
    """The Markdown table: per module and category, tried / held / failed and what failed."""
    lines = [
        f"# Fault injection, {datetime.date.today().isoformat()}",
        "",
        "Reproduce: `python bench/faults.py` (runs `tests/test_faults.py` and",
        "`tests/test_faults_backend.py` against the real server and rewrites this file).",
        "",
        "| module | category | tried | held | failed | failing cases |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    totals = [0, 0, 0]
    for module in sorted(data):
        for category in sorted(data[module]):
            cases = data[module][category]
            held = sum(1 for _, ok in cases if ok)
            failed = [name for name, ok in cases if not ok]
            totals[0] += len(cases)
            totals[1] += held
            totals[2] += len(failed)
            names = ", ".join(f"`{n}`" for n in failed) or "-"
            lines.append(
                f"| {module} | {category} | {len(cases)} | {held} | {len(failed)} | {names} |"
            )
    lines.append(f"| **all** | | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** | |")
    return "\n".join(lines) + "\n"


# ---- a hostile model server ----------------------------------------------------------------


class HostileModelServer:
    """An Ollama look-alike on 127.0.0.1 whose chat replies misbehave in one chosen way.

    ``mode``: ``endless`` (content chunks forever), ``keepalive`` (blank lines forever, no
    content), ``garbage`` (bytes that are not NDJSON, then the connection closes), ``cut``
    (half a JSON line, then the connection closes), ``hang`` (headers, then silence),
    ``silent`` (not even headers). The scripted model server has no endless reply shape, hence
    this one. Every stream ends when the client disconnects or the server is stopped;
    ``open_streams`` counts the chat connections still open.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.chats = 0
        self.open_streams = 0
        self.stop_event = threading.Event()
        self._count = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/api/tags"):
                    self._json({"models": [{"name": MODEL, "model": MODEL}]})
                elif self.path.startswith("/api/version"):
                    self._json({"version": "0.9.0"})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.startswith("/api/show"):
                    self._json(
                        {
                            "capabilities": ["completion", "tools"],
                            "model_info": {"gemma3.context_length": 32768},
                            "details": {"family": "gemma3"},
                        }
                    )
                    return
                if not self.path.startswith("/api/chat"):
                    self.send_error(404)
                    return
                with owner._count:
                    owner.chats += 1
                    owner.open_streams += 1
                self.close_connection = True
                try:
                    if owner.mode != "silent":
                        self.send_response(200)
                        self.send_header("Content-Type", "application/x-ndjson")
                        self.send_header("Connection", "close")
                        self.end_headers()
                    owner._stream(self.wfile, self.connection)
                except OSError:
                    pass  # the client left
                finally:
                    with owner._count:
                        owner.open_streams -= 1

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _stream(self, out: Any, conn: socket.socket) -> None:
        chunk = {
            "model": MODEL,
            "message": {"role": "assistant", "content": "word "},
            "done": False,
        }
        line = (json.dumps(chunk) + "\n").encode()
        if self.mode == "garbage":
            out.write(b"\x00\xff<html>not json at all\n{{{{\n")
            out.flush()
            return
        if self.mode == "cut":
            out.write(line[: len(line) // 2])
            out.flush()
            return
        while not self.stop_event.is_set():
            if self.mode in ("hang", "silent"):
                # Say nothing; notice the client leaving (a readable socket with no data).
                readable, _, _ = select.select([conn], [], [], 0.1)
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    return
                continue
            out.write(line if self.mode == "endless" else b"\n")
            out.flush()  # raises once the client has gone
            self.stop_event.wait(0.01)

    @property
    def url(self) -> str:
        """Base URL (Ollama style)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HostileModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self._httpd.shutdown()
        self._httpd.server_close()
