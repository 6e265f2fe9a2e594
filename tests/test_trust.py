"""Workspace trust: an untrusted workspace gets no bash tool and its tests never run.

The editor says whether it trusts the folder (VS Code sends ``trustedWorkspace`` in the
initializationOptions). Any source saying untrusted wins; only the client restating its trust
(the user granted it) replaces the value it started with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentls.llm.factory import make_backend
from agentls.lsp.settings import SettingsState
from agentls.settings import Settings, load_settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from lsp_support import agent_client, call, options
from scripted_model import ScriptedModelServer

STATS = "def total(items):\n    return sum(items)\n"
TEST = "from stats import total\n\n\ndef test_total():\n    assert total([1]) == 1\n"


def project(root: Path) -> Path:
    (root / "stats.py").write_text(STATS)
    (root / "tests").mkdir()
    (root / "tests" / "test_stats.py").write_text(TEST)
    return root


def tool_names(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


def ctx_for(server: ScriptedModelServer, root: Path, **overrides: Any) -> TaskContext:
    settings = Settings(
        backend="ollama", base_url=server.url, model="gemma4:12b-it-qat", **overrides
    )
    return TaskContext(root=root, settings=settings, backend=make_backend(settings))


EDIT = {"path": "stats.py", "old_text": "sum(items)", "new_text": "sum(items, 0)"}


async def test_trusted_workspace_offers_bash_and_verifies(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([call("edit", **EDIT), call("finish", summary="Explicit start.")])
    ctx = ctx_for(scripted_model, root)
    result = await run_refactor(ctx, TaskRequest(root / "stats.py"))
    await ctx.backend.aclose()
    assert "bash" in tool_names(scripted_model.requests[0])
    assert result.verification is not None and result.verification.passed is True


async def test_untrusted_workspace_has_no_bash_and_runs_no_tests(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            call("bash", command="pytest -q"),
            call("edit", **EDIT),
            call("finish", summary="Explicit start."),
        ]
    )
    ctx = ctx_for(scripted_model, root, trusted_workspace=False)
    result = await run_refactor(ctx, TaskRequest(root / "stats.py"))
    await ctx.backend.aclose()

    first = scripted_model.requests[0]
    assert tool_names(first) == ["read", "ls", "find", "grep", "edit", "write", "finish"]
    refused = [m for m in scripted_model.requests[1]["messages"] if m["role"] == "tool"][-1]
    assert refused["content"].startswith("Error: unknown tool 'bash'")
    verification = result.verification
    assert verification is not None
    assert verification.passed is None and verification.command is None
    assert verification.attempts == 0
    assert "not trusted" in result.summary and "not verified" in result.summary
    assert len(result.changes) == 1  # the edit itself is still proposed


def test_any_source_saying_untrusted_wins() -> None:
    settings, _ = load_settings(
        {"trustedWorkspace": False},
        {"agent": {"trustedWorkspace": True}},
        {"trustedWorkspace": True},
    )
    assert settings.trusted_workspace is False
    settings, _ = load_settings({"trustedWorkspace": True}, {"agent": {"trustedWorkspace": False}})
    assert settings.trusted_workspace is False
    settings, _ = load_settings({})
    assert settings.trusted_workspace is True  # the CLI: the user runs it on their own files


def test_top_level_trust_counts_next_to_a_nested_agent_section() -> None:
    state = SettingsState()
    state.set_init_options({"trustedWorkspace": False, "agent": {"model": "m"}})
    assert state.settings.trusted_workspace is False and state.settings.model == "m"
    # A later pull that does not restate trust leaves the workspace untrusted.
    state.pulled = {"agent": {"model": "n"}}
    state.reload()
    assert state.settings.trusted_workspace is False and state.settings.model == "n"
    # The client restating trust (the user granted it in the editor) replaces the start value.
    state.pulled = {"agent": {"trustedWorkspace": True}}
    state.reload()
    assert state.settings.trusted_workspace is True
    # ...and any source saying false still wins over one saying true.
    state.pushed = {"agent": {"trustedWorkspace": False}}
    state.reload()
    assert state.settings.trusted_workspace is False


async def test_lsp_client_saying_untrusted_removes_bash(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    project(root)
    scripted_model.script([call("edit", **EDIT), call("finish", summary="Explicit start.")])
    init = {"agent": options(scripted_model.url), "trustedWorkspace": False}
    configuration = {"agent": {"maxTurns": 10}}  # the pulled section does not restate trust
    async with agent_client(root, init, configuration=configuration) as agent:
        doc = await agent.open(root / "stats.py")
        result = await agent.request("agent/refactor", {"textDocument": {"uri": doc}})
    assert "bash" not in tool_names(scripted_model.requests[0])
    assert result["verification"]["passed"] is None
    assert "not trusted" in result["verification"]["note"]
