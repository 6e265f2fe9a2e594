"""The one flow of the edit tasks (refactor, generate tests): the model edits through the
staged view, the project's tests check the staged result, the result is the staged changes.

When the model finishes, the project's tests run on the staged result in the sandbox; failures
go back to the model for a few repair rounds, and the result says plainly whether they pass.
The tasks differ only in their ``TaskSpec``: the task text, the default instruction, the
verify kind, and whether a test file is written (its path goes in the task text, the
verifier checks it imports the code under test, the result names it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from agentls.agent.workspace import Workspace
from agentls.languages import JS_LANGUAGES, language_of
from agentls.tasks.base import EditResult, TaskContext, TaskError, TaskRequest
from agentls.tasks.common import prepare, run_task
from agentls.tasks.outcome import edit_summary
from agentls.tasks.registry import TaskSpec
from agentls.tasks.verify import make_verifier, verdict


def test_path_for(rel_path: str) -> str:
    """Where tests for a file conventionally live: tests/test_x.py, or x.test.ts beside it."""
    p = PurePosixPath(rel_path)
    language = language_of(p)
    if language in JS_LANGUAGES:
        return str(p.with_name(f"{p.stem}.test{p.suffix}"))
    if language == "go":
        return str(p.with_name(f"{p.stem}_test.go"))
    return f"tests/test_{p.stem}.py"


def find_test_file(workspace: Workspace, wanted: str) -> Path | None:
    """The test file among the staged changes: the one asked for, else the first test-named."""
    changes = workspace.changes()
    for change in changes:
        if workspace.rel(change.path) == wanted:
            return change.path
    for change in changes:
        name = change.path.name
        if name.startswith("test_") or ".test." in name or name.endswith("_test.go"):
            return change.path
    return None


def _staged_test_file(ws: Workspace, wanted: str | None) -> Callable[[], str | None]:
    """What the verifier asks for: the test file staged so far (relative), if the task has one."""

    def current() -> str | None:
        path = find_test_file(ws, wanted) if wanted is not None else None
        return ws.rel(path) if path is not None else None

    return current


async def run_edit_task(spec: TaskSpec, ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Run the edit task ``spec`` on the file or selection; nothing is written to disk."""
    if spec.verify_kind is None:
        raise TaskError(f"{spec.name} is not an edit task")
    prepared = prepare(ctx, req)
    ws = prepared.workspace
    task_text = spec.task_text
    wanted: str | None = None  # the test file the task text asks for
    if spec.test_file:
        wanted = test_path_for(prepared.rel_path)
        task_text = task_text.format(test_path=wanted)
    verifier, runner = make_verifier(
        ctx,
        ws,
        prepared.rel_path,
        spec.verify_kind,
        prepared.bash,
        test_file=_staged_test_file(ws, wanted),
    )
    try:
        if spec.default_instruction and not (req.instruction and req.instruction.strip()):
            req = TaskRequest(req.path, req.range, spec.default_instruction)
        result = await run_task(ctx, req, prepared, task_text, spec=spec, verify=verifier)
        changes = ws.changes()
        verification = await verifier.final()
    finally:
        if runner is not None:
            await runner.aclose()
        await prepared.aclose()
    test_file = find_test_file(ws, wanted) if wanted is not None else None
    summary = edit_summary(result, changes, ws.rel, spec.done_summary)
    warnings = list(result.warnings)
    summary = verdict(ctx, summary, verification, warnings)
    return EditResult(
        summary,
        changes,
        result.stats,
        test_file=test_file,
        warnings=warnings,
        verification=verification,
        messages=result.messages,
        stop_reason=result.stop_reason,
    )
