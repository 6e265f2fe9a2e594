"""The one base of the HTTP chat backends (``ollama.py``, ``openai.py``).

:class:`HTTPChatBackend` owns what both wire formats share: the HTTP client, headers and
timeouts, ``model``, ``aclose``, JSON requests with their error mapping, the streaming loop
(timing, first token, chunk counting, progress events), the client-side output cap and the
per-call deadline, and the cache of the loaded-context probe. A subclass keeps only its payload,
its :class:`ReplyParser` (an NDJSON or SSE line → a :class:`Piece`; the pieces → a
:class:`~agentls.llm.types.ChatResponse`) and the mapping of its server's errors.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import httpx

from agentls.llm._http import (
    context_overflow,
    empty_reply,
    error_text,
    http_error,
    is_empty_reply,
    make_timeout,
    transport_error,
)
from agentls.llm.types import (
    BackendError,
    BackendTimeout,
    ChatRequest,
    ChatResponse,
    LoadedContext,
    ModelInfo,
    ModelNotFound,
    StreamBroken,
    StreamCallback,
    StreamEvent,
    StreamRunaway,
    ToolsUnsupported,
)
from agentls.settings import Settings

# The client-side output cap. The server is asked for ``max_tokens`` (num_predict) and normally
# stops there; the client only steps in when a server ignores it and streams on forever. Servers
# count differently from our chunks (thinking/reasoning tokens count toward the cap on some and
# not others, tool-call markup the server parses out of the text is generated but never sent,
# llama-server finishes a stop string past the cap, speculative decoding sends several tokens in
# one chunk), so the client's limit sits well past the server's: a reply the server would end on
# its own is never cut, and a runaway is still stopped within a quarter of its budget.
CAP_FACTOR = 1.25
CAP_SLACK = 64
# A server that packs many tokens into each chunk would slip past a chunk count, so characters
# count too, at a rate no tokenizer reaches on average over a whole reply (code averages 3-4
# characters per token; even deep indentation stays far below this).
MAX_CHARS_PER_TOKEN = 12
# A server that knows the model but has not loaded it yet (LM Studio's just-in-time loading,
# Ollama before the first request) is asked again after a chat, at most this often per model.
MAX_PROBES = 2


def output_cap(max_tokens: int) -> int:
    """How many generated tokens the client lets a reply capped at ``max_tokens`` stream before
    it stops the stream (see ``CAP_FACTOR``)."""
    return math.ceil(max_tokens * CAP_FACTOR) + CAP_SLACK


def stream_json(data: str, *, what: str, unit: str) -> dict[str, Any]:
    """One ``unit`` ("line", "event") of a stream from ``what`` as a JSON object; StreamBroken
    when it is not one."""
    article = "an" if unit[:1] in "aeiou" else "a"
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise StreamBroken(
            f"{what} sent {article} {unit} that is not JSON: {data[:200]!r}."
        ) from exc
    if not isinstance(chunk, dict):
        raise StreamBroken(f"{what} sent an unexpected {unit}: {data[:200]!r}.")
    return chunk


def capitalized(text: str) -> str:
    """``text`` with its first letter upper case ("the OpenAI-compatible server" starts a
    sentence)."""
    return text[:1].upper() + text[1:]


@dataclass
class Piece:
    """What one stream line carried, in terms both wire formats share."""

    text: str = ""  # answer text
    thinking: str = ""  # reasoning: progress for the user, not part of the answer
    calls: bool = False  # tool-call data (whole calls or fragments)
    call_chars: int = 0  # characters of that tool-call data, for the output cap
    error: str | None = None  # an error the server reported mid-stream
    raw: str = ""  # with ``error``: the line's data, for error mapping


@dataclass(frozen=True)
class Timing:
    """How the stream went, by our own clock."""

    chunks: int  # lines that carried text, thinking or tool-call data
    first_token: float | None  # seconds to the first text or tool call
    wall: float  # seconds from sending the request to the end of the stream


class ReplyParser(ABC):
    """One reply being read from a stream, line by line, for one chat call."""

    done = False  # the server said the reply is complete: stop reading

    @abstractmethod
    def feed(self, line: str) -> list[Piece]:
        """Read one line; the pieces it carried (one a choice), none for a line that carries
        nothing (blank, keep-alive, comment, metadata). Raises StreamBroken on garbage."""

    @property
    def complete(self) -> bool:
        """Whether the reply read so far is whole (False: the stream ended early)."""
        return self.done

    @abstractmethod
    def response(self, timing: Timing) -> ChatResponse:
        """The complete reply, with usage from the server's counts or ``timing``."""


@dataclass
class _Probe:
    """What the loaded-window probe found for one model."""

    value: LoadedContext | None
    settled: bool  # False: the server knows the model but has not loaded it yet
    probes: int = 1
    chats: int = 0  # the backend's chat count when probed


class _Meter:
    """Counts what a stream generated, for progress, timing and the output cap."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.limit = output_cap(max_tokens)
        self.started = time.monotonic()
        self.first_token: float | None = None
        self.chunks = 0
        self.chars = 0

    def start(self) -> None:
        """The request goes out now (model resolution before it is not timed)."""
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the request went out."""
        return time.monotonic() - self.started

    def add(self, piece: Piece) -> bool:
        """Count ``piece``; True if it carried anything generated (a progress event)."""
        if (piece.text or piece.calls) and self.first_token is None:
            self.first_token = self.elapsed()
        if not (piece.text or piece.calls or piece.thinking):
            return False
        self.chunks += 1
        self.chars += len(piece.text) + len(piece.thinking) + piece.call_chars
        return True

    @property
    def estimate(self) -> int:
        """Tokens generated so far, at least (one a chunk, or the character bound)."""
        return max(self.chunks, self.chars // MAX_CHARS_PER_TOKEN)

    def timing(self) -> Timing:
        """The stream's timing, now that it ended."""
        return Timing(self.chunks, self.first_token, self.elapsed())


class HTTPChatBackend(ABC):
    """A :class:`~agentls.llm.types.ChatBackend` over HTTP; subclasses speak one wire format."""

    name = ""
    what = ""  # the server in messages: "Ollama", "the OpenAI-compatible server"
    start_hint = ""  # how to start the server
    chat_path = ""  # appended to the base URL
    not_json_hint = ""  # when a GET answers something that is not JSON: wrong URL?
    auth_hint = ""  # on HTTP 401 / 403
    tools_hint = "Set agent.toolMode to 'constrained' or 'auto'."  # the model takes no tools

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.base_url = settings.resolved_base_url()
        self._timeout = make_timeout(settings)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)
        self._headers = self._auth_headers()
        self._resolved: str | None = None
        self._probes: dict[str, _Probe] = {}
        self._chats = 0

    @property
    def model(self) -> str:
        """The resolved model, else the configured one, else "" (not resolved yet)."""
        return self._resolved or self.settings.model or ""

    def _auth_headers(self) -> dict[str, str]:
        """Headers sent with every request (none unless a subclass authenticates)."""
        return {}

    async def aclose(self) -> None:
        """Close the HTTP client if this backend created it."""
        if self._owns_client:
            await self._client.aclose()

    # -- plain requests --------------------------------------------------------------------

    def _error(self, exc: httpx.HTTPError) -> BackendError:
        return transport_error(
            exc,
            what=self.what,
            base_url=self.base_url,
            start_hint=self.start_hint,
            settings=self.settings,
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One request with the backend's headers; transport failures become BackendErrors."""
        try:
            return await self._client.request(
                method, url, json=json, headers=self._headers, timeout=timeout or self._timeout
            )
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc

    async def get_json(self, path: str) -> Any:
        """``GET base_url + path`` as JSON; an HTTP error or a non-JSON answer raises."""
        resp = await self._send("GET", self.base_url + path)
        if resp.status_code != 200:
            hint = self.auth_hint if resp.status_code in (401, 403) else ""
            raise http_error(
                resp.status_code, resp.content, what=f"{self.what} ({path})", hint=hint
            )
        try:
            return resp.json()
        except ValueError as exc:
            raise StreamBroken(
                f"{self.what} at {self.base_url} answered {path} with something that is not JSON.",
                self.not_json_hint,
            ) from exc

    # -- what the subclass says ------------------------------------------------------------

    @abstractmethod
    async def list_models(self) -> list[str]:
        """The names of the models the server has."""

    @abstractmethod
    def _choose_model(self, available: list[str]) -> str:
        """The configured model if ``available`` has it, else the default among them; raises
        ModelNotFound when there is none to use."""

    async def resolve_model(self) -> str:
        """Pick the model to use (the configured one, or the best default) and check that the
        server has it; asked once, then remembered."""
        if self._resolved is None:
            self._resolved = self._choose_model(await self.list_models())
        return self._resolved

    @abstractmethod
    async def model_info(self) -> ModelInfo:
        """Report presence, tool support and context length of the model."""

    @abstractmethod
    def _payload(self, model: str, request: ChatRequest) -> dict[str, Any]:
        """The chat request's JSON body."""

    @abstractmethod
    def _reply_parser(self) -> ReplyParser:
        """A parser for one streamed reply."""

    @abstractmethod
    def _model_missing(self, model: str, text: str) -> ModelNotFound:
        """The chat call's 404 for a model the server does not have (its ``text``)."""

    @abstractmethod
    def _says_tools_unsupported(self, text: str) -> bool:
        """Whether a 400's ``text`` says the model cannot take native tools."""

    def _status_hint(self, status: int) -> str:
        """What to do about any other HTTP error ``status`` of a chat call."""
        return self.auth_hint if status in (401, 403) else ""

    def _status_error(
        self, status: int, body: bytes, model: str, loaded: LoadedContext | None = None
    ) -> BackendError:
        """The error for a chat call the server answered with ``status``: the prompt did not
        fit (``loaded``: the window, when known), the model is missing, it takes no tools, or
        a plain HTTP error carrying the server's text."""
        text = error_text(body)
        overflow = context_overflow(
            text, body, status=status, settings=self.settings, loaded=loaded
        )
        if overflow is not None:
            return overflow
        lower = text.lower()
        if status == 404 and "model" in lower and "not found" in lower:
            return self._model_missing(model, text)
        if status == 400 and self._says_tools_unsupported(text):
            return ToolsUnsupported(
                f"Model '{model}' does not support native tool calls: {text}",
                self.tools_hint,
                status,
            )
        return http_error(status, body, what=self.what, hint=self._status_hint(status))

    async def _stream_error(self, message: str, raw: str) -> BackendError:
        """The error for one the server reported in the middle of the stream."""
        return StreamBroken(f"{self.what} reported an error mid-stream: {message}")

    @abstractmethod
    async def _probe(self, model: str) -> tuple[LoadedContext | None, bool]:
        """Ask the server which window it loaded for ``model``: (window, settled). May raise
        BackendError (the window is then unknown, and asked again next time)."""

    # -- the loaded context window ---------------------------------------------------------

    async def loaded_context(self) -> LoadedContext | None:
        """The context window the server has loaded for the model, or None when unknown.

        One probe per model, cached; a model the server knows but has not loaded yet (LM
        Studio's just-in-time loading, Ollama before its first request) is probed again after
        the next chat, when it is loaded. Never raises: a server without these endpoints just
        means "unknown".
        """
        try:
            model = self.model or await self.resolve_model()
            cached = self._probes.get(model)
            if cached is not None and (
                cached.settled or cached.probes >= MAX_PROBES or cached.chats == self._chats
            ):
                return cached.value
            value, settled = await self._probe(model)
        except BackendError:
            return None
        probes = cached.probes + 1 if cached is not None else 1
        self._probes[model] = _Probe(value, settled, probes, self._chats)
        return value

    # -- chat ------------------------------------------------------------------------------

    async def chat(
        self, request: ChatRequest, on_event: StreamCallback | None = None
    ) -> ChatResponse:
        """Send one request and stream the reply.

        Cancelling the caller closes the HTTP stream, and so do the two limits of a stream that
        never ends: more than :func:`output_cap` tokens (StreamRunaway) and, since
        ``agent.requestTimeout`` only bounds each quiet gap, the whole call running past
        ``agent.modelCallTimeout`` (BackendTimeout), keep-alive-only streams included.
        """
        meter = _Meter(request.max_tokens or self.settings.max_output_tokens)
        deadline = asyncio.timeout(self.settings.model_call_timeout)
        try:
            async with deadline:
                return await self._chat(request, meter, on_event)
        except TimeoutError as exc:
            # Only our own deadline: asyncio.timeout cancelled the stream, which closed it.
            if deadline.expired():
                raise self._deadline_error(meter) from exc
            raise

    async def _chat(
        self, request: ChatRequest, meter: _Meter, on_event: StreamCallback | None
    ) -> ChatResponse:
        # A configured model is not checked up front: the chat's own 404 says the same thing
        # without the extra round trip.
        model = self._resolved or self.settings.model or await self.resolve_model()
        payload = self._payload(model, request)
        parser = self._reply_parser()
        meter.start()
        try:
            async with self._client.stream(
                "POST",
                self.base_url + self.chat_path,
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
                    for piece in parser.feed(line):
                        if piece.error is not None:
                            raise await self._stream_error(piece.error, piece.raw)
                        if meter.add(piece):
                            # Raising here leaves the `async with`, which closes the response
                            # and so the connection: the server stops generating.
                            if meter.estimate > meter.limit:
                                raise self._runaway(meter)
                            if on_event is not None:
                                on_event(
                                    StreamEvent(
                                        piece.text, meter.chunks, meter.elapsed(), piece.thinking
                                    )
                                )
                    if parser.done:
                        break
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc
        if not parser.complete:
            raise StreamBroken(
                f"The stream from {self.what} ended before the reply was complete "
                f"({meter.chunks} chunks).",
                "The server may have crashed or run out of memory; check its log.",
            )
        timing = meter.timing()
        self._chats += 1
        response = parser.response(timing)
        if is_empty_reply(response):
            loaded = await self.loaded_context()
            raise empty_reply(response, settings=self.settings, loaded=loaded, what=self.what)
        return response

    def _runaway(self, meter: _Meter) -> StreamRunaway:
        return StreamRunaway(
            f"{capitalized(self.what)} kept generating past the reply cap of "
            f"{meter.max_tokens} tokens: about {meter.estimate} tokens in {meter.chunks} "
            "chunks, so the stream was stopped.",
            "The server may ignore max_tokens (num_predict on Ollama), or the model is "
            "repeating itself; raise agent.maxOutputTokens if replies this long are expected.",
        )

    def _deadline_error(self, meter: _Meter) -> BackendTimeout:
        seconds = self.settings.model_call_timeout
        if meter.chunks:
            got = f"{meter.chunks} chunks had arrived"
        else:
            got = "no tokens had arrived (nothing, or only keep-alives)"
        return BackendTimeout(
            f"The call to {self.what} at {self.base_url} did not finish within "
            f"agent.modelCallTimeout ({seconds:g}s): {got}, so the stream was closed.",
            "The model may be repeating itself or the server may be stuck; raise "
            "agent.modelCallTimeout if calls this long are expected.",
        )
