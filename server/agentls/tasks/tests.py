"""Generate tests: the model writes a new test file for the code; the result names that file."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from agentls.agent.workspace import Workspace
from agentls.tasks.base import EditResult, TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task
from agentls.tasks.outcome import edit_summary
from agentls.tasks.verify import make_verifier, verdict

TESTS_TASK = (
    "Task: write unit tests for the code below (the selected lines if there is a selection). "
    "Create the test file {test_path} with write (or extend it with edit if it exists), "
    "importing the code under test from its module. Cover normal cases and edge cases; no "
    "network. Then call finish."
)


def test_path_for(rel_path: str) -> str:
    """Where tests for a file conventionally live: tests/test_x.py, or x.test.ts beside it."""
    p = PurePosixPath(rel_path)
    if p.suffix in {".ts", ".tsx", ".js", ".jsx", ".mjs"}:
        return str(p.with_name(f"{p.stem}.test{p.suffix}"))
    if p.suffix == ".go":
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


async def run_generate_tests(ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Generate tests for the file or selection; the result names the test file it created.

    The tests must import the code under test and pass in the sandbox; when they do not, the
    model is told why and gets a few repair rounds.
    """
    prepared = prepare(ctx, req)
    ws = prepared.workspace
    wanted = test_path_for(prepared.rel_path)

    def current_test_file() -> str | None:
        path = find_test_file(ws, wanted)
        return ws.rel(path) if path is not None else None

    verifier, runner = make_verifier(
        ctx, ws, prepared.rel_path, "tests", prepared.bash, test_file=current_test_file
    )
    try:
        result = await run_task(
            ctx, req, prepared, TESTS_TASK.format(test_path=wanted), verify=verifier
        )
        changes = ws.changes()
        verification = await verifier.final()
    finally:
        if runner is not None:
            await runner.aclose()
        await prepared.aclose()
    test_file = find_test_file(ws, wanted)
    summary = edit_summary(result, changes, ws.rel, "Tests generated.")
    warnings = list(result.warnings)
    summary = verdict(ctx, summary, verification, warnings)
    return EditResult(
        summary,
        changes,
        result.stats,
        test_file=test_file,
        warnings=warnings,
        verification=verification,
    )
