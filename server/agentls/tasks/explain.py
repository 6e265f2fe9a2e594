"""Explain: a read-only task whose answer is Markdown."""

from __future__ import annotations

from agentls.tasks.base import ExplainResult, TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task
from agentls.tasks.registry import EXPLAIN, EXPLAIN_TASK, TaskSpec

__all__ = ["EXPLAIN_TASK", "explain", "run_explain"]


async def explain(spec: TaskSpec, ctx: TaskContext, req: TaskRequest) -> ExplainResult:
    """The explain flow (``spec`` is the registry's EXPLAIN): one model call when the model
    needs no other file, the answer as Markdown with the harness's warnings quoted below it."""
    prepared = prepare(ctx, req)
    try:
        result = await run_task(ctx, req, prepared, spec.task_text, spec=spec)
    finally:
        await prepared.aclose()
    markdown = result.text or "_The model gave no explanation._"
    for warning in result.warnings:
        markdown += f"\n\n> **agentls:** {warning}"
    return ExplainResult(
        markdown=markdown,
        stats=result.stats,
        messages=result.messages,
        stop_reason=result.stop_reason,
    )


async def run_explain(ctx: TaskContext, req: TaskRequest) -> ExplainResult:
    """Explain the file or selection."""
    return await explain(EXPLAIN, ctx, req)
