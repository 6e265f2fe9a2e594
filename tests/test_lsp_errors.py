"""Failures a laptop user meets, through the LSP: clear errors, recovered model mistakes, the
user typing during a run, and paths outside the workspace."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_support import (
    CALC,
    NEW_BODY,
    OLD_BODY,
    agent_client,
    apply_edits,
    call,
    closed_port,
    document_changes,
    make_project,
    options,
)
from scripted_model import Reply, ScriptedModelServer


def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {"calc.py": CALC})


def tool_results(request: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in request["messages"] if m["role"] == "tool"]


def request_failed(exc: pytest.ExceptionInfo[JsonRpcException]) -> tuple[str, str]:
    assert exc.value.code == -32803  # RequestFailed
    data = exc.value.data
    hint = data.get("hint", "") if isinstance(data, dict) else getattr(data, "hint", "")
    return exc.value.message, str(hint)


async def test_model_server_down_is_a_clear_error_and_the_server_keeps_answering(
    tmp_path: Path,
) -> None:
    root = project(tmp_path)
    async with agent_client(root, options(f"http://127.0.0.1:{closed_port()}")) as agent:
        doc = await agent.open(root / "calc.py")
        with pytest.raises(JsonRpcException) as exc:
            await agent.request("agent/refactor", {"textDocument": {"uri": doc}})
        message, hint = request_failed(exc)
        with pytest.raises(JsonRpcException):
            await agent.request("agent/explain", {"textDocument": {"uri": doc}})
        status = await agent.request("agent/status", {})
        errors = agent.logs(types.MessageType.Error)
    assert "Cannot reach Ollama" in message
    assert "ollama serve" in hint and "ollama serve" in message
    assert status["reachable"] is False
    assert any("ollama serve" in e for e in errors)


async def test_model_not_found_names_ollama_pull(tmp_path: Path) -> None:
    root = project(tmp_path)
    with ScriptedModelServer(models=("llama3:8b",)) as model_server:
        async with agent_client(root, options(model_server.url)) as agent:
            doc = await agent.open(root / "calc.py")
            with pytest.raises(JsonRpcException) as exc:
                await agent.request("agent/explain", {"textDocument": {"uri": doc}})
    message, hint = request_failed(exc)
    assert "ollama pull gemma4:12b-it-qat" in hint
    assert "ollama pull" in message


async def test_a_tool_call_written_as_fenced_json_is_recovered(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    fenced = "```json\n" + json.dumps(
        {
            "name": "edit",
            "arguments": {"path": "calc.py", "old_text": OLD_BODY, "new_text": NEW_BODY},
        }
    )
    scripted_model.script([Reply(content=fenced + "\n```"), call("finish", summary="Used sum().")])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request("agent/refactor", {"textDocument": {"uri": doc}})
    (change,) = document_changes(result["edit"])
    assert apply_edits(CALC, change["edits"]) == CALC.replace(OLD_BODY, NEW_BODY)


async def test_an_ambiguous_edit_goes_back_to_the_model_with_both_lines(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            # "    return " is on line 5 (total) and line 9 (mean).
            call("edit", path="calc.py", old_text="    return ", new_text="    return  "),
            call("edit", path="calc.py", old_text=OLD_BODY, new_text=NEW_BODY),
            call("finish", summary="Used sum()."),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request("agent/refactor", {"textDocument": {"uri": doc}})
    error = tool_results(scripted_model.requests[1])[-1]
    assert "matches 2 times" in error and "5, 9" in error, error
    (change,) = document_changes(result["edit"])
    assert apply_edits(CALC, change["edits"]) == CALC.replace(OLD_BODY, NEW_BODY)


async def test_typing_elsewhere_during_the_run_is_kept_and_the_edit_rebased(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            call("edit", path="calc.py", old_text=OLD_BODY, new_text=NEW_BODY),
            Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "ok"}}], delay=1.0),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py", version=1)
        pending = asyncio.ensure_future(
            agent.request("agent/refactor", {"textDocument": {"uri": doc}})
        )
        await asyncio.to_thread(scripted_model.wait_for_requests, 2)
        # The user adds a line at the end of mean() while the model is still answering.
        end = types.Position(line=9, character=0)
        agent.change(root / "calc.py", 2, types.Range(start=end, end=end), "# typed\n")
        result = await asyncio.wait_for(pending, 20)
    (change,) = document_changes(result["edit"])
    assert change["textDocument"]["version"] == 2
    typed = CALC + "# typed\n"
    assert apply_edits(typed, change["edits"]) == typed.replace(OLD_BODY, NEW_BODY)


async def test_typing_where_the_agent_edits_is_a_conflict_and_no_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            call("edit", path="calc.py", old_text=OLD_BODY, new_text=NEW_BODY),
            Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "ok"}}], delay=1.0),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py", version=1)
        pending = asyncio.ensure_future(
            agent.request("agent/refactor", {"textDocument": {"uri": doc}})
        )
        await asyncio.to_thread(scripted_model.wait_for_requests, 2)
        # The user edits the very line the agent rewrote ("t = 0" -> "t = 100").
        rng = types.Range(
            start=types.Position(line=1, character=8), end=types.Position(line=1, character=9)
        )
        agent.change(root / "calc.py", 2, rng, "100")
        with pytest.raises(JsonRpcException) as exc:
            await asyncio.wait_for(pending, 20)
        status = await agent.request("agent/status", {})
    message, hint = request_failed(exc)
    assert "changed" in message and "nothing was applied" in message
    assert "again" in hint
    assert status["reachable"] is True


async def test_a_path_outside_the_workspace_is_refused_as_a_tool_error(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [call("read", path="../../etc/passwd"), Reply(content="I could not read that file.")]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request("agent/explain", {"textDocument": {"uri": doc}})
    assert result["markdown"] == "I could not read that file."
    refused = tool_results(scripted_model.requests[1])[-1]
    assert "outside the workspace" in refused
    assert "root:" not in refused  # nothing of /etc/passwd leaked
