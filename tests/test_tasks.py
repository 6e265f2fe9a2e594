"""The three tasks and the tool loop, run without an editor against the scripted model server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.prompts import REPEATED_CALL, SYSTEM_PROMPT
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import DocumentSnapshot, TaskContext, TaskRequest, TextRange
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from agentls.tasks.tests import run_generate_tests
from lsp_support import CALC, call
from scripted_model import Reply, ScriptedModelServer

SOURCE = CALC  # the sample module the LSP tests use too


class Recorder:
    """A progress sink that keeps what it was told."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self.warnings: list[str] = []

    def report(self, message: str, percentage: int | None = None) -> None:
        self.reports.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "stats.py").write_text(SOURCE)
    (tmp_path / "app.py").write_text("from stats import mean\n\nprint(mean([1, 2]))\n")
    return tmp_path


def make_ctx(
    server: ScriptedModelServer, root: Path, progress: Recorder | None = None, **overrides: Any
) -> TaskContext:
    settings = Settings(
        backend="ollama", base_url=server.url, model="gemma4:12b-it-qat", **overrides
    )
    return TaskContext(
        root=root,
        settings=settings,
        backend=make_backend(settings),
        progress=progress or Recorder(),
    )


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_explain_takes_one_model_call_with_the_file_in_the_first_message(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([Reply(content="`mean` divides the **total** by the count.")])
    ctx = make_ctx(scripted_model, project)
    result = await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    assert result.markdown == "`mean` divides the **total** by the count."
    assert len(scripted_model.requests) == 1
    first_user = scripted_model.requests[0]["messages"][1]["content"]
    assert "def mean(items):" in first_user and "stats.py" in first_user
    assert result.stats.turns == 1
    assert result.stats.prompt_tokens > 0 and result.stats.completion_tokens > 0
    assert result.stats.model == "gemma4:12b-it-qat"


async def test_explain_of_a_selection_names_the_lines(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([Reply(content="It averages.")])
    ctx = make_ctx(scripted_model, project)
    await run_explain(ctx, TaskRequest(project / "stats.py", TextRange(7, 0, 9, 0)))
    await ctx.backend.aclose()
    assert "The user selected lines 8-9." in scripted_model.requests[0]["messages"][1]["content"]


async def test_explain_refuses_edits(scripted_model: ScriptedModelServer, project: Path) -> None:
    scripted_model.script(
        [
            call("edit", path="stats.py", old_text="t = 0", new_text="t = 1"),
            Reply(content="Explained."),
        ]
    )
    ctx = make_ctx(scripted_model, project)
    result = await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    assert result.markdown == "Explained."
    assert "edit is not available" in tool_messages(scripted_model.requests[1])[0]
    assert (project / "stats.py").read_text() == SOURCE


async def test_refactor_stages_an_edit_and_leaves_disk_alone(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            call(
                "edit",
                path="stats.py",
                old_text="    t = 0\n    for i in range(len(items)):\n        t = t + items[i]\n"
                "    return t",
                new_text="    return sum(items)",
            ),
            call("finish", summary="Used sum()."),
        ]
    )
    ctx = make_ctx(scripted_model, project)
    result = await run_refactor(ctx, TaskRequest(project / "stats.py", instruction="use sum"))
    await ctx.backend.aclose()

    assert result.summary == "Used sum().\n\nNo tests found; not verified."
    assert [c.path for c in result.changes] == [project / "stats.py"]
    assert "return sum(items)" in result.changes[0].new_text
    assert "range(len" not in result.changes[0].new_text
    assert (project / "stats.py").read_text() == SOURCE
    assert "The user's instruction: use sum" in scripted_model.requests[0]["messages"][1]["content"]


async def test_refactor_split_creates_a_module_and_updates_imports(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    mean_src = "def mean(items):\n    return total(items) / len(items)\n"
    scripted_model.script(
        [
            call(
                "write",
                path="averages.py",
                content="from stats import total\n\n\n" + mean_src,
            ),
            call("edit", path="stats.py", old_text="\n\n" + mean_src, new_text=""),
            call(
                "edit",
                path="app.py",
                old_text="from stats import mean",
                new_text="from averages import mean",
            ),
            call("finish", summary="Moved mean to averages.py."),
        ]
    )
    ctx = make_ctx(scripted_model, project)
    result = await run_refactor(ctx, TaskRequest(project / "stats.py", instruction="split"))
    await ctx.backend.aclose()

    by_name = {c.path.name: c for c in result.changes}
    assert set(by_name) == {"averages.py", "stats.py", "app.py"}
    assert by_name["averages.py"].old_text is None
    assert "def mean" not in by_name["stats.py"].new_text
    assert by_name["app.py"].new_text.startswith("from averages import mean")


async def test_generate_tests_creates_the_conventional_test_file(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    test_src = "from stats import mean\n\n\ndef test_mean():\n    assert mean([1, 3]) == 2\n"
    scripted_model.script(
        [call("write", path="tests/test_stats.py", content=test_src), call("finish", summary="ok")]
    )
    ctx = make_ctx(scripted_model, project)
    result = await run_generate_tests(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    assert result.test_file == project / "tests" / "test_stats.py"
    assert result.changes[0].new_text == test_src
    assert "tests/test_stats.py" in scripted_model.requests[0]["messages"][1]["content"]


async def test_a_repeated_call_is_answered_not_rerun(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [call("read", path="app.py"), call("read", path="app.py"), Reply(content="done")]
    )
    ctx = make_ctx(scripted_model, project)
    await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    first, second = tool_messages(scripted_model.requests[2])
    assert "from stats import mean" in first
    assert second.startswith(REPEATED_CALL)


async def test_turn_cap_warns_the_model_and_the_user(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    replies = iter(range(1, 100))
    scripted_model.script(lambda _req: call("read", path="stats.py", offset=next(replies)))
    progress = Recorder()
    ctx = make_ctx(scripted_model, project, progress, max_turns=4)
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    # Four turns, then one call that asks for the model's answer.
    assert len(scripted_model.requests) == 5
    # The note rides on the newest tool result, the last message the model sees.
    last = scripted_model.requests[2]["messages"][-1]
    assert last["role"] == "tool" and last["content"].endswith(
        "2 model turn(s) left. Make your last needed change now, then call finish with a summary."
    )
    assert any("used all 4 turns" in w for w in progress.warnings)
    assert result.summary.startswith("Stopped early: it reached the turn cap")
    assert "Nothing was staged." in result.summary


async def test_prefix_is_identical_across_turns_and_tasks(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [Reply(content="x"), call("read", path="app.py"), call("finish", summary="ok")]
    )
    ctx = make_ctx(scripted_model, project)
    await run_explain(ctx, TaskRequest(project / "stats.py"))
    await run_refactor(ctx, TaskRequest(project / "app.py"))
    await ctx.backend.aclose()

    prefixes = {
        json.dumps([r["messages"][0], r["tools"]], sort_keys=True) for r in scripted_model.requests
    }
    assert len(scripted_model.requests) == 3
    assert len(prefixes) == 1
    assert scripted_model.requests[0]["messages"][0]["content"] == SYSTEM_PROMPT


async def test_tool_call_written_as_text_is_recovered(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    text_call = (
        "I will edit it now.\n```json\n"
        '{"name": "edit", "arguments": {"path": "app.py", "old_text": "print(mean([1, 2]))", '
        '"new_text": "print(mean([1, 2, 3]))"}}\n```'
    )
    scripted_model.script([Reply(content=text_call), call("finish", summary="done")])
    ctx = make_ctx(scripted_model, project)
    result = await run_refactor(ctx, TaskRequest(project / "app.py"))
    await ctx.backend.aclose()
    assert result.changes[0].new_text.endswith("print(mean([1, 2, 3]))\n")


async def test_open_buffer_is_what_the_agent_reads(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    unsaved = SOURCE + "\n\ndef unsaved_helper():\n    pass\n"

    def documents(path: Path) -> DocumentSnapshot | None:
        return DocumentSnapshot(unsaved, 7) if path.name == "stats.py" else None

    scripted_model.script([Reply(content="ok")])
    ctx = make_ctx(scripted_model, project)
    ctx.documents = documents
    await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    assert "unsaved_helper" in scripted_model.requests[0]["messages"][1]["content"]


async def test_context_fill_warning_names_the_setting(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([Reply(content="ok", prompt_tokens=3600)])
    progress = Recorder()
    ctx = make_ctx(scripted_model, project, progress, context_length=4096)
    result = await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    assert any("agent.contextLength" in w for w in progress.warnings)
    assert result.stats.context_fill == pytest.approx(3600 / 4096)
    # num_ctx follows the setting on every request, so Ollama does not truncate silently.
    assert scripted_model.requests[0]["options"]["num_ctx"] == 4096
