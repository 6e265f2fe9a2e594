"""Which files the agent may work on: inside the open workspace folders, or one file alone.

A file outside every folder the editor opened is refused before any model call (its text
must not reach the model, and its directory must not become the workspace). An editor with
no folder open may still work on a single file, with nothing around it visible. Real client,
real server process, scripted model over real HTTP; the CLI as a real process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_support import (
    CALC,
    NEW_BODY,
    OLD_BODY,
    AgentClient,
    agent_client,
    apply_edits,
    call,
    make_project,
    options,
    text_edits_for,
    uri,
)
from scripted_model import Reply, ScriptedModelServer

OUTSIDE = "API_TOKEN = 'outside-the-workspace-7f3a'\n"
SIBLING = "sibling-of-the-lone-file-91c2\n"
PARENT = "parent-folder-file-44d0\n"
NO_FOLDER: dict[str, Any] = {"root_uri": None, "root_path": None, "workspace_folders": None}


def refused(exc: pytest.ExceptionInfo[JsonRpcException]) -> tuple[str, str]:
    """The message and hint of a RequestFailed error."""
    assert exc.value.code == -32803  # RequestFailed
    data = exc.value.data
    hint = data.get("hint", "") if isinstance(data, dict) else getattr(data, "hint", "")
    return exc.value.message, str(hint)


def tool_results(request: dict[str, Any]) -> list[str]:
    """The tool results the model was sent, in order."""
    return [str(m["content"]) for m in request["messages"] if m["role"] == "tool"]


def tool_names(request: dict[str, Any]) -> set[str]:
    """The tools the model was offered."""
    return {t["function"]["name"] for t in request.get("tools") or []}


async def code_action_commands(agent: AgentClient, doc: str) -> list[dict[str, Any]]:
    """The commands of the code actions the server offers on ``doc`` (as JSON)."""
    cursor = types.Range(
        start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)
    )
    actions = await agent.raw_request(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=doc),
            range=cursor,
            context=types.CodeActionContext(diagnostics=[]),
        ),
    )
    return [a["command"] for a in actions]


# ---- outside the workspace folders: refused, nothing sent ------------------------------------


async def test_a_file_outside_the_workspace_folder_is_refused_before_any_model_call(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": CALC})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "settings.py").write_text(OUTSIDE)
    scripted_model.script([Reply(content="This file holds an API token.")])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(elsewhere / "settings.py")
        failures = []
        for method in ("agent/explain", "agent/refactor", "agent/generateTests"):
            with pytest.raises(JsonRpcException) as exc:
                await agent.request(method, {"textDocument": {"uri": doc}})
            failures.append(refused(exc))
        # The issue's own example: a file the editor never opened, by URI.
        with pytest.raises(JsonRpcException) as exc:
            await agent.request("agent/explain", {"textDocument": {"uri": "file:///etc/passwd"}})
        passwd_message, _ = refused(exc)
        command_results = [
            await agent.command(name, doc)
            for name in ("agent.explain", "agent.refactor", "agent.generateTests")
        ]
        # What the light bulb offers on that file runs the same commands: refused too.
        action_results = [
            await agent.command(c["command"], *c.get("arguments", []))
            for c in await code_action_commands(agent, doc)
        ]
        await agent.wait_for(lambda: len(agent.messages(types.MessageType.Error)) >= 6)
        shown = agent.messages(types.MessageType.Error)
    for message, hint in failures:
        assert str(elsewhere / "settings.py") in message
        assert str(root) in message and "outside the workspace folders" in message
        assert "Open the file's folder" in hint
    assert "/etc/passwd" in passwd_message and str(root) in passwd_message
    assert len(action_results) == 3
    for result in command_results + action_results:
        assert result["ok"] is False
        assert str(elsewhere / "settings.py") in result["error"]
    assert all("outside the workspace folders" in m for m in shown)
    # Nothing reached the model, and nothing was applied.
    assert scripted_model.requests == []
    assert agent.applied_edits == []


async def test_multi_root_uses_the_innermost_folder_holding_the_file(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": CALC, "top.py": "TOP = 1\n"})
    inner = root / "inner"
    inner.mkdir()
    (inner / "mod.py").write_text("def f():\n    return 1\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "lib.py").write_text("X = 1\n")
    folders = {
        "workspace_folders": [
            types.WorkspaceFolder(uri=uri(root), name="proj"),
            types.WorkspaceFolder(uri=uri(inner), name="inner"),
            types.WorkspaceFolder(uri=uri(other), name="other"),
        ]
    }
    listing = [call("ls", path="."), call("finish", summary="listed")]
    async with agent_client(root, options(scripted_model.url), folders=folders) as agent:
        scripted_model.script(list(listing))
        await agent.request("agent/explain", {"textDocument": {"uri": uri(inner / "mod.py")}})
        inner_ls = tool_results(scripted_model.requests[-1])[0]
        scripted_model.script(list(listing))
        await agent.request("agent/explain", {"textDocument": {"uri": uri(other / "lib.py")}})
        other_ls = tool_results(scripted_model.requests[-1])[0]
    assert inner_ls.split("\n") == ["mod.py"]  # inner's own root, not proj's
    assert other_ls.split("\n") == ["lib.py"]


@pytest.mark.parametrize("field", ["root_uri", "root_path"])
async def test_a_root_without_workspace_folders_is_the_workspace_too(
    scripted_model: ScriptedModelServer, tmp_path: Path, field: str
) -> None:
    root = make_project(tmp_path, {"calc.py": CALC})
    outside = tmp_path / "outside.py"
    outside.write_text(OUTSIDE)
    folders = {**NO_FOLDER, field: uri(root) if field == "root_uri" else str(root)}
    scripted_model.script([call("ls", path="."), call("finish", summary="fine")])
    async with agent_client(root, options(scripted_model.url), folders=folders) as agent:
        with pytest.raises(JsonRpcException) as exc:
            await agent.request("agent/explain", {"textDocument": {"uri": uri(outside)}})
        assert scripted_model.requests == []
        result = await agent.request(
            "agent/explain", {"textDocument": {"uri": uri(root / "calc.py")}}
        )
    message, _ = refused(exc)
    assert str(outside) in message and str(root) in message
    assert result["markdown"] == "fine"
    assert tool_results(scripted_model.requests[-1])[0].split("\n") == ["calc.py"]


# ---- no folder open: one file alone ----------------------------------------------------------


def lone_file(tmp_path: Path) -> Path:
    """tmp/loose/calc.py with a sibling file, and a file in the folder above."""
    loose = tmp_path / "loose"
    (loose / "sub").mkdir(parents=True)
    (loose / "calc.py").write_text(CALC)
    (loose / "x").write_text(SIBLING)
    (loose / "sub" / "deep.py").write_text(SIBLING)
    (tmp_path / "x").write_text(PARENT)
    return loose / "calc.py"


async def test_with_no_folder_open_the_tools_see_only_the_one_file(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    path = lone_file(tmp_path)
    scripted_model.script(
        [
            call("ls", path="."),
            call("read", path="../x"),
            call("read", path="x"),
            call("ls", path=".."),
            call("read", path=str(tmp_path / "loose")),
            call("find", pattern="**/*"),
            call("grep", pattern="sibling|parent|total"),
            call("read", path="sub/deep.py"),
            call("read", path="calc.py", limit=2),
            call("finish", summary="Looked around."),
        ]
    )
    async with agent_client(
        tmp_path / "editor", options(scripted_model.url), folders=NO_FOLDER
    ) as agent:
        doc = await agent.open(path)
        result = await agent.request("agent/explain", {"textDocument": {"uri": doc}})
    assert result["markdown"] == "Looked around."
    results = tool_results(scripted_model.requests[-1])
    ls_dot, up, sibling, ls_up, folder, found, grep, deep, own = results
    assert ls_dot == "calc.py"
    assert "outside the workspace" in up
    for refusal in (sibling, deep):
        assert "single file 'calc.py'" in refusal
    assert "outside the workspace" in ls_up
    assert "directory" in folder  # the folder is no file to read, and lists just calc.py
    assert found == "calc.py"
    assert grep.startswith("calc.py:") and "x:" not in grep and "deep" not in grep
    assert own.startswith("   1| def total(items):")
    everything = "\n".join(str(m["content"]) for m in scripted_model.requests[-1]["messages"])
    assert SIBLING.strip() not in everything and PARENT.strip() not in everything
    # An untrusted-like tool set: no bash (the sandbox would copy the folder around the file).
    offered = tool_names(scripted_model.requests[0])
    assert "bash" not in offered and {"read", "ls", "edit"} <= offered


async def test_with_no_folder_open_a_lone_file_can_be_refactored_but_gets_no_test_file(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    path = lone_file(tmp_path)
    scripted_model.script(
        [
            call("write", path="test_calc.py", content="from calc import total\n"),
            call("edit", path="calc.py", old_text=OLD_BODY, new_text=NEW_BODY),
            call("finish", summary="Used sum()."),
        ]
    )
    async with agent_client(
        tmp_path / "editor", options(scripted_model.url), folders=NO_FOLDER
    ) as agent:
        doc = await agent.open(path, version=3)
        result = await agent.request("agent/refactor", {"textDocument": {"uri": doc}})
        refactor_requests = len(scripted_model.requests)
        with pytest.raises(JsonRpcException) as exc:
            await agent.request("agent/generateTests", {"textDocument": {"uri": doc}})
    write_refused = tool_results(scripted_model.requests[-1])[0]
    assert "single file 'calc.py'" in write_refused
    (change,) = text_edits_for(result["edit"], doc)
    assert change["textDocument"]["version"] == 3
    assert apply_edits(CALC, change["edits"]) == CALC.replace(OLD_BODY, NEW_BODY)
    assert [c for c in result["edit"]["documentChanges"] if c.get("kind") == "create"] == []
    assert "worked on alone (no workspace folder), so no tests were run" in result["summary"]
    message, hint = refused(exc)
    assert "needs a workspace folder" in message and str(path) in message
    assert "Open the folder" in hint
    assert len(scripted_model.requests) == refactor_requests  # refused before any model call


async def test_with_no_folder_open_a_lone_file_under_a_secret_folder_is_refused(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "config").write_text("Host prod\n  IdentityFile ~/.ssh/prod\n")
    scripted_model.script([Reply(content="It configures ssh.")])
    async with agent_client(
        tmp_path / "editor", options(scripted_model.url), folders=NO_FOLDER
    ) as agent:
        doc = await agent.open(ssh / "config")
        with pytest.raises(JsonRpcException) as exc:
            await agent.request("agent/explain", {"textDocument": {"uri": doc}})
    message, _ = refused(exc)
    # Alone, its folder would make it plain "config": the ".ssh/" pattern still applies.
    assert "secret file" in message
    assert scripted_model.requests == []


# ---- the CLI ---------------------------------------------------------------------------------


def agentls(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentls", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def backend_args(server: ScriptedModelServer) -> list[str]:
    return ["--backend", "ollama", "--base-url", server.url, "--model", "gemma4:12b-it-qat"]


def test_cli_on_a_file_outside_the_current_directory_sees_that_file_alone(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    path = lone_file(tmp_path)
    cwd = make_project(tmp_path, {"pyproject.toml": "[project]\nname = 'p'\n"})
    scripted_model.script([call("ls", path="."), call("read", path="x"), Reply(content="ok")])
    proc = agentls("run", "explain", str(path), *backend_args(scripted_model), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "sees this file alone" in proc.stderr
    ls_dot, sibling = tool_results(scripted_model.requests[-1])
    assert ls_dot == "calc.py"
    assert "single file 'calc.py'" in sibling

    proc = agentls("run", "tests", str(path), *backend_args(scripted_model), cwd=cwd)
    assert proc.returncode == 2 and "generating tests needs the file's project" in proc.stderr


def test_cli_on_a_file_in_its_project_sees_the_project(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"pyproject.toml": "[project]\nname = 'p'\n", "calc.py": CALC})
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    scripted_model.script([call("ls", path="."), Reply(content="ok")])
    # Run from a subfolder: the project root (pyproject.toml) is still the workspace.
    proc = agentls("run", "explain", "mod.py", *backend_args(scripted_model), cwd=root / "pkg")
    assert proc.returncode == 0, proc.stderr
    assert "alone" not in proc.stderr
    assert tool_results(scripted_model.requests[-1])[0].split("\n") == [
        "calc.py",
        "pkg/",
        "pyproject.toml",
    ]
