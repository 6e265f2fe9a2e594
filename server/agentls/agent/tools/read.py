"""``read``: a file as numbered lines, as the editor sees it (staged edits included)."""

from __future__ import annotations

from pydantic import Field

from agentls.agent.edit_match import number_lines
from agentls.agent.tools.base import Args, ToolDef, ToolResult, clip, path_field, split_display
from agentls.agent.workspace import ToolError, Workspace

# One read returns at most this much text (as much as goes inline into the first message),
# so 400 long lines cannot fill the context in one call; the hint says where to go on.
READ_MAX_CHARS = 24_000


class ReadArgs(Args):
    """Arguments of ``read``."""

    path: str = path_field()
    offset: int | None = Field(None, description="first line, 1-based")
    limit: int | None = None


async def read(ws: Workspace, args: ReadArgs) -> ToolResult:
    """Numbered lines from ``offset``, at most ``limit`` lines and ``READ_MAX_CHARS``."""
    full = ws.resolve(args.path)
    lines = split_display(ws.read_text(full))
    rel = ws.rel(full)
    total = len(lines)
    if total == 0:
        return ToolResult(f"({rel} is empty)")
    start = max(1, args.offset or 1)
    if start > total:
        raise ToolError(f"offset {start} is past the end of '{rel}' ({total} lines)")
    limit = ws.max_read_lines if not args.limit else max(1, args.limit)
    limit = min(limit, ws.max_read_lines)
    end = min(total, start + limit - 1)
    shown: list[str] = []
    size = 0
    for line in lines[start - 1 : end]:
        clipped = clip(line)
        size += len(clipped) + 7  # the line number, separator and line break
        if shown and size > READ_MAX_CHARS:
            break
        shown.append(clipped)
    end = start + len(shown) - 1
    out = number_lines(shown, start)
    if end < total:
        out += f"\n[lines {start}-{end} of {total}; read with offset={end + 1} to continue]"
    elif start > 1:
        out += f"\n[lines {start}-{end} of {total}]"
    return ToolResult(out)


TOOL = ToolDef(
    "read",
    "Read a file as numbered lines (unsaved and staged changes included).",
    ReadArgs,
    "reading {path}",
    read,
)
