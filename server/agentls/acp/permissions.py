"""Asking the user before any edit lands: ``session/request_permission`` with the diffs.

A run's staged changes become one ``edit`` tool call whose content is a diff per file (path,
old text, new text), so the client shows exactly what would change. The user applies them,
applies them and every later edit of the session, or rejects them; a rejection, a cancelled
prompt, or a client that cannot answer leaves every file as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from acp import start_tool_call, tool_diff_content
from acp.interfaces import Client
from acp.schema import (
    AllowedOutcome,
    PermissionOption,
    ToolCallLocation,
    ToolCallStart,
    ToolCallUpdate,
)

from agentls.changes import FileChange

Decision = Literal["apply", "always", "reject", "cancelled"]

APPLY = PermissionOption(option_id="apply", name="Apply", kind="allow_once")
ALWAYS = PermissionOption(
    option_id="apply-always", name="Always apply in this session", kind="allow_always"
)
REJECT = PermissionOption(option_id="reject", name="Reject", kind="reject_once")
OPTIONS = [APPLY, ALWAYS, REJECT]
_DECISIONS: dict[str, Decision] = {"apply": "apply", "apply-always": "always", "reject": "reject"}


def edit_title(changes: Sequence[FileChange], root: Path) -> str:
    """``Apply 3 changes: a.py, new b.py, c.py``."""
    names = [
        ("new " if c.old_text is None else "") + c.path.relative_to(root).as_posix()
        for c in changes
    ]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    noun = "change" if len(changes) == 1 else "changes"
    return f"Apply {len(changes)} {noun}: {shown}"


def edit_call(tool_call_id: str, changes: Sequence[FileChange], root: Path) -> ToolCallStart:
    """The ``tool_call`` announcing the staged changes, each as a diff, awaiting consent."""
    return start_tool_call(
        tool_call_id,
        edit_title(changes, root),
        kind="edit",
        status="pending",
        content=[tool_diff_content(str(c.path), c.new_text, c.old_text) for c in changes],
        locations=[ToolCallLocation(path=str(c.path)) for c in changes],
    )


async def ask(conn: Client, session_id: str, call: ToolCallStart) -> Decision:
    """Ask the user about the announced edit call; what they chose."""
    response = await conn.request_permission(
        session_id=session_id,
        tool_call=ToolCallUpdate(
            tool_call_id=call.tool_call_id,
            title=call.title,
            kind=call.kind,
            status=call.status,
            content=call.content,
            locations=call.locations,
        ),
        options=OPTIONS,
    )
    outcome = response.outcome
    if isinstance(outcome, AllowedOutcome):
        # An option we did not offer is no consent.
        return _DECISIONS.get(outcome.option_id, "reject")
    return "cancelled"
