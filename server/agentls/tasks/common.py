"""What every task does the same way: open the staged workspace, build the first message, run."""

from __future__ import annotations

from dataclasses import dataclass

from agentls.agent.bash_tool import BashTool, make_bash_tool
from agentls.agent.loop import LoopResult, Verify, run_loop
from agentls.agent.prompts import excerpt, render_file, task_message
from agentls.agent.tools import ToolRegistry, build_tools
from agentls.agent.workspace import Workspace
from agentls.skills import Skill, load_skills, render_guidance, select_skills, unreported
from agentls.tasks.base import TaskContext, TaskError, TaskRequest, TextRange
from agentls.tasks.registry import REFACTOR, TaskSpec
from agentls.tasks.single_file import SingleFileWorkspace

READ_ONLY_TOOLS = ("read", "ls", "find", "grep", "finish")


@dataclass
class PreparedTask:
    """The workspace view, tool registry and file text of one request."""

    workspace: Workspace
    tools: ToolRegistry
    rel_path: str
    text: str
    bash: BashTool | None = None  # None in an untrusted workspace

    async def aclose(self) -> None:
        """End of the run (also on cancel): kill a command still running, drop the sandbox."""
        if self.bash is not None:
            await self.bash.aclose()


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
    workspace: Workspace
    if ctx.single_file:
        workspace = SingleFileWorkspace(
            req.path,
            ctx.documents,
            max_read_lines=ctx.settings.max_read_lines,
            secret_files=ctx.settings.secret_files,
        )
    else:
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
    # An untrusted workspace gets no bash tool at all (its tests are its code). The tool list
    # is part of the cached prompt prefix, so such workspaces have a prefix of their own.
    # A file worked on alone gets none either: the sandbox would copy the folder around it.
    allow_bash = ctx.settings.trusted_workspace and not ctx.single_file
    bash = make_bash_tool(workspace, ctx.settings) if allow_bash else None
    tools = build_tools(workspace, extra=[bash] if bash is not None else [])
    return PreparedTask(workspace, tools, workspace.rel(path), text, bash)


def choose_skills(
    ctx: TaskContext, task: str, rel_path: str, instruction: str | None
) -> list[Skill]:
    """The skills for this request; warns (once per process) about skill files it cannot use."""
    if ctx.settings.skills_budget <= 0:
        return []
    # A lone file's folder is no project: its skills folder is not the user's to offer.
    found = load_skills(None if ctx.single_file else ctx.root)
    for warning in unreported(found.warnings):
        ctx.progress.warn(warning)
    return select_skills(
        found.skills,
        task=task,
        rel_path=rel_path,
        instruction=instruction,
        budget=ctx.settings.skills_budget,
    )


async def run_task(
    ctx: TaskContext,
    req: TaskRequest,
    prepared: PreparedTask,
    task_text: str,
    *,
    spec: TaskSpec = REFACTOR,
    verify: Verify | None = None,
) -> LoopResult:
    """Run the loop with the task text, the user's instruction, the chosen skills' guidance and
    the file in the first message.

    ``spec`` says which skills apply and whether the run is read-only; ``task_text`` is its
    text as sent (generate-tests names the test file in it). Without a spec the run is a
    refactor, which is what callers outside the task flows (the benchmarks) run.
    """
    sel = selection_lines(req.range)
    block = render_file(excerpt(prepared.rel_path, prepared.text, sel))
    skills = choose_skills(ctx, spec.skills_task, prepared.rel_path, req.instruction)
    first = task_message(task_text, block, req.instruction, render_guidance(skills))
    ctx.log(f"{spec.name} {prepared.rel_path}")
    if skills:
        ctx.log("skills: " + ", ".join(s.name for s in skills))
    result = await run_loop(
        ctx.backend,
        ctx.settings,
        prepared.tools,
        first,
        ctx.progress,
        allowed_tools=READ_ONLY_TOOLS if spec.read_only else None,
        log=ctx.log,
        verify=verify,
        # The file is in the first message: a read-only task may answer straight away in prose.
        prose_first=spec.read_only,
    )
    result.stats.skills = [s.name for s in skills]
    return result
