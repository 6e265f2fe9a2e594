"""An instant model for benchmarks: a tiny stdlib imitation of Ollama's HTTP API.

Every ``/api/chat`` request gets its scripted reply at once (NDJSON, as Ollama streams it), so a
run's wall time is the harness's own. The tests have a full scripted server
(``tests/scripted_model.py``); bench/ does not import from tests/, and needs only this much:
``/api/tags``, ``/api/version``, ``/api/show`` (tools capability) and ``/api/chat``.

A script is a list of tool calls (``{"name": ..., "arguments": {...}}``) or of :class:`Turn`
replies, answered in order (the last one again once they run out), or a function from the
request's number (0, 1, ...) to its :class:`Turn`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "gemma4:12b-it-qat"
FIXED_PROMPT_TOKENS = 1000  # what every reply reports unless count_prompt is set


@dataclass(frozen=True)
class Turn:
    """One reply: ``content`` streamed in pieces of ``chunk_size`` characters (each its own
    NDJSON line, written as the model server would), then the tool ``call``, if any."""

    content: str = ""
    call: dict[str, Any] | None = None
    chunk_size: int = 16


Script = Sequence[dict[str, Any] | Turn] | Callable[[int], Turn]


class InstantModel:
    """Answers every chat request at once with the next scripted reply (Ollama NDJSON).

    ``record``: keep each chat request's JSON body in ``requests`` (off by default: parsing
    costs the benchmark's own process time). ``count_prompt``: report the request's size
    (bytes / 4) as its prompt tokens, as a real server would count it, instead of a fixed 1000;
    the harness takes a count under half its own estimate for a prompt the server cut.
    """

    def __init__(self, calls: Script, *, record: bool = False, count_prompt: bool = False) -> None:
        self.script = calls
        self.turn = 0
        self.record = record
        self.count_prompt = count_prompt
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []  # the same requests as sent, byte for byte
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/api/tags"):
                    self._json(200, {"models": [{"name": MODEL, "model": MODEL}]})
                elif self.path.startswith("/api/version"):
                    self._json(200, {"version": "0.12.6"})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.startswith("/api/show"):
                    info = {"general.architecture": "gemma3", "gemma3.context_length": 131072}
                    self._json(200, {"capabilities": ["completion", "tools"], "model_info": info})
                elif self.path.startswith("/api/chat"):
                    if model.record:
                        model.requests.append(json.loads(raw))
                        model.bodies.append(raw)
                    prompt = len(raw) // 4 if model.count_prompt else FIXED_PROMPT_TOKENS
                    self._chat(model.next_turn(), prompt)
                else:
                    self._json(404, {"error": "not found"})

            def _chat(self, turn: Turn, prompt_tokens: int) -> None:
                lines = [_line(piece) for piece in _pieces(turn.content, turn.chunk_size)]
                if turn.call is not None:
                    lines.append(_line("", tool_calls=[{"function": turn.call}]))
                lines.append(_done(prompt_tokens))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                if not turn.content:  # one tool call: one write, as before
                    body = "".join(lines).encode()
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                # Streamed text: each line written on its own (the body ends when the
                # HTTP/1.0 connection closes), so the client reads it piece by piece.
                self.end_headers()
                for line in lines:
                    self.wfile.write(line.encode())
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next_turn(self) -> Turn:
        """The reply to the next chat request."""
        number = self.turn
        self.turn += 1
        if callable(self.script):
            return self.script(number)
        item = self.script[min(number, len(self.script) - 1)]
        return item if isinstance(item, Turn) else Turn(call=item)

    @property
    def url(self) -> str:
        """The base URL the backend talks to."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> InstantModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), max(size, 1))]


def _line(content: str, **message: Any) -> str:
    reply = {"role": "assistant", "content": content, **message}
    return json.dumps({"model": MODEL, "message": reply, "done": False}) + "\n"


def _done(prompt_tokens: int) -> str:
    return (
        json.dumps(
            {
                "model": MODEL,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": prompt_tokens,
                "eval_count": 20,
                "eval_duration": 1_000_000,
                "prompt_eval_duration": 1_000_000,
            }
        )
        + "\n"
    )
