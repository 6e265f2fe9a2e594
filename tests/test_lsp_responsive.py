"""A long search does not freeze the language server: while the model's grep runs over a
20,000-file tree, `agent/status` is answered and `$/cancelRequest` ends the run (issue 13).

The server runs with ``AGENTLS_RIPGREP=off``, so the grep is the pure-Python walk and takes
long enough to watch (seconds); ripgrep's path runs in the same worker thread. Bounds are
relative to the grep's own duration, never absolute: a busy machine slows both alike.
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

from lsp_support import agent_client, call, idle_status_latency, options, statuses_while
from scripted_model import Reply, ScriptedModelServer

FILES = 20_000
CALC = "def total(items):\n    return sum(items)\n"


def big_tree(root: Path) -> None:
    """20,000 small files in 400 folders; every 200th holds the needle."""
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    for d in range(FILES // 50):
        folder = root / f"pkg{d:03d}"
        folder.mkdir()
        for i in range(50):
            n = d * 50 + i
            marker = "NEEDLE\n" if n % 200 == 0 else ""
            (folder / f"m{n:05d}.py").write_text(f"x = {n}\n{marker}")


class Script:
    """Replies grep, then finish, for each run; remembers when each request arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.bodies.append(body)
            turn = len(self.arrivals)
        if turn % 2 == 1:
            reply: Reply = call("grep", pattern="NEEDLE")
            return reply
        return Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "Looked."}}])

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


async def test_status_and_cancel_are_answered_during_a_long_grep(
    scripted_model: ScriptedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLS_RIPGREP", "off")
    root = tmp_path / "proj"
    big_tree(root)
    script = Script()
    scripted_model.script(script)
    async with agent_client(root, options(scripted_model.url)) as agent:
        # An unsaved buffer: grep finds its text, not the disk's (the editor lists what is open).
        doc = await agent.open(root / "calc.py", CALC.replace("sum(items)", "sum(items)  # NEEDLE"))
        params = {"textDocument": {"uri": doc}, "instruction": "look around"}
        idle = await idle_status_latency(agent)

        # Run 1: the grep runs between the model's first and second request; agent/status is
        # asked again and again meanwhile.
        run = asyncio.ensure_future(agent.request("agent/explain", params, msg_id="run-1"))
        await agent.wait_for(lambda: script.count() >= 1, 60)
        answered = await statuses_while(agent, lambda: script.count() < 2)
        await asyncio.wait_for(run, 120)
        result = str(script.bodies[1]["messages"][-1]["content"])
        assert result.startswith("calc.py:2: return sum(items)  # NEEDLE\npkg000/m00000.py:2:")
        grep_seconds = script.arrivals[1] - script.arrivals[0]
        during = [latency for sent, latency in answered if sent + latency < script.arrivals[1]]
        assert len(during) >= 3, (grep_seconds, answered)  # answered while the grep ran
        # The wait the grep added to an answer: on the loop, that was the whole grep.
        assert max(during) - idle < grep_seconds / 3, (grep_seconds, idle, during)

        # Run 2: cancelled in the middle of its grep, it ends at once, not when the grep would.
        cancelled = asyncio.ensure_future(agent.request("agent/explain", params, msg_id="run-2"))
        await agent.wait_for(lambda: script.count() >= 3, 60)
        await asyncio.sleep(grep_seconds / 5)
        sent = time.monotonic()
        agent.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="run-2"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(cancelled, 60)
        assert time.monotonic() - sent < grep_seconds / 2, grep_seconds
        status = await agent.request("agent/status", {})  # the server carries on
    assert status["reachable"] is True
    assert script.count() == 3  # the cancelled run never asked the model again
