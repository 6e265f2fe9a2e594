"""``find``: files matching a glob."""

from __future__ import annotations

from agentls.agent.tools.base import Args, ToolDef, ToolResult, alias_field
from agentls.agent.workspace import Workspace

FIND_MAX_FILES = 200


class FindArgs(Args):
    """Arguments of ``find``."""

    pattern: str = alias_field(..., "pattern", "glob")


async def find(ws: Workspace, args: FindArgs) -> ToolResult:
    """Matching files, sorted, capped at ``FIND_MAX_FILES``."""
    files = await ws.afind(args.pattern)  # off the event loop: a big tree takes a while
    if not files:
        return ToolResult(f"No files match '{args.pattern}'.")
    out = "\n".join(files[:FIND_MAX_FILES])
    if len(files) > FIND_MAX_FILES:
        out += f"\n[{FIND_MAX_FILES} of {len(files)} files shown; use a narrower pattern]"
    return ToolResult(out)


TOOL = ToolDef(
    "find",
    "Find files by glob, e.g. '*.py' or 'src/**/test_*.py'.",
    FindArgs,
    "finding {pattern}",
    find,
)
