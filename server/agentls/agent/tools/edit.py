"""``edit``: replace one unique occurrence of ``old_text`` with ``new_text``."""

from __future__ import annotations

from agentls.agent.tools.base import (
    Args,
    ToolDef,
    ToolResult,
    alias_field,
    clip,
    path_field,
    split_display,
)
from agentls.agent.workspace import ToolError, Workspace
from agentls.edits import EditMatchError, apply_edit_detailed, number_lines

EDIT_CONTEXT_LINES = 2
EDIT_SHOW_MAX_LINES = 40


class EditArgs(Args):
    """Arguments of ``edit``."""

    path: str = path_field()
    old_text: str = alias_field(..., "old_text", "old_string", "oldText")
    new_text: str = alias_field(..., "new_text", "new_string", "newText")


async def edit(ws: Workspace, args: EditArgs) -> ToolResult:
    """Apply the edit to the staged view and show the changed lines with a little context."""
    full = ws.resolve(args.path)
    rel = ws.rel(full)
    if not ws.exists(full):
        raise ToolError(f"file '{rel}' not found; use write to create a new file")
    text = ws.read_text(full)
    try:
        applied = apply_edit_detailed(text, args.old_text, args.new_text)
    except EditMatchError as exc:
        raise ToolError(f"edit of '{rel}' failed: {exc.message}") from exc
    ws.stage(full, applied.text)
    lines = split_display(applied.text)
    first = max(1, applied.first_line - EDIT_CONTEXT_LINES)
    last = min(len(lines), applied.last_line + EDIT_CONTEXT_LINES)
    clipped = last - first + 1 > EDIT_SHOW_MAX_LINES
    if clipped:
        last = first + EDIT_SHOW_MAX_LINES - 1
    note = f" ({applied.note})" if applied.note else ""
    out = f"Edited {rel}{note}. Lines {first}-{last} now:\n"
    out += number_lines([clip(line) for line in lines[first - 1 : last]], first)
    if clipped:
        out += f"\n[... read with offset={last + 1} to see the rest of the change]"
    return ToolResult(out)


TOOL = ToolDef(
    "edit",
    "Replace old_text, which must occur exactly once in the file, with new_text.",
    EditArgs,
    "editing {path}",
    edit,
    mutates=True,
)
