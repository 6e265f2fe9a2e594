"""Where the agent reports what it is doing (a run that cannot go on raises ``TaskError``).

The loop emits typed events (:mod:`agentls.agent.events`); :class:`ProgressLines` turns them
into the one-line progress a ``ProgressSink`` shows ("turn 2/20 · reading a.py · 31 tok/s"),
so a sink that only has ``report``/``warn`` keeps working, and a sink that wants the events
too (the LSP progress, the CLI) adds ``on_event`` through :class:`EventProgress`.

These live in ``agent`` (not ``tasks``) so the loop depends only on layers below it; ``tasks.base``
re-exports them for the server and the CLI. ``TaskError`` is defined in ``agentls.errors`` and
stays importable from here.
"""

from __future__ import annotations

from typing import Protocol

from agentls.agent import events as ev
from agentls.errors import TaskError as TaskError  # defined in the errors leaf

# Characters of the model's running commentary a progress line shows (its newest words).
COMMENTARY_CHARS = 60


class ProgressSink(Protocol):
    """Where a task reports what it is doing (an LSP progress bar, or stderr in the CLI)."""

    def report(self, message: str, percentage: int | None = None) -> None: ...

    def warn(self, message: str) -> None: ...


class NullProgress:
    """A progress sink that drops everything."""

    def report(self, message: str, percentage: int | None = None) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class ProgressLines:
    """An event sink that writes progress lines to a ``ProgressSink``.

    The lines are the ones the loop has always reported: ``turn 2/20 · waiting for the model``,
    ``turn 2/20 · model writing (14 tokens) · 31 tok/s · context 12%``, the tool's own text
    (``turn 2/20 · reading a.py``), with the percentage of turns used. Beyond those: the
    model's newest words while it writes commentary (``model writing (14 tokens): I will
    extract…``), and each staged edit with its file and line count, also repeated on the
    next turn's waiting line, which is what stays on screen while the model reads the prompt.
    """

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.turn = 0
        self.max_turns = 0
        self.context_fill = 0.0  # of the last prompt, so the user sees a filling context coming
        self.tokens_per_second: float | None = None  # over the run so far
        self._text_turn = 0
        self._text = ""  # the newest words of this turn's visible text
        self._edits: list[str] = []  # staged since the last waiting line

    def say(self, what: str, tps: float | None = None) -> None:
        """One progress line about the current turn."""
        speed = f" · {tps:.0f} tok/s" if tps else ""
        fill = f" · context {self.context_fill:.0%}" if self.context_fill else ""
        pct = min(99, int(100 * self.turn / self.max_turns)) if self.max_turns else None
        self.sink.report(f"turn {self.turn}/{self.max_turns} · {what}{speed}{fill}", pct)

    def on_event(self, event: ev.Event) -> None:
        """Show the event as a progress line (or a warning); events with nothing to show only
        update the state later lines read."""
        if isinstance(event, ev.TurnStarted):
            self.turn, self.max_turns = event.turn, event.max_turns
            what = "asking the model for its answer" if event.final else "waiting for the model"
            if self._edits:
                what += " · staged edit: " + ", ".join(self._edits)
                self._edits = []
            self.say(what)
        elif isinstance(event, ev.Generating):
            tps = event.tokens / event.elapsed if event.elapsed > 0 else None
            what = f"model writing ({event.tokens} tokens)"
            if self._text_turn == event.turn and self._text.strip():
                what += ": " + _tail(self._text)
            self.say(what, tps)
        elif isinstance(event, ev.TextDelta):
            if event.turn != self._text_turn:
                self._text_turn, self._text = event.turn, ""
            self._text = (self._text + event.text)[-4 * COMMENTARY_CHARS :]
        elif isinstance(event, ev.ToolCallStarted):
            self.say(event.description, self.tokens_per_second)
        elif isinstance(event, ev.ToolResult) and event.edits:
            staged = [edit.describe() for edit in event.edits]
            self._edits.extend(staged)
            self.say("staged edit: " + ", ".join(staged), self.tokens_per_second)
        elif isinstance(event, ev.Stats):
            self.context_fill = event.context_fill
            self.tokens_per_second = event.tokens_per_second
        elif isinstance(event, ev.Warning):
            self.sink.warn(event.message)


def _tail(text: str) -> str:
    """The newest words of ``text`` on one line, cut at a word when it is long."""
    flat = " ".join(text.split())
    if len(flat) <= COMMENTARY_CHARS:
        return flat
    cut = flat[-COMMENTARY_CHARS:]
    space = cut.find(" ")
    if 0 <= space < COMMENTARY_CHARS // 3:
        cut = cut[space + 1 :]
    return "\u2026" + cut


class EventProgress:
    """Base of progress sinks that take the loop's events: ``on_event`` turns them into this
    sink's own ``report``/``warn`` lines. Subclasses override ``on_event`` to do more with an
    event (stream text, log edits) and call ``super().on_event`` for the line."""

    _lines: ProgressLines | None = None

    def report(self, message: str, percentage: int | None = None) -> None:
        """Show one line (subclasses)."""
        raise NotImplementedError

    def warn(self, message: str) -> None:
        """Show a warning (subclasses)."""
        raise NotImplementedError

    def on_event(self, event: ev.Event) -> None:
        """The event as a progress line through ``report``/``warn``."""
        if self._lines is None:
            self._lines = ProgressLines(self)
        self._lines.on_event(event)


def event_sink(progress: ProgressSink | ev.EventSink) -> ev.EventSink:
    """The loop's view of a task's progress: the sink itself when it takes events, else
    :class:`ProgressLines` over it (a plain ``report``/``warn`` sink, as tests pass)."""
    if isinstance(progress, ev.EventSink):
        return progress
    return ProgressLines(progress)
