"""OpenAI-compatible chat completions (LM Studio, llama-server, vLLM, Ollama /v1) over SSE."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from agentls.llm._http import (
    context_overflow,
    int_field,
    parse_arguments,
    server_root,
    tool_to_wire,
)
from agentls.llm.defaults import model_name_matches
from agentls.llm.http_backend import HTTPChatBackend, Piece, ReplyParser, Timing, stream_json
from agentls.llm.types import (
    BackendError,
    ChatRequest,
    ChatResponse,
    LoadedContext,
    Message,
    ModelInfo,
    ModelNotFound,
    ToolCall,
    Usage,
)
from agentls.settings import Settings

WHAT = "the OpenAI-compatible server"
START_HINT = "Start your server (LM Studio, `llama-server`, ...) or set agent.baseUrl."
# A probe of the loaded window is a local GET; a server that takes longer has no such endpoint
# worth waiting for.
PROBE_TIMEOUT = 5.0


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


@dataclass
class _PartialCall:
    """A tool call being assembled from streamed deltas."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def add(self, delta: dict[str, Any]) -> int:
        """Append one streamed fragment; the number of characters it carried."""
        before = len(self.name) + len(self.arguments)
        if isinstance(delta.get("id"), str) and delta["id"]:
            self.id = delta["id"]
        function = delta.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                self.name += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                self.arguments += arguments
            elif isinstance(arguments, dict):  # a few servers send the object whole
                self.arguments += json.dumps(arguments)
        return len(self.name) + len(self.arguments) - before

    def finish(self, index: int) -> ToolCall:
        """The complete call; ``call_<index>`` when the server sent no id."""
        arguments, raw = parse_arguments(self.arguments)
        return ToolCall(
            name=self.name, arguments=arguments, id=self.id or f"call_{index}", raw_arguments=raw
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _SSEReply(ReplyParser):
    """One ``/chat/completions`` reply: ``data:`` events of JSON chunks, then ``[DONE]``."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.partial: dict[int, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None

    def feed(self, line: str) -> list[Piece]:
        """One SSE line: only ``data:`` fields matter; comments (``: ping`` keep-alives),
        event names and ids carry nothing."""
        if not line.startswith("data:"):
            return []
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return []
        chunk = stream_json(data, what=WHAT, unit="event")
        if "error" in chunk:
            err = chunk["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            return [Piece(error=str(message), raw=data)]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]
        pieces = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            text = delta.get("content") or ""
            tool_deltas = delta.get("tool_calls") or []
            call_chars = 0
            for position, tool_delta in enumerate(tool_deltas):
                if isinstance(tool_delta, dict):
                    # Servers key fragments by `index`; a missing index means one delta a call.
                    index = _int(tool_delta.get("index"))
                    call = self.partial.setdefault(
                        position if index is None else index, _PartialCall()
                    )
                    call_chars += call.add(tool_delta)
            if text or tool_deltas:
                self.content.append(text)
            reasoning = delta.get("reasoning_content") or ""
            pieces.append(Piece(text, reasoning, bool(tool_deltas), call_chars))
        return pieces

    @property
    def complete(self) -> bool:
        """``[DONE]`` arrived, or at least a finish reason (some servers omit ``[DONE]``)."""
        return self.done or self.finish_reason is not None

    def response(self, timing: Timing) -> ChatResponse:
        """The reply, with the server's usage (or llama-server's timings) where it sent them."""
        return ChatResponse(
            content="".join(self.content),
            tool_calls=[self.partial[i].finish(i) for i in sorted(self.partial)],
            usage=OpenAIBackend._usage(
                self.usage, self.timings, timing.chunks, timing.first_token, timing.wall
            ),
            finish_reason=self.finish_reason,
        )


class OpenAIBackend(HTTPChatBackend):
    """A :class:`~agentls.llm.types.ChatBackend` for OpenAI-compatible servers."""

    name = "openai"
    what = WHAT
    start_hint = START_HINT
    chat_path = "/chat/completions"
    not_json_hint = "agent.baseUrl must end in /v1 for OpenAI-compatible servers."
    auth_hint = "Check agent.apiKey."

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self._entries: list[dict[str, Any]] | None = None  # the last /models answer

    def _auth_headers(self) -> dict[str, str]:
        if self.settings.api_key:
            return {"Authorization": f"Bearer {self.settings.api_key}"}
        return {}

    async def _models(self) -> list[dict[str, Any]]:
        """The ``data`` entries of ``GET /models``."""
        data = await self.get_json("/models")
        entries = data.get("data", []) if isinstance(data, dict) else []
        self._entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
        return self._entries

    async def list_models(self) -> list[str]:
        """Ids of the models the server offers."""
        return [str(e["id"]) for e in await self._models()]

    def _choose_model(self, available: list[str]) -> str:
        """The configured model if the server lists it, else the first model listed."""
        wanted = self.settings.model
        if wanted:
            if wanted not in available:
                raise ModelNotFound(
                    f"Model '{wanted}' is not served by {WHAT} at {self.base_url}.",
                    self._missing_hint(available),
                )
            return wanted
        if available:
            return available[0]
        raise ModelNotFound(
            f"{WHAT} at {self.base_url} lists no models.",
            "Load a model in your server (LM Studio: load one; llama-server: -m model.gguf).",
        )

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

    # -- the loaded context window (cached by HTTPChatBackend.loaded_context) ------------

    async def _get_root(self, path: str) -> Any:
        """GET ``path`` at the server root as JSON; None on any failure."""
        timeout = httpx.Timeout(
            min(self.settings.request_timeout, PROBE_TIMEOUT),
            connect=self.settings.connect_timeout,
        )
        try:
            resp = await self._send("GET", server_root(self.base_url) + path, timeout=timeout)
            if resp.status_code != 200:
                return None
            return resp.json()
        except (BackendError, ValueError):
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
            payload["tools"] = [tool_to_wire(t) for t in request.tools]
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

    def _model_missing(self, model: str, text: str) -> ModelNotFound:
        return ModelNotFound(
            f"Model '{model}' is not served by {WHAT} at {self.base_url}: {text}",
            f"Load it in your server (for Ollama's /v1: ollama pull {model}), or set agent.model.",
        )

    def _says_tools_unsupported(self, text: str) -> bool:
        lower = text.lower()
        return "tool" in lower and any(
            phrase in lower for phrase in ("not support", "unsupported", "does not accept")
        )

    def _status_hint(self, status: int) -> str:
        if status == 404:
            return "agent.baseUrl must point at the /v1 root of an OpenAI-compatible server."
        return super()._status_hint(status)

    async def _stream_error(self, message: str, raw: str) -> BackendError:
        overflow = context_overflow(
            message,
            raw.encode(),
            status=0,
            settings=self.settings,
            loaded=await self.loaded_context(),
        )
        return overflow if overflow is not None else await super()._stream_error(message, raw)

    def _reply_parser(self) -> ReplyParser:
        return _SSEReply()

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
