"""The edit-token tasks of bench/edit_tokens.py on a real model: the demo llama-server.

bench/edit_tokens.py proves what the tools allow with transcripts that use them correctly. This
script asks a real model to do the same three tasks (split a 300-line module, move a function,
rename a symbol in 5 places) through the real loop in constrained mode. For each it reports:
- the model calls, and the tokens the server says it generated;
- the tools called, and how many `edit` items were line ranges or moves;
- whether the staged result is byte-identical to the transcript's.

The demo model is Gemma 3 270M, a base-size model that only shows the pipeline working, so it
is not expected to get the tasks right. A model of the size users run (Gemma 4, Qwen) cannot run
on this machine. Sampling uses a fixed seed, so a run repeats.

Usage: python bench/edit_tokens_real.py [--turns 8] [--max-output 1024] [--seed 7]
Writes bench/results/edit-tokens-real-<date>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentls.agent import events as ev
from agentls.demo import DemoModelServer
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from edit_tokens import BILLING, TASKS, Task, run_transcript, workspace

HERE = Path(__file__).resolve().parent
# The keys (with their aliases) that make an edit item a move or copy.
MOVE_KEYS = ("to_path", "to_file", "destination", "to_line")


@dataclass
class Calls:
    """An event sink that counts the tool calls the model made and the kinds of edit items."""

    tools: Counter[str] = field(default_factory=Counter)
    ranges: int = 0  # edit items addressed by line range
    moves: int = 0  # edit items moving or copying lines to another place
    errors: int = 0  # tool calls that failed

    def on_event(self, event: ev.Event) -> None:
        """Count a call as it starts; a failed result as it comes back."""
        if isinstance(event, ev.ToolCallStarted):
            self.tools[event.name] += 1
            items = event.arguments.get("edits")
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    self.ranges += "first_line" in item or "start_line" in item
                    self.moves += any(
                        k in item for k in ("to_path", "to_file", "destination", "to_line")
                    )
        elif isinstance(event, ev.ToolResult) and not event.ok:
            self.errors += 1

    def report(self, message: str, percentage: int | None = None) -> None:
        """Progress lines are not needed here."""

    def warn(self, message: str) -> None:
        """Warnings are not needed here."""


async def run_real(task: Task, settings: Settings) -> dict[str, Any]:
    """The task through run_refactor against the real model; what it did and what it staged."""
    with workspace(task) as root:
        calls = Calls()
        ctx = TaskContext(
            root=root, settings=settings, backend=make_backend(settings), progress=calls
        )
        start = time.monotonic()
        try:
            result = await run_refactor(
                ctx, TaskRequest(root / BILLING, instruction=task.instruction)
            )
        finally:
            await ctx.backend.aclose()
        files = {c.path.relative_to(root).as_posix(): c.new_text for c in result.changes}
        return {
            "calls": calls,
            "stats": result.stats,
            "files": files,
            "seconds": time.monotonic() - start,
            "summary": " ".join(result.summary.split())[:160],
        }


async def measure(args: argparse.Namespace) -> list[list[Any]]:
    """One row per task: what the real model did, against the transcript's result."""
    rows: list[list[Any]] = []
    with DemoModelServer(extra_args=("--seed", str(args.seed))) as demo:
        settings = Settings(
            backend="openai",
            base_url=demo.openai_url,
            model=demo.model,
            tool_mode="constrained",
            context_length=demo.context_length,
            max_turns=args.turns,
            max_output_tokens=args.max_output,
            trusted_workspace=False,  # no test runs: the tokens written are what is measured
        )
        for make in TASKS:
            task = make()
            expected = (await run_transcript(task, task.new)).files
            got = await run_real(task, settings)
            calls: Calls = got["calls"]
            tools = ", ".join(f"{name} x{n}" for name, n in sorted(calls.tools.items()))
            rows.append(
                [
                    task.name,
                    got["stats"].turns,
                    got["stats"].completion_tokens,
                    tools or "-",
                    f"{calls.ranges} / {calls.moves}",
                    calls.errors,
                    ", ".join(sorted(got["files"])) or "-",
                    "yes" if got["files"] == expected else "no",
                    f"{got['seconds']:.0f}",
                    got["summary"],
                ]
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    """Run the three tasks on the demo model, print the table and write it to bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=8, help="agent.maxTurns per task")
    parser.add_argument("--max-output", type=int, default=1024, help="agent.maxOutputTokens")
    parser.add_argument("--seed", type=int, default=7, help="llama-server's sampling seed")
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    head = [
        "task",
        "model calls",
        "tokens generated (server)",
        "tool calls",
        "edit items: ranges / moves",
        "failed calls",
        "files staged",
        "same as transcript",
        "seconds",
        "summary",
    ]
    lines = [head, ["---"] * len(head), *rows]
    table = "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    text = (
        f"# Edit tokens on a real model, {stamp}\n\n"
        f"`python bench/edit_tokens_real.py --turns {args.turns} --max-output "
        f"{args.max_output} --seed {args.seed}`: the demo llama-server (Gemma 3 270M, Q4_K_M, "
        "8,192-token window), constrained tool calls, no test runs. The transcripts' numbers "
        "are in edit-tokens-2026-12-01.md.\n\n" + table + "\n"
    )
    print("\n" + text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"edit-tokens-real-{stamp}.md").write_text(text)


if __name__ == "__main__":
    main()
