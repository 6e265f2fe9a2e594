"""The loop's typed events, through the real tasks against the scripted model server: what a
front end sees (turns, streamed text, tool calls, staged edits, stats, the end), and the
progress lines a plain sink still gets from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentls.agent import events as ev
from agentls.agent.progress import EventProgress, ProgressLines
from agentls.llm.factory import make_backend
from agentls.llm.types import Message
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from lsp_support import CALC, NEW_BODY, OLD_BODY, call
from scripted_model import Reply, ScriptedModelServer

SOURCE = CALC  # the sample module the LSP tests use too
OLD = OLD_BODY + "\n"
NEW = NEW_BODY + "\n"


class Sink(EventProgress):
    """An event-taking progress sink (as the LSP progress and the CLI are) that keeps all."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.reports: list[tuple[str, int | None]] = []
        self.warnings: list[str] = []

    def report(self, message: str, percentage: int | None = None) -> None:
        self.reports.append((message, percentage))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def on_event(self, event: ev.Event) -> None:
        self.events.append(event)
        super().on_event(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def make_ctx(server: ScriptedModelServer, root: Path, sink: Sink, **overrides: Any) -> TaskContext:
    settings = Settings(
        backend="ollama", base_url=server.url, model="gemma4:12b-it-qat", **overrides
    )
    return TaskContext(root=root, settings=settings, backend=make_backend(settings), progress=sink)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "stats.py").write_text(SOURCE)
    return tmp_path


async def test_a_refactor_emits_turns_calls_staged_edits_stats_and_the_end(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            Reply(
                content="I will use sum().",
                tool_calls=[
                    {
                        "name": "edit",
                        "arguments": {"path": "stats.py", "old_text": OLD, "new_text": NEW},
                    }
                ],
            ),
            call("write", path="notes.md", content="one\ntwo\n"),
            call("finish", summary="total uses sum()."),
        ]
    )
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink, test_command="")
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    assert [(t.turn, t.final) for t in sink.of(ev.TurnStarted)] == [(1, 0), (2, 0), (3, 0)]
    assert [c.name for c in sink.of(ev.ToolCallStarted)] == ["edit", "write", "finish"]
    assert sink.of(ev.ToolCallStarted)[0].description == "editing stats.py"
    results = sink.of(ev.ToolResult)
    assert results[0].edits == (ev.StagedEdit("stats.py", 1, 4),)
    assert results[1].edits == (ev.StagedEdit("notes.md", 2, 0, created=True),)
    assert results[2].finished and results[2].edits == ()
    # The commentary before the call streamed as text of turn 1.
    assert "".join(d.text for d in sink.of(ev.TextDelta) if d.turn == 1) == "I will use sum()."
    stats = sink.of(ev.Stats)
    assert [s.turn for s in stats] == [1, 2, 3] and all(s.prompt_tokens > 0 for s in stats)
    (end,) = sink.of(ev.Finished)
    assert end.finished and end.stop_reason == "finished" and end.text == "total uses sum()."
    assert sink.events[-1] is end and end.stats is result.stats

    # The progress lines: today's, plus each staged edit with its file and line count.
    lines = [m for m, _ in sink.reports]
    assert lines[0] == "turn 1/20 · waiting for the model"
    assert any(m.startswith("turn 1/20 · editing stats.py · ") for m in lines)
    assert any(m.startswith("turn 1/20 · staged edit: stats.py (+1 \u22124)") for m in lines)
    assert any(
        m.startswith("turn 2/20 · waiting for the model · staged edit: stats.py (+1 \u22124)")
        for m in lines
    )
    assert any("notes.md (+2 \u22120, new file)" in m for m in lines)
    assert any(
        m.startswith("turn 1/20 · model writing (") and "I will use sum()." in m for m in lines
    )
    assert [p for _, p in sink.reports if p is not None] == sorted(
        p for _, p in sink.reports if p is not None
    )


async def test_an_explanation_streams_its_text_and_thinking_apart(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    answer = "`total` adds the items.\n\nIt loops over the indices."
    scripted_model.script(
        [Reply(content=f"<think>Read it first.</think>\n\n{answer}", chunk_size=3)]
    )
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink)
    result = await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    text = "".join(d.text for d in sink.of(ev.TextDelta))
    thinking = "".join(d.text for d in sink.of(ev.ThinkingDelta))
    assert text == answer and result.markdown.startswith(text)
    assert thinking == "Read it first."
    assert len(sink.of(ev.TextDelta)) > 5  # streamed, not one piece at the end
    # Every delta came before the end, and the run's numbers after the reply.
    kinds = [type(e).__name__ for e in sink.events]
    assert kinds.index("Stats") > max(i for i, k in enumerate(kinds) if k == "TextDelta")
    assert kinds[-1] == "Finished"


@pytest.mark.parametrize("backend", ["ollama", "openai"])
async def test_thinking_the_server_split_off_streams_as_thinking_never_as_answer(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    # Ollama's message.thinking and llama-server's / vLLM's delta.reasoning_content.
    answer = "`total` adds the items."
    scripted_model.script([Reply(thinking="Loop over indices; sum.", content=answer)])
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink)
    if backend == "openai":
        settings = Settings(
            backend="openai", base_url=scripted_model.openai_url, model="gemma4:12b-it-qat"
        )
        ctx = TaskContext(
            root=project, settings=settings, backend=make_backend(settings), progress=sink
        )
    result = await run_explain(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    assert "".join(d.text for d in sink.of(ev.ThinkingDelta)) == "Loop over indices; sum."
    assert "".join(d.text for d in sink.of(ev.TextDelta)) == answer
    assert result.markdown == answer


async def test_a_constrained_json_reply_streams_no_text(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            Reply(content='{"tool": "read", "arguments": {"path": "stats.py"}}'),
            Reply(content='{"tool": "finish", "arguments": {"summary": "done"}}'),
        ]
    )
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink, tool_mode="constrained", test_command="")
    await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    assert sink.of(ev.TextDelta) == []
    assert len(sink.of(ev.Generating)) >= 2


async def test_warnings_are_events_and_progress_warnings(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([call("read", path="stats.py", offset=i + 1) for i in range(6)])
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink, max_turns=3, test_command="")
    await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    (warning,) = sink.of(ev.Warning)
    assert "used all 3 turns" in warning.message and sink.warnings == [warning.message]
    final = sink.of(ev.TurnStarted)[-1]
    assert final.final and final.turn == 3
    assert any(m.startswith("turn 3/3 · asking the model for its answer") for m, _ in sink.reports)


async def test_a_follow_up_continues_the_conversation(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([Reply(content="First answer."), Reply(content="Second answer.")])
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink)
    first = await run_explain(ctx, TaskRequest(project / "stats.py"))
    ctx.history = list(first.messages)
    await run_explain(ctx, TaskRequest(project / "stats.py", instruction="and mean?"))
    await ctx.backend.aclose()
    sent = scripted_model.requests[1]["messages"]
    before = scripted_model.requests[0]["messages"]
    # The first request's messages and its answer are the second's prefix, byte for byte.
    assert sent[: len(before)] == before
    assert sent[len(before)] == {"role": "assistant", "content": "First answer."}
    assert sent[-1]["role"] == "user" and "and mean?" in sent[-1]["content"]
    assert all(isinstance(m, Message) for m in first.messages)


def test_plain_sinks_get_lines_through_the_adapter() -> None:
    class Plain:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def report(self, message: str, percentage: int | None = None) -> None:
            self.lines.append(message)

        def warn(self, message: str) -> None:
            self.lines.append("warning: " + message)

    plain = Plain()
    lines = ProgressLines(plain)
    lines.on_event(ev.TurnStarted(1, 4))
    lines.on_event(ev.Generating(1, 10, 0.5))
    lines.on_event(ev.Stats(1, 900, 10, None, 0.25, 20.0))
    lines.on_event(ev.ToolCallStarted(1, "c1", "read", {"path": "a.py"}, "reading a.py"))
    lines.on_event(ev.Warning("careful"))
    assert plain.lines == [
        "turn 1/4 · waiting for the model",
        "turn 1/4 · model writing (10 tokens) · 20 tok/s",
        "turn 1/4 · reading a.py · 20 tok/s · context 25%",
        "warning: careful",
    ]


async def test_the_answer_after_the_turn_cap_streams_as_a_call_of_its_own(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            Reply(content="Reading.", tool_calls=[{"name": "read", "arguments": {"path": "a"}}]),
            Reply(content="Again.", tool_calls=[{"name": "ls", "arguments": {}}]),
            Reply(content="Final words."),
        ]
    )
    sink = Sink()
    ctx = make_ctx(scripted_model, project, sink, max_turns=2, test_command="")
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    texts: dict[int, str] = {}
    for delta in sink.of(ev.TextDelta):
        texts[delta.turn] = texts.get(delta.turn, "") + delta.text
    assert texts == {1: "Reading.", 2: "Again.", 3: "Final words."}
    assert "Final words." in result.summary
