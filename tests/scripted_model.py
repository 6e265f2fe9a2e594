"""A scripted model server: real HTTP on 127.0.0.1 speaking Ollama's and OpenAI's wire formats.

Tests and benchmarks queue ``Reply`` objects (or give a callable that builds one from the
request); each chat request consumes one reply and streams it back exactly as Ollama
(``/api/chat``, NDJSON) or an OpenAI-compatible server (``/v1/chat/completions``, SSE) would.
It runs on the stdlib in a daemon thread, so it can live inside the pytest process while the
language server under test runs in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_CONTENT = "I have nothing more to do."
# A hanging stream gives up after this long so a forgotten test cannot pin a thread forever.
MAX_HANG_SECONDS = 120.0


def endless_token(n: int) -> str:
    """The n-th token of an endless reply: numbered, so the text never repeats itself (a
    server that ignores max_tokens, not a model caught in a loop, which the harness stops
    on its own)."""
    return f"more{n} "


KEEPALIVE_SECONDS = 0.05


@dataclass
class Reply:
    """One scripted model reply."""

    content: str = ""  # text the model "says", streamed in pieces
    # [{"name": "edit", "arguments": {...}}]; arguments may also be a str (sent verbatim).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # seconds to sleep between streamed chunks
    chunk_size: int = 8  # characters per content chunk
    hang: bool = False  # after the first chunk keep the stream open until the client leaves
    status: int = 200  # non-200: answer with this status and `error` as the error body
    error: str = ""
    break_stream: bool = False  # send part of the stream, then drop the connection
    prompt_tokens: int | None = None  # default: len(json.dumps(messages)) // 4
    completion_tokens: int | None = None  # default: number of streamed chunks
    # Extras beyond the shared contract:
    cached_tokens: int | None = None  # OpenAI: usage.prompt_tokens_details / timings.cache_n
    stream_error: str = ""  # after the first chunk, send an in-stream error object and stop
    raw_body: str | None = None  # stream this text verbatim instead of a generated stream
    # Reasoning the server split off, streamed before the content: Ollama's message.thinking,
    # llama-server's / vLLM's delta.reasoning_content.
    thinking: str = ""
    done_reason: str | None = None  # override Ollama done_reason / OpenAI finish_reason
    # Streams that never end (until the client leaves, or MAX_HANG_SECONDS): after the content,
    # `endless` sends numbered endless_token() chunks without pause (a server ignoring
    # max_tokens);
    # `keepalive_only` sends only keep-alives (NDJSON blank lines, SSE `: ping` comments)
    # every KEEPALIVE_SECONDS, so a per-read timeout never fires.
    endless: bool = False
    keepalive_only: bool = False


Script = Iterable[Reply] | Callable[[dict[str, Any]], Reply]

# Servers whose own endpoints (beside /v1) the scripted server can imitate, with the window
# they loaded: see ScriptedModelServer(flavour=..., loaded_context=...).
FLAVOURS = ("lmstudio", "llama-server", "vllm", "ollama")


def _model_matches(requested: str, available: str) -> bool:
    """Ollama resolves ``name`` to ``name:latest``; accept either spelling."""

    def norm(name: str) -> str:
        return name[: -len(":latest")] if name.endswith(":latest") else name

    return norm(requested) == norm(available)


class _ClientGone(Exception):
    """The client closed the connection while we were still streaming."""


class ScriptedModelServer:
    """A threaded HTTP server that answers chat requests from a script of ``Reply`` objects."""

    def __init__(
        self,
        replies: Script = (),
        *,
        models: Sequence[str] = ("gemma4:12b-it-qat",),
        supports_tools: bool = True,
        context_length: int = 32768,
        openai_timings: bool = False,
        flavour: str | None = None,
        loaded_context: int | None = None,
        model_loaded: bool = True,
        slots: int = 1,
    ) -> None:
        self.models = list(models)
        self.supports_tools = supports_tools
        self.context_length = context_length
        # Which server's own endpoints and overflow behaviour to imitate (None: only the
        # Ollama-style /api/tags, /api/show and /v1/models, as before):
        #   "lmstudio"      GET /api/v0/models (state, loaded_context_length), /api/v1/models;
        #                   a prompt over the window is cut silently (prompt_tokens = window)
        #   "llama-server"  GET /props (default_generation_settings.n_ctx, total_slots),
        #                   /slots, /v1/models meta.n_ctx; over the window: HTTP 400
        #                   exceed_context_size_error with n_prompt_tokens and n_ctx
        #   "vllm"          /v1/models max_model_len; over the window: HTTP 400 "maximum
        #                   context length"
        #   "ollama"        GET /api/ps (context_length of the running model); its /v1 cuts
        #                   a prompt over the window silently
        if flavour is not None and flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
        self.flavour = flavour
        # The window the server loaded (per slot for llama-server); default: context_length.
        self.loaded_context = loaded_context or context_length
        # LM Studio's just-in-time loading and Ollama load the model on its first request.
        self.model_loaded = model_loaded
        self.slots = slots
        # Emulate llama-server: put a `timings` object into the last OpenAI chunk.
        self.openai_timings = openai_timings
        self.requests: list[dict[str, Any]] = []
        self.gets: list[str] = []  # paths of GET requests, in order (probes, model lists)
        self.disconnects = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._queue: deque[Reply] = deque()
        self._factory: Callable[[dict[str, Any]], Reply] | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.script(replies)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ScriptedModelServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"model_server": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A short poll interval keeps stop() (and so every test using the server) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="scripted-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging streams are released."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("ScriptedModelServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Ollama-style base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """OpenAI-compatible base URL (ends in /v1)."""
        return self.url + "/v1"

    # -- scripting -------------------------------------------------------------------------

    def script(self, replies: Script) -> None:
        """Replace the reply queue (or install a callable that builds replies)."""
        with self._lock:
            self._queue.clear()
            if callable(replies):
                self._factory = replies
            else:
                self._factory = None
                self._queue.extend(replies)

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            factory = self._factory
            if factory is None:
                return self._queue.popleft() if self._queue else Reply(content=DEFAULT_CONTENT)
        return factory(body)

    def _record(self, body: dict[str, Any], path: str) -> None:
        with self._cond:
            self.requests.append({**body, "_path": path})
            self._cond.notify_all()

    def _count_disconnect(self) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def wait_for_requests(self, n: int, timeout: float = 10) -> None:
        """Block until at least ``n`` chat requests arrived; AssertionError on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.requests) >= n, timeout)
            if not ok:
                raise AssertionError(
                    f"expected {n} chat requests within {timeout}s, got {len(self.requests)}"
                )

    def wait_for_disconnect(self, timeout: float = 10) -> bool:
        """Wait until a client closed a stream early; True if one did."""
        with self._cond:
            return self._cond.wait_for(lambda: self.disconnects > 0, timeout)

    def has_model(self, name: str) -> bool:
        """Whether ``name`` is one of the served models (``:latest`` optional)."""
        return any(_model_matches(name, m) for m in self.models)

    def _usage(self, body: dict[str, Any], reply: Reply, chunks: int) -> tuple[int, int]:
        prompt = self._prompt_tokens(body, reply)
        if self._truncates() and prompt > self.loaded_context:
            # LM Studio and Ollama keep what fits and count only that.
            prompt = self.loaded_context
        completion = reply.completion_tokens if reply.completion_tokens is not None else chunks
        return prompt, max(completion, 0)

    @staticmethod
    def _prompt_tokens(body: dict[str, Any], reply: Reply) -> int:
        if reply.prompt_tokens is not None:
            return reply.prompt_tokens
        return len(json.dumps(body.get("messages", []))) // 4

    def _truncates(self) -> bool:
        """Whether a prompt over the loaded window is cut silently (not refused)."""
        return self.flavour in ("lmstudio", "ollama")


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), max(size, 1))]


def _content_pieces(reply: Reply) -> list[str]:
    size = max(reply.chunk_size, 1)
    return [reply.content[i : i + size] for i in range(0, len(reply.content), size)]


def _dumps(value: Any) -> str:
    """Compact JSON, as Go (Ollama) and most OpenAI-compatible servers emit it."""
    return json.dumps(value, separators=(",", ":"))


def _args_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else _dumps(arguments)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Go's net/http (Ollama) sets on every connection: with Nagle on, the body
    # written after the headers waited for the client's delayed ACK, 40 ms per response on a
    # kept-alive connection.
    disable_nagle_algorithm = True
    model_server: ScriptedModelServer  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr noise
        pass

    # -- plumbing --------------------------------------------------------------------------

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _send_json(self, status: int, payload: Any) -> None:
        data = _dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        # One stream per connection keeps disconnect detection unambiguous.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _client_gone(self) -> bool:
        """True if the peer closed its end (readable socket with EOF or an error)."""
        sock: socket.socket = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _write_chunk(self, text: str) -> None:
        if self._client_gone():
            raise _ClientGone
        data = text.encode()
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _sleep(self, seconds: float) -> None:
        """Sleep, but notice a client that left meanwhile."""
        end = time.monotonic() + seconds
        while True:
            if self._client_gone():
                raise _ClientGone
            left = end - time.monotonic()
            if left <= 0 or self.model_server._stopping.is_set():
                return
            time.sleep(min(left, 0.02))

    def _hang(self) -> None:
        """Keep the stream open, sending nothing, until the client disconnects."""
        end = time.monotonic() + MAX_HANG_SECONDS
        while time.monotonic() < end and not self.model_server._stopping.is_set():
            if self._client_gone():
                raise _ClientGone
            time.sleep(0.02)
        raise _ClientGone  # give up: drop the connection without finishing

    def _forever(self, token: Callable[[int], str], keepalive: str, reply: Reply) -> Iterator[str]:
        """An endless (``token(0)``, ``token(1)``...) or keep-alive-only (``keepalive``) tail of
        a stream; ends by dropping the connection when the client leaves (_write_chunk /
        _sleep notice) or after MAX_HANG_SECONDS."""
        end = time.monotonic() + MAX_HANG_SECONDS
        n = 0
        while time.monotonic() < end and not self.model_server._stopping.is_set():
            if reply.endless:
                yield token(n)
                n += 1
            else:
                self._sleep(KEEPALIVE_SECONDS)
                yield keepalive
        raise _ClientGone  # give up: drop the connection without finishing

    def _drop(self) -> None:
        """Close the connection abruptly, without the terminating chunk."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stream(self, events: Iterator[str], reply: Reply, content_type: str) -> None:
        """Send pre-rendered stream pieces with the reply's pacing and failure modes."""
        server = self.model_server
        self._start_stream(content_type)
        try:
            if reply.raw_body is not None:
                self._write_chunk(reply.raw_body)
                self._end_stream()
                return
            if reply.break_stream:
                # Everything but the final chunk, then an abrupt close.
                for piece in list(events)[:-1]:
                    self._write_chunk(piece)
                self._drop()
                return
            first = True
            for piece in events:
                if not first:
                    if reply.hang:
                        self._hang()
                    if reply.delay:
                        self._sleep(reply.delay)
                self._write_chunk(piece)
                first = False
            self._end_stream()
        except _ClientGone:
            server._count_disconnect()
            self.close_connection = True

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        server = self.model_server
        path = self.path.split("?", 1)[0].rstrip("/")
        with server._lock:
            server.gets.append(path)
        if path == "/api/tags":
            self._send_json(200, {"models": [_ollama_tag(m) for m in server.models]})
        elif path == "/api/version":
            self._send_json(200, {"version": "0.12.6"})
        elif path == "/v1/models":
            self._send_json(200, _openai_models(server))
        elif server.flavour is not None and self._flavour_get(path):
            pass
        elif path == "":
            self.send_response(200)
            body = b"Ollama is running"
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._read_json()
        if body is None:
            self._send_json(400, {"error": "invalid JSON body"})
            return
        if path == "/api/chat":
            self._ollama_chat(body)
        elif path == "/api/show":
            self._ollama_show(body)
        elif path == "/v1/chat/completions":
            self._openai_chat(body)
        else:
            self._send_json(404, {"error": "404 page not found"})

    def _flavour_get(self, path: str) -> bool:
        """Answer the flavour's own GET endpoints, in the server's real shapes; False when
        ``path`` is not one of them."""
        server = self.model_server
        flavour = server.flavour
        loaded = server.model_loaded
        if flavour == "lmstudio" and path == "/api/v0/models":
            self._send_json(
                200, {"object": "list", "data": [_lmstudio_v0(server, m) for m in server.models]}
            )
        elif flavour == "lmstudio" and path.startswith("/api/v0/models/"):
            name = path[len("/api/v0/models/") :]
            if server.has_model(name):
                self._send_json(200, _lmstudio_v0(server, name))
            else:
                self._send_json(404, {"error": f"Model {name} not found"})
        elif flavour == "lmstudio" and path == "/api/v1/models":
            models = [
                {
                    "type": "llm",
                    "publisher": "lmstudio-community",
                    "key": m,
                    "display_name": m,
                    "architecture": "gemma3",
                    "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
                    "size_bytes": 8_000_000_000,
                    "params_string": "12B",
                    "loaded_instances": (
                        [{"id": m, "config": {"context_length": server.loaded_context}}]
                        if loaded
                        else []
                    ),
                    "max_context_length": server.context_length,
                    "format": "gguf",
                    "capabilities": {"vision": False, "trained_for_tool_use": True},
                    "description": None,
                }
                for m in server.models
            ]
            self._send_json(200, {"models": models})
        elif flavour == "llama-server" and path == "/props":
            self._send_json(
                200,
                {
                    "default_generation_settings": {
                        "n_ctx": server.loaded_context,
                        "params": {"n_predict": -1, "temperature": 0.8, "top_k": 40},
                    },
                    "total_slots": server.slots,
                    "model_alias": server.models[0],
                    "model_path": f"/models/{server.models[0]}.gguf",
                    "modalities": {"vision": False, "audio": False},
                    "endpoint_slots": True,
                    "endpoint_props": False,
                    "endpoint_metrics": False,
                    "bos_token": "<bos>",
                    "eos_token": "<eos>",
                    "build_info": "b6000-scripted",
                    "chat_template": "{{ messages }}",
                    "is_sleeping": False,
                },
            )
        elif flavour == "llama-server" and path == "/slots":
            slots = [
                {
                    "id": i,
                    "n_ctx": server.loaded_context,
                    "speculative": False,
                    "is_processing": False,
                }
                for i in range(server.slots)
            ]
            self._send_json(200, slots)
        elif flavour == "llama-server" and path == "/health":
            self._send_json(200, {"status": "ok"})
        elif flavour == "ollama" and path == "/api/ps":
            running = [
                {
                    **_ollama_tag(m),
                    "expires_at": "2026-06-01T00:30:00Z",
                    "size_vram": 8_000_000_000,
                    "context_length": server.loaded_context,
                }
                for m in server.models[:1]
                if loaded
            ]
            self._send_json(200, {"models": running})
        else:
            return False
        return True

    def _overflow(self, body: dict[str, Any], reply: Reply) -> bool:
        """Refuse a prompt over the loaded window as llama-server and vLLM do; True if done."""
        server = self.model_server
        prompt = server._prompt_tokens(body, reply)
        window = server.loaded_context
        if server.flavour == "llama-server" and prompt > window:
            message = (
                f"request ({prompt} tokens) exceeds the available context size ({window} "
                "tokens), try increasing it"
            )
            error = {
                "code": 400,
                "message": message,
                "type": "exceed_context_size_error",
                "n_prompt_tokens": prompt,
                "n_ctx": window,
            }
            self._send_json(400, {"error": error})
            return True
        completion = int(body.get("max_tokens") or 0)
        if server.flavour == "vllm" and prompt + completion > window:
            # vLLM checks the prompt and max_tokens together against max_model_len.
            message = (
                f"This model's maximum context length is {window} tokens. However, you "
                f"requested {prompt + completion} tokens ({prompt} in the messages, "
                f"{completion} in the completion). Please reduce the length of the messages "
                "or completion."
            )
            error = {"message": message, "type": "BadRequestError", "param": None, "code": 400}
            self._send_json(400, {"error": error})
            return True
        return False

    # -- Ollama ----------------------------------------------------------------------------

    def _ollama_show(self, body: dict[str, Any]) -> None:
        server = self.model_server
        name = str(body.get("model") or body.get("name") or "")
        if not server.has_model(name):
            self._send_json(404, {"error": f"model '{name}' not found"})
            return
        capabilities = ["completion", "tools"] if server.supports_tools else ["completion"]
        self._send_json(
            200,
            {
                "modelfile": f"FROM {name}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": "gemma3", "parameter_size": "12B"},
                "model_info": {
                    "general.architecture": "gemma3",
                    "gemma3.context_length": server.context_length,
                },
                "capabilities": capabilities,
            },
        )

    def _ollama_chat(self, body: dict[str, Any]) -> None:
        server = self.model_server
        server._record(body, "/api/chat")
        server.model_loaded = True  # Ollama loads the model on its first request
        model = str(body.get("model") or "")
        if not server.has_model(model):
            self._send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        if body.get("tools") and not server.supports_tools:
            self._send_json(
                400, {"error": f"registry.ollama.ai/library/{model} does not support tools"}
            )
            return
        reply = server._next_reply(body)
        if reply.status != 200:
            self._send_json(reply.status, {"error": reply.error or "internal error"})
            return
        self._stream(self._ollama_events(body, reply), reply, "application/x-ndjson")

    def _ollama_events(self, body: dict[str, Any], reply: Reply) -> Iterator[str]:
        server = self.model_server
        model = str(body.get("model"))
        started = time.monotonic()
        chunks = 0

        def line(message: dict[str, Any], **extra: Any) -> str:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return _dumps({"model": model, "created_at": stamp, "message": message, **extra}) + "\n"

        for piece in _pieces(reply.thinking, reply.chunk_size):
            chunks += 1
            yield line({"role": "assistant", "content": "", "thinking": piece}, done=False)
        for piece in _content_pieces(reply):
            chunks += 1
            yield line({"role": "assistant", "content": piece}, done=False)
            if reply.stream_error:
                yield _dumps({"error": reply.stream_error}) + "\n"
                return
        if reply.endless or reply.keepalive_only:

            def token(n: int) -> str:
                return line({"role": "assistant", "content": endless_token(n)}, done=False)

            yield from self._forever(token, "\n", reply)
            return
        if reply.tool_calls:
            calls = [
                {
                    "id": f"call_{i}",
                    "function": {
                        "index": i,
                        "name": call["name"],
                        "arguments": call.get("arguments", {}),
                    },
                }
                for i, call in enumerate(reply.tool_calls)
            ]
            chunks += 1
            yield line({"role": "assistant", "content": "", "tool_calls": calls}, done=False)
        elapsed_ns = max(int((time.monotonic() - started) * 1e9), 1_000_000)
        prompt, completion = server._usage(body, reply, chunks)
        yield line(
            {"role": "assistant", "content": ""},
            done=True,
            done_reason=reply.done_reason or "stop",
            total_duration=elapsed_ns + 2_000_000,
            load_duration=1_000_000,
            prompt_eval_count=prompt,
            prompt_eval_duration=1_000_000,
            eval_count=completion,
            eval_duration=elapsed_ns,
        )

    # -- OpenAI ----------------------------------------------------------------------------

    def _openai_error(self, status: int, message: str, kind: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _openai_chat(self, body: dict[str, Any]) -> None:
        server = self.model_server
        server._record(body, "/v1/chat/completions")
        model = str(body.get("model") or "")
        if not server.has_model(model):
            self._openai_error(404, f"model '{model}' not found", "not_found_error")
            return
        if body.get("tools") and not server.supports_tools:
            self._openai_error(400, f"{model} does not support tools", "invalid_request_error")
            return
        reply = server._next_reply(body)
        server.model_loaded = True  # loaded just in time by the first request
        if self._overflow(body, reply):
            return
        if reply.status != 200:
            kind = "server_error" if reply.status >= 500 else "invalid_request_error"
            self._openai_error(reply.status, reply.error or "internal error", kind)
            return
        self._stream(self._openai_events(body, reply), reply, "text/event-stream")

    def _openai_events(self, body: dict[str, Any], reply: Reply) -> Iterator[str]:
        server = self.model_server
        model = str(body.get("model"))
        created = int(time.time())
        started = time.monotonic()
        chunks = 0

        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            payload = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {_dumps(payload)}\n\n"

        def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}

        # The role-only event goes out with the first real chunk, so that "after the first
        # chunk" (hang, delay) means after the client saw some content.
        prefix = event([delta({"role": "assistant", "content": ""})])
        for piece in _pieces(reply.thinking, reply.chunk_size):
            chunks += 1
            yield prefix + event([delta({"reasoning_content": piece})])
            prefix = ""
        for piece in _content_pieces(reply):
            chunks += 1
            yield prefix + event([delta({"content": piece})])
            prefix = ""
            if reply.stream_error:
                yield f"data: {_dumps({'error': {'message': reply.stream_error}})}\n\n"
                return
        if reply.endless:
            yield prefix + event([delta({"content": endless_token(0)})])
        if reply.endless or reply.keepalive_only:

            def sse_token(n: int) -> str:
                return event([delta({"content": endless_token(n + 1)})])

            yield from self._forever(sse_token, ": ping\n\n", reply)
            return
        for i, call in enumerate(reply.tool_calls):
            head = {
                "index": i,
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            chunks += 1
            yield prefix + event([delta({"tool_calls": [head]})])
            prefix = ""
            # Arguments arrive in fragments, as real servers send them.
            text = _args_text(call.get("arguments", {}))
            step = max(reply.chunk_size, 1)
            for j in range(0, len(text), step):
                chunks += 1
                frag = {"index": i, "function": {"arguments": text[j : j + step]}}
                yield event([delta({"tool_calls": [frag]})])
        finish = reply.done_reason or ("tool_calls" if reply.tool_calls else "stop")
        prompt, completion = server._usage(body, reply, chunks)
        elapsed = max(time.monotonic() - started, 1e-3)
        extra: dict[str, Any] = {}
        if server.openai_timings:
            cache_n = reply.cached_tokens or 0
            extra["timings"] = {
                "cache_n": cache_n,
                "prompt_n": max(prompt - cache_n, 0),
                "prompt_ms": 1.0,
                "prompt_per_second": max(prompt - cache_n, 0) / 1e-3,
                "predicted_n": completion,
                "predicted_ms": elapsed * 1000,
                "predicted_per_second": completion / elapsed,
            }
        yield prefix + event([delta({}, finish)], **extra)
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            usage: dict[str, Any] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            if reply.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
            yield event([], usage=usage)
        yield "data: [DONE]\n\n"


def _openai_models(server: ScriptedModelServer) -> dict[str, Any]:
    """``GET /v1/models`` as the imitated server answers it."""
    created = 1_700_000_000
    flavour = server.flavour
    data: list[dict[str, Any]] = []
    for m in server.models:
        entry: dict[str, Any] = {"id": m, "object": "model", "created": created}
        if flavour == "lmstudio":
            entry["owned_by"] = "organization_owner"
        elif flavour == "vllm":
            entry.update(
                owned_by="vllm",
                root=m,
                parent=None,
                max_model_len=server.loaded_context,
                permission=[{"id": "modelperm-scripted", "object": "model_permission"}],
            )
        elif flavour == "llama-server":
            entry.update(
                aliases=[m],
                tags=[],
                owned_by="llamacpp",
                meta={
                    "vocab_type": 1,
                    "n_vocab": 262144,
                    "n_ctx": server.loaded_context,
                    "n_ctx_train": server.context_length,
                    "n_embd": 640,
                    "n_params": 268098176,
                    "size": 246587904,
                },
            )
        else:
            entry["owned_by"] = "library"
        data.append(entry)
    return {"object": "list", "data": data}


def _lmstudio_v0(server: ScriptedModelServer, name: str) -> dict[str, Any]:
    """One model of LM Studio's ``GET /api/v0/models``; ``loaded_context_length`` only when
    the model is loaded, as LM Studio sends it."""
    entry: dict[str, Any] = {
        "id": name,
        "object": "model",
        "type": "llm",
        "publisher": "lmstudio-community",
        "arch": "gemma3",
        "compatibility_type": "gguf",
        "quantization": "Q4_K_M",
        "state": "loaded" if server.model_loaded else "not-loaded",
        "max_context_length": server.context_length,
    }
    if server.model_loaded:
        entry["loaded_context_length"] = server.loaded_context
    return entry


def _ollama_tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2026-06-01T00:00:00Z",
        "size": 8_000_000_000,
        "digest": "0" * 64,
        "details": {"format": "gguf", "family": "gemma3", "quantization_level": "Q4_0"},
    }
