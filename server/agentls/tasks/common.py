"""What every task does the same way: open the staged workspace, build the first message, run."""

from __future__ import annotations

from dataclasses import dataclass

from agentls.agent.loop import LoopResult, run_loop
from agentls.agent.prompts import excerpt, render_file, task_message
from agentls.agent.tools import ToolRegistry, build_tools
from agentls.agent.workspace import Workspace
from agentls.tasks.base import TaskContext, TaskError, TaskRequest, TextRange

READ_ONLY_TOOLS = ("read", "ls", "find", "grep", "finish")


@dataclass
class PreparedTask:
    """The workspace view, tool registry and file text of one request."""

    workspace: Workspace
    tools: ToolRegistry
    rel_path: str
    text: str


def selection_lines(rng: TextRange | None) -> tuple[int, int] | None:
    """1-based inclusive lines of an LSP range; an end at column 0 ends on the line before."""
    if rng is None:
        return None
    end = rng.end_line
    if rng.end_character == 0 and end > rng.start_line:
        end -= 1
    return rng.start_line + 1, max(end, rng.start_line) + 1


def prepare(ctx: TaskContext, req: TaskRequest) -> PreparedTask:
    """Check the request's file is in the workspace and readable; build the staged view."""
    workspace = Workspace(
        ctx.root,
        ctx.documents,
        max_read_lines=ctx.settings.max_read_lines,
        secret_files=ctx.settings.secret_files,
    )
    try:
        path = workspace.resolve(str(req.path))
        text = workspace.read_text(path)
    except Exception as exc:  # ToolError or OSError: either way the request cannot run
        raise TaskError(f"Cannot read {req.path}: {exc}") from exc
    return PreparedTask(workspace, build_tools(workspace), workspace.rel(path), text)


async def run_task(
    ctx: TaskContext,
    req: TaskRequest,
    prepared: PreparedTask,
    task_text: str,
    *,
    read_only: bool = False,
) -> LoopResult:
    """Run the loop with the task text, the user's instruction and the file in the first message."""
    sel = selection_lines(req.range)
    block = render_file(excerpt(prepared.rel_path, prepared.text, sel))
    first = task_message(task_text, block, req.instruction)
    ctx.log(f"{task_text.split(':', 1)[0]} {prepared.rel_path}")
    result = await run_loop(
        ctx.backend,
        ctx.settings,
        prepared.tools,
        first,
        ctx.progress,
        allowed_tools=READ_ONLY_TOOLS if read_only else None,
        log=ctx.log,
    )
    return result
