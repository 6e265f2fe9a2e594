"""``write``: create a file, or replace its whole content, in the staged view."""

from __future__ import annotations

from agentls.agent.tools.base import (
    Args,
    ToolDef,
    ToolResult,
    alias_field,
    path_field,
    split_display,
)
from agentls.agent.workspace import Workspace


class WriteArgs(Args):
    """Arguments of ``write``."""

    path: str = path_field()
    content: str = alias_field(..., "content", "contents", "text")


async def write(ws: Workspace, args: WriteArgs) -> ToolResult:
    """Stage the whole content; says whether the file was created or replaced."""
    full = ws.resolve(args.path)
    existed = ws.exists(full)
    ws.stage(full, args.content)
    count = len(split_display(args.content))
    verb = "Replaced" if existed else "Created"
    return ToolResult(f"{verb} {ws.rel(full)} ({count} lines).")


TOOL = ToolDef(
    "write",
    "Create a file, or replace its whole content.",
    WriteArgs,
    "writing {path}",
    write,
    mutates=True,
)
