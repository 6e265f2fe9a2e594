"""Path confinement and secret files, through every file tool the model has.

Each case is a tool call the way a model sends it, run through the registry, so what is
checked is what the model would get back: an error naming the reason, never the content.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.tools import ToolRegistry, build_tools
from agentls.agent.workspace import ToolError, Workspace
from agentls.llm.types import ToolCall
from agentls.settings import DEFAULT_SECRET_FILES, load_settings

OUTSIDE_SECRET = "OUTSIDE-SECRET-4f1c"
ENV_SECRET = "ENV-SECRET-77aa"
KEY_SECRET = "KEY-SECRET-9b02"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """tmp/outside/secret.txt next to tmp/root, the workspace, with secrets and symlinks out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{OUTSIDE_SECRET}\n")
    root = tmp_path / "root"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 1\n")
    (root / ".env").write_text(f"TOKEN={ENV_SECRET}\n")
    (root / ".env.local").write_text(f"TOKEN={ENV_SECRET}\n")
    (root / ".env.example").write_text("TOKEN=changeme\n")
    (root / "deploy").mkdir()
    (root / "deploy" / "id_rsa").write_text(f"-----BEGIN {KEY_SECRET}-----\n")
    (root / "deploy" / "server.pem").write_text(f"{KEY_SECRET}\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f"[remote]\n  url = https://{KEY_SECRET}@host\n")
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / ".env", root / "settings.cfg")  # an innocent name for a secret
    return root


def run(root: Path, name: str, workspace: Workspace | None = None, **args: Any) -> str:
    """Run one tool call through the registry; returns what the model would read."""
    ws = workspace or Workspace(root)
    registry: ToolRegistry = build_tools(ws)
    result = asyncio.run(registry.execute(ToolCall(name=name, arguments=args)))
    return result.output


ESCAPES = [
    "../outside/secret.txt",
    "src/../../outside/secret.txt",
    "{outside}/secret.txt",  # absolute
    "~/../../{outside}/secret.txt",
    "link.txt",  # symlink to a file outside
    "linkdir/secret.txt",  # through a symlinked directory
    "%2e%2e/outside/secret.txt",
    "..%2foutside%2fsecret.txt",
    "%252e%252e%252foutside/secret.txt",  # double-encoded
    "..\\outside\\secret.txt",
    "file://{outside}/secret.txt",
    "\uff0e\uff0e/outside/secret.txt",  # fullwidth dots
    "..\u2215outside\u2215secret.txt",  # division slash
    "$HOME/../{outside}/secret.txt",
]


def _fill(path: str, root: Path) -> str:
    return path.replace("{outside}", str(root.parent / "outside"))


@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.parametrize("tool", ["read", "ls", "grep", "edit", "write"])
def test_every_tool_refuses_paths_that_leave_the_root(layout: Path, tool: str, path: str) -> None:
    path = _fill(path, layout)
    args: dict[str, Any] = {"path": path}
    if tool == "grep":
        args["pattern"] = "SECRET"
    if tool == "edit":
        args.update(old_text=OUTSIDE_SECRET, new_text="pwned")
    if tool == "write":
        args["content"] = "pwned"
    out = run(layout, tool, **args)
    assert out.startswith("Error: ") and "outside the workspace" in out
    assert OUTSIDE_SECRET not in out
    assert (layout.parent / "outside" / "secret.txt").read_text() == f"{OUTSIDE_SECRET}\n"


def test_nul_byte_is_refused(layout: Path) -> None:
    for path in ["src/app.py\x00.txt", "src/app.py%00"]:
        out = run(layout, "read", path=path)
        assert "NUL byte" in out


def test_file_uri_inside_the_root_reads_the_file(layout: Path) -> None:
    assert "def main" in run(layout, "read", path=(layout / "src" / "app.py").as_uri())


def test_find_and_grep_do_not_leave_the_root(layout: Path) -> None:
    out = run(layout, "grep", pattern="SECRET")
    assert out == "No matches for 'SECRET'."
    found = run(layout, "find", pattern="**/*")
    assert "secret.txt" not in found and "linkdir" not in found and "link.txt" not in found
    assert "src/app.py" in found
    listing = run(layout, "ls")
    assert "linkdir" not in listing and "link.txt" not in listing


SECRETS = [
    ".env",
    ".env.local",
    "deploy/id_rsa",
    "deploy/server.pem",
    ".git/config",
    "settings.cfg",
]


@pytest.mark.parametrize("path", SECRETS)
def test_secret_files_cannot_be_read_edited_or_written(layout: Path, path: str) -> None:
    before = (layout / path).read_text()
    for tool, extra in [
        ("read", {}),
        ("grep", {"pattern": "."}),
        ("edit", {"old_text": "TOKEN", "new_text": "X"}),
        ("write", {"content": "X"}),
    ]:
        out = run(layout, tool, path=path, **extra)
        assert out == f"Error: '{path}' is a secret file; agentls does not read or write it " + (
            "(agent.secretFiles)"
        )
    assert (layout / path).read_text() == before


def test_new_secret_files_cannot_be_created(layout: Path) -> None:
    out = run(layout, "write", path="config/.env.production", content="A=1")
    assert "is a secret file" in out
    assert not (layout / "config").exists()


def test_secret_files_are_hidden_from_ls_find_and_grep(layout: Path) -> None:
    listing = run(layout, "ls").splitlines()
    assert listing == [".env.example", "deploy/", "src/"]
    assert run(layout, "ls", path="deploy") == "(deploy is empty)"
    assert "is a secret file" in run(layout, "ls", path=".git")
    found = run(layout, "find", pattern="*")
    assert found.splitlines() == [".env.example", "src/app.py"]
    grep = run(layout, "grep", pattern="SECRET|TOKEN")
    assert ENV_SECRET not in grep and KEY_SECRET not in grep
    assert grep == ".env.example:1: TOKEN=changeme"


def test_secret_files_setting_can_narrow_or_disable_the_list(layout: Path) -> None:
    settings, warnings = load_settings({"agent": {"secretFiles": [".env"]}})
    assert warnings == []
    ws = Workspace(layout, secret_files=settings.secret_files)
    assert "is a secret file" in run(layout, "read", ws, path=".env")
    assert ENV_SECRET in run(layout, "read", ws, path=".env.local")

    settings, _ = load_settings({"agent": {"secretFiles": []}})
    ws = Workspace(layout, secret_files=settings.secret_files)
    assert KEY_SECRET in run(layout, "read", ws, path="deploy/id_rsa")
    # Disabling secrets does not open the way out of the root.
    assert "outside the workspace" in run(layout, "read", ws, path="link.txt")


def test_secret_files_setting_can_widen_the_list(layout: Path) -> None:
    settings, _ = load_settings({"secretFiles": [*DEFAULT_SECRET_FILES, "src/app.py"]})
    ws = Workspace(layout, secret_files=settings.secret_files)
    assert "is a secret file" in run(layout, "read", ws, path="src/app.py")


def test_default_list_covers_the_usual_suspects(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    for name in [
        ".env",
        "app/.env.production",
        "certs/tls.key",
        "home/.ssh/id_ed25519",
        "id_ecdsa.pub",
        ".git/HEAD",
        "vendor/lib/.git",
        ".netrc",
        ".npmrc",
        ".pypirc",
        ".aws/credentials",
        "store.p12",
    ]:
        assert ws.is_secret(tmp_path / name), name
    for name in [".env.example", "src/keys.py", ".gitignore", "environment.py", "README.md"]:
        assert not ws.is_secret(tmp_path / name), name


def test_a_root_with_percent_or_dollar_in_its_name_still_works(tmp_path: Path) -> None:
    root = tmp_path / "my%20project $HOME"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    ws = Workspace(root)
    assert ws.read_text(str(root / "a.py")) == "x = 1\n"
    assert ws.read_text("a.py") == "x = 1\n"
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.resolve("%2e%2e/x")


def test_a_named_pipe_is_refused_as_not_a_regular_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    os.mkfifo(root / "pipe")
    out = run(root, "read", path="pipe")
    assert out.startswith("Error: 'pipe' is not a regular file"), out
    assert "not found" not in out
    # Searching past it neither blocks nor mentions it.
    assert run(root, "grep", pattern="x") == "a.py:1: x = 1"
