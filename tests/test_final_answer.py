"""Never empty-handed: a prose first answer in every tool mode, and one last call for the model's
answer when a run hits the turn cap or loops, against the scripted model server (both wire
formats)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.prompts import FINAL_ANSWER, MAX_REPEAT_TURNS
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from lsp_support import call
from scripted_model import Reply, ScriptedModelServer

SOURCE = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
MODEL = "gemma4:12b-it-qat"
BACKENDS = ["ollama", "openai"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "geo.py").write_text(SOURCE)
    (tmp_path / "notes.txt").write_text("one\ntwo\nthree\nfour\nfive\nsix\nseven\n")
    return tmp_path


def ctx_for(server: ScriptedModelServer, root: Path, backend: str, **overrides: Any) -> TaskContext:
    url = server.openai_url if backend == "openai" else server.url
    settings = Settings(backend=backend, base_url=url, model=MODEL, **overrides)
    return TaskContext(root=root, settings=settings, backend=make_backend(settings))


def constrained(request: dict[str, Any]) -> bool:
    """Whether the request forces a JSON reply (Ollama `format`, OpenAI `response_format`)."""
    return "format" in request or "response_format" in request


def last_content(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_constrained_explain_may_answer_in_prose_on_the_first_call(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    scripted_model.script([Reply(content="`area` multiplies width by height.")])
    ctx = ctx_for(scripted_model, project, backend, tool_mode="constrained")
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()

    assert result.markdown == "`area` multiplies width by height."
    (request,) = scripted_model.requests
    assert not constrained(request)
    assert "tools" not in request  # constrained mode lists the tools in the system prompt


@pytest.mark.parametrize("backend", BACKENDS)
async def test_constrained_explain_still_takes_a_tool_call_written_as_json(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    read = json.dumps({"tool": "read", "arguments": {"path": "notes.txt"}})
    finish = json.dumps({"tool": "finish", "arguments": {"summary": "Geometry helpers."}})
    scripted_model.script([Reply(content=read), Reply(content=finish)])
    ctx = ctx_for(scripted_model, project, backend, tool_mode="constrained")
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()

    assert result.markdown == "Geometry helpers."
    first, second = scripted_model.requests
    assert not constrained(first) and constrained(second)
    assert "three" in last_content(second)  # the read ran and its result went back


@pytest.mark.parametrize("mode", ["native", "constrained"])
@pytest.mark.parametrize("backend", BACKENDS)
async def test_turn_cap_ends_with_the_models_answer_and_the_prefix_intact(
    scripted_model: ScriptedModelServer, project: Path, backend: str, mode: str
) -> None:
    def reads(offset: int) -> Reply:
        if mode == "native":
            return call("read", path="notes.txt", offset=offset, limit=1)
        args = {"path": "notes.txt", "offset": offset, "limit": 1}
        return Reply(content=json.dumps({"tool": "read", "arguments": args}))

    replies = [reads(i) for i in range(1, 5)]
    replies.append(Reply(content="It computes the area and the perimeter of a rectangle."))
    scripted_model.script(replies)
    ctx = ctx_for(scripted_model, project, backend, tool_mode=mode, max_turns=4)
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()

    assert result.markdown.startswith("It computes the area and the perimeter of a rectangle.")
    assert "used all 4 turns" in result.markdown  # the warning stays visible under the answer
    assert len(scripted_model.requests) == 5
    *turns, final = scripted_model.requests
    assert FINAL_ANSWER in last_content(final)
    # The final request extends the previous one: same system prompt and tools, same history.
    previous = turns[-1]
    assert final["messages"][0] == previous["messages"][0]
    assert final.get("tools") == previous.get("tools")
    n = len(previous["messages"])
    assert final["messages"][: n - 1] == previous["messages"][: n - 1]
    assert not constrained(final)  # prose is allowed in every mode
    if backend == "openai" and mode == "native":
        assert final["tool_choice"] == "none"
    assert result.stats.turns == 5


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_looping_model_is_stopped_early_and_asked_for_its_answer(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    same = call("read", path="notes.txt")
    scripted_model.script([same] * (1 + MAX_REPEAT_TURNS) + [Reply(content="Two functions.")])
    ctx = ctx_for(scripted_model, project, backend, max_turns=12)
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()

    assert result.markdown.startswith("Two functions.")
    assert "repeated the same tool calls" in result.markdown
    assert len(scripted_model.requests) == 2 + MAX_REPEAT_TURNS  # far below the 12-turn cap


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_final_answer_given_as_finish_is_taken(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    # Ollama has no tool_choice: a model may still call finish when asked for its answer.
    scripted_model.script(
        [call("read", path="notes.txt"), call("finish", summary="Area and perimeter.")]
    )
    ctx = ctx_for(scripted_model, project, backend, max_turns=1)
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()
    assert result.markdown.startswith("Area and perimeter.")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_refactor_cut_short_says_what_was_staged_and_quotes_the_model(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    scripted_model.script(
        [
            call("edit", path="geo.py", old_text="return w * h", new_text="return h * w"),
            call("read", path="notes.txt", offset=1, limit=2),
            call("read", path="notes.txt", offset=3, limit=2),
            Reply(content="I swapped the factors in area; perimeter is untouched."),
        ]
    )
    ctx = ctx_for(scripted_model, project, backend, max_turns=3)
    result = await run_refactor(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()

    assert result.summary.startswith("Stopped early: it reached the turn cap (agent.maxTurns).")
    assert "Staged: geo.py (+1 -1)." in result.summary
    assert "The model's summary: I swapped the factors in area" in result.summary
    assert result.changes[0].new_text.startswith("def area(w, h):\n    return h * w\n")
    assert (project / "geo.py").read_text() == SOURCE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "raw",
    [
        "<think>The user wants an explanation. Two functions.</think>\n\n{answer}",
        "<|channel>thought\nTwo small functions, no state.<channel|>{answer}",
        "{answer}<end_of_turn>",
    ],
)
async def test_thinking_and_template_tokens_never_reach_the_explanation(
    scripted_model: ScriptedModelServer, project: Path, backend: str, raw: str
) -> None:
    answer = "`area` multiplies; `perimeter` adds, then doubles."
    scripted_model.script([Reply(content=raw.format(answer=answer))])
    ctx = ctx_for(scripted_model, project, backend)
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()
    assert result.markdown == answer
