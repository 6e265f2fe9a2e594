"""Ollama's native API (``/api/chat``, NDJSON streaming)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from agentls.llm._http import (
    context_overflow,
    empty_reply,
    error_text,
    http_error,
    is_empty_reply,
    make_timeout,
    parse_arguments,
    transport_error,
)
from agentls.llm.defaults import (
    GIB,
    choose_default_model,
    default_model_candidates,
    model_name_matches,
    total_memory_bytes,
)
from agentls.llm.types import (
    BackendError,
    ChatRequest,
    ChatResponse,
    LoadedContext,
    Message,
    ModelInfo,
    ModelNotFound,
    StreamBroken,
    StreamCallback,
    StreamEvent,
    ToolCall,
    ToolSpec,
    ToolsUnsupported,
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


def _tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def _available_text(names: list[str]) -> str:
    return f"Available: {', '.join(names)}." if names else "No models are pulled yet."


class OllamaBackend:
    """A :class:`~agentls.llm.types.ChatBackend` for Ollama's native API."""

    name = "ollama"

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.base_url = settings.resolved_base_url()
        self._timeout = make_timeout(settings)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)
        self._resolved: str | None = None
        self._call_ids = 0
        self._trained: dict[str, int | None] = {}  # model -> trained maximum (/api/show)

    @property
    def model(self) -> str:
        """The resolved model, else the configured one, else "" (not resolved yet)."""
        return self._resolved or self.settings.model or ""

    # -- HTTP helpers ----------------------------------------------------------------------

    def _error(self, exc: httpx.HTTPError) -> BackendError:
        return transport_error(
            exc,
            what="Ollama",
            base_url=self.base_url,
            start_hint=START_HINT,
            settings=self.settings,
        )

    async def _get_json(self, path: str) -> Any:
        try:
            resp = await self._client.get(self.base_url + path, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        if resp.status_code != 200:
            raise http_error(resp.status_code, resp.content, what=f"Ollama ({path})")
        try:
            return resp.json()
        except ValueError as exc:
            raise StreamBroken(
                f"Ollama at {self.base_url} answered {path} with something that is not JSON.",
                "Is agent.baseUrl pointing at an Ollama server?",
            ) from exc

    async def list_models(self) -> list[str]:
        """Names of the pulled models (``GET /api/tags``)."""
        data = await self._get_json("/api/tags")
        models = data.get("models", []) if isinstance(data, dict) else []
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    def _pull_hint(self, model: str, available: list[str]) -> str:
        return f"Run: ollama pull {model}. {_available_text(available)}"

    # -- ChatBackend -----------------------------------------------------------------------

    async def resolve_model(self) -> str:
        """The configured model if pulled, else the best pulled Gemma 4 for this machine."""
        if self._resolved is not None:
            return self._resolved
        available = await self.list_models()
        wanted = self.settings.model
        if wanted:
            if not any(model_name_matches(wanted, name) for name in available):
                raise ModelNotFound(
                    f"Model '{wanted}' is not pulled in Ollama at {self.base_url}.",
                    self._pull_hint(wanted, available),
                )
            self._resolved = wanted
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
        self._resolved = chosen
        return chosen

    async def model_info(self) -> ModelInfo:
        """Presence, native tool support and trained context length (``POST /api/show``)."""
        try:
            name = await self.resolve_model()
        except ModelNotFound:
            return ModelInfo(name=self.model, present=False, available=await self.list_models())
        try:
            resp = await self._client.post(
                self.base_url + "/api/show", json={"model": name}, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
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

    async def loaded_context(self) -> LoadedContext | None:
        """The window Ollama loads for the model: the ``num_ctx`` sent with every request,
        which Ollama caps at the model's trained maximum (``/api/show``, asked once per model).
        Never raises; None when the model cannot be resolved."""
        try:
            model = self.model or await self.resolve_model()
            if model not in self._trained:
                await self.model_info()
                self._trained.setdefault(model, None)  # absent model: ask once only
        except BackendError:
            return None
        return self._window(self._trained.get(model))

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
            payload["tools"] = [_tool_to_wire(t) for t in request.tools]
        if request.response_schema is not None:
            payload["format"] = request.response_schema
        if request.max_tokens is not None:
            payload["options"]["num_predict"] = request.max_tokens
        return payload

    def _status_error(
        self, status: int, body: bytes, model: str, loaded: LoadedContext | None = None
    ) -> BackendError:
        text = error_text(body)
        lower = text.lower()
        overflow = context_overflow(
            text, body, status=status, settings=self.settings, loaded=loaded
        )
        if overflow is not None:
            return overflow
        if status == 404 and "model" in lower and "not found" in lower:
            return ModelNotFound(
                f"Model '{model}' is not pulled in Ollama at {self.base_url}.",
                f"Run: ollama pull {model}",
            )
        if status == 400 and "does not support tools" in lower:
            return ToolsUnsupported(
                f"Model '{model}' does not support native tool calls: {text}",
                "Set agent.toolMode to 'constrained' or 'auto', or use a model with tools "
                "(Gemma 4).",
                status,
            )
        hint = "Is agent.baseUrl pointing at an Ollama server?" if status == 404 else ""
        return http_error(status, body, what="Ollama", hint=hint)

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

    async def chat(
        self, request: ChatRequest, on_event: StreamCallback | None = None
    ) -> ChatResponse:
        """Stream one ``/api/chat`` call; cancellation closes the HTTP stream."""
        # A configured model is not checked up front: a 404 from /api/chat says the same
        # thing without the extra round trip.
        model = self._resolved or self.settings.model or await self.resolve_model()
        payload = self._payload(model, request)
        started = time.monotonic()
        first_token: float | None = None
        content: list[str] = []
        calls: list[ToolCall] = []
        chunks = 0
        final: dict[str, Any] | None = None
        try:
            async with self._client.stream(
                "POST", self.base_url + "/api/chat", json=payload, timeout=self._timeout
            ) as resp:
                if resp.status_code != 200:
                    body = await resp.aread()
                    # Only a 400 can be "does not fit the window"; name the window in it.
                    status = resp.status_code
                    loaded = await self.loaded_context() if status == 400 else None
                    raise self._status_error(status, body, model, loaded)
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        chunk = json.loads(line)
                    except ValueError as exc:
                        raise StreamBroken(
                            f"Ollama sent a line that is not JSON: {line[:200]!r}."
                        ) from exc
                    if not isinstance(chunk, dict):
                        raise StreamBroken(f"Ollama sent an unexpected line: {line[:200]!r}.")
                    if "error" in chunk:
                        raise StreamBroken(
                            f"Ollama reported an error mid-stream: {chunk['error']}",
                            "The server may be out of memory; check `ollama serve`'s log.",
                        )
                    message = chunk.get("message")
                    if isinstance(message, dict):
                        text = message.get("content") or ""
                        raw_calls = message.get("tool_calls") or []
                        # Thinking tokens are not part of the answer but are progress.
                        thinking = message.get("thinking") or ""
                        if text or raw_calls:
                            if first_token is None:
                                first_token = time.monotonic() - started
                            content.append(text)
                            calls.extend(
                                self._tool_call(c) for c in raw_calls if isinstance(c, dict)
                            )
                        if text or raw_calls or thinking:
                            chunks += 1
                            if on_event is not None:
                                on_event(StreamEvent(text, chunks, time.monotonic() - started))
                    if chunk.get("done"):
                        final = chunk
                        break
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        if final is None:
            raise StreamBroken(
                f"Ollama's stream ended before the reply was complete ({chunks} chunks).",
                "The server may have crashed or run out of memory; check its log.",
            )
        wall = time.monotonic() - started
        eval_count = int(final.get("eval_count") or chunks)
        eval_ns = final.get("eval_duration") or 0
        usage = Usage(
            prompt_tokens=int(final.get("prompt_eval_count") or 0),
            completion_tokens=eval_count,
            time_to_first_token=first_token,
            tokens_per_second=eval_count / (eval_ns / 1e9) if eval_ns else None,
            wall_time=wall,
        )
        response = ChatResponse(
            content="".join(content),
            tool_calls=calls,
            usage=usage,
            finish_reason=final.get("done_reason"),
        )
        if is_empty_reply(response):
            raise empty_reply(
                response, settings=self.settings, loaded=await self.loaded_context(), what="Ollama"
            )
        return response

    async def aclose(self) -> None:
        """Close the HTTP client if this backend created it."""
        if self._owns_client:
            await self._client.aclose()
