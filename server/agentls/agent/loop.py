"""The tool loop: ask the model, run the tool it calls, feed the result back, until it finishes.

Small local models fail in predictable ways, and the loop absorbs them: tool calls written as
text are recovered, a call repeated with nothing changed in between is answered instead of re-run,
tools a task may not use are refused with a reason, and the model is warned before the turn cap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from agentls.agent.context import TokenEstimator, fit_to_context, reply_reserve, tool_schema_chars
from agentls.agent.progress import ProgressSink, TaskError
from agentls.agent.prompts import REPEATED_CALL, SYSTEM_PROMPT, turns_left_warning
from agentls.agent.stats import Stats
from agentls.agent.toolmode import (
    Mode,
    parse_reply,
    remember,
    render_constrained,
    resolve_mode,
    response_schema,
    tools_prompt,
)
from agentls.agent.tools import ToolRegistry, ToolResult
from agentls.llm.recovery import recover_tool_calls
from agentls.llm.types import (
    ChatBackend,
    ChatRequest,
    ChatResponse,
    Message,
    StreamEvent,
    ToolCall,
    ToolsUnsupported,
)
from agentls.settings import Settings

# Tools that change the staged view; a repeat of any call after one of these is not a repeat.
MUTATING_TOOLS = frozenset({"edit", "write"})

# Model calls a repair round is sure to get, even when the model finished on its last turn:
# read the failure, edit, finish, with room for one mistake.
REPAIR_ROUND_TURNS = 5

# Checks the staged result when the model finishes: None when it is good, else feedback for the
# model (the next user message).
Verify = Callable[[], Awaitable[str | None]]


@dataclass
class LoopResult:
    """How a run ended."""

    text: str  # the finish summary, or the model's last plain-text answer
    finished: bool  # the model called finish or answered in text
    stats: Stats
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Progress:
    """Formats progress lines: turn of max, what the tool is doing, speed."""

    sink: ProgressSink
    max_turns: int
    turn: int = 0
    context_fill: float = 0.0  # of the last prompt, so the user sees a filling context coming

    def say(self, what: str, tps: float | None = None) -> None:
        speed = f" · {tps:.0f} tok/s" if tps else ""
        fill = f" · context {self.context_fill:.0%}" if self.context_fill else ""
        pct = min(99, int(100 * self.turn / self.max_turns)) if self.max_turns else None
        self.sink.report(f"turn {self.turn}/{self.max_turns} · {what}{speed}{fill}", pct)


def _call_key(call: ToolCall) -> str:
    return call.name + "\0" + json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)


async def run_loop(
    backend: ChatBackend,
    settings: Settings,
    tools: ToolRegistry,
    first_message: str,
    progress: ProgressSink,
    *,
    allowed_tools: Collection[str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    verify: Verify | None = None,
) -> LoopResult:
    """Run the conversation for one task and return how it ended.

    All tools are always offered (the prefix stays identical across tasks, so the KV cache
    holds); ``allowed_tools`` limits which ones the harness actually runs for this task.
    ``verify`` runs each time the model finishes; feedback it returns goes back to the model
    as a user message and the run goes on, at most ``settings.repair_turns`` times, each such
    round granted at least ``REPAIR_ROUND_TURNS`` more model calls beyond ``max_turns``.
    Cancellation (``asyncio.CancelledError``) propagates untouched, closing the model stream.
    """
    stats = Stats(backend=backend.name, model=backend.model, context_length=settings.context_length)
    started = time.monotonic()
    caller = _ModelCaller(backend, settings, tools, log)
    await caller.start()
    names = tools.names()
    allowed = set(allowed_tools) if allowed_tools is not None else set(names)
    messages = [Message("system", caller.system_prompt()), Message("user", first_message)]
    prog = _Progress(progress, settings.max_turns)
    warnings: list[str] = []
    seen: dict[str, ToolResult] = {}
    warned_fill = False
    call_counter = 0
    result_text = ""
    finished = False
    limit = settings.max_turns
    repairs = 0
    turn = 0

    estimator = TokenEstimator()
    budget = settings.context_length - min(
        settings.max_output_tokens, reply_reserve(settings.context_length)
    )

    while turn < limit:
        turn += 1
        prog.turn = turn
        prog.max_turns = limit
        turns_left = limit - turn + 1
        if turns_left == 2 and limit > 2:
            note = turns_left_warning(turns_left)
            if messages[-1].role == "tool":
                # Riding on the newest tool result saves a turn's template markers; that
                # message has not been sent yet, so the cached prefix is untouched.
                messages[-1].content += "\n\n" + note
            else:
                messages.append(Message("user", note))
        prog.say("waiting for the model")

        def on_event(ev: StreamEvent) -> None:
            tps = ev.completion_tokens / ev.elapsed if ev.elapsed > 0 else None
            prog.say(f"model writing ({ev.completion_tokens} tokens)", tps)

        # The fitted list becomes the history, so elisions stick and the cached prefix stays
        # byte-identical from one turn to the next.
        overhead = caller.schema_chars()
        messages, elided = fit_to_context(
            messages, budget, estimator, fixed_overhead_chars=overhead
        )
        if elided:
            log(f"elided {elided} old tool output(s) to stay within the context")
        needed = estimator.estimate(messages, overhead)
        if needed > budget:
            raise TaskError(
                f"The request needs about {needed} tokens but agent.contextLength leaves "
                f"{budget} for the prompt. Raise agent.contextLength, or select less code."
            )
        response, calls = await caller.call(messages, on_event)
        estimator.calibrate(messages, caller.schema_chars(), response.usage.prompt_tokens)
        stats.model = backend.model
        stats.add(response.usage)
        fill = response.usage.prompt_tokens / settings.context_length
        prog.context_fill = fill
        if fill > settings.context_warning and not warned_fill:
            warned_fill = True
            msg = (
                f"The prompt filled {fill:.0%} of the {settings.context_length}-token context; "
                "the model may lose track. Raise agent.contextLength (and make sure the model "
                "supports it), or select less code."
            )
            warnings.append(msg)
            progress.warn(msg)
            log(msg)

        if not calls:
            result_text = response.content.strip()
            finished = True
            messages.append(Message("assistant", response.content))
        else:
            for call in calls:
                if not call.id:
                    call_counter += 1
                    call.id = f"call_{call_counter}"
            messages.append(Message("assistant", response.content, tool_calls=list(calls)))
            for call in calls:
                stats.tool_calls += 1
                prog.say(tools.describe(call), stats.tokens_per_second)
                outcome = await _run_call(call, tools, allowed, seen)
                messages.append(
                    Message("tool", outcome.output, tool_call_id=call.id, name=call.name)
                )
                if outcome.finished:
                    result_text = outcome.output
                    finished = True
                    break
        if not finished:
            continue
        feedback = await verify() if verify is not None else None
        if feedback is None or repairs >= settings.repair_turns:
            break
        # The staged result fails its check: tell the model why and let it repair. The
        # round gets a few turns of its own even if the model finished on its last one.
        repairs += 1
        finished = False
        messages.append(Message("user", feedback))
        limit = max(limit, turn + REPAIR_ROUND_TURNS)
        log(f"verification failed; repair round {repairs} of {settings.repair_turns}")
    if not finished:
        msg = (
            f"The model used all {limit} turns without finishing; the result "
            "holds what it staged so far. Raise agent.maxTurns for larger tasks."
        )
        warnings.append(msg)
        progress.warn(msg)

    stats.wall_time = time.monotonic() - started
    return LoopResult(result_text, finished, stats, messages, warnings)


class _ModelCaller:
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

    def _request(self, messages: list[Message]) -> ChatRequest:
        native = self.mode == "native"
        return ChatRequest(
            messages=list(messages) if native else render_constrained(messages),
            tools=self.specs if native else [],
            context_length=self.settings.context_length,
            temperature=self.settings.temperature,
            response_schema=None if native else self.schema,
            max_tokens=self.settings.max_output_tokens,
        )

    async def call(
        self, messages: list[Message], on_event: Callable[[StreamEvent], None]
    ) -> tuple[ChatResponse, list[ToolCall]]:
        """One model call; returns the reply and the tool calls found in it."""
        try:
            response = await self.backend.chat(self._request(messages), on_event)
        except ToolsUnsupported:
            if self.settings.tool_mode != "auto" or self.mode != "native":
                raise
            self.log(f"{self.backend.model} takes no native tools; using constrained tool calls")
            self.mode = "constrained"
            remember(self.backend, self.mode)
            messages[0] = Message("system", self.system_prompt())
            response = await self.backend.chat(self._request(messages), on_event)
        if self.mode == "constrained":
            return response, parse_reply(response.content, self.names)
        calls = response.tool_calls
        if not calls and response.content:
            calls = recover_tool_calls(response.content, self.names)
            if calls:
                self.log(f"recovered {len(calls)} tool call(s) written as text")
        return response, calls


async def _run_call(
    call: ToolCall, tools: ToolRegistry, allowed: set[str], seen: dict[str, ToolResult]
) -> ToolResult:
    """Run one call, refusing tools the task does not allow and answering exact repeats."""
    if call.name in tools.names() and call.name not in allowed:
        return ToolResult(
            f"Error: {call.name} is not available for this task. "
            f"Available: {', '.join(sorted(allowed))}.",
            ok=False,
        )
    key = _call_key(call)
    earlier = seen.get(key)
    if earlier is not None and call.name != "finish":
        head = earlier.output if len(earlier.output) <= 300 else earlier.output[:300] + " ..."
        return ToolResult(f"{REPEATED_CALL}\nEarlier result: {head}", ok=False)
    outcome = await tools.execute(call)
    if call.name in MUTATING_TOOLS and outcome.ok:
        # The files changed, so an earlier read or search may now give a different answer.
        seen.clear()
    else:
        seen[key] = outcome
    return outcome
