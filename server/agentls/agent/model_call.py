"""One model call: the request for the tool-call mode in force, the reply streamed into events,
and the tool calls read out of it."""

from __future__ import annotations

from collections.abc import Callable

from agentls.agent import events as ev
from agentls.agent.answer_stream import AnswerStream, Piece
from agentls.agent.budget import ContextWindow, tool_schema_chars
from agentls.agent.prompts import SYSTEM_PROMPT
from agentls.agent.repetition import RepetitionGuard
from agentls.agent.toolmode import (
    Mode,
    parse_reply,
    remember,
    render_constrained,
    resolve_mode,
    response_schema,
    tools_prompt,
)
from agentls.agent.tools import ToolRegistry
from agentls.llm.recovery import recover_tool_calls
from agentls.llm.types import (
    ChatBackend,
    ChatRequest,
    ChatResponse,
    Message,
    StreamEvent,
    ToolCall,
    ToolsUnsupported,
    Usage,
)
from agentls.settings import Settings

# ChatResponse.finish_reason of a reply the harness stopped because it had become a loop.
LOOPING = "repetition"


class _Looping(Exception):
    """Raised from the stream callback to close the stream of a reply that became a loop."""


class ModelCaller:
    """Builds each request for the tool-call mode in force and reads the calls out of replies.

    In ``auto`` mode a server that answers "this model does not support tools" switches the run
    to ``constrained`` and the same turn is asked again, so no turn is lost.
    """

    def __init__(
        self,
        backend: ChatBackend,
        settings: Settings,
        tools: ToolRegistry,
        log: Callable[[str], None],
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.specs = tools.specs()
        self.names = tools.names()
        self.log = log
        self.mode: Mode = "native"
        self.schema = response_schema(self.specs)
        self.window = ContextWindow(settings.context_length, settings.max_output_tokens)

    async def start(self) -> None:
        """Decide the mode (may ask the server once per model and process)."""
        self.mode = await resolve_mode(self.backend, self.settings)

    def schema_chars(self) -> int:
        """Characters the tool schemas add to every request (none in constrained mode, where
        the tool list is part of the system prompt)."""
        return tool_schema_chars(self.specs) if self.mode == "native" else 0

    def system_prompt(self) -> str:
        """The fixed prefix's text for the current mode."""
        if self.mode == "native":
            return SYSTEM_PROMPT
        return SYSTEM_PROMPT + "\n\n" + tools_prompt(self.specs)

    def _request(self, messages: list[Message], free: bool, final: bool) -> ChatRequest:
        native = self.mode == "native"
        # Constrained mode drops the reply grammar when prose is welcome; the grammar is not
        # part of the prompt, so the cached prefix is the same either way.
        prose = free or final
        return ChatRequest(
            messages=list(messages) if native else render_constrained(messages),
            tools=self.specs if native else [],
            context_length=self.window.length,
            temperature=self.settings.temperature,
            response_schema=None if native or prose else self.schema,
            max_tokens=self.window.max_tokens,
            no_tool_calls=final,
        )

    async def call(
        self,
        messages: list[Message],
        sink: ev.EventSink,
        turn: int,
        *,
        free: bool = False,
        final: bool = False,
    ) -> tuple[ChatResponse, list[ToolCall]]:
        """One model call; returns the reply and the tool calls found in it.

        ``free``: a prose answer is as welcome as a tool call. ``final``: the model is asked
        for its answer, no tool calls (those it makes anyway are still returned, for their
        text). While the reply streams, ``sink`` gets ``Generating`` per chunk and the text
        as ``TextDelta``/``ThinkingDelta``.
        """
        try:
            response = await self._stream(messages, sink, turn, free, final)
        except ToolsUnsupported:
            if self.settings.tool_mode != "auto" or self.mode != "native":
                raise
            self.log(f"{self.backend.model} takes no native tools; using constrained tool calls")
            self.mode = "constrained"
            remember(self.backend, self.mode)
            messages[0] = Message("system", self.system_prompt())
            response = await self._stream(messages, sink, turn, free, final)
        if self.mode == "constrained":
            return response, parse_reply(response.content, self.names)
        calls = response.tool_calls
        if not calls and response.content:
            # The schemas type raw-text values (Qwen XML) where the tool asks for a number.
            schemas = {spec.name: spec.parameters for spec in self.specs}
            calls = recover_tool_calls(response.content, self.names, schemas=schemas)
            if calls:
                self.log(f"recovered {len(calls)} tool call(s) written as text")
        return response, calls

    async def _stream(
        self, messages: list[Message], sink: ev.EventSink, turn: int, free: bool, final: bool
    ) -> ChatResponse:
        request = self._request(messages, free, final)
        # A reply held to the call grammar is a JSON call, never text for the user.
        answer = AnswerStream(self.names) if request.response_schema is None else None
        guard = RepetitionGuard()
        first: StreamEvent | None = None  # the first and the latest chunk, for a stopped reply
        last: StreamEvent | None = None

        def on_chunk(chunk: StreamEvent) -> None:
            nonlocal first, last
            first, last = first or chunk, chunk
            if answer is not None and chunk.text:
                pieces = answer.feed(chunk.text)
                _emit(sink, turn, pieces)
                if any(guard.feed(text) for kind, text in pieces if kind == "answer"):
                    raise _Looping  # leaving the stream closes it: the server stops
            # Backends that split thinking off (Ollama's `thinking`, OpenAI-style
            # `reasoning_content`) may hand it over beside the text.
            if chunk.thinking:
                sink.on_event(ev.ThinkingDelta(turn, chunk.thinking))
            sink.on_event(ev.Generating(turn, chunk.completion_tokens, chunk.elapsed))

        try:
            response = await self.backend.chat(request, on_chunk)
        except _Looping:
            assert first is not None and last is not None  # raised from on_chunk only
            usage = _stopped_usage(first, last)
            return ChatResponse(guard.kept(), [], usage, finish_reason=LOOPING)
        if answer is not None:
            _emit(sink, turn, answer.finish())
        return response


def _stopped_usage(first: StreamEvent, last: StreamEvent) -> Usage:
    """What is known of a reply stopped mid-stream: the tokens and timing we saw (speed as
    the OpenAI backend measures it when the server gives none). The server reports the
    prompt's tokens (and the cached share) only at the end, so they stay unknown."""
    spent = last.elapsed - first.elapsed
    return Usage(
        completion_tokens=last.completion_tokens,
        time_to_first_token=first.elapsed,
        tokens_per_second=last.completion_tokens / spent if spent > 0 else None,
        wall_time=last.elapsed,
    )


def _emit(sink: ev.EventSink, turn: int, pieces: list[Piece]) -> None:
    for kind, text in pieces:
        sink.on_event(
            ev.TextDelta(turn, text) if kind == "answer" else ev.ThinkingDelta(turn, text)
        )
