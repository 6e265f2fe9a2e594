"""``finish``: end the run with a summary."""

from __future__ import annotations

from agentls.agent.tools.base import Args, ToolDef, ToolResult, alias_field
from agentls.agent.workspace import Workspace


class FinishArgs(Args):
    """Arguments of ``finish``."""

    summary: str = alias_field(..., "summary", "message", "result")


async def finish(_ws: Workspace, args: FinishArgs) -> ToolResult:
    """The summary, marked as the end of the run."""
    return ToolResult(args.summary.strip() or "(no summary)", finished=True)


TOOL = ToolDef(
    "finish",
    "End the task with a short summary of what you did.",
    FinishArgs,
    "finishing",
    finish,
)
