"""Building the WorkspaceEdit for a multi-megabyte file does not freeze the language server
(issue 13): while the rebase and the minimal edits are computed, `agent/status` is answered,
and `$/cancelRequest` ends the run at once.

The agent renames 60 functions in a 5 MB open buffer and the user types into it
meanwhile, so the edit is rebased (two line diffs) and then diffed again against the buffer.
Bounds are relative to the edit's own duration, never absolute: a busy machine slows both
alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from lsp_support import (
    AgentClient,
    agent_client,
    apply_edits,
    call,
    idle_status_latency,
    make_project,
    options,
    statuses_while,
)
from lsp_support import text_edits_for as edits_for
from scripted_model import Reply, ScriptedModelServer

BLOCKS = 28_500  # about 5 MB
RENAMES = 60
TYPED = "# typed by the user while the agent worked\n"


def big_module() -> str:
    """Python-like text in which most lines repeat; each function name is unique."""
    return "".join(
        f"def handler_{n}(request):\n"
        "    if request is None:\n"
        "        return None\n"
        "    result = {}\n"
        "    for key, value in request.items():\n"
        "        result[key] = value\n"
        "    return result\n\n\n"
        for n in range(BLOCKS)
    )


def renames(first: int, prefix: str) -> list[dict[str, str]]:
    """Batch edit items renaming every ``BLOCKS // RENAMES``-th function."""
    step = BLOCKS // RENAMES
    return [
        {"old_text": f"def handler_{n}(", "new_text": f"def {prefix}_{n}("}
        for n in range(first, BLOCKS, step)
    ]


class Script:
    """Each run: one batch edit, then finish, held until the test lets it go."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.items: list[list[dict[str, str]]] = []

    def __call__(self, _body: dict[str, Any]) -> Reply:
        with self.lock:
            self.arrivals.append(time.monotonic())
            turn = len(self.arrivals)
        if turn % 2 == 1:
            reply: Reply = call("edit", path="big.py", edits=self.items[turn // 2])
            return reply
        # The agent has staged its edit; the finish waits until the user has typed.
        self.release.wait(120)
        self.release.clear()
        return Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "Renamed."}}])

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


async def _type(agent: AgentClient, path: Path, version: int) -> None:
    """The user types a line at the top; returns once the server has handled it."""
    start = types.Position(line=0, character=0)
    agent.change(path, version, types.Range(start=start, end=start), TYPED)
    # Messages are handled in order: once this is answered, the didChange was applied.
    await agent.request("agent/status", {})


async def test_status_and_cancel_are_answered_while_a_big_edit_is_built(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    text = big_module()
    root = make_project(tmp_path, {"main.py": "import big\n", "big.py": text})
    big = root / "big.py"
    script = Script()
    script.items = [renames(1, "renamed"), renames(2, "again")]
    scripted_model.script(script)
    async with agent_client(root, options(scripted_model.url)) as agent:
        main = await agent.open(root / "main.py")
        big_uri = await agent.open(big, text, version=1)
        params = {"textDocument": {"uri": main}, "instruction": "rename the handlers"}

        # Run 1: agent/status is asked again and again while the edit is built.
        run = asyncio.ensure_future(agent.request("agent/refactor", params, msg_id="run-1"))
        await agent.wait_for(lambda: script.count() >= 2, 120)  # the batch edit is staged
        await _type(agent, big, 2)
        idle = await idle_status_latency(agent)
        script.release.set()
        released = time.monotonic()
        answered = await statuses_while(agent, lambda: not run.done())
        result = await run
        finished = time.monotonic()
        build_seconds = finished - released
        during = [latency for sent, latency in answered if sent + latency < finished]
        assert len(during) >= 3, (build_seconds, answered)  # answered while the edit was built
        # The wait the build added to an answer: on the loop, that was the whole edit; off it,
        # the diff thread only competes for the GIL. Generous, as the build is short on a fast
        # machine (0.5 s) and a status is not free (it asks the model server twice).
        assert max(during) - idle < build_seconds / 2, (build_seconds, idle, during)

        # The edit is right: rebased onto the typing, addressed to the version typed into.
        (change,) = edits_for(result["edit"], big_uri)
        assert change["textDocument"]["version"] == 2
        expected = TYPED + text
        for item in script.items[0]:
            expected = expected.replace(item["old_text"], item["new_text"])
        assert apply_edits(TYPED + text, change["edits"]) == expected
        assert len(change["edits"]) == len(script.items[0])  # one small edit per rename

        # Run 2: cancelled while its edit is built, it ends at once, not when the edit would.
        cancelled = asyncio.ensure_future(agent.request("agent/refactor", params, msg_id="run-2"))
        await agent.wait_for(lambda: script.count() >= 4, 120)
        await _type(agent, big, 3)
        script.release.set()
        await asyncio.sleep(build_seconds / 10)
        sent = time.monotonic()
        agent.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="run-2"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(cancelled, 120)
        assert time.monotonic() - sent < build_seconds / 2, build_seconds
        status = await agent.request("agent/status", {})  # the server carries on
    assert status["reachable"] is True
