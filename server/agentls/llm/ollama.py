"""Ollama's native API (``/api/chat``, NDJSON streaming)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from agentls.llm._http import (
    http_error,
    parse_arguments,
    tool_to_wire,
)
from agentls.llm.defaults import (
    GIB,
    choose_default_model,
    default_model_candidates,
    model_name_matches,
    total_memory_bytes,
)
from agentls.llm.http_backend import HTTPChatBackend, Piece, ReplyParser, Timing, stream_json
from agentls.llm.types import (
    BackendError,
    ChatRequest,
    ChatResponse,
    LoadedContext,
    Message,
    ModelInfo,
    ModelNotFound,
    StreamBroken,
    ToolCall,
    Usage,
)
from agentls.settings import Settings

START_HINT = "Start it with `ollama serve`, or set agent.baseUrl."


def _message_to_wire(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {"function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        wire["tool_name"] = message.name
    return wire


def _available_text(names: list[str]) -> str:
    return f"Available: {', '.join(names)}." if names else "No models are pulled yet."


class _NDJSONReply(ReplyParser):
    """One ``/api/chat`` reply: a JSON object a line, the last one with ``done: true``."""

    def __init__(self, tool_call: Callable[[dict[str, Any]], ToolCall]) -> None:
        self._tool_call = tool_call
        self.content: list[str] = []
        self.calls: list[ToolCall] = []
        self.final: dict[str, Any] | None = None

    def feed(self, line: str) -> list[Piece]:
        """One NDJSON line; blank lines (keep-alives) carry nothing."""
        if not line.strip():
            return []
        chunk = stream_json(line, what="Ollama", unit="line")
        if "error" in chunk:
            return [Piece(error=str(chunk["error"]), raw=line)]
        pieces = []
        message = chunk.get("message")
        if isinstance(message, dict):
            text = message.get("content") or ""
            raw_calls = message.get("tool_calls") or []
            if text or raw_calls:
                self.content.append(text)
                self.calls.extend(self._tool_call(c) for c in raw_calls if isinstance(c, dict))
            # Thinking tokens are not part of the answer but are progress.
            piece = Piece(
                text=text,
                thinking=message.get("thinking") or "",
                calls=bool(raw_calls),
                call_chars=len(json.dumps(raw_calls)) if raw_calls else 0,
            )
            pieces.append(piece)
        if chunk.get("done"):
            self.final = chunk
            self.done = True
        return pieces

    def response(self, timing: Timing) -> ChatResponse:
        """The reply, with Ollama's own counts and generation time where it sent them."""
        final = self.final or {}
        eval_count = int(final.get("eval_count") or timing.chunks)
        eval_ns = final.get("eval_duration") or 0
        usage = Usage(
            prompt_tokens=int(final.get("prompt_eval_count") or 0),
            completion_tokens=eval_count,
            time_to_first_token=timing.first_token,
            tokens_per_second=eval_count / (eval_ns / 1e9) if eval_ns else None,
            wall_time=timing.wall,
        )
        return ChatResponse(
            content="".join(self.content),
            tool_calls=self.calls,
            usage=usage,
            finish_reason=final.get("done_reason"),
        )


class OllamaBackend(HTTPChatBackend):
    """A :class:`~agentls.llm.types.ChatBackend` for Ollama's native API."""

    name = "ollama"
    what = "Ollama"
    start_hint = START_HINT
    chat_path = "/api/chat"
    not_json_hint = "Is agent.baseUrl pointing at an Ollama server?"
    tools_hint = (
        "Set agent.toolMode to 'constrained' or 'auto', or use a model with tools (Gemma 4)."
    )

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self._call_ids = 0
        self._trained: dict[str, int | None] = {}  # model -> trained maximum (/api/show)

    async def list_models(self) -> list[str]:
        """Names of the pulled models (``GET /api/tags``)."""
        data = await self.get_json("/api/tags")
        models = data.get("models", []) if isinstance(data, dict) else []
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    def _pull_hint(self, model: str, available: list[str]) -> str:
        return f"Run: ollama pull {model}. {_available_text(available)}"

    def _choose_model(self, available: list[str]) -> str:
        """The configured model if pulled, else the best pulled Gemma 4 for this machine."""
        wanted = self.settings.model
        if wanted:
            if not any(model_name_matches(wanted, name) for name in available):
                raise ModelNotFound(
                    f"Model '{wanted}' is not pulled in Ollama at {self.base_url}.",
                    self._pull_hint(wanted, available),
                )
            return wanted
        memory = total_memory_bytes()
        chosen = choose_default_model(available, memory)
        if chosen is None:
            fit = default_model_candidates(memory)[0]
            size = f"{memory / GIB:.0f} GB" if memory else "unknown memory"
            raise ModelNotFound(
                f"No Gemma 4 model is pulled in Ollama at {self.base_url}.",
                f"Run: ollama pull {fit} (fits this machine, {size}), or set agent.model. "
                + _available_text(available),
            )
        return chosen

    async def model_info(self) -> ModelInfo:
        """Presence, native tool support and trained context length (``POST /api/show``)."""
        try:
            name = await self.resolve_model()
        except ModelNotFound:
            return ModelInfo(name=self.model, present=False, available=await self.list_models())
        resp = await self._send("POST", self.base_url + "/api/show", json={"model": name})
        if resp.status_code == 404:
            return ModelInfo(name=name, present=False, available=await self.list_models())
        if resp.status_code != 200:
            raise http_error(resp.status_code, resp.content, what="Ollama (/api/show)")
        data = resp.json()
        info = ModelInfo(name=name, present=True)
        capabilities = data.get("capabilities")
        # Older Ollama versions do not report capabilities: unknown rather than "no".
        if isinstance(capabilities, list):
            info.supports_tools = "tools" in capabilities
        details = data.get("model_info")
        if isinstance(details, dict):
            for key, value in details.items():
                if key.endswith(".context_length") and isinstance(value, int):
                    info.context_length = value
                    break
        self._trained[name] = info.context_length
        info.loaded = self._window(info.context_length)
        info.loaded_context_length = info.loaded.length
        return info

    def _window(self, trained: int | None) -> LoadedContext:
        """What Ollama loads: the num_ctx we send, capped at the model's trained maximum."""
        setting = self.settings.context_length
        if trained is not None and trained < setting:
            return LoadedContext(trained, "ollama-native", "POST /api/show (trained maximum)")
        return LoadedContext(setting, "ollama-native", "num_ctx (agent.contextLength)")

    async def _probe(self, model: str) -> tuple[LoadedContext | None, bool]:
        """The window Ollama loads for the model: the ``num_ctx`` sent with every request,
        which Ollama caps at the model's trained maximum (``/api/show``)."""
        if model not in self._trained:
            await self.model_info()
            self._trained.setdefault(model, None)  # absent model: ask once only
        return self._window(self._trained.get(model)), True

    def _payload(self, model: str, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model,
            "messages": [_message_to_wire(m) for m in request.messages],
            "stream": True,
            # Ollama's default context is a few thousand tokens and it silently truncates the
            # prompt beyond it, so num_ctx goes out on every request.
            "options": {
                "num_ctx": self.settings.context_length,
                "temperature": request.temperature,
            },
            "keep_alive": self.settings.keep_alive,
        }
        if request.tools:
            payload["tools"] = [tool_to_wire(t) for t in request.tools]
        if request.response_schema is not None:
            payload["format"] = request.response_schema
        if request.max_tokens is not None:
            payload["options"]["num_predict"] = request.max_tokens
        return payload

    def _model_missing(self, model: str, text: str) -> ModelNotFound:
        return ModelNotFound(
            f"Model '{model}' is not pulled in Ollama at {self.base_url}.",
            f"Run: ollama pull {model}",
        )

    def _says_tools_unsupported(self, text: str) -> bool:
        return "does not support tools" in text.lower()

    def _status_hint(self, status: int) -> str:
        return "Is agent.baseUrl pointing at an Ollama server?" if status == 404 else ""

    async def _stream_error(self, message: str, raw: str) -> BackendError:
        return StreamBroken(
            f"Ollama reported an error mid-stream: {message}",
            "The server may be out of memory; check `ollama serve`'s log.",
        )

    def _reply_parser(self) -> ReplyParser:
        return _NDJSONReply(self._tool_call)

    def _tool_call(self, raw: dict[str, Any]) -> ToolCall:
        function = raw.get("function") if isinstance(raw.get("function"), dict) else raw
        assert isinstance(function, dict)
        arguments, raw_arguments = parse_arguments(function.get("arguments"))
        call_id = raw.get("id")
        if not isinstance(call_id, str) or not call_id:
            # Older Ollama sends no ids; the loop still needs one to pair results with calls.
            self._call_ids += 1
            call_id = f"call_{self._call_ids}"
        return ToolCall(
            name=str(function.get("name") or ""),
            arguments=arguments,
            id=call_id,
            raw_arguments=raw_arguments,
        )
