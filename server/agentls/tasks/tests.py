"""Generate tests: the model writes a new test file for the code; the result names that file."""

from __future__ import annotations

from pathlib import PurePosixPath

from agentls.tasks.base import EditResult, TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task

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


async def run_generate_tests(ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Generate tests for the file or selection; the result names the test file it created."""
    prepared = prepare(ctx, req)
    wanted = test_path_for(prepared.rel_path)
    result = await run_task(ctx, req, prepared, TESTS_TASK.format(test_path=wanted))
    changes = prepared.workspace.changes()
    test_file = None
    for change in changes:
        name = change.path.name
        if (
            prepared.workspace.rel(change.path) == wanted
            or name.startswith("test_")
            or (".test." in name or name.endswith("_test.go"))
        ):
            test_file = change.path
            break
    summary = result.text or "Tests generated."
    if not changes:
        summary = f"No change: {summary}"
    return EditResult(summary, changes, result.stats, test_file=test_file, warnings=result.warnings)
