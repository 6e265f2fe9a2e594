"""What every task does the same way: open the staged workspace, build the first message, run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentls.agent.bash_tool import BashTool, make_bash_tool
from agentls.agent.loop import LoopResult, Verify, run_loop
from agentls.agent.prompts import excerpt, render_file, task_message
from agentls.agent.tools import ToolRegistry, build_tools
from agentls.agent.workspace import Workspace
from agentls.settings import Settings
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


def open_workspace(ctx: TaskContext, req: TaskRequest) -> Workspace:
    """The staged view a request works in: the workspace, or the request's file alone."""
    if ctx.single_file:
        return SingleFileWorkspace(
            req.path,
            ctx.documents,
            max_read_lines=ctx.settings.max_read_lines,
            secret_files=ctx.settings.secret_files,
        )
    return Workspace(
        ctx.root,
        ctx.documents,
        max_read_lines=ctx.settings.max_read_lines,
        secret_files=ctx.settings.secret_files,
    )


def workspace_tools(ctx: TaskContext, workspace: Workspace) -> tuple[ToolRegistry, BashTool | None]:
    """Every tool over ``workspace``; ``bash`` only where the workspace may run commands."""
    # An untrusted workspace gets no bash tool at all (its tests are its code). The tool list
    # is part of the cached prompt prefix, so such workspaces have a prefix of their own.
    # A file worked on alone gets none either: the sandbox would copy the folder around it.
    allow_bash = ctx.settings.trusted_workspace and not ctx.single_file
    bash = make_bash_tool(workspace, ctx.settings) if allow_bash else None
    return build_tools(workspace, extra=[bash] if bash is not None else []), bash


def prepare(ctx: TaskContext, req: TaskRequest) -> PreparedTask:
    """Check the request's file is in the workspace and readable; build the staged view."""
    workspace = open_workspace(ctx, req)
    try:
        path = workspace.resolve(str(req.path))
        text = workspace.read_text(path)
    except Exception as exc:  # ToolError or OSError: either way the request cannot run
        raise TaskError(f"Cannot read {req.path}: {exc}") from exc
    tools, bash = workspace_tools(ctx, workspace)
    return PreparedTask(workspace, tools, workspace.rel(path), text, bash)


def attached_files(workspace: Workspace, files: Sequence[Path], skip: str = "") -> str:
    """The first message's blocks of the files the user attached (whole, or cut around the
    start when long), each once, ``skip`` (the request's own file) left out. A file the
    workspace refuses (outside it, secret, missing) is a TaskError: the user named it."""
    blocks: list[str] = []
    seen = {skip}
    for path in files:
        try:
            full = workspace.resolve(str(path))
            rel = workspace.rel(full)
            if rel in seen:
                continue
            text = workspace.read_text(full)
        except Exception as exc:  # ToolError or OSError, as in prepare
            raise TaskError(f"Cannot read {path}: {exc}") from exc
        seen.add(rel)
        blocks.append(render_file(excerpt(rel, text, None)))
    return "\n\n".join(blocks)


# Skill guidance may take at most this share of the context window: the default 600 tokens
# fit 8k windows and up, but in a 2,048-token window they crowded out the file being worked on.
SKILLS_WINDOW_SHARE = 10


def skills_budget(settings: Settings) -> int:
    """Tokens of skill guidance a request may carry: ``agent.skillsBudget``, but no more than a
    tenth of ``agent.contextLength``."""
    return min(settings.skills_budget, settings.context_length // SKILLS_WINDOW_SHARE)


def choose_skills(
    ctx: TaskContext, task: str, rel_path: str, instruction: str | None
) -> list[Skill]:
    """The skills for this request; warns (once per process) about skill files it cannot use."""
    budget = skills_budget(ctx.settings)
    if budget <= 0:
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
        budget=budget,
    )


async def run_task(
    ctx: TaskContext,
    req: TaskRequest,
    prepared: PreparedTask,
    task_text: str,
    *,
    spec: TaskSpec = REFACTOR,
    verify: Verify | None = None,
    file_block: str | None = None,
) -> LoopResult:
    """Run the loop with the task text, the user's instruction, the chosen skills' guidance and
    the file in the first message.

    ``spec`` says which skills apply and whether the run is read-only; ``task_text`` is its
    text as sent (generate-tests names the test file in it). Without a spec the run is a
    refactor, which is what callers outside the task flows (the benchmarks) run.
    ``file_block`` replaces the request's file in the first message (the general request
    sends the files the user mentioned, or none). ``ctx.history`` continues a conversation
    (a chat session's follow-up) with its cached prefix intact.
    """
    sel = selection_lines(req.range)
    block = file_block
    if block is None:
        block = render_file(excerpt(prepared.rel_path, prepared.text, sel))
        attached = attached_files(prepared.workspace, req.files, skip=prepared.rel_path)
        if attached:
            block += "\n\n" + attached
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
        prose_first=spec.read_only or spec.prose_answer,
        # Tool results then say which files an edit changed, by how many lines.
        staged=prepared.workspace,
        history=ctx.history,
    )
    result.stats.skills = [s.name for s in skills]
    return result
