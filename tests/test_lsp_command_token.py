"""workspace/executeCommand honours the client's ``workDoneToken`` (LSP's ExecuteCommandParams
extend WorkDoneProgressParams), over real LSP: the progress and the streamed text of an agent.*
command go out on the token the client made, and the server creates none of its own. This is
how the VS Code client routes a run's progress into its notification and its streamed
explanation into the live preview, by token rather than by title."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types

from lsp_support import (
    CALC,
    NEW_BODY,
    OLD_BODY,
    AgentClient,
    agent_client,
    call,
    make_project,
    options,
)
from lsp_support import plain as to_json
from scripted_model import Reply, ScriptedModelServer

TEXT_DELTA = "agent/textDelta"
ANSWER = "`total` adds the items up; `mean` divides by the count."


def collect_deltas(agent: AgentClient) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    @agent.client.feature(TEXT_DELTA)
    def on_delta(params: Any) -> None:
        got.append(to_json(params))

    return got


async def command(agent: AgentClient, name: str, token: str | int, *arguments: Any) -> Any:
    agent.client.progress_reports[token] = []  # the client's own token, known to its progress
    result = await agent.client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(arguments), work_done_token=token)
    )
    return to_json(result)


async def test_explain_command_reports_and_streams_on_the_clients_token(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": CALC})
    scripted_model.script([Reply(content=ANSWER, chunk_size=5)])
    async with agent_client(root, options(scripted_model.url)) as agent:
        deltas = collect_deltas(agent)
        doc = await agent.open(root / "calc.py")
        outcome = await command(agent, "agent.explain", "vscode-1", doc)
    assert outcome["ok"] is True
    # Only the client's token: the server asked for no window/workDoneProgress/create.
    assert set(agent.client.progress_reports) == {"vscode-1"}
    reports = agent.client.progress_reports["vscode-1"]
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert reports[0].title == "Agent: Explain"
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    assert {d["token"] for d in deltas} == {"vscode-1"}
    assert "".join(d["delta"] for d in deltas if d["kind"] == "answer") == ANSWER


async def test_refactor_command_on_an_integer_token_still_applies_its_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": CALC})
    scripted_model.script(
        [
            call("edit", path="calc.py", old_text=OLD_BODY, new_text=NEW_BODY),
            call("finish", summary="Used sum()."),
        ]
    )
    async with agent_client(root, options(scripted_model.url, testCommand="")) as agent:
        doc = await agent.open(root / "calc.py")
        outcome = await command(agent, "agent.refactor", 7, doc)
    assert outcome["ok"] is True and outcome["applied"] is True
    assert set(agent.client.progress_reports) == {7}
    titles = [r.title for r in agent.client.progress_reports[7] if hasattr(r, "title")]
    assert titles == ["Agent: Refactor"]
    assert len(agent.applied_edits) == 1
