"""``ls``: a directory listing that respects .gitignore and hides secret files."""

from __future__ import annotations

from agentls.agent.tools.base import Args, ToolDef, ToolResult, path_field
from agentls.agent.workspace import Workspace

LS_MAX_ENTRIES = 500


class LsArgs(Args):
    """Arguments of ``ls``."""

    path: str | None = path_field(".")


async def ls(ws: Workspace, args: LsArgs) -> ToolResult:
    """The entries of a directory, directories with a trailing '/'."""
    full = ws.resolve(args.path or ".")
    entries = await ws.alist_dir(full)  # off the event loop
    if not entries:
        return ToolResult(f"({ws.rel(full)} is empty)")
    out = "\n".join(entries[:LS_MAX_ENTRIES])
    if len(entries) > LS_MAX_ENTRIES:
        out += f"\n[{LS_MAX_ENTRIES} of {len(entries)} entries shown]"
    return ToolResult(out)


TOOL = ToolDef("ls", "List a directory (default: workspace root).", LsArgs, "listing {path}", ls)
