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

from agentls.agent.context import ContextWindow, TokenEstimator, fit_to_context, tool_schema_chars
from agentls.agent.progress import ProgressSink, TaskError
from agentls.agent.prompts import (
    FINAL_ANSWER,
    MAX_REPEAT_TURNS,
    REPEATED_CALL,
    SYSTEM_PROMPT,
    turns_left_warning,
)
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
from agentls.llm.cleanup import clean_answer
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
    # "finished"; "turn_cap" or "looping" when the harness stopped the run and asked the model
    # for its answer instead (``text`` then holds that answer).
    stop_reason: str = "finished"


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
    prose_first: bool = False,
) -> LoopResult:
    """Run the conversation for one task and return how it ended.

    All tools are always offered (the prefix stays identical across tasks, so the KV cache
    holds); ``allowed_tools`` limits which ones the harness actually runs for this task.
    ``verify`` runs each time the model finishes; feedback it returns goes back to the model
    as a user message and the run goes on, at most ``settings.repair_turns`` times, each such
    round granted at least ``REPAIR_ROUND_TURNS`` more model calls beyond ``max_turns``.
    ``prose_first``: the first call may answer in prose even in constrained mode (the file is
    already in the first message, so an explanation needs no tool).
    A run that reaches the turn cap, or that only repeats calls, ends with one more call that
    asks the model for its answer with what it has; the tools stay in that request so the
    cached prefix holds. Cancellation (``asyncio.CancelledError``) propagates untouched,
    closing the model stream.
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
    repeat_turns = 0  # consecutive turns whose every call repeated an earlier one
    stop_reason = "finished"

    estimator = TokenEstimator()
    # Requests are fitted to the smaller of agent.contextLength and the window the server
    # loaded; a model loaded just in time reports its window only after the first reply.
    window = caller.window
    budget = window.budget

    async def learn_window() -> None:
        nonlocal budget
        note = await window.update(backend)
        budget = window.budget
        stats.context_length = window.length
        if note:
            warnings.append(note)
            progress.warn(note)
            log(note)

    await learn_window()

    def fit(history: list[Message]) -> list[Message]:
        # The fitted list becomes the history, so elisions stick and the cached prefix stays
        # byte-identical from one turn to the next.
        overhead = caller.schema_chars()
        fitted, elided = fit_to_context(history, budget, estimator, fixed_overhead_chars=overhead)
        if elided:
            log(f"elided {elided} old tool output(s) to stay within the context")
        needed = estimator.estimate(fitted, overhead)
        if needed > budget:
            limit_by = (
                "agent.contextLength"
                if window.length == settings.context_length
                else f"the {window.length}-token window the server loaded"
            )
            raise TaskError(
                f"The request needs about {needed} tokens but {limit_by} leaves "
                f"{budget} for the prompt. Raise agent.contextLength, or select less code."
            )
        return fitted

    def on_event(ev: StreamEvent) -> None:
        tps = ev.completion_tokens / ev.elapsed if ev.elapsed > 0 else None
        prog.say(f"model writing ({ev.completion_tokens} tokens)", tps)

    def account(history: list[Message], response: ChatResponse) -> None:
        nonlocal warned_fill
        sent = estimator.estimate(history, caller.schema_chars())
        truncated = window.truncation(sent, response.usage.prompt_tokens)
        if truncated:
            # The server cut the prompt without an error: its reply answers another question.
            raise TaskError(truncated)
        estimator.calibrate(history, caller.schema_chars(), response.usage.prompt_tokens)
        stats.model = backend.model
        stats.add(response.usage)
        fill = response.usage.prompt_tokens / window.length
        prog.context_fill = fill
        if fill > settings.context_warning and not warned_fill:
            warned_fill = True
            msg = (
                f"The prompt filled {fill:.0%} of the {window.length}-token context; "
                "the model may lose track. Raise agent.contextLength (and make sure the model "
                "supports it), or select less code."
            )
            warnings.append(msg)
            progress.warn(msg)
            log(msg)

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
        messages = fit(messages)
        response, calls = await caller.call(messages, on_event, free=prose_first and turn == 1)
        await learn_window()
        account(messages, response)
        if not calls:
            result_text = clean_answer(response.content, names)
            finished = True
            messages.append(Message("assistant", response.content))
        else:
            for call in calls:
                if not call.id:
                    call_counter += 1
                    call.id = f"call_{call_counter}"
            messages.append(Message("assistant", response.content, tool_calls=list(calls)))
            repeats = 0
            for call in calls:
                stats.tool_calls += 1
                prog.say(tools.describe(call), stats.tokens_per_second)
                outcome = await _run_call(call, tools, allowed, seen)
                repeats += outcome.output.startswith(REPEATED_CALL)
                messages.append(
                    Message("tool", outcome.output, tool_call_id=call.id, name=call.name)
                )
                if outcome.finished:
                    result_text = clean_answer(outcome.output, names)
                    finished = True
                    break
            repeat_turns = repeat_turns + 1 if repeats == len(calls) else 0
        if not finished:
            if repeat_turns >= MAX_REPEAT_TURNS:
                stop_reason = "looping"
                break
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
        if stop_reason == "looping":
            msg = (
                f"The model repeated the same tool calls {repeat_turns} turns in a row, so the "
                "run stopped there and asked it for its answer."
            )
        else:
            stop_reason = "turn_cap"
            msg = (
                f"The model used all {limit} turns without finishing and was asked for its "
                "answer with what it had. Raise agent.maxTurns for larger tasks."
            )
        warnings.append(msg)
        progress.warn(msg)
        prog.say("asking the model for its answer")
        _ask_for_answer(messages)
        messages = fit(messages)
        response, calls = await caller.call(messages, on_event, final=True)
        await learn_window()
        account(messages, response)
        result_text = _answer_text(response.content, calls, names)
        messages.append(Message("assistant", response.content))

    stats.wall_time = time.monotonic() - started
    return LoopResult(result_text, finished, stats, messages, warnings, stop_reason)


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
        on_event: Callable[[StreamEvent], None],
        *,
        free: bool = False,
        final: bool = False,
    ) -> tuple[ChatResponse, list[ToolCall]]:
        """One model call; returns the reply and the tool calls found in it.

        ``free``: a prose answer is as welcome as a tool call. ``final``: the model is asked
        for its answer, no tool calls (those it makes anyway are still returned, for their text).
        """
        try:
            response = await self.backend.chat(self._request(messages, free, final), on_event)
        except ToolsUnsupported:
            if self.settings.tool_mode != "auto" or self.mode != "native":
                raise
            self.log(f"{self.backend.model} takes no native tools; using constrained tool calls")
            self.mode = "constrained"
            remember(self.backend, self.mode)
            messages[0] = Message("system", self.system_prompt())
            response = await self.backend.chat(self._request(messages, free, final), on_event)
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


def _ask_for_answer(messages: list[Message]) -> None:
    """Tell the model to stop calling tools and answer.

    The note rides on the newest tool result or user message (not yet sent, so the cached prefix
    is untouched): chat templates such as Gemma's require user and model turns to alternate.
    """
    if messages[-1].role in ("tool", "user"):
        messages[-1].content += "\n\n" + FINAL_ANSWER
    else:
        messages.append(Message("user", FINAL_ANSWER))


def _answer_text(content: str, calls: list[ToolCall], names: list[str]) -> str:
    """The model's answer to the final call: its text, else the summary of a finish it made
    anyway (servers without ``tool_choice`` may still get a call)."""
    text = clean_answer(content, names)  # drops thinking and any call written as text
    if not text:
        for call in calls:
            summary = call.arguments.get("summary")
            if call.name == "finish" and isinstance(summary, str):
                text = clean_answer(summary, names)
    return text


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
    if tools.mutates(call.name) and outcome.ok:
        # The tool changed the staged view (its declaration says so), so an earlier read or
        # search may now give a different answer; a repeat after it is not a repeat.
        seen.clear()
    else:
        seen[key] = outcome
    return outcome
