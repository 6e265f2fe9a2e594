"""Cancelling a run: $/cancelRequest and window/workDoneProgress/cancel stop the model stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from lsp_support import AgentClient, agent_client, make_project, options
from scripted_model import Reply, ScriptedModelServer

CALC = "def total(items):\n    return sum(items)\n"


def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {"calc.py": CALC})


def ended_cancelled(agent: AgentClient) -> bool:
    """Whether some run's work-done progress has ended with "Cancelled"."""
    return any(
        isinstance(values[-1], types.WorkDoneProgressEnd) and values[-1].message == "Cancelled"
        for values in agent.client.progress_reports.values()
        if values
    )


def hanging() -> Reply:
    # One chunk, then the stream stays open until the client (our server) disconnects.
    return Reply(content="Let me think about this carefully...", hang=True)


async def test_cancel_request_stops_the_run_and_closes_the_stream(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([hanging()])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        pending = asyncio.ensure_future(
            agent.request("agent/refactor", {"textDocument": {"uri": doc}}, msg_id="refactor-1")
        )
        await asyncio.to_thread(scripted_model.wait_for_requests, 1)
        agent.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="refactor-1"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 10)
        assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)
        # The server carries on.
        status = await agent.request("agent/status", {})
    assert status["reachable"] is True
    assert not agent.applied_edits
    ends = [
        v
        for values in agent.client.progress_reports.values()
        for v in values
        if isinstance(v, types.WorkDoneProgressEnd)
    ]
    assert [e.message for e in ends] == ["Cancelled"]


async def test_progress_cancel_stops_the_run(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([hanging()])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        agent.client.progress_reports["run-1"] = []
        pending = asyncio.ensure_future(
            agent.request(
                "agent/generateTests", {"textDocument": {"uri": doc}, "workDoneToken": "run-1"}
            )
        )
        await asyncio.to_thread(scripted_model.wait_for_requests, 1)
        agent.client.protocol.notify(
            types.WINDOW_WORK_DONE_PROGRESS_CANCEL,
            types.WorkDoneProgressCancelParams(token="run-1"),
        )
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 10)
        assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)
        values = agent.client.progress_reports["run-1"]
    assert isinstance(values[-1], types.WorkDoneProgressEnd)
    assert values[-1].message == "Cancelled"


async def test_cancelling_a_command_stops_it_and_applies_nothing(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([hanging()])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        pending = asyncio.ensure_future(
            agent.client.protocol.send_request_async(
                types.WORKSPACE_EXECUTE_COMMAND,
                types.ExecuteCommandParams(command="agent.refactor", arguments=[doc]),
                msg_id="command-1",
            )
        )
        await asyncio.to_thread(scripted_model.wait_for_requests, 1)
        agent.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="command-1"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 10)
        assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)
        # The run's progress ends "Cancelled" as the cancel leaves the run; an applyEdit could
        # only follow a run that returned, so once that end is here, none is coming.
        await agent.wait_for(lambda: ended_cancelled(agent))
    assert not agent.applied_edits
    assert not agent.messages(types.MessageType.Error)
