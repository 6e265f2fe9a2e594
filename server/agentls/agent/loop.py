"""The tool loop: ask the model, run the tool it calls, feed the result back, until it finishes.

Small local models fail in predictable ways, and the loop absorbs them: tool calls written as
text are recovered, a call repeated with nothing changed in between is answered instead of re-run,
tools a task may not use are refused with a reason, and the model is warned before the turn cap.

:class:`AgentLoop` is the loop as small named steps (prepare the request, call the model, run
the calls, check for repeats, verify and repair, ask for the final answer); each step emits
typed events (:mod:`agentls.agent.events`) that the front ends turn into their protocol.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from agentls.agent import events as ev
from agentls.agent.budget import TokenEstimator
from agentls.agent.calls import CallRunner, StagedView, snapshot, staged_edits
from agentls.agent.context import fit_to_context
from agentls.agent.model_call import LOOPING, ModelCaller
from agentls.agent.progress import ProgressSink, TaskError, event_sink
from agentls.agent.prompts import (
    FINAL_ANSWER,
    MAX_REPEAT_TURNS,
    REPEATED_CALL,
    turns_left_warning,
)
from agentls.agent.stats import Stats
from agentls.agent.tools import ToolRegistry
from agentls.llm.cleanup import clean_answer
from agentls.llm.types import ChatBackend, ChatResponse, Message, ToolCall
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


async def run_loop(
    backend: ChatBackend,
    settings: Settings,
    tools: ToolRegistry,
    first_message: str,
    progress: ProgressSink | ev.EventSink,
    *,
    allowed_tools: Collection[str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    verify: Verify | None = None,
    prose_first: bool = False,
    staged: StagedView | None = None,
    history: Sequence[Message] = (),
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

    ``progress`` gets the loop's events when it has ``on_event`` (the LSP progress, the CLI),
    else progress lines through ``report``/``warn``. ``staged``: the staged view, so tool
    results can say which files an edit changed and by how many lines. ``history``: an
    earlier run's ``messages``, which this run continues (a chat session's follow-up): the
    first message is then appended to them, and the cached prefix holds.
    """
    loop = AgentLoop(
        backend,
        settings,
        tools,
        event_sink(progress),
        allowed_tools=allowed_tools,
        log=log,
        verify=verify,
        prose_first=prose_first,
        staged=staged,
    )
    return await loop.run(first_message, history)


class AgentLoop:
    """One task's conversation, step by step; ``run`` strings the steps together."""

    def __init__(
        self,
        backend: ChatBackend,
        settings: Settings,
        tools: ToolRegistry,
        sink: ev.EventSink,
        *,
        allowed_tools: Collection[str] | None = None,
        log: Callable[[str], None] = lambda _msg: None,
        verify: Verify | None = None,
        prose_first: bool = False,
        staged: StagedView | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.tools = tools
        self.sink = sink
        self.log = log
        self.verify = verify
        self.prose_first = prose_first
        self.staged = staged
        self.names = tools.names()
        self.calls = CallRunner(
            tools, set(allowed_tools) if allowed_tools is not None else set(self.names)
        )
        self.caller = ModelCaller(backend, settings, tools, log)
        self.stats = Stats(
            backend=backend.name, model=backend.model, context_length=settings.context_length
        )
        self.estimator = TokenEstimator()
        self.messages: list[Message] = []
        self.warnings: list[str] = []
        self.turn = 0
        # Model calls made: what streamed text is numbered by (the final answer after the
        # cap is a call of its own, though not a turn).
        self.model_calls = 0
        self.limit = settings.max_turns
        self.repairs = 0
        self.repeat_turns = 0  # consecutive turns whose every call repeated an earlier one
        self.result_text = ""
        self.finished = False
        self.stop_reason = "finished"
        self._warned_fill = False
        self._call_counter = 0

    # -- the run ----------------------------------------------------------------------------

    async def run(self, first_message: str, history: Sequence[Message] = ()) -> LoopResult:
        """Turns until the model finishes (and its result passes ``verify``), loops, or reaches
        the cap; then, if it never finished, one call for its answer."""
        started = time.monotonic()
        await self.start(first_message, history)
        while self.turn < self.limit:
            self.next_turn()
            self.prepare_request()
            free = self.prose_first and self.turn == 1
            response, calls = await self.call_model(free=free)
            if not calls:
                self.take_answer(response)
            else:
                await self.run_calls(response, calls)
            if not self.finished:
                if self.looping():
                    break
                continue
            if not await self.verify_or_repair():
                break
        if not self.finished:
            await self.final_answer()
        self.stats.wall_time = time.monotonic() - started
        self.emit(ev.Finished(self.result_text, self.finished, self.stop_reason, self.stats))
        return LoopResult(
            self.result_text,
            self.finished,
            self.stats,
            self.messages,
            self.warnings,
            self.stop_reason,
        )

    # -- steps ------------------------------------------------------------------------------

    async def start(self, first_message: str, history: Sequence[Message] = ()) -> None:
        """Decide the tool-call mode, write the first messages (after ``history``, when a
        conversation goes on), learn the server's window."""
        await self.caller.start()
        system = Message("system", self.caller.system_prompt())
        # Copies: fitting and the turn-cap notes change messages, and the caller keeps these.
        earlier = [replace(m, tool_calls=list(m.tool_calls)) for m in history]
        if earlier and earlier[0].role == "system":
            # The prompt of the mode in force (the same text when the mode did not change).
            earlier = earlier[1:]
        self.messages = [system, *earlier, Message("user", first_message)]
        await self.learn_window()

    def next_turn(self) -> None:
        """Count the turn and warn the model two turns before the cap."""
        self.turn += 1
        turns_left = self.limit - self.turn + 1
        if turns_left == 2 and self.limit > 2:
            note = turns_left_warning(turns_left)
            if self.messages[-1].role == "tool":
                # Riding on the newest tool result saves a turn's template markers; that
                # message has not been sent yet, so the cached prefix is untouched.
                self.messages[-1].content += "\n\n" + note
            else:
                self.messages.append(Message("user", note))
        self.emit(ev.TurnStarted(self.turn, self.limit))

    def prepare_request(self) -> None:
        """Fit the history to the context window (raises TaskError when it cannot fit).

        The fitted list becomes the history, so elisions stick and the cached prefix stays
        byte-identical from one turn to the next.
        """
        window = self.caller.window
        budget = window.budget
        overhead = self.caller.schema_chars()
        fitted, elided = fit_to_context(
            self.messages, budget, self.estimator, fixed_overhead_chars=overhead
        )
        if elided:
            self.log(f"elided {elided} old tool output(s) to stay within the context")
        needed = self.estimator.estimate(fitted, overhead)
        if needed > budget:
            limit_by = (
                "agent.contextLength"
                if window.length == self.settings.context_length
                else f"the {window.length}-token window the server loaded"
            )
            raise TaskError(
                f"The request needs about {needed} tokens but {limit_by} leaves "
                f"{budget} for the prompt. Raise agent.contextLength, or select less code."
            )
        self.messages = fitted

    async def call_model(
        self, *, free: bool = False, final: bool = False
    ) -> tuple[ChatResponse, list[ToolCall]]:
        """Send the history, stream the reply as events, account for its tokens."""
        self.model_calls += 1
        response, calls = await self.caller.call(
            self.messages, self.sink, self.model_calls, free=free, final=final
        )
        await self.learn_window()
        self.account(response)
        if response.finish_reason == LOOPING:
            self.warn(
                "The model began repeating itself, so its reply was stopped after about "
                f"{response.usage.completion_tokens} tokens; what it wrote before the "
                "repetition is kept. (The server counts a prompt's tokens only at the end of "
                "a reply, so this call's are not in the stats.)"
            )
        return response, calls

    def take_answer(self, response: ChatResponse) -> None:
        """A reply without calls is the model's answer."""
        self.result_text = clean_answer(response.content, self.names)
        self.finished = True
        self.messages.append(Message("assistant", response.content))

    async def run_calls(self, response: ChatResponse, calls: list[ToolCall]) -> None:
        """Run the reply's calls in order, each result a tool message; ``finish`` ends it."""
        for call in calls:
            if not call.id:
                self._call_counter += 1
                call.id = f"call_{self._call_counter}"
        self.messages.append(Message("assistant", response.content, tool_calls=list(calls)))
        repeats = 0
        for call in calls:
            self.stats.tool_calls += 1
            self.emit(
                ev.ToolCallStarted(
                    self.turn, call.id, call.name, _arguments(call), self.tools.describe(call)
                )
            )
            before = snapshot(self.staged) if self.tools.mutates(call.name) else None
            outcome = await self.calls.run(call)
            repeated = outcome.output.startswith(REPEATED_CALL)
            repeats += repeated
            edits = staged_edits(self.staged, before) if before is not None and outcome.ok else ()
            self.emit(
                ev.ToolResult(
                    self.turn,
                    call.id,
                    call.name,
                    outcome.ok,
                    outcome.output,
                    repeated=repeated,
                    finished=outcome.finished,
                    edits=edits,
                )
            )
            self.messages.append(
                Message("tool", outcome.output, tool_call_id=call.id, name=call.name)
            )
            if outcome.finished:
                self.result_text = clean_answer(outcome.output, self.names)
                self.finished = True
                break
        self.repeat_turns = self.repeat_turns + 1 if repeats == len(calls) else 0

    def looping(self) -> bool:
        """Whether the model only repeated calls for too many turns in a row (stop it)."""
        if self.repeat_turns >= MAX_REPEAT_TURNS:
            self.stop_reason = "looping"
            return True
        return False

    async def verify_or_repair(self) -> bool:
        """The model finished: check its result. True when the run goes on with a repair round
        (the check's feedback is the next message), False when it is done."""
        feedback = await self.verify() if self.verify is not None else None
        if feedback is None or self.repairs >= self.settings.repair_turns:
            return False
        # The staged result fails its check: tell the model why and let it repair. The
        # round gets a few turns of its own even if the model finished on its last one.
        self.repairs += 1
        self.finished = False
        self.messages.append(Message("user", feedback))
        self.limit = max(self.limit, self.turn + REPAIR_ROUND_TURNS)
        self.log(
            f"verification failed; repair round {self.repairs} of {self.settings.repair_turns}"
        )
        return True

    async def final_answer(self) -> None:
        """The run stopped without an answer (turn cap, looping): ask for one, tools kept in
        the request so the cached prefix holds."""
        if self.stop_reason == "looping":
            msg = (
                f"The model repeated the same tool calls {self.repeat_turns} turns in a row, so "
                "the run stopped there and asked it for its answer."
            )
        else:
            self.stop_reason = "turn_cap"
            msg = (
                f"The model used all {self.limit} turns without finishing and was asked for its "
                "answer with what it had. Raise agent.maxTurns for larger tasks."
            )
        self.warn(msg, log=False)
        self.emit(ev.TurnStarted(self.turn, self.limit, final=True))
        _ask_for_answer(self.messages)
        self.prepare_request()
        response, calls = await self.call_model(final=True)
        self.result_text = _answer_text(response.content, calls, self.names)
        self.messages.append(Message("assistant", response.content))

    # -- bookkeeping ------------------------------------------------------------------------

    def emit(self, event: ev.Event) -> None:
        """Hand an event to the sink."""
        self.sink.on_event(event)

    def warn(self, message: str, *, log: bool = True) -> None:
        """A warning for the result, the sink and (usually) the log."""
        self.warnings.append(message)
        self.emit(ev.Warning(message))
        if log:
            self.log(message)

    async def learn_window(self) -> None:
        """Fit requests to the smaller of agent.contextLength and the window the server
        loaded; a model loaded just in time reports its window only after the first reply."""
        window = self.caller.window
        note = await window.update(self.backend)
        self.stats.context_length = window.length
        if note:
            self.warn(note)

    def account(self, response: ChatResponse) -> None:
        """Check the prompt was not cut, add the call's tokens, warn once when the context
        is filling up."""
        window = self.caller.window
        history = self.messages
        sent = self.estimator.estimate(history, self.caller.schema_chars())
        truncated = window.truncation(sent, response.usage.prompt_tokens)
        if truncated:
            # The server cut the prompt without an error: its reply answers another question.
            raise TaskError(truncated)
        self.estimator.calibrate(history, self.caller.schema_chars(), response.usage.prompt_tokens)
        self.stats.model = self.backend.model
        self.stats.add(response.usage)
        usage = response.usage
        fill = usage.prompt_tokens / window.length
        self.emit(
            ev.Stats(
                self.turn,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_prompt_tokens,
                fill,
                self.stats.tokens_per_second,
            )
        )
        if fill > self.settings.context_warning and not self._warned_fill:
            self._warned_fill = True
            self.warn(
                f"The prompt filled {fill:.0%} of the {window.length}-token context; "
                "the model may lose track. Raise agent.contextLength (and make sure the model "
                "supports it), or select less code."
            )


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


def _arguments(call: ToolCall) -> dict[str, object]:
    """A copy of the call's arguments for an event (a recovered call may carry no object)."""
    return dict(call.arguments) if isinstance(call.arguments, dict) else {}
