"""Running the model's tool calls: refusing tools the task may not use, answering exact repeats
from their earlier result, and measuring what a call changed in the staged view."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from agentls.agent.events import StagedEdit
from agentls.agent.prompts import REPEATED_CALL
from agentls.agent.tools import ToolRegistry, ToolResult
from agentls.changes import FileChange
from agentls.llm.types import ToolCall
from agentls.textdiff import hunks


class StagedView(Protocol):
    """What the loop reads of the staged workspace (``agent.workspace.Workspace``)."""

    def changes(self) -> list[FileChange]: ...

    def rel(self, path: Path) -> str: ...


def call_key(call: ToolCall) -> str:
    """Identity of a call for repeat detection: its name and its arguments, key order aside."""
    return call.name + "\0" + json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)


class CallRunner:
    """Runs one task's calls. Repeat detection is state-aware: an identical call is answered
    from its earlier result until a call that changes the staged view succeeds."""

    def __init__(self, tools: ToolRegistry, allowed: Collection[str]) -> None:
        self.tools = tools
        self.allowed = set(allowed)
        self._seen: dict[str, ToolResult] = {}

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call, refusing tools the task does not allow and answering exact repeats."""
        tools = self.tools
        if call.name in tools.names() and call.name not in self.allowed:
            return ToolResult(
                f"Error: {call.name} is not available for this task. "
                f"Available: {', '.join(sorted(self.allowed))}.",
                ok=False,
            )
        key = call_key(call)
        earlier = self._seen.get(key)
        if earlier is not None and call.name != "finish":
            head = earlier.output if len(earlier.output) <= 300 else earlier.output[:300] + " ..."
            return ToolResult(f"{REPEATED_CALL}\nEarlier result: {head}", ok=False)
        outcome = await tools.execute(call)
        if tools.mutates(call.name) and outcome.ok:
            # The tool changed the staged view (its declaration says so), so an earlier read or
            # search may now give a different answer; a repeat after it is not a repeat.
            self._seen.clear()
        else:
            self._seen[key] = outcome
        return outcome


Snapshot = dict[Path, tuple[str | None, str]]  # path -> (text the agent first saw, staged text)


def snapshot(view: StagedView | None) -> Snapshot:
    """The staged changes now (cheap: the texts are shared, not copied)."""
    if view is None:
        return {}
    return {c.path: (c.old_text, c.new_text) for c in view.changes()}


def staged_edits(view: StagedView | None, before: Snapshot) -> tuple[StagedEdit, ...]:
    """The files whose staged text differs from ``before``, with their line counts."""
    if view is None:
        return ()
    after = snapshot(view)
    edits: list[StagedEdit] = []
    for path in sorted(set(before) | set(after), key=view.rel):
        original, old = before.get(path, (None, None))
        original, new = after.get(path, (original, original or ""))
        if old is None:
            old = original or ""
        if old == new:
            continue
        added, removed = line_counts(old, new)
        edits.append(
            StagedEdit(view.rel(path), added, removed, original is None, old_text=old, new_text=new)
        )
    return tuple(edits)


def line_counts(old: str, new: str) -> tuple[int, int]:
    """Lines added and removed going from ``old`` to ``new`` (the linear line diff, so a
    change to a large file costs little)."""
    changed = hunks(old, new)
    added = sum(h.new_end - h.new_start for h in changed)
    removed = sum(h.end - h.start for h in changed)
    return added, removed
