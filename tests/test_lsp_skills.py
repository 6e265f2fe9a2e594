"""Skills through the language server: what reaches the model, what agent/status and the
stats show, and how a broken skill file is reported."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from agentls.skills import BUILTIN_DIR
from lsp_support import agent_client, call, options
from scripted_model import ScriptedModelServer

CALC = "def total(items):\n    t = 0\n    for x in items:\n        t += x\n    return t\n"

HOUSE_SKILL = """\
---
name: house-style
description: Our naming rules.
tasks: [refactor]
languages: [python]
keywords: [house]
priority: 90
---
HOUSE STYLE: name accumulators `acc`, never `t`.
"""


async def test_chosen_skill_reaches_the_model_after_the_unchanged_prefix(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = tmp_path / "proj"
    (root / ".agentls" / "skills").mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    house = root / ".agentls" / "skills" / "house-style.md"
    house.write_text(HOUSE_SKILL)
    broken = root / ".agentls" / "skills" / "broken.md"
    broken.write_text("---\nname: broken\ndescription: x\ntasks: [deploy]\n---\nText.\n")
    scripted_model.script(
        [call("finish", summary="Nothing to do."), call("finish", summary="Done.")]
    )

    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        params = {"textDocument": {"uri": doc}}
        without = await agent.request("agent/refactor", {**params, "instruction": "tidy up"})
        with_skill = await agent.request(
            "agent/refactor", {**params, "instruction": "apply the house naming rules"}
        )
        status = await agent.request("agent/status", {})
        await agent.wait_for(
            lambda: any(str(broken) in m for m in agent.messages(types.MessageType.Warning))
        )
        warnings = [m for m in agent.messages(types.MessageType.Warning) if str(broken) in m]

    first, second = scripted_model.requests
    # The fixed prefix (system prompt and tool schemas) is the same with and without the skill.
    assert first["messages"][0] == second["messages"][0]
    assert first["messages"][0]["role"] == "system"
    assert first["tools"] == second["tools"]
    assert "HOUSE STYLE" not in first["messages"][0]["content"] + str(first["tools"])
    # The skill's text is in the first user message, before the file.
    assert "HOUSE STYLE" not in first["messages"][1]["content"]
    message = second["messages"][1]
    assert message["role"] == "user"
    assert "HOUSE STYLE: name accumulators `acc`, never `t`." in message["content"]
    assert message["content"].index("HOUSE STYLE") < message["content"].index("File calc.py")

    # Each result's stats name the skills it used.
    assert without["stats"]["skills"] == ["edit-tool-for-small-models", "python"]
    assert with_skill["stats"]["skills"] == [
        "house-style",
        "edit-tool-for-small-models",
        "python",
    ]
    assert status["lastStats"]["skills"] == with_skill["stats"]["skills"]

    # agent/status lists every loaded skill and where it came from.
    listed = {s["name"]: s for s in status["skills"]}
    assert listed["house-style"]["source"] == "workspace"
    assert listed["house-style"]["path"] == str(house)
    assert listed["house-style"]["tokens"] > 0
    assert listed["pytest"]["source"] == "builtin"
    assert Path(listed["pytest"]["path"]).parent == BUILTIN_DIR
    assert "broken" not in listed

    # The broken file is named in one warning (not one per request) and in agent/status.
    assert len(warnings) == 1 and "deploy" in warnings[0]
    assert any(str(broken) in w for w in status["skillWarnings"])


async def test_skills_budget_zero_sends_no_guidance(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    scripted_model.script([call("finish", summary="Done.")])
    async with agent_client(root, options(scripted_model.url, skillsBudget=0)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request("agent/generateTests", {"textDocument": {"uri": doc}})
    assert result["stats"]["skills"] == []
    assert "Guidance" not in scripted_model.requests[0]["messages"][1]["content"]
