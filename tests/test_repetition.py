"""A reply that falls into a loop is stopped as it streams: the text before the loop is kept
with one copy of what repeated, the stream is closed (the server stops generating), and the
answer says why it ends there. Real prose and code never trip it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.repetition import MIN_LOOP_CHARS, RepetitionGuard
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from lsp_support import call
from scripted_model import Reply, ScriptedModelServer

MODEL = "gemma4:12b-it-qat"
# What Gemma 3 270M wrote for the README's demo command: one line of the system prompt, again
# and again until the token cap.
RULE = "- when the task is done, call finish with a short summary of what you did.\n"
DEMO_LOOP = "You are agentls, a coding agent in the user's editor.\nRules:\n" + RULE * 40


def streamed(text: str, chunk: int = 5) -> RepetitionGuard:
    """The guard after ``text`` arrived in chunks, stopping where a stream would be closed."""
    guard = RepetitionGuard()
    for start in range(0, len(text), chunk):
        if guard.feed(text[start : start + chunk]):
            break
    return guard


# -- the guard -------------------------------------------------------------------------------


def test_a_repeated_line_is_a_loop_and_one_copy_is_kept() -> None:
    guard = streamed(DEMO_LOOP)
    assert guard.feed("")  # stays stopped
    # Stopped soon after the loop began, not at its end.
    assert len(guard.text) < len(DEMO_LOOP) // 3
    kept = guard.kept()
    assert kept == "You are agentls, a coding agent in the user's editor.\nRules:\n" + RULE.rstrip()


def test_words_repeated_without_line_breaks_are_a_loop() -> None:
    guard = streamed("The total is computed by " + "iatrics }" * 200)
    assert guard.feed("")
    assert guard.kept() == "The total is computed by iatrics }"


def test_one_character_repeated_is_a_loop() -> None:
    guard = streamed("Done." + "!" * 1000)
    assert guard.feed("")
    assert guard.kept() == "Done.!"


EXPLANATION = (
    """`inventory.py` keeps stock levels per warehouse.

| name | sku | north | south | east | west | total | reorder |
| --- | --- | --- | --- | --- | --- | --- | --- |
| bolt | B-1 | 10 | 12 | 3 | 0 | 25 | yes |
| nut | N-2 | 4 | 4 | 4 | 4 | 16 | no |

```python
def reset(counts):
    counts["north"] = 0
    counts["north"] = 0
    counts["north"] = 0
    counts["north"] = 0
    return counts
```

================================================================================
- `total_value` multiplies each item's price by its quantity and adds them up.
- `restock` raises every level below the threshold to the target.
- `report` prints one line per item, sorted by name.
"""
    + "Each warehouse is counted on its own. " * 5
)


def test_real_prose_tables_rulers_and_code_are_not_loops() -> None:
    guard = streamed(EXPLANATION, chunk=3)
    assert not guard.feed("")
    assert guard.kept() == EXPLANATION


def test_a_short_repetition_is_not_a_loop() -> None:
    # Five copies of a 40-character line: under MIN_LOOP_CHARS, and under six copies.
    line = "x = compute(a, b, c)  # the same again\n"
    assert 5 * len(line) < MIN_LOOP_CHARS
    assert not streamed(line * 5).feed("")


# -- through the loop and the wire -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["ollama", "openai"])
@pytest.mark.parametrize("tool_mode", ["native", "constrained"])
async def test_a_looping_explanation_is_stopped_kept_and_explained(
    scripted_model: ScriptedModelServer, tmp_path: Path, backend: str, tool_mode: str
) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    intro = "`add` returns the sum of its two arguments.\n"
    scripted_model.script([Reply(content=intro + RULE * 3000)])  # 230 KB if never stopped
    url = scripted_model.openai_url if backend == "openai" else scripted_model.url
    settings = Settings(backend=backend, base_url=url, model=MODEL, tool_mode=tool_mode)
    ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
    try:
        result = await run_explain(ctx, TaskRequest(tmp_path / "calc.py"))
    finally:
        await ctx.backend.aclose()

    answer, note = result.markdown.split("\n\n> **agentls:** ")
    assert answer == intro + RULE.rstrip()
    assert note.startswith("The model began repeating itself, so its reply was stopped")
    # The stream was closed early: the server saw the client leave, long before the end.
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)
    assert 0 < result.stats.completion_tokens < 200
    # Measured on the stream; the prompt's count comes only at a reply's end, so it is unknown.
    assert result.stats.time_to_first_token is not None
    assert result.stats.prompt_tokens == 0 and "not in the stats" in note
    assert len(scripted_model.requests) == 1  # the answer, not another turn


PADDING = "# ------------------------------------------------------------\n" * 100


@pytest.mark.parametrize("written_as", ["tool_calls", "text"])
async def test_a_tool_call_with_repeated_lines_is_not_cut(
    scripted_model: ScriptedModelServer, tmp_path: Path, written_as: str
) -> None:
    # A file of 100 identical lines written by a tool call: content, not a loop. Either as the
    # server's structured call, or as text (Qwen/Hermes <tool_call> JSON) that is recovered.
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    arguments = {"path": "padding.txt", "content": PADDING}
    write: Any = call("write", **arguments)
    if written_as == "text":
        text = json.dumps({"name": "write", "arguments": arguments})
        write = Reply(content=f"I will write it.\n<tool_call>\n{text}\n</tool_call>")
    scripted_model.script([write, call("finish", summary="Wrote the padding.")])
    settings = Settings(backend="ollama", base_url=scripted_model.url, model=MODEL)
    ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
    try:
        result: Any = await run_refactor(ctx, TaskRequest(tmp_path / "calc.py"))
    finally:
        await ctx.backend.aclose()
    (change,) = result.changes
    assert change.new_text == PADDING
    assert not any("repeating" in warning for warning in result.warnings)
