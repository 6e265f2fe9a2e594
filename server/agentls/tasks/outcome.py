"""The summary an edit task returns: the model's own words, and what was staged when it stopped
early, so a run cut short still tells the user what they are about to review."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agentls.agent.calls import line_counts
from agentls.agent.loop import LoopResult
from agentls.changes import FileChange

STOP_REASONS = {
    "turn_cap": "it reached the turn cap (agent.maxTurns)",
    "looping": "the model kept repeating the same tool calls",
}


def describe_change(change: FileChange, rel: Callable[[Path], str]) -> str:
    """One change as ``path (+added -removed)``, or ``new path (N lines)``."""
    if change.old_text is None:
        return f"new {rel(change.path)} ({len(change.new_text.splitlines())} lines)"
    added, removed = line_counts(change.old_text, change.new_text)
    return f"{rel(change.path)} (+{added} -{removed})"


def edit_summary(
    result: LoopResult, changes: list[FileChange], rel: Callable[[Path], str], done: str
) -> str:
    """The summary of an edit task.

    A finished run gives the model's summary (``done`` when it wrote none). A run the harness
    stopped says why, lists what was staged, and quotes the model's own summary of where it got.
    """
    if result.finished:
        summary = result.text or done
        return summary if changes else f"No change: {summary}"
    why = STOP_REASONS.get(result.stop_reason, "it was stopped")
    staged = (
        "Staged: " + ", ".join(describe_change(c, rel) for c in changes) + "."
        if changes
        else "Nothing was staged."
    )
    own = result.text or "(the model gave no summary)"
    return f"Stopped early: {why}. {staged} The model's summary: {own}"
