"""Generate tests: the registry's GENERATE_TESTS run through the edit flow (``tasks/edit.py``),
which writes a new test file for the code; the result names that file."""

from __future__ import annotations

from agentls.tasks.base import EditResult, TaskContext, TaskRequest
from agentls.tasks.edit import find_test_file, run_edit_task, test_path_for
from agentls.tasks.registry import GENERATE_TESTS, TESTS_TASK

__all__ = ["TESTS_TASK", "find_test_file", "run_generate_tests", "test_path_for"]


async def run_generate_tests(ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Generate tests for the file or selection; the result names the test file it created.

    The tests must import the code under test and pass in the sandbox; when they do not, the
    model is told why and gets a few repair rounds.
    """
    return await run_edit_task(GENERATE_TESTS, ctx, req)
