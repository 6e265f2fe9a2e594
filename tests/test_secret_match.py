"""One secret-file matcher everywhere: user globs hide the same files from the tools, the
scratch copy (what a sandboxed command sees) and verification's copies.

The patterns cover the gitignore shapes that used to disagree between the tools (pathspec) and
the sandbox's own matcher: anchored (``/private.txt``), ``**`` (``**/secrets/*.json``),
negated (``*.cfg`` then ``!public.cfg``) and directory (``vault/``, where ``!vault/ok.txt``
cannot re-include a file of an excluded directory, as in git).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.bash_tool import make_bash_tool, sandbox_config
from agentls.agent.tools import build_tools
from agentls.agent.workspace import Workspace
from agentls.llm.types import ToolCall
from agentls.sandbox import Sandbox, detect_isolation
from agentls.secret_files import SecretFiles
from agentls.settings import Settings
from agentls.tasks.verify import SandboxTests

PATTERNS = ("/private.txt", "**/secrets/*.json", "vault/", "!vault/ok.txt", "*.cfg", "!public.cfg")
SECRET = [
    "private.txt",
    "secrets/a.json",
    "x/secrets/b.json",
    "vault/key.txt",
    "vault/deep/k2.txt",
    "vault/ok.txt",
    "app.cfg",
    "sub/app.cfg",
]
PUBLIC = [
    "sub/private.txt",
    "secrets/readme.md",
    "x/secrets/c.txt",
    "public.cfg",
    "sub/public.cfg",
    "src/app.py",
]
# Each file holds its own marker; a leak shows as a SECRET- line in what the model gets.
LINKS = {"alias.txt": "private.txt", "cfgdir": "vault"}  # innocent names, secret targets
PYTEST = "python -m pytest -q -s -p no:cacheprovider --disable-plugin-autoload"
WALK_TEST = (
    "import os\n\n\ndef test_walk():\n"
    "    for top, dirs, files in os.walk('.'):\n"
    "        dirs.sort()\n"
    "        for name in sorted(files):\n"
    "            path = os.path.join(top, name)\n"
    "            try:\n                print('FILE', path, open(path).read().strip())\n"
    "            except OSError as exc:\n                print('FILE', path, exc.strerror)\n"
)


def marker(rel: str) -> str:
    kind = "SECRET" if rel in SECRET else "PUBLIC"
    return f"{kind}-{rel.replace('/', '_')}"


def secret_project(root: Path) -> Path:
    """The project every test here works on (and test_sandbox_overlay's): each file holds its
    own SECRET- or PUBLIC- marker, plus the links and the walking test."""
    for rel in SECRET + PUBLIC:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(marker(rel) + "\n")
    for name, target in LINKS.items():
        os.symlink(target, root / name)
    (root / "test_walk.py").write_text(WALK_TEST)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return secret_project(tmp_path / "proj")


def settings(**extra: Any) -> Settings:
    return Settings(secret_files=PATTERNS, command_timeout=30, **extra)


# -- the matcher ------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", SECRET)
def test_secret_paths_match(rel: str) -> None:
    assert SecretFiles(PATTERNS).matches(rel)


@pytest.mark.parametrize("rel", PUBLIC)
def test_public_paths_do_not_match(rel: str) -> None:
    assert not SecretFiles(PATTERNS).matches(rel)


def test_directories_and_links(project: Path) -> None:
    secrets = SecretFiles(PATTERNS)
    assert secrets.matches("vault", is_dir=True)
    assert not secrets.matches("vault")  # a file named vault is not the directory vault/
    assert not secrets.matches("secrets", is_dir=True)
    assert secrets.is_secret(project / "alias.txt", project)
    assert secrets.is_secret(project / "cfgdir", project)
    assert secrets.is_secret(project / "cfgdir" / "key.txt", project)
    assert not secrets.is_secret(project / "src" / "app.py", project)
    assert not SecretFiles([]) and not SecretFiles([]).matches("private.txt")


# -- the tools --------------------------------------------------------------------------------


def tool(root: Path, name: str, **args: Any) -> str:
    ws = Workspace(root, secret_files=PATTERNS)
    result = asyncio.run(build_tools(ws).execute(ToolCall(name=name, arguments=args)))
    return result.output


@pytest.mark.parametrize("rel", [*SECRET, *LINKS, "cfgdir/key.txt"])
def test_the_tools_refuse_secret_files(project: Path, rel: str) -> None:
    assert tool(project, "read", path=rel).endswith(
        "is a secret file; agentls does not read or write it (agent.secretFiles)"
    )


@pytest.mark.parametrize("rel", PUBLIC)
def test_the_tools_read_public_files(project: Path, rel: str) -> None:
    assert marker(rel) in tool(project, "read", path=rel)


def test_ls_find_and_grep_show_no_secret_file(project: Path) -> None:
    found = tool(project, "find", pattern="**/*").splitlines()
    assert sorted(found) == sorted([*PUBLIC, "test_walk.py"])
    assert tool(project, "grep", pattern="SECRET-") == "No matches for 'SECRET-'."
    assert sorted(tool(project, "grep", pattern="PUBLIC").splitlines()) == sorted(
        f"{rel}:1: {marker(rel)}" for rel in PUBLIC
    )
    listing = tool(project, "ls").splitlines()
    for hidden in ("private.txt", "app.cfg", "vault/", "alias.txt", "cfgdir"):
        assert hidden not in listing
    assert "public.cfg" in listing and "secrets/" in listing
    assert tool(project, "ls", path="secrets").splitlines() == ["readme.md"]


# -- the scratch copy: what sandboxed commands see ------------------------------------------

needs_isolation = pytest.mark.skipif(
    not detect_isolation().network, reason="commands are refused without network isolation"
)


def assert_only_public(output: str, *, staged: tuple[str, ...] = ()) -> None:
    assert "SECRET-" not in output, output
    for rel in PUBLIC:
        if rel not in staged:
            assert marker(rel) in output, (rel, output)


async def test_the_scratch_copy_leaves_secret_files_out(project: Path) -> None:
    config = sandbox_config(settings())
    async with Sandbox(project, config) as sandbox:
        await sandbox.sync({})
        copied = sorted(
            p.relative_to(sandbox.work).as_posix()
            for p in sandbox.work.rglob("*")
            if p.is_file() or p.is_symlink()
        )
        assert sandbox.copy_stats.skipped_secrets == len(SECRET) + len(LINKS)
    assert copied == sorted([*PUBLIC, "test_walk.py"])


async def test_a_secret_file_staged_then_unstaged_does_not_come_back(project: Path) -> None:
    async with Sandbox(project, sandbox_config(settings())) as sandbox:
        await sandbox.sync({"x/secrets/b.json": "{}", "vault/new.txt": "model text"})
        assert (sandbox.work / "x/secrets/b.json").read_text() == "{}"
        await sandbox.sync({})
        assert not (sandbox.work / "x/secrets/b.json").exists()
        assert not (sandbox.work / "vault/new.txt").exists()


@needs_isolation
async def test_sandboxed_cat_ls_and_a_test_see_only_public_files(project: Path) -> None:
    """Through the bash tool, as the model calls it."""
    user = settings(allowed_commands=("cat", "ls -R", "python -m pytest"))
    ws = Workspace(project, secret_files=user.secret_files)
    bash = make_bash_tool(ws, user)
    tools = build_tools(ws, extra=[bash])
    try:

        async def run(command: str) -> str:
            result = await tools.execute(ToolCall(name="bash", arguments={"command": command}))
            return result.output

        listing = await run("ls -R")
        top = listing.split(".:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert sorted(top) == ["public.cfg", "secrets", "src", "sub", "test_walk.py", "x"]
        for name in ("app.cfg", "a.json", "b.json", "vault", "key.txt", "alias.txt", "cfgdir"):
            assert name not in listing, listing
        cat = await run("cat " + " ".join([*SECRET, *LINKS, *PUBLIC]))
        assert_only_public(cat)
        assert_only_public(await run(f"{PYTEST} test_walk.py"))
    finally:
        await bash.aclose()


@needs_isolation
@pytest.mark.parametrize("command", [f"{PYTEST} test_walk.py", "python -m pytest -q -s"])
async def test_verification_copies_see_only_public_files(project: Path, command: str) -> None:
    """The test run of verified edits: in the bash tool's copy when the command is one the
    model may run, else in a copy of its own; neither holds a secret file."""
    user = settings(test_command=command, allowed_commands=(PYTEST,))
    ws = Workspace(project, secret_files=user.secret_files)
    ws.stage("src/app.py", "print('staged')\n")
    bash = make_bash_tool(ws, user)
    runner = SandboxTests(bash, ws, user)
    try:
        result = await runner.run(command, 60)
        assert (runner._own is None) == command.startswith(PYTEST)  # which copy ran it
        assert result.exit_code == 0, result.output
        assert "FILE ./src/app.py print('staged')" in result.output
        assert_only_public(result.output, staged=("src/app.py",))
    finally:
        await runner.aclose()
        await bash.aclose()
