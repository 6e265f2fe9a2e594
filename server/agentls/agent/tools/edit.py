"""``edit``: replace one unique ``old_text`` with ``new_text``; or, with ``edits``, several
changes at once (all or none), including line ranges and moving lines without retyping them
(see :mod:`agentls.agent.tools.batch`)."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from agentls.agent.edit_match import EditMatchError, apply_edit_detailed, number_lines
from agentls.agent.tools.base import (
    Args,
    ToolDef,
    ToolResult,
    alias_field,
    clip,
    model_names,
    path_field,
    split_display,
)
from agentls.agent.tools.batch import Batch, EditItem
from agentls.agent.workspace import ToolError, Workspace
from agentls.llm.recovery import parse_json_lenient

EDIT_CONTEXT_LINES = 2
EDIT_SHOW_MAX_LINES = 40


class EditArgs(Args):
    """Arguments of ``edit``: ``old_text`` and ``new_text``, or ``edits``."""

    path: str = path_field()
    old_text: str | None = alias_field(None, "old_text", "old_string", "oldText")
    new_text: str | None = alias_field(None, "new_text", "new_string", "newText")
    edits: list[EditItem] | None = alias_field(None, "edits", "changes")

    @model_validator(mode="before")
    @classmethod
    def _understand(cls, data: Any) -> Any:
        """Forgive two common shapes: ``edits`` sent as a JSON string, and a single
        line-range or move change written at the top level instead of in ``edits``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("edits", "changes"):
            if isinstance(data.get(name), str):
                parsed = parse_json_lenient(data[name])
                data[name] = [parsed] if isinstance(parsed, dict) else parsed
        if data.get("edits") is None and data.get("changes") is None:
            item_only = model_names(EditItem) - model_names(cls)
            if any(data.get(name) is not None for name in item_only):
                item = {k: v for k, v in data.items() if k in model_names(EditItem)}
                item.pop("path", None)
                for key in item:
                    data.pop(key, None)
                data["edits"] = [item]
        return data

    @model_validator(mode="after")
    def _complete(self) -> EditArgs:
        if self.edits is None:
            missing = [n for n in ("old_text", "new_text") if getattr(self, n) is None]
            if len(missing) == 2:
                raise ValueError("give old_text and new_text, or edits")
            if missing:
                raise ValueError(f"missing required argument '{missing[0]}'")
        elif (self.old_text is None) != (self.new_text is None):
            raise ValueError("old_text and new_text go together (or put the change in edits)")
        return self


def _items(args: EditArgs) -> tuple[list[EditItem], list[str]]:
    """The batch's items and their names; a top-level pair beside ``edits`` comes first."""
    items: list[EditItem] = []
    labels: list[str] = []
    if args.old_text is not None and args.new_text is not None:
        items.append(EditItem(old_text=args.old_text, new_text=args.new_text))
        labels.append("old_text")
    for index, item in enumerate(args.edits or []):
        items.append(item)
        labels.append(f"edits[{index}]")
    return items, labels


async def edit(ws: Workspace, args: EditArgs) -> ToolResult:
    """Apply the change(s) to the staged view and show the result."""
    if args.edits is not None:
        items, labels = _items(args)
        try:
            report = Batch(ws, args.path, items, labels).apply()
        except EditMatchError as exc:
            raise ToolError(f"{exc.message} Nothing was changed.") from exc
        except ToolError as exc:
            raise ToolError(
                f"edit failed, nothing was changed (all or none): {exc}\n"
                "Fix that change and send all the changes again."
            ) from exc
        return ToolResult(report)
    assert args.old_text is not None and args.new_text is not None
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
    "Replace old_text (it must occur exactly once) with new_text. Or edits, all or none "
    "(line numbers from read, before this call): old_text or start_line-end_line with "
    "first_line/last_line (their text), then new_text, or to_path/to_line to move.",
    EditArgs,
    "editing {path}",
    edit,
    mutates=True,
)
