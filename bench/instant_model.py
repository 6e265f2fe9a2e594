"""An instant model for benchmarks: a tiny stdlib imitation of Ollama's HTTP API.

Every ``/api/chat`` request gets the next scripted tool call at once (NDJSON, as Ollama
streams it), so a run's wall time is the harness's own. The tests have a full scripted server
(``tests/scripted_model.py``); bench/ does not import from tests/, and needs only this much:
``/api/tags``, ``/api/version``, ``/api/show`` (tools capability) and ``/api/chat``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "gemma4:12b-it-qat"


class InstantModel:
    """Answers every chat request at once with the next scripted tool call (Ollama NDJSON)."""

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.calls = calls
        self.turn = 0
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
                self.rfile.read(length)
                if self.path.startswith("/api/show"):
                    info = {"general.architecture": "gemma3", "gemma3.context_length": 131072}
                    self._json(200, {"capabilities": ["completion", "tools"], "model_info": info})
                elif self.path.startswith("/api/chat"):
                    self._chat()
                else:
                    self._json(404, {"error": "not found"})

            def _chat(self) -> None:
                call = model.calls[min(model.turn, len(model.calls) - 1)]
                model.turn += 1
                lines = [
                    {
                        "model": MODEL,
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [{"function": call}],
                        },
                        "done": False,
                    },
                    {
                        "model": MODEL,
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "stop",
                        "prompt_eval_count": 1000,
                        "eval_count": 20,
                        "eval_duration": 1_000_000,
                        "prompt_eval_duration": 1_000_000,
                    },
                ]
                body = "".join(json.dumps(line) + "\n" for line in lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL the backend talks to."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
