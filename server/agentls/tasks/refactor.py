"""Refactor: the registry's REFACTOR run through the edit flow (``tasks/edit.py``)."""

from __future__ import annotations

from agentls.tasks.base import EditResult, TaskContext, TaskRequest
from agentls.tasks.edit import run_edit_task
from agentls.tasks.registry import REFACTOR, REFACTOR_TASK

__all__ = ["DEFAULT_INSTRUCTION", "REFACTOR_TASK", "run_refactor"]

DEFAULT_INSTRUCTION = REFACTOR.default_instruction


async def run_refactor(ctx: TaskContext, req: TaskRequest) -> EditResult:
    """Refactor the file or selection and return the staged changes (nothing written to disk)."""
    return await run_edit_task(REFACTOR, ctx, req)
