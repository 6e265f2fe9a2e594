"""Status, code actions and settings, through a real client and the real server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_support import MODEL, AgentClient, agent_client, closed_port, options
from scripted_model import ScriptedModelServer

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


async def status_until(
    agent: AgentClient, check: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """Ask agent/status until ``check`` holds: settings arrive asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = await agent.request("agent/status", {})
        if check(status) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.05)


def make_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(SOURCE)
    return root


async def test_status_reports_backend_model_and_context(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    async with agent_client(root, options(scripted_model.url, contextLength=8192)) as agent:
        status = await agent.request("agent/status", {})
    assert status["backend"] == "ollama"
    assert status["baseUrl"] == scripted_model.url
    assert status["model"] == MODEL
    assert status["reachable"] is True
    assert status["contextLength"] == 8192
    assert status["toolMode"] == "auto"
    assert status["lastStats"] is None
    assert "error" not in status


async def test_status_when_the_server_is_down_never_raises(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}"
    async with agent_client(root, options(url)) as agent:
        status = await agent.request("agent/status", {})
        again = await agent.request("agent/status", {})
    assert status["reachable"] is False
    assert status["baseUrl"] == url
    assert "ollama" in status["error"].lower()
    assert again["reachable"] is False


async def test_status_when_the_model_is_missing(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    with ScriptedModelServer(models=("llama3:8b",)) as model_server:
        async with agent_client(root, options(model_server.url)) as agent:
            status = await agent.request("agent/status", {})
    assert status["reachable"] is True
    assert "ollama pull" in status["error"]


async def test_code_actions_on_a_selection_carry_commands(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        selection = types.Range(
            start=types.Position(line=0, character=0), end=types.Position(line=1, character=16)
        )
        actions = await agent.raw_request(
            types.TEXT_DOCUMENT_CODE_ACTION,
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=doc),
                range=selection,
                context=types.CodeActionContext(diagnostics=[]),
            ),
        )
    by_title = {a["title"]: a for a in actions}
    assert set(by_title) == {"Agent: Explain", "Agent: Refactor", "Agent: Generate tests"}
    commands = {t: a["command"] for t, a in by_title.items()}
    assert commands["Agent: Explain"]["command"] == "agent.explain"
    assert commands["Agent: Refactor"]["command"] == "agent.refactor"
    assert commands["Agent: Generate tests"]["command"] == "agent.generateTests"
    assert commands["Agent: Refactor"]["arguments"] == [
        doc,
        {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 16}},
    ]
    assert by_title["Agent: Refactor"]["kind"] == "refactor.rewrite"
    assert all(str(a["kind"]).startswith("refactor") for a in actions)
    assert all("edit" not in a for a in actions)  # nothing is computed up front


async def test_code_actions_on_a_cursor_act_on_the_whole_file_and_honour_only(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        cursor = types.Range(
            start=types.Position(line=1, character=4), end=types.Position(line=1, character=4)
        )
        actions = await agent.raw_request(
            types.TEXT_DOCUMENT_CODE_ACTION,
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=doc),
                range=cursor,
                context=types.CodeActionContext(diagnostics=[]),
            ),
        )
        quickfix_only = await agent.raw_request(
            types.TEXT_DOCUMENT_CODE_ACTION,
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=doc),
                range=cursor,
                context=types.CodeActionContext(
                    diagnostics=[], only=[types.CodeActionKind.QuickFix]
                ),
            ),
        )
    assert len(actions) == 3
    for action in actions:
        assert action["command"]["arguments"] == [doc]  # no range: the whole file
        assert action["kind"].startswith("source.")
    assert not quickfix_only


async def test_invalid_setting_warns_naming_the_setting_and_default(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    init = options(scripted_model.url, temperature="hot", maxTurns=0)
    async with agent_client(root, init) as agent:
        await agent.wait_for(lambda: len(agent.messages(types.MessageType.Warning)) >= 2)
        status = await agent.request("agent/status", {})
        warnings = agent.messages(types.MessageType.Warning)
        logs = agent.logs(types.MessageType.Warning)
    assert any("agent.temperature" in w and "0.2" in w for w in warnings), warnings
    assert any("agent.maxTurns" in w and "20" in w for w in warnings), warnings
    assert any("agent.temperature" in w for w in logs)
    assert status["reachable"] is True  # the valid settings still apply


async def test_pulled_configuration_and_did_change_configuration(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    config = {"agent": {"contextLength": 4096}}
    async with agent_client(root, options(scripted_model.url), configuration=config) as agent:
        pulled = await status_until(agent, lambda s: s["contextLength"] == 4096)
        # A push carrying the section is used as is.
        agent.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"agent": {"contextLength": 2048}})
        )
        pushed = await status_until(agent, lambda s: s["contextLength"] == 2048)
        # A push without it makes the server pull again.
        agent.client.set_configuration(
            {"contextLength": 1024, "toolMode": "bogus"}, section="agent"
        )
        agent.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=None)
        )
        await agent.wait_for(
            lambda: any("agent.toolMode" in m for m in agent.messages(types.MessageType.Warning))
        )
        repulled = await agent.request("agent/status", {})
    assert pulled["contextLength"] == 4096
    assert pushed["contextLength"] == 2048
    assert repulled["contextLength"] == 1024
    assert repulled["toolMode"] == "auto"


async def test_bad_params_are_invalid_params_and_the_server_keeps_going(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    async with agent_client(root, options(scripted_model.url)) as agent:
        try:
            await agent.request("agent/explain", {"range": None})
        except JsonRpcException as exc:
            assert exc.code == -32602
            assert "textDocument.uri" in exc.message
        else:
            raise AssertionError("expected InvalidParams")
        status = await agent.request("agent/status", {})
    assert status["reachable"] is True
