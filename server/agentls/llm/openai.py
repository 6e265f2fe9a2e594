"""OpenAI-compatible chat completions (LM Studio, llama-server, vLLM, Ollama /v1) over SSE."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from agentls.llm._http import (
    context_overflow,
    empty_reply,
    error_text,
    http_error,
    int_field,
    is_empty_reply,
    make_timeout,
    parse_arguments,
    server_root,
    transport_error,
)
from agentls.llm.defaults import model_name_matches
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

WHAT = "the OpenAI-compatible server"
START_HINT = "Start your server (LM Studio, `llama-server`, ...) or set agent.baseUrl."
# A probe of the loaded window is a local GET; a server that takes longer has no such endpoint
# worth waiting for.
PROBE_TIMEOUT = 5.0
# A server that knows the model but has not loaded it yet (LM Studio's just-in-time loading,
# Ollama before the first request) is asked again after a chat, at most this often per model.
MAX_PROBES = 2


def _message_to_wire(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        wire["tool_call_id"] = message.tool_call_id or ""
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


@dataclass
class _Probe:
    """What the loaded-window probe found for one model."""

    value: LoadedContext | None
    settled: bool  # False: the server knows the model but has not loaded it yet
    probes: int = 1
    chats: int = 0  # the backend's chat count when probed


@dataclass
class _PartialCall:
    """A tool call being assembled from streamed deltas."""

    id: str = ""
    name: str = ""
    arguments: str = ""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _tools_unsupported(text: str) -> bool:
    lower = text.lower()
    return "tool" in lower and any(
        phrase in lower for phrase in ("not support", "unsupported", "does not accept")
    )


class OpenAIBackend:
    """A :class:`~agentls.llm.types.ChatBackend` for OpenAI-compatible servers."""

    name = "openai"

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.base_url = settings.resolved_base_url()
        self._timeout = make_timeout(settings)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)
        self._headers: dict[str, str] = {}
        if settings.api_key:
            self._headers["Authorization"] = f"Bearer {settings.api_key}"
        self._resolved: str | None = None
        self._entries: list[dict[str, Any]] | None = None  # the last /models answer
        self._probes: dict[str, _Probe] = {}
        self._chats = 0

    @property
    def model(self) -> str:
        """The resolved model, else the configured one, else "" (not resolved yet)."""
        return self._resolved or self.settings.model or ""

    def _error(self, exc: httpx.HTTPError) -> BackendError:
        return transport_error(
            exc, what=WHAT, base_url=self.base_url, start_hint=START_HINT, settings=self.settings
        )

    async def _models(self) -> list[dict[str, Any]]:
        """The ``data`` entries of ``GET /models``."""
        try:
            resp = await self._client.get(
                self.base_url + "/models", headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        if resp.status_code != 200:
            hint = "Check agent.apiKey." if resp.status_code in (401, 403) else ""
            raise http_error(resp.status_code, resp.content, what=f"{WHAT} (/models)", hint=hint)
        try:
            data = resp.json()
        except ValueError as exc:
            raise StreamBroken(
                f"{WHAT} at {self.base_url} answered /models with something that is not JSON.",
                "agent.baseUrl must end in /v1 for OpenAI-compatible servers.",
            ) from exc
        entries = data.get("data", []) if isinstance(data, dict) else []
        self._entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
        return self._entries

    async def list_models(self) -> list[str]:
        """Ids of the models the server offers."""
        return [str(e["id"]) for e in await self._models()]

    async def resolve_model(self) -> str:
        """The configured model if the server lists it, else the first model listed."""
        if self._resolved is not None:
            return self._resolved
        available = await self.list_models()
        wanted = self.settings.model
        if wanted:
            if wanted not in available:
                raise ModelNotFound(
                    f"Model '{wanted}' is not served by {WHAT} at {self.base_url}.",
                    self._missing_hint(available),
                )
            self._resolved = wanted
        elif available:
            self._resolved = available[0]
        else:
            raise ModelNotFound(
                f"{WHAT} at {self.base_url} lists no models.",
                "Load a model in your server (LM Studio: load one; llama-server: -m model.gguf).",
            )
        return self._resolved

    def _missing_hint(self, available: list[str]) -> str:
        listed = ", ".join(available) if available else "none"
        return f"Load it in your server, or set agent.model to one it serves: {listed}."

    async def model_info(self) -> ModelInfo:
        """Presence and, where the server reports it, the trained context length."""
        entries = await self._models()
        available = [str(e["id"]) for e in entries]
        try:
            name = await self.resolve_model()
        except ModelNotFound:
            return ModelInfo(name=self.model, present=False, available=available)
        info = ModelInfo(name=name, present=True, available=available)
        info.loaded = await self.loaded_context()
        info.loaded_context_length = info.loaded.length if info.loaded else None
        for entry in entries:
            if entry["id"] != name:
                continue
            meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
            assert isinstance(meta, dict)
            # llama-server: meta.n_ctx_train; LM Studio and others: a top-level field.
            for value in (
                meta.get("n_ctx_train"),
                entry.get("max_context_length"),
                entry.get("context_length"),
            ):
                if _int(value):
                    info.context_length = value
                    break
        return info

    # -- the loaded context window -----------------------------------------------------------

    async def loaded_context(self) -> LoadedContext | None:
        """The context window the server has loaded for the model, or None when unknown.

        One probe per model, cached; a model the server knows but has not loaded yet (LM
        Studio's just-in-time loading, Ollama before its first request) is probed again after
        the next chat, when it is loaded. Never raises: a server without these endpoints just
        means "unknown".
        """
        try:
            model = self.model or await self.resolve_model()
        except BackendError:
            return None
        cached = self._probes.get(model)
        if cached is not None and (
            cached.settled or cached.probes >= MAX_PROBES or cached.chats == self._chats
        ):
            return cached.value
        value, settled = await self._probe(model)
        probes = cached.probes + 1 if cached is not None else 1
        self._probes[model] = _Probe(value, settled, probes, self._chats)
        return value

    async def _get_root(self, path: str) -> Any:
        """GET ``path`` at the server root as JSON; None on any failure."""
        try:
            resp = await self._client.get(
                server_root(self.base_url) + path,
                headers=self._headers,
                timeout=httpx.Timeout(
                    min(self.settings.request_timeout, PROBE_TIMEOUT),
                    connect=self.settings.connect_timeout,
                ),
            )
            if resp.status_code != 200:
                return None
            return resp.json()
        except (httpx.HTTPError, ValueError):
            return None

    async def _probe(self, model: str) -> tuple[LoadedContext | None, bool]:
        """Ask the server for the model's loaded window: (window, settled)."""
        entries = self._entries
        if entries is None:
            try:
                entries = await self._models()
            except BackendError:
                entries = []
        entry = next((e for e in entries if e.get("id") == model), {})
        # vLLM says it in /v1/models: max_model_len is the window the engine was started with.
        max_model_len = int_field(entry.get("max_model_len"))
        if max_model_len is not None:
            return LoadedContext(max_model_len, "vllm", "GET /v1/models max_model_len"), True
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        assert isinstance(meta, dict)
        if int_field(meta.get("n_ctx")) is not None:
            # Newer llama-server builds say it in /v1/models too (meta.n_ctx, per slot, beside
            # the trained n_ctx_train); /props adds the slot count the fix needs.
            found, _ = await self._probe_llama_server(model)
            return found or LoadedContext(
                int(meta["n_ctx"]), "llama-server", "GET /v1/models meta.n_ctx"
            ), True
        probes = [self._probe_llama_server, self._probe_lmstudio, self._probe_ollama]
        owner = entry.get("owned_by")
        if owner == "llamacpp" or meta:
            probes.sort(key=lambda p: p != self._probe_llama_server)
        elif owner == "organization_owner":  # what LM Studio's /v1/models says
            probes.sort(key=lambda p: p != self._probe_lmstudio)
        elif owner == "library":  # Ollama's /v1/models
            probes.sort(key=lambda p: p != self._probe_ollama)
        unsettled = False
        for probe in probes:
            found, answered = await probe(model)
            if found is not None:
                return found, True
            if answered:
                # This server knows the model but has not loaded it: ask again later.
                unsettled = True
                break
        return None, not unsettled

    async def _probe_llama_server(self, model: str) -> tuple[LoadedContext | None, bool]:
        """llama-server: ``GET /props`` → ``default_generation_settings.n_ctx``, the window of
        one slot (``-c`` divided by ``--parallel``), which is what one request gets."""
        data = await self._get_root("/props")
        if not isinstance(data, dict):
            return None, False
        settings = data.get("default_generation_settings")
        n_ctx = int_field(settings.get("n_ctx")) if isinstance(settings, dict) else None
        if n_ctx is None:
            return None, False
        slots = int_field(data.get("total_slots")) or 1
        return LoadedContext(n_ctx, "llama-server", "GET /props", slots), True

    async def _probe_lmstudio(self, model: str) -> tuple[LoadedContext | None, bool]:
        """LM Studio: ``GET /api/v0/models`` → ``loaded_context_length`` of the model when its
        ``state`` is ``loaded`` (0.3.6+); else ``GET /api/v1/models`` (0.4+) →
        ``loaded_instances[].config.context_length``."""
        data = await self._get_root("/api/v0/models")
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            for item in data["data"]:
                if not isinstance(item, dict) or item.get("id") != model:
                    continue
                length = int_field(item.get("loaded_context_length"))
                if item.get("state") == "loaded" and length is not None:
                    return LoadedContext(length, "lmstudio", "GET /api/v0/models"), True
            return None, True
        data = await self._get_root("/api/v1/models")
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            for item in data["models"]:
                if not isinstance(item, dict) or item.get("key") != model:
                    continue
                instances = item.get("loaded_instances")
                for instance in instances if isinstance(instances, list) else []:
                    config = instance.get("config") if isinstance(instance, dict) else None
                    if isinstance(config, dict) and int_field(config.get("context_length")):
                        length = int(config["context_length"])
                        return LoadedContext(length, "lmstudio", "GET /api/v1/models"), True
            return None, True
        return None, False

    async def _probe_ollama(self, model: str) -> tuple[LoadedContext | None, bool]:
        """Ollama's ``/v1`` cannot take ``num_ctx``; ``GET /api/ps`` → ``context_length`` of
        the running model says what Ollama loaded (its default, or OLLAMA_CONTEXT_LENGTH)."""
        data = await self._get_root("/api/ps")
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            return None, False
        for item in data["models"]:
            if not isinstance(item, dict):
                continue
            names = [item.get("name"), item.get("model")]
            if any(isinstance(n, str) and model_name_matches(model, n) for n in names):
                length = int_field(item.get("context_length"))
                if length is not None:
                    return LoadedContext(length, "ollama", "GET /api/ps"), True
        return None, True

    def _payload(self, model: str, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model,
            "messages": [_message_to_wire(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": request.temperature,
        }
        if request.tools:
            payload["tools"] = [_tool_to_wire(t) for t in request.tools]
            if request.no_tool_calls:
                payload["tool_choice"] = "none"
        if request.response_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "tool_call",
                    "strict": True,
                    "schema": request.response_schema,
                },
            }
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
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
                f"Model '{model}' is not served by {WHAT} at {self.base_url}: {text}",
                f"Load it in your server (for Ollama's /v1: ollama pull {model}), "
                "or set agent.model.",
            )
        if status == 400 and _tools_unsupported(text):
            return ToolsUnsupported(
                f"Model '{model}' does not support native tool calls: {text}",
                "Set agent.toolMode to 'constrained' or 'auto'.",
                status,
            )
        hint = ""
        if status in (401, 403):
            hint = "Check agent.apiKey."
        elif status == 404:
            hint = "agent.baseUrl must point at the /v1 root of an OpenAI-compatible server."
        return http_error(status, body, what=WHAT, hint=hint)

    async def chat(
        self, request: ChatRequest, on_event: StreamCallback | None = None
    ) -> ChatResponse:
        """Stream one ``/chat/completions`` call; cancellation closes the HTTP stream."""
        model = self._resolved or self.settings.model or await self.resolve_model()
        payload = self._payload(model, request)
        started = time.monotonic()
        first_token: float | None = None
        content: list[str] = []
        partial: dict[int, _PartialCall] = {}
        chunks = 0
        finish_reason: str | None = None
        usage_data: dict[str, Any] | None = None
        timings: dict[str, Any] | None = None
        done = False
        try:
            async with self._client.stream(
                "POST",
                self.base_url + "/chat/completions",
                json=payload,
                headers=self._headers,
                timeout=self._timeout,
            ) as resp:
                if resp.status_code != 200:
                    body = await resp.aread()
                    # Only a 400 can be "does not fit the window"; name the window in it.
                    status = resp.status_code
                    loaded = await self.loaded_context() if status == 400 else None
                    raise self._status_error(status, body, model, loaded)
                async for line in resp.aiter_lines():
                    # SSE: only `data:` fields matter; comments, event names and ids do not.
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise StreamBroken(
                            f"{WHAT} sent an event that is not JSON: {data[:200]!r}."
                        ) from exc
                    if not isinstance(chunk, dict):
                        raise StreamBroken(f"{WHAT} sent an unexpected event: {data[:200]!r}.")
                    if "error" in chunk:
                        err = chunk["error"]
                        message = err.get("message", err) if isinstance(err, dict) else err
                        overflow = context_overflow(
                            str(message),
                            data.encode(),
                            status=0,
                            settings=self.settings,
                            loaded=await self.loaded_context(),
                        )
                        if overflow is not None:
                            raise overflow
                        raise StreamBroken(f"{WHAT} reported an error mid-stream: {message}")
                    if isinstance(chunk.get("usage"), dict):
                        usage_data = chunk["usage"]
                    if isinstance(chunk.get("timings"), dict):
                        timings = chunk["timings"]
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        if choice.get("finish_reason"):
                            finish_reason = str(choice["finish_reason"])
                        delta = choice.get("delta")
                        if not isinstance(delta, dict):
                            continue
                        text = delta.get("content") or ""
                        tool_deltas = delta.get("tool_calls") or []
                        reasoning = delta.get("reasoning_content") or ""
                        for position, tool_delta in enumerate(tool_deltas):
                            if isinstance(tool_delta, dict):
                                self._accumulate(partial, position, tool_delta)
                        if text or tool_deltas:
                            if first_token is None:
                                first_token = time.monotonic() - started
                            content.append(text)
                        if text or tool_deltas or reasoning:
                            chunks += 1
                            if on_event is not None:
                                on_event(StreamEvent(text, chunks, time.monotonic() - started))
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        if not done and finish_reason is None:
            raise StreamBroken(
                f"The stream from {WHAT} ended before the reply was complete ({chunks} chunks).",
                "The server may have crashed or run out of memory; check its log.",
            )
        wall = time.monotonic() - started
        self._chats += 1
        calls = [self._finish_call(partial[i], i) for i in sorted(partial)]
        response = ChatResponse(
            content="".join(content),
            tool_calls=calls,
            usage=self._usage(usage_data, timings, chunks, first_token, wall),
            finish_reason=finish_reason,
        )
        if is_empty_reply(response):
            raise empty_reply(
                response, settings=self.settings, loaded=await self.loaded_context(), what=WHAT
            )
        return response

    @staticmethod
    def _accumulate(partial: dict[int, _PartialCall], position: int, delta: dict[str, Any]) -> None:
        # Servers key fragments by `index`; a missing index means one delta per call.
        index = _int(delta.get("index"))
        call = partial.setdefault(position if index is None else index, _PartialCall())
        if isinstance(delta.get("id"), str) and delta["id"]:
            call.id = delta["id"]
        function = delta.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call.arguments += arguments
            elif isinstance(arguments, dict):  # a few servers send the object whole
                call.arguments += json.dumps(arguments)

    @staticmethod
    def _finish_call(call: _PartialCall, index: int) -> ToolCall:
        arguments, raw = parse_arguments(call.arguments)
        return ToolCall(
            name=call.name, arguments=arguments, id=call.id or f"call_{index}", raw_arguments=raw
        )

    @staticmethod
    def _usage(
        usage: dict[str, Any] | None,
        timings: dict[str, Any] | None,
        chunks: int,
        first_token: float | None,
        wall: float,
    ) -> Usage:
        result = Usage(time_to_first_token=first_token, wall_time=wall)
        usage = usage or {}
        timings = timings or {}
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        if prompt is None and timings:
            # llama-server's prompt_n counts only the tokens it had to process.
            prompt = (_int(timings.get("prompt_n")) or 0) + (_int(timings.get("cache_n")) or 0)
        if completion is None:
            completion = _int(timings.get("predicted_n"))
        result.prompt_tokens = prompt or 0
        result.completion_tokens = completion if completion is not None else chunks
        details = usage.get("prompt_tokens_details")
        if _int(timings.get("cache_n")) is not None:
            result.cached_prompt_tokens = timings["cache_n"]
        elif isinstance(details, dict) and _int(details.get("cached_tokens")) is not None:
            result.cached_prompt_tokens = details["cached_tokens"]
        speed = timings.get("predicted_per_second")
        if isinstance(speed, int | float) and speed > 0:
            result.tokens_per_second = float(speed)
        elif first_token is not None and wall > first_token and result.completion_tokens:
            # Our own clock: generation time is from the first token to the end of the stream.
            result.tokens_per_second = result.completion_tokens / (wall - first_token)
        return result

    async def aclose(self) -> None:
        """Close the HTTP client if this backend created it."""
        if self._owns_client:
            await self._client.aclose()
