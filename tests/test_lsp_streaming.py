"""Streaming over real LSP: ``agent/textDelta`` notifications carry the model's text as it is
written, keyed by the run's work-done progress token, before the request's result (which is
unchanged); thinking streams apart; concurrent runs stream on their own tokens; refactors show
their commentary and each staged edit in the progress."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsprotocol import types

from lsp_support import CALC, NEW_BODY, OLD_BODY, AgentClient, agent_client, make_project, options
from lsp_support import plain as to_json
from scripted_model import Reply, ScriptedModelServer

TEXT_DELTA = "agent/textDelta"
ANSWER = "`total` adds the items one by one.\n\n`mean` divides the total by the count."


class Deltas:
    """Collects agent/textDelta notifications as the client receives them."""

    def __init__(self, agent: AgentClient, *tokens: str) -> None:
        for token in tokens:  # the client's own work-done tokens, known to its progress
            agent.client.progress_reports[token] = []
        self.got: list[dict[str, Any]] = []
        self.pending: asyncio.Future[Any] | None = None  # the request in flight
        self.during: list[bool] = []  # whether the request was still pending at each delta

        @agent.client.feature(TEXT_DELTA)
        def on_delta(params: Any) -> None:
            self.got.append(to_json(params))
            self.during.append(self.pending is not None and not self.pending.done())

    def text(self, token: str | int, kind: str = "answer") -> str:
        return "".join(d["delta"] for d in self.got if d["token"] == token and d["kind"] == kind)

    def tokens(self) -> list[str | int]:
        return list(dict.fromkeys(d["token"] for d in self.got))


def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path, {"calc.py": CALC, "geo.py": "def area(w, h):\n    return w * h\n"}
    )


async def test_explain_streams_deltas_before_its_result(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    content = f"<think>The user wants calc explained; no tool needed.</think>\n\n{ANSWER}"
    scripted_model.script([Reply(content=content, chunk_size=4, delay=0.01)])
    async with agent_client(root, options(scripted_model.url)) as agent:
        deltas = Deltas(agent, "t-1")
        doc = await agent.open(root / "calc.py")
        deltas.pending = asyncio.ensure_future(
            agent.request("agent/explain", {"textDocument": {"uri": doc}, "workDoneToken": "t-1"})
        )
        result = await asyncio.wait_for(deltas.pending, 30)

    markdown = result["markdown"]
    assert markdown == ANSWER  # the result is as it always was
    assert deltas.tokens() == ["t-1"]
    streamed = deltas.text("t-1")
    # In order, complete, and every piece arrived while the request was still running.
    assert streamed == ANSWER and markdown.startswith(streamed)
    assert len([d for d in deltas.got if d["kind"] == "answer"]) > 5
    assert all(deltas.during)
    # Thinking streamed too, apart, and never as answer text.
    assert deltas.text("t-1", "thinking") == "The user wants calc explained; no tool needed."
    assert "no tool needed" not in streamed
    assert {d["turn"] for d in deltas.got} == {1}


async def test_commentary_before_a_tool_call_is_an_earlier_turn(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            Reply(
                content="Let me look at geo.py too.",
                tool_calls=[{"name": "read", "arguments": {"path": "geo.py"}}],
            ),
            Reply(content=ANSWER, chunk_size=6),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        deltas = Deltas(agent, "t-2")
        doc = await agent.open(root / "calc.py")
        result = await agent.request(
            "agent/explain", {"textDocument": {"uri": doc}, "workDoneToken": "t-2"}
        )
    by_turn = {
        turn: "".join(d["delta"] for d in deltas.got if d["turn"] == turn) for turn in (1, 2)
    }
    assert by_turn == {1: "Let me look at geo.py too.", 2: ANSWER}
    # A client shows the newest turn's text: that is the result.
    assert result["markdown"] == by_turn[2]


async def test_two_runs_stream_at_once_on_their_own_tokens(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    answers = {
        # Long enough to stream in many pieces; never one phrase repeated (a loop is stopped).
        "calc.py": "calc: " + " ".join(f"step {n} sums and averages." for n in range(12)),
        "geo.py": "geo: " + " ".join(f"case {n} multiplies width by height." for n in range(10)),
    }

    def reply(body: dict[str, Any]) -> Reply:
        first = body["messages"][1]["content"]
        name = "geo.py" if "geo.py" in first else "calc.py"
        return Reply(content=answers[name], chunk_size=5, delay=0.01)

    scripted_model.script(reply)
    async with agent_client(root, options(scripted_model.url)) as agent:
        deltas = Deltas(agent, "calc", "geo")
        calc = await agent.open(root / "calc.py")
        geo = await agent.open(root / "geo.py")
        results = await asyncio.wait_for(
            asyncio.gather(
                agent.request(
                    "agent/explain", {"textDocument": {"uri": calc}, "workDoneToken": "calc"}
                ),
                agent.request(
                    "agent/explain", {"textDocument": {"uri": geo}, "workDoneToken": "geo"}
                ),
            ),
            30,
        )
    assert sorted(deltas.tokens()) == ["calc", "geo"]
    assert deltas.text("calc") == results[0]["markdown"] == answers["calc.py"].strip()
    assert deltas.text("geo") == results[1]["markdown"] == answers["geo.py"].strip()
    # They really streamed at the same time: the tokens interleave.
    order = [d["token"] for d in deltas.got]
    first_geo, last_calc = order.index("geo"), len(order) - 1 - order[::-1].index("calc")
    assert first_geo < last_calc


async def test_explain_command_streams_on_the_token_the_server_created(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([Reply(content=ANSWER, chunk_size=4)])
    async with agent_client(root, options(scripted_model.url)) as agent:
        deltas = Deltas(agent)
        doc = await agent.open(root / "calc.py")
        outcome = await agent.command("agent.explain", doc)
    assert outcome["ok"] is True
    (token,) = deltas.tokens()
    begin = agent.client.progress_reports[token][0]
    assert isinstance(begin, types.WorkDoneProgressBegin) and begin.title == "Agent: Explain"
    assert deltas.text(token) == ANSWER
    saved = Path(types_uri_path(outcome["document"]))
    assert saved.read_text() == ANSWER + "\n"


async def test_refactor_progress_shows_commentary_and_each_staged_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            Reply(
                content="I will replace the loop with sum().",
                tool_calls=[
                    {
                        "name": "edit",
                        "arguments": {
                            "path": "calc.py",
                            "old_text": OLD_BODY,
                            "new_text": NEW_BODY,
                        },
                    }
                ],
                chunk_size=5,
            ),
            Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "total uses sum()."}}]),
        ]
    )
    async with agent_client(root, options(scripted_model.url, testCommand="")) as agent:
        deltas = Deltas(agent, "r-1")
        doc = await agent.open(root / "calc.py")
        result = await agent.request(
            "agent/refactor", {"textDocument": {"uri": doc}, "workDoneToken": "r-1"}
        )
    assert result["summary"].startswith("total uses sum().")
    messages = [
        v.message
        for v in agent.client.progress_reports["r-1"]
        if isinstance(v, types.WorkDoneProgressReport) and v.message
    ]
    assert any("staged edit: calc.py (+1 \u22124)" in m for m in messages), messages
    assert any(m.startswith("turn 2/") and "staged edit: calc.py" in m for m in messages)
    assert deltas.text("r-1") == "I will replace the loop with sum()."


def types_uri_path(uri: str) -> str:
    """The file path of a file:// URI."""
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path)
