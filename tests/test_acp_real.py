"""`agentls acp` against a real model server: llama-server with Gemma 3 270M (the demo model),
driven by the SDK's client side. The model is a tiny base model, so this checks what holds
whatever it writes: the prompt ends, the answer streams as the model's own words, and the
usage comes from the server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from acp.schema import UsageUpdate

from acp_support import agent_env, file_link, running_agent
from real_model import RealModel

# The session's llama-server may be built on first use (minutes).
pytestmark = pytest.mark.timeout(900)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inventory.py"


async def test_explain_through_acp_with_a_real_model(real_model: RealModel, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(EXAMPLE, root / "inventory.py")
    env = agent_env(real_model.url, backend="openai", model=real_model.model)
    env["AGENTLS_SETTINGS"] = json.dumps(real_model.settings(maxTurns=3))
    async with running_agent(root, tmp_path, env) as agent:
        # A busy 2-core machine runs the tiny model at a few tokens a second.
        response = await agent.prompt("/explain ", file_link(root / "inventory.py"), timeout=600)
        text = agent.client.text()
        usage = agent.client.of(UsageUpdate)
    assert response.stop_reason in ("end_turn", "max_turn_requests")
    answer = text.split("\n\n> **agentls:**")[0].strip()
    assert answer and "gave no explanation" not in answer and "could not finish" not in answer
    assert usage and 0 < usage[-1].used < usage[-1].size <= 8192
    assert (root / "inventory.py").read_bytes() == EXAMPLE.read_bytes()
