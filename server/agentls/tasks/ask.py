"""The general request of a chat panel (ACP's plain-text prompt): the model has every tool and
decides whether to answer or to change code.

Unlike the three named tasks it needs no file: the user may attach some (their @-mentions go
in the first message, the first with its selection) or none, and the model looks around with
its tools. When it changes code, the changes are verified as a refactor's are (the project's
tests must still pass) and returned for review, never written; when it only answers, the
answer is the summary.
"""

from __future__ import annotations

from agentls.tasks.base import EditResult, TaskContext, TaskError, TaskRequest
from agentls.tasks.common import (
    PreparedTask,
    attached_files,
    open_workspace,
    run_task,
    workspace_tools,
)
from agentls.tasks.outcome import edit_summary
from agentls.tasks.registry import TaskSpec
from agentls.tasks.verify import make_verifier, verdict

NO_FILES = (
    "No file is attached: use ls, find, grep and read to find what you need in the workspace."
)
NO_ANSWER = "_The model gave no answer._"


def _main_file(ctx: TaskContext, req: TaskRequest) -> bool:
    """Whether ``req.path`` names a file (not the workspace root, the "no file" marker)."""
    return req.path.resolve() != ctx.root.resolve() and not req.path.is_dir()


async def run_ask(spec: TaskSpec, ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Answer or edit as the user asks; edits are staged and returned, nothing is written."""
    if spec.verify_kind is None:
        raise TaskError(f"{spec.name} must name its verify kind")
    if not (req.instruction and req.instruction.strip()) and not _main_file(ctx, req):
        raise TaskError("Nothing was asked: type a request, or attach a file to work on.")
    workspace = open_workspace(ctx, req)
    main_rel, main_text = "", ""
    files = list(req.files)
    if _main_file(ctx, req):
        files.insert(0, req.path)
        try:
            full = workspace.resolve(str(req.path))
            main_rel, main_text = workspace.rel(full), workspace.read_text(full)
        except Exception as exc:  # ToolError or OSError: the user named this file
            raise TaskError(f"Cannot read {req.path}: {exc}") from exc
    block = attached_files(workspace, files) if files else NO_FILES
    tools, bash = workspace_tools(ctx, workspace)
    prepared = PreparedTask(workspace, tools, main_rel, main_text, bash)
    verifier, runner = make_verifier(ctx, workspace, main_rel or ".", spec.verify_kind, bash)
    try:
        result = await run_task(
            ctx, req, prepared, spec.task_text, spec=spec, verify=verifier, file_block=block
        )
        changes = workspace.changes()
        verification = await verifier.final()
    finally:
        if runner is not None:
            await runner.aclose()
        await prepared.aclose()
    warnings = list(result.warnings)
    if changes:
        summary = edit_summary(result, changes, workspace.rel, spec.done_summary)
        summary = verdict(ctx, summary, verification, warnings)
    else:
        # A question answered: the answer is the whole result (a run the harness stopped
        # says so in its warnings).
        summary = result.text or NO_ANSWER
    return EditResult(
        summary,
        changes,
        result.stats,
        warnings=warnings,
        verification=verification,
        messages=result.messages,
        stop_reason=result.stop_reason,
    )
