"""What the tool loop tells its front ends, as typed events.

The loop emits one event per thing that happens (a turn starts, the model writes, a tool runs,
a warning, the numbers after a model call, the end); a front end implements ``on_event`` and
turns them into its protocol: LSP progress and ``agent/textDelta`` notifications, the CLI's
stderr line, a test's list. A plain :class:`~agentls.agent.progress.ProgressSink` still works:
:class:`~agentls.agent.progress.ProgressLines` turns events into today's progress lines.

Events are frozen: a sink may keep them (tests do) without seeing them change later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentls.agent.stats import Stats as RunStats


@dataclass(frozen=True)
class TurnStarted:
    """A model call is about to be sent.

    ``final``: the harness stopped the run (turn cap, looping) and asks the model for its
    answer; ``turn`` is then the last turn's number, not a new one.
    """

    turn: int
    max_turns: int
    final: bool = False


@dataclass(frozen=True)
class Generating:
    """The model streamed another chunk (text, thinking or a tool call): for "N tokens" and
    speed. ``turn`` numbers the model call as in ``TextDelta``; ``tokens`` counts the chunks of
    this call so far, ``elapsed`` is seconds since the call was sent."""

    turn: int
    tokens: int
    elapsed: float


@dataclass(frozen=True)
class TextDelta:
    """Visible text the model wrote, as it streams: an explanation, or the commentary before
    a tool call. Thinking and tool-call markup are left out as far as they can be recognised
    incrementally; the final answer (``Finished.text``) is cleaned again as a whole and is the
    word that counts. ``turn`` numbers the model call (the answer asked for after the turn
    cap has a number of its own); a new one starts a new text: what an earlier call wrote was
    commentary before a tool call."""

    turn: int
    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    """The model's thinking as it streams (``<think>`` blocks and the like in its text)."""

    turn: int
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    """A tool call is about to run. ``description`` is its progress text ("reading a.py")."""

    turn: int
    call_id: str
    name: str
    arguments: dict[str, object]
    description: str


@dataclass(frozen=True)
class StagedEdit:
    """One file a successful call changed in the staged view, with its line counts against
    the text the staged view held just before the call."""

    path: str  # relative to the workspace root
    added: int
    removed: int
    created: bool = False  # the file did not exist before the run
    # The staged text before and after the call, for front ends that show a diff per edit
    # (ACP's diff content). Shared with the staged view, not copied; left out of repr.
    old_text: str = field(default="", repr=False, compare=False)
    new_text: str = field(default="", repr=False, compare=False)

    def describe(self) -> str:
        """``geo.py (+3 \u22121)`` (a minus sign), as progress shows it."""
        new = ", new file" if self.created else ""
        return f"{self.path} (+{self.added} \u2212{self.removed}{new})"


@dataclass(frozen=True)
class ToolResult:
    """A tool call's outcome. ``repeated``: answered from an earlier identical call instead of
    run; ``finished``: the call was ``finish``; ``edits``: files it changed (edit, write,
    move...), empty for the others and for failures."""

    turn: int
    call_id: str
    name: str
    ok: bool
    output: str
    repeated: bool = False
    finished: bool = False
    edits: tuple[StagedEdit, ...] = ()


@dataclass(frozen=True)
class Warning:
    """Something the user must see (context filling up, the turn cap, a looping model)."""

    message: str


@dataclass(frozen=True)
class Stats:
    """The numbers after one model call: this call's prompt and reply, the run so far."""

    turn: int
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int | None
    context_fill: float  # this prompt / the context window
    tokens_per_second: float | None  # generation speed over the run so far


@dataclass(frozen=True)
class Finished:
    """The run ended. ``stop_reason``: "finished", or "turn_cap"/"looping" when the harness
    stopped it and asked for the answer; ``stats`` are the run's totals."""

    text: str
    finished: bool
    stop_reason: str
    stats: RunStats


Event = (
    TurnStarted
    | Generating
    | TextDelta
    | ThinkingDelta
    | ToolCallStarted
    | ToolResult
    | Warning
    | Stats
    | Finished
)


@runtime_checkable
class EventSink(Protocol):
    """Where the loop's events go. ``on_event`` runs inline in the loop (and inside the model
    stream for deltas), so it must be quick and must not raise."""

    def on_event(self, event: Event) -> None: ...


class EventList:
    """An event sink that keeps every event (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        """Keep the event."""
        self.events.append(event)

    def of(self, kind: type[object]) -> list[Event]:
        """The events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]
