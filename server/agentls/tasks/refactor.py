"""Refactor: the model edits through the staged view; the result is the staged changes.

When the model finishes, the project's tests run on the staged result in the sandbox; failures
go back to the model for a few repair rounds, and the result says plainly whether they pass.
"""

from __future__ import annotations

from agentls.tasks.base import EditResult, TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task
from agentls.tasks.outcome import edit_summary
from agentls.tasks.verify import make_verifier, verdict

REFACTOR_TASK = (
    "Task: refactor the code below as the user asks (the selected lines if there is a "
    "selection), without changing its behaviour unless asked. Use edit for changes to existing "
    "files and write for new files; when you move code to a new module, update the imports "
    "that use it. Then call finish."
)

DEFAULT_INSTRUCTION = "Improve readability and structure; keep the behaviour identical."


async def run_refactor(ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Refactor the file or selection and return the staged changes (nothing written to disk)."""
    prepared = prepare(ctx, req)
    verifier, runner = make_verifier(
        ctx, prepared.workspace, prepared.rel_path, "refactor", prepared.bash
    )
    try:
        if not (req.instruction and req.instruction.strip()):
            req = TaskRequest(req.path, req.range, DEFAULT_INSTRUCTION)
        result = await run_task(ctx, req, prepared, REFACTOR_TASK, verify=verifier)
        changes = prepared.workspace.changes()
        verification = await verifier.final()
    finally:
        if runner is not None:
            await runner.aclose()
        await prepared.aclose()
    summary = edit_summary(result, changes, prepared.workspace.rel, "Refactor finished.")
    warnings = list(result.warnings)
    summary = verdict(ctx, summary, verification, warnings)
    return EditResult(summary, changes, result.stats, warnings=warnings, verification=verification)
