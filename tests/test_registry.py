"""The task registry is the one declaration of each task: the public names it holds are the
contract's, the editor clients spell the same ones, and the real server advertises exactly
its commands and answers exactly its methods."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp.client import make_test_lsp_client

from agentls.lsp.progress import TEXT_DELTA
from agentls.skills.loader import TASKS as SKILL_TASKS
from agentls.tasks import registry
from agentls.tasks.registry import TASKS, TaskSpec
from lsp_support import closed_port, server_env, uri, vscode_capabilities

REPO = Path(__file__).resolve().parents[1]
PACKAGE_JSON = REPO / "client-vscode" / "package.json"
EXTENSION_TS = REPO / "client-vscode" / "src" / "extension.ts"
NVIM_PLUGIN = REPO / "lua" / "agentls"  # the Neovim plugin's modules

# DESIGN.md's public contract, written out once more on purpose: the registry must not drift.
CONTRACT = {
    "explain": ("explain", "agent/explain", "agent.explain", "Agent: Explain"),
    "refactor": ("refactor", "agent/refactor", "agent.refactor", "Agent: Refactor"),
    "generateTests": (
        "tests",
        "agent/generateTests",
        "agent.generateTests",
        "Agent: Generate tests",
    ),
}
CODE_ACTION_KINDS = {
    "explain": ("refactor.agent.explain", "source.agent.explain"),
    "refactor": ("refactor.rewrite", "source.agent.refactor"),
    "generateTests": ("refactor.agent.generateTests", "source.agent.generateTests"),
}
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


# ---- the registry itself ---------------------------------------------------------------------


def test_the_registry_holds_the_public_contract() -> None:
    assert [s.name for s in TASKS] == ["explain", "refactor", "generateTests"]
    for spec in TASKS:
        assert (spec.cli_word, spec.method, spec.command, spec.title) == CONTRACT[spec.name]
        # The clients tie progress to their run by this title (until they route by token).
        assert spec.progress_title == spec.title
        assert (spec.selection_kind, spec.file_kind) == CODE_ACTION_KINDS[spec.name]


def test_lookups_find_each_task_by_every_name_it_has() -> None:
    for spec in TASKS:
        assert registry.by_name(spec.name) is spec
        assert registry.by_method(spec.method) is spec
        assert registry.by_command(spec.command) is spec
        assert registry.by_cli_word(spec.cli_word) is spec
    assert registry.cli_words() == ["explain", "refactor", "tests"]
    with pytest.raises(KeyError):
        registry.by_method("agent/status")  # a request, but no task


@pytest.mark.parametrize("spec", TASKS, ids=lambda s: s.name)
def test_each_spec_is_consistent(spec: TaskSpec) -> None:
    assert spec.skills_task in SKILL_TASKS  # skill files can name it in `tasks: [...]`
    # Only a task that changes nothing has nothing to verify.
    assert (spec.verify_kind is None) == spec.read_only
    assert spec.task_text.startswith("Task: ")
    # The test file's path goes into the text exactly when the task writes one.
    assert ("{test_path}" in spec.task_text) == spec.test_file
    if not spec.read_only:
        assert spec.done_summary
    if spec.needs_folder:
        assert spec.activity
    assert callable(spec.run)


def test_the_skills_task_comes_from_the_spec_not_the_task_text() -> None:
    from agentls.tasks import common

    assert not hasattr(common, "task_kind") and not hasattr(common, "TASK_PREFIXES")
    assert [s.skills_task for s in TASKS] == ["explain", "refactor", "tests"]


def test_starting_the_server_does_not_import_the_agent_loop(tmp_path: Path) -> None:
    # The registry is imported at startup; the flows (and the loop) only when a task runs.
    import subprocess

    code = (
        "import sys, agentls.lsp.server, agentls.tasks.registry; "
        "print('agentls.agent.loop' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=server_env(tmp_path / "cache"),
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "False"


# ---- the clients spell the same names ---------------------------------------------------------


def _ts_object(source: str, name: str) -> str:
    match = re.search(rf"const {name}\b[^=]*=\s*\{{(.*?)\}}", source, re.S)
    assert match, f"{name} not found in extension.ts"
    return match.group(1)


def _lua_table(source: str, name: str) -> dict[str, str]:
    match = re.search(rf"local {name} = \{{(.*?)\}}", source, re.S)
    assert match, f"{name} not found in lua/agentls/"
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', match.group(1)))


def test_vscode_extension_commands_and_progress_titles_match_the_registry() -> None:
    source = EXTENSION_TS.read_text()
    cmd = dict(re.findall(r'(\w+):\s*"([^"]*)"', _ts_object(source, "CMD")))
    assert cmd == {s.name: s.command for s in TASKS}
    titles = dict(re.findall(r'\[CMD\.(\w+)\]:\s*"([^"]*)"', _ts_object(source, "TITLES")))
    assert titles == {s.name: s.progress_title for s in TASKS}
    # Any agent/* request the client makes is a registry method or agent/status.
    methods = set(re.findall(r'"(agent/\w+)"', source))
    # Beside the task requests: agent/status, and the streaming notification it handles.
    assert methods <= {s.method for s in TASKS} | {"agent/status", TEXT_DELTA}


def test_vscode_palette_commands_run_registry_tasks_under_their_titles() -> None:
    source = EXTENSION_TS.read_text()
    registered = dict(
        re.findall(r'register\("([\w.]+)",\s*\(\)\s*=>\s*this\.runOnEditor\(CMD\.(\w+)', source)
    )
    package = json.loads(PACKAGE_JSON.read_text())
    contributed = {c["command"]: c["title"] for c in package["contributes"]["commands"]}
    assert set(registered.values()) == {s.name for s in TASKS}  # every task is in the palette
    for command, name in registered.items():
        spec = registry.by_name(name)
        assert command in contributed, f"{command} is registered but not contributed"
        # "Agent: Explain Selection", "Agent: Generate Tests": the task's title, qualified.
        assert contributed[command].lower().startswith(spec.title.lower()), command


def test_neovim_plugin_commands_and_titles_match_the_registry() -> None:
    source = "\n".join(p.read_text() for p in sorted(NVIM_PLUGIN.glob("*.lua")))
    assert _lua_table(source, "COMMANDS") == {s.name: s.command for s in TASKS}
    assert _lua_table(source, "TITLES") == {s.name: s.progress_title for s in TASKS}
    defined = re.findall(r'define\("(\w+)",\s*"(\w+)"', source)
    assert {kind for _, kind in defined} == {s.name for s in TASKS}
    methods = set(re.findall(r'"(agent/\w+)"', source))
    # Beside the task requests: agent/status, and the streaming notification it handles.
    assert methods <= {s.method for s in TASKS} | {"agent/status", TEXT_DELTA}


# ---- the real server ----------------------------------------------------------------------


async def test_the_server_advertises_and_answers_exactly_the_registry(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "agentls", env=server_env(tmp_path / "cache"))
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=vscode_capabilities(),
                root_uri=uri(root),
                workspace_folders=[types.WorkspaceFolder(uri=uri(root), name=root.name)],
                # Nothing here reaches a model: a closed port makes any slip loud.
                initialization_options={
                    "backend": "ollama",
                    "baseUrl": f"http://127.0.0.1:{closed_port()}",
                },
            )
        )
        capabilities = result.capabilities
        assert capabilities.execute_command_provider is not None
        assert list(capabilities.execute_command_provider.commands) == [s.command for s in TASKS]
        provider = capabilities.code_action_provider
        assert isinstance(provider, types.CodeActionOptions)
        assert list(provider.code_action_kinds or []) == sorted(
            {k for s in TASKS for k in (s.selection_kind, s.file_kind)}
        )

        # Each method and command is there: bad params are InvalidParams, not MethodNotFound.
        for spec in TASKS:
            with pytest.raises(JsonRpcException) as method_error:
                await client.protocol.send_request_async(spec.method, {})
            assert method_error.value.code == INVALID_PARAMS, spec.method
            with pytest.raises(JsonRpcException) as command_error:
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command=spec.command, arguments=[])
                )
            assert command_error.value.code == INVALID_PARAMS, spec.command
            assert spec.title in str(command_error.value)
        with pytest.raises(JsonRpcException) as unknown:
            await client.protocol.send_request_async("agent/unknownTask", {})
        assert unknown.value.code == METHOD_NOT_FOUND
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        finally:
            await client.stop()
