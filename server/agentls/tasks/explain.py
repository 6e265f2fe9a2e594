"""Explain: a read-only task whose answer is Markdown."""

from __future__ import annotations

from agentls.tasks.base import ExplainResult, TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task

EXPLAIN_TASK = (
    "Task: explain the code below (the selected lines if there is a selection) to a developer. "
    "Say what it does, how, and anything surprising or risky. Answer in Markdown, as plain "
    "text or as the summary of finish; read other files only if you need them. Change nothing."
)


async def run_explain(ctx: TaskContext, req: TaskRequest) -> ExplainResult:
    """Explain the file or selection; one model call when the model needs no other file."""
    prepared = prepare(ctx, req)
    try:
        result = await run_task(ctx, req, prepared, EXPLAIN_TASK, read_only=True)
    finally:
        await prepared.aclose()
    markdown = result.text or "_The model gave no explanation._"
    for warning in result.warnings:
        markdown += f"\n\n> **agentls:** {warning}"
    return ExplainResult(markdown=markdown, stats=result.stats)
