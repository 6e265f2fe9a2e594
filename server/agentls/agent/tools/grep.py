"""``grep``: matching lines of the staged view, as file:line: text."""

from __future__ import annotations

from agentls.agent.tools.base import Args, ToolDef, ToolResult, alias_field, clip, path_field
from agentls.agent.workspace import Workspace

GREP_MAX_MATCHES = 100
GREP_LINE_CHARS = 300


class GrepArgs(Args):
    """Arguments of ``grep``."""

    pattern: str = alias_field(..., "pattern", "regex", "query")
    path: str | None = path_field(None)


async def grep(ws: Workspace, args: GrepArgs) -> ToolResult:
    """Matching lines, capped at ``GREP_MAX_MATCHES`` with the total."""
    result = await ws.agrep(args.pattern, args.path)  # off the event loop
    total = len(result.matches)
    lines: list[str] = []
    if result.literal:
        lines.append("(not a valid regular expression; searched for the literal text)")
    if total == 0:
        lines.append(f"No matches for '{args.pattern}'.")
        return ToolResult("\n".join(lines))
    lines.extend(
        f"{m.path}:{m.line}: {clip(m.text.strip(), GREP_LINE_CHARS)}"
        for m in result.matches[:GREP_MAX_MATCHES]
    )
    if total > GREP_MAX_MATCHES:
        lines.append(
            f"[{GREP_MAX_MATCHES} of {total} matches shown; use a narrower pattern or pass path]"
        )
    return ToolResult("\n".join(lines))


TOOL = ToolDef(
    "grep",
    "Search file contents by regex; prints file:line: text.",
    GrepArgs,
    "searching for {pattern!r}",
    grep,
)
