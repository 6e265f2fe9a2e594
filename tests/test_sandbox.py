"""The sandbox: scratch copy with staged edits, incremental sync, cleanup, limits, isolation.

Commands really run (pytest inside the sandbox, plugin autoload off so each takes ~0.2 s).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentls import sandbox as sandbox_module
from agentls.sandbox import (
    NO_NETWORK,
    CommandRefused,
    Isolation,
    Sandbox,
    SandboxConfig,
    SandboxError,
    check_command,
    detect_isolation,
    scrubbed_env,
)
from agentls.sandbox.environment import toolchain_paths
from agentls.sandbox.isolation import probe
from agentls.sandbox.overlay import overlay_possible
from agentls.settings import DEFAULT_ALLOWED_COMMANDS, Settings

PYTEST = "python -m pytest -q -s -p no:cacheprovider --disable-plugin-autoload"

CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "test_calc.py").write_text(TEST_CALC)
    return root


ISOLATED = detect_isolation().network
OVERLAY = overlay_possible(detect_isolation()) is None
# The view commands get: the overlay where the machine allows it, and the scratch copy (the
# fallback) everywhere; the tests of staged edits run on both.
MECHANISMS = [
    pytest.param("overlay", marks=pytest.mark.skipif(not OVERLAY, reason="no overlay view here")),
    "copy",
]


@pytest.fixture(params=MECHANISMS)
def mechanism(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fast(**overrides: object) -> SandboxConfig:
    values: dict[str, object] = {"timeout": 10.0, "kill_grace": 0.2}
    values.update(overrides)
    return SandboxConfig.model_validate(values)


def processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains ``marker``."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


async def wait_gone(marker: str, seconds: float = 3.0) -> list[int]:
    """The processes still carrying ``marker`` after up to ``seconds`` (reaping takes a moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := processes_with(marker)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return left


# -- the scratch copy and staged edits ---------------------------------------------------


async def test_pytest_runs_on_the_copy_with_the_staged_edit_and_user_files_stay(
    project: Path, mechanism: str
) -> None:
    (project / "test_writes.py").write_text(
        "from pathlib import Path\n\n\ndef test_write():\n"
        "    Path('calc.py').write_text('broken')\n    Path('made.txt').write_text('x')\n"
    )
    async with Sandbox(project, fast(), mechanism=mechanism) as sandbox:
        await sandbox.sync({"calc.py": "def add(a, b):\n    return a - b\n"})
        result = await sandbox.run(f"{PYTEST} test_calc.py test_writes.py")
        assert sandbox.mechanism == mechanism
    assert result.exit_code == 1
    assert "assert -1 == 5" in result.output
    assert "1 failed, 1 passed" in result.output
    # The user's files are as they were; what the command wrote stayed in the copy.
    assert (project / "calc.py").read_text() == CALC
    assert not (project / "made.txt").exists()
    assert sorted(p.name for p in project.iterdir()) == [
        "calc.py",
        "test_calc.py",
        "test_writes.py",
    ]


async def test_sync_is_incremental_and_restores_unstaged_files(
    project: Path, mechanism: str
) -> None:
    async with Sandbox(project, fast(), mechanism=mechanism) as sandbox:
        assert await sandbox.sync({"calc.py": "def add(a, b):\n    return 0\n"}) == 1
        work = sandbox.work
        calc_inode = (work / "calc.py").stat().st_ino
        test_stat = (work / "test_calc.py").stat()

        new_test = "from calc import add\n\n\ndef test_zero():\n    assert add(1, 1) == 0\n"
        staged = {"calc.py": "def add(a, b):\n    return 0\n", "test_new.py": new_test}
        assert await sandbox.sync(staged) == 1  # only the new file is written
        assert (work / "calc.py").stat().st_ino == calc_inode
        assert (work / "test_calc.py").stat().st_mtime_ns == test_stat.st_mtime_ns
        assert (work / "test_calc.py").stat().st_ino == test_stat.st_ino

        # A second run sees the newly staged test (and the first staged edit).
        result = await sandbox.run(f"{PYTEST} test_new.py")
        assert result.exit_code == 0, result.output
        assert "1 passed" in result.output

        # Unstaged again: calc.py comes back from the workspace, the new file goes away.
        assert await sandbox.sync({}) == 2
        assert (work / "calc.py").read_text() == CALC
        assert not (work / "test_new.py").exists()
        assert sandbox.files_written == 4


async def test_copy_respects_gitignore_skips_secrets_caches_and_big_files(
    project: Path, mechanism: str
) -> None:
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text("build/\n*.log\n")
    (project / "build").mkdir()
    (project / "build" / "out.py").write_text("x = 1\n")
    (project / "run.log").write_text("log\n")
    (project / ".env").write_text("API_TOKEN=s3cr3t\n")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "calc.cpython-311.pyc").write_bytes(b"\0")
    (project / "data").mkdir()
    (project / "data" / "small.json").write_text("{}")
    (project / "data" / "huge.bin").write_bytes(b"\0" * 2_000_000)
    config = fast(exclude=Settings().secret_files, max_file_bytes=1_000_000)
    async with Sandbox(project, config, mechanism=mechanism) as sandbox:
        await sandbox.sync({})
        copied = sorted(
            p.relative_to(sandbox.work).as_posix() for p in sandbox.work.rglob("*") if p.is_file()
        )
        stats = sandbox.copy_stats
    if mechanism == "copy":
        assert copied == [".gitignore", "calc.py", "data/small.json", "test_calc.py"]
        assert stats.skipped_big == ["data/huge.bin"]
    else:  # nothing is copied, so a big file costs nothing: it is shown as it is
        assert copied == [
            ".gitignore",
            "calc.py",
            "data/huge.bin",
            "data/small.json",
            "test_calc.py",
        ]
        assert stats.skipped_big == []
    assert stats.skipped_secrets == 1  # .env (not ignored by git, so listed, then left out)


async def test_an_unstaged_secret_file_is_not_restored_into_the_copy(
    project: Path, mechanism: str
) -> None:
    (project / ".env").write_text("API_TOKEN=s3cr3t\n")
    config = fast(exclude=Settings().secret_files)
    async with Sandbox(project, config, mechanism=mechanism) as sandbox:
        await sandbox.sync({".env": "X=1\n"})
        assert (sandbox.work / ".env").read_text() == "X=1\n"
        await sandbox.sync({})
        assert not (sandbox.work / ".env").exists()


async def test_copy_refuses_staged_paths_that_leave_it(project: Path, mechanism: str) -> None:
    async with Sandbox(project, fast(), mechanism=mechanism) as sandbox:
        for bad in ("../evil.py", "/etc/evil.py", "a/../../evil.py"):
            with pytest.raises(SandboxError, match="outside"):
                await sandbox.sync({bad: "x"})
    assert not (project.parent / "evil.py").exists()


# -- cleanup -------------------------------------------------------------------------------


async def test_copy_is_removed_at_the_end_and_cannot_be_reused(
    project: Path, mechanism: str
) -> None:
    sandbox = Sandbox(project, fast(), mechanism=mechanism)
    assert sandbox.path is None  # nothing is copied until the first use
    await sandbox.sync({})
    path = sandbox.path
    assert path is not None and (sandbox.work / "calc.py").is_file()
    await sandbox.aclose()
    assert not path.exists()
    with pytest.raises(SandboxError, match="closed"):
        await sandbox.run(f"{PYTEST} test_calc.py")
    await sandbox.aclose()  # twice is fine


async def test_cancelled_run_kills_the_command_and_removes_the_copy(project: Path) -> None:
    marker = f"agentls-cancel-{uuid.uuid4().hex}"
    (project / "test_sleep.py").write_text(
        "import subprocess, sys, time\n\n\ndef test_sleep():\n"
        "    code = 'import time; time.sleep(600)'\n"
        f"    subprocess.Popen([sys.executable, '-c', code, '{marker}'])\n"
        "    time.sleep(600)\n"
    )
    seen: list[Path] = []

    async def agent_run() -> None:
        async with Sandbox(project, fast(timeout=60)) as sandbox:
            await sandbox.sync({})
            assert sandbox.path is not None
            seen.append(sandbox.path)
            await sandbox.run(f"{PYTEST} test_sleep.py")

    task = asyncio.create_task(agent_run())
    for _ in range(200):
        if processes_with(marker):
            break
        await asyncio.sleep(0.05)
    assert processes_with(marker), "the command did not start"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(marker) == []
    assert not seen[0].exists()


async def test_terminate_all_kills_running_commands_and_removes_every_copy(
    project: Path,
) -> None:
    """What a stop signal does first: synchronous, for every live sandbox at once."""
    marker = f"agentls-terminate-{uuid.uuid4().hex}"
    (project / "test_sleep.py").write_text(
        "import subprocess, sys, time\n\n\ndef test_sleep():\n"
        "    code = 'import time; time.sleep(600)'\n"
        f"    subprocess.Popen([sys.executable, '-c', code, '{marker}'])\n"
        "    time.sleep(600)\n"
    )
    idle = Sandbox(project, fast())
    busy = Sandbox(project, fast(timeout=60))
    await idle.sync({})
    run = asyncio.create_task(busy.run(f"{PYTEST} test_sleep.py"))
    for _ in range(200):
        if processes_with(marker):
            break
        await asyncio.sleep(0.05)
    assert processes_with(marker), "the command did not start"
    paths = [s.path for s in (idle, busy)]
    assert set(sandbox_module.live_sandboxes()) >= {idle, busy}
    assert sandbox_module.terminate_all() >= 2
    result = await run
    assert result.exit_code is not None and result.exit_code < 0  # killed by a signal
    assert await wait_gone(marker) == []
    assert all(p is not None and not p.exists() for p in paths)
    assert idle not in sandbox_module.live_sandboxes()
    with pytest.raises(SandboxError, match="closed"):
        await idle.run(f"{PYTEST} test_calc.py")


async def test_closing_during_the_first_copy_leaves_nothing(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(300):
        (project / f"mod_{index}.py").write_text("x = 1\n")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    copy2 = shutil.copy2

    def slow_copy(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.01)  # a big workspace: the copy is still going when the signal comes
        return copy2(*args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", slow_copy)
    sandbox = Sandbox(project, fast(), mechanism="copy")
    sync = asyncio.create_task(sandbox.sync({}))
    while not list(temp.glob("agentls-sandbox-*/work/*")):
        await asyncio.sleep(0.001)
    sandbox_module.terminate_all()  # as a signal would, mid-copy
    with pytest.raises(SandboxError, match="closed"):
        await sync
    for _ in range(100):  # the copy thread removes what it wrote once it stops
        if not list(temp.iterdir()):
            break
        await asyncio.sleep(0.05)
    assert list(temp.iterdir()) == []


# -- limits ------------------------------------------------------------------------------


async def test_timeout_kills_the_process_group_children_and_grandchildren(project: Path) -> None:
    marker = f"agentls-timeout-{uuid.uuid4().hex}"
    # The child leaves the process group with setsid and starts a grandchild: both must die.
    (project / "child.py").write_text(
        "import os, subprocess, sys, time\n"
        "os.setsid()\n"
        "code = 'import time; time.sleep(600)'\n"
        "subprocess.Popen([sys.executable, '-c', code, sys.argv[1] + '-grandchild'])\n"
        "time.sleep(600)\n"
    )
    (project / "test_spawn.py").write_text(
        "import subprocess, sys, time\n\n\ndef test_spawn():\n"
        f"    subprocess.Popen([sys.executable, 'child.py', '{marker}'])\n"
        "    time.sleep(600)\n"
    )
    # 6 s: pytest itself must start and spawn both before the timeout, which took over 2 s on
    # a loaded machine (two llama-servers running).
    async with Sandbox(project, fast(timeout=6)) as sandbox:
        run = asyncio.create_task(sandbox.run(f"{PYTEST} test_spawn.py"))
        while len(processes_with(marker)) < 2 and not run.done():  # child.py and grandchild
            await asyncio.sleep(0.02)
        assert processes_with(f"{marker}-grandchild"), "the grandchild did not start in time"
        result = await run
        assert result.timed_out
        assert 6 <= result.duration < 10
        assert "timed out after" in result.summary()
        assert await wait_gone(marker) == []


async def test_output_is_truncated_head_and_tail_with_the_full_size(project: Path) -> None:
    (project / "test_loud.py").write_text(
        "def test_loud():\n    print('FIRST LINE')\n"
        "    for i in range(60000):\n        print(f'line {i:06d} ' + 'x' * 40)\n"
        "    print('LAST LINE')\n"
    )
    config = fast(output_head=1000, output_tail=1000)
    async with Sandbox(project, config) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_loud.py")
    assert result.exit_code == 0
    assert result.truncated and result.output_bytes > 3_000_000
    assert "FIRST LINE" in result.output and "LAST LINE" in result.output
    assert f"the output was {result.output_bytes:,} bytes in total" in result.output
    assert len(result.output) < 2300


async def test_endless_output_is_stopped_at_the_cap(project: Path) -> None:
    (project / "test_flood.py").write_text(
        "import os\n\n\ndef test_flood():\n    chunk = b'y' * 65536\n"
        "    while True:\n        os.write(1, chunk)\n"
    )
    config = fast(timeout=20, max_output_bytes=5_000_000, output_head=500, output_tail=500)
    async with Sandbox(project, config) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_flood.py")
    assert result.output_limit_hit and not result.timed_out
    assert result.duration < 10
    assert result.output_bytes > 5_000_000
    assert "stopped after" in result.summary()


# -- environment ---------------------------------------------------------------------------


def test_scrubbed_env_keeps_tools_and_drops_secrets(tmp_path: Path) -> None:
    source = {
        "PATH": "/usr/bin:relative/bin::/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "VIRTUAL_ENV": "/venv",
        "PYTHONPATH": "/lib",
        "PYTHONSTARTUP": "/home/u/.pythonrc",
        "HOME": "/home/u",
        "GITHUB_TOKEN": "t",
        "AWS_ACCESS_KEY_ID": "a",
        "OPENAI_API_KEY": "o",
        "PYTHON_KEYRING_PASSWORD": "p",
        "SSH_AUTH_SOCK": "/tmp/ssh/agent",
        "DATABASE_URL": "postgres://u:p@h/db",
        "EDITOR": "vim",
    }
    env = scrubbed_env(source, tmp_path / "home", tmp_path / "tmp")
    assert env["PATH"] == "/usr/bin:/bin"
    for kept in ("LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH"):
        assert env[kept] == source[kept]
    for dropped in (
        "PYTHONSTARTUP",
        "GITHUB_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "OPENAI_API_KEY",
        "PYTHON_KEYRING_PASSWORD",
        "SSH_AUTH_SOCK",
        "DATABASE_URL",
        "EDITOR",
    ):
        assert dropped not in env
    assert env["HOME"] == str(tmp_path / "home")
    assert env["TMPDIR"] == str(tmp_path / "tmp")


async def test_command_sees_no_secrets_and_not_the_users_home(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLS_TEST_API_TOKEN", "tok-s3cr3t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cr3t")
    real_home = Path.home()
    (project / "test_env.py").write_text(
        "import os\nfrom pathlib import Path\n\n\ndef test_env():\n"
        "    print('ENV', sorted(os.environ.items()))\n"
        "    print('HOME', Path.home())\n"
        "    print('SSH', Path.home().joinpath('.ssh').exists())\n"
    )
    async with Sandbox(project, fast()) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_env.py")
        assert sandbox.path is not None
        assert f"HOME {sandbox.path / 'home'}" in result.output
    assert result.exit_code == 0, result.output
    assert "s3cr3t" not in result.output
    assert f"HOME {real_home}\n" not in result.output


@pytest.mark.skipif(not ISOLATED, reason="covered by the refusal tests below")
async def test_users_home_and_disk_are_hidden_or_read_only(project: Path, tmp_path: Path) -> None:
    """Beyond the copy nothing is writable, and the home's keys are not even visible."""
    home = Path.home()
    outside = tmp_path / "outside.txt"
    (project / "test_escape.py").write_text(
        "import os\n\n\ndef test_escape():\n"
        f"    print('SSH', os.path.exists({str(home / '.ssh')!r}))\n"
        f"    for path in ({str(project / 'calc.py')!r}, {str(outside)!r}, '/etc/agentls-x'):\n"
        "        try:\n            open(path, 'w').write('pwned')\n"
        "            print('WROTE', path)\n"
        "        except OSError as exc:\n            print('REFUSED', path, exc.strerror)\n"
    )
    async with Sandbox(project, fast()) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_escape.py")
    assert result.filesystem_protected
    assert "SSH False" in result.output
    assert "REFUSED /etc/agentls-x Read-only file system" in result.output
    # Writes to the workspace path land in the copy; /tmp is a private, empty tmpfs.
    assert (project / "calc.py").read_text() == CALC
    assert not outside.exists()


@pytest.fixture
def other_project() -> Iterator[Path]:
    """A sibling project outside /tmp (which the sandbox hides anyway): /var/tmp and /opt."""
    made: list[Path] = []
    for parent in (Path("/var/tmp"), Path("/opt")):
        try:
            made.append(Path(tempfile.mkdtemp(prefix="agentls-test-other-", dir=parent)))
        except OSError:
            continue
    for directory in made:
        (directory / "notes.txt").write_text(f"OTHER-PROJECT-{directory.name}\n")
    try:
        yield made[0]
    finally:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)


SNOOP = """\
import os, sys


def test_snoop():
    for path in sys.argv[-1:] and PATHS:
        try:
            print('READ', path, repr(open(path).read()[:200]))
        except OSError as exc:
            print('NO', path, exc.strerror)
    print('ROOT', sorted(os.listdir('/')))
    print('CAPS', [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')])
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for target in (b'/etc', b'/usr', b'/'):
        rc = libc.umount2(target, 2)
        print('UMOUNT', target.decode(), rc, os.strerror(ctypes.get_errno()) if rc else '')
    rc = libc.mount(None, b'/usr', None, 32 | 4096, None)  # remount read-write
    print('REMOUNT', rc, os.strerror(ctypes.get_errno()) if rc else '')
"""


@pytest.mark.skipif(not ISOLATED, reason="this machine has no namespaces")
async def test_only_the_copy_system_dirs_and_toolchains_are_visible(
    project: Path, other_project: Path
) -> None:
    """A new root: /etc holds a few entries and a passwd of our own, other projects (outside
    /tmp and home) do not exist, and the command cannot unmount or remount its way out."""
    others = sorted(Path(p) for p in other_project.parent.parent.glob("*/agentls-test-other-*"))
    paths = [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/hostname",
        *(str(p / "notes.txt") for p in others),
        str(project / "calc.py"),
    ]
    (project / "test_snoop.py").write_text(SNOOP.replace("PATHS", repr(paths)))
    real_passwd = Path("/etc/passwd").read_text()
    async with Sandbox(project, fast()) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_snoop.py")
        assert sandbox.path is not None
        home = sandbox.path / "home"
    out = result.output
    assert result.exit_code == 0 and result.filesystem_protected, out
    # /etc/passwd is ours: this user and nobody, with the sandbox's home.
    assert f"root:x:0:0:root:{home}:/bin/sh" in out
    for line in real_passwd.splitlines():
        if not line.startswith(("root:", "nobody:")):
            assert line not in out
    assert "NO /etc/shadow No such file or directory" in out
    assert "NO /etc/hostname No such file or directory" in out
    for other in others:
        assert f"NO {other / 'notes.txt'} No such file or directory" in out
    assert "OTHER-PROJECT" not in out
    assert f"READ {project / 'calc.py'}" in out  # the copy, at the workspace path
    for name in ("home", "opt", "srv", "work", "mnt", "boot"):
        assert f"'{name}'" not in out.split("ROOT", 1)[1].split("\n", 1)[0]
    assert "CAPS ['0000000000000000']" in out
    for target in ("/etc", "/usr", "/"):
        assert f"UMOUNT {target} -1 Operation not permitted" in out
    assert "REMOUNT -1 Operation not permitted" in out


@pytest.mark.skipif(not ISOLATED, reason="this machine has no namespaces")
async def test_python_runs_inside_the_new_root(project: Path, other_project: Path) -> None:
    config = fast(allowed_commands=("python3 -c", "python -m pytest"))
    code = (
        "import json, os, ssl, sys, tempfile, pathlib; "
        "print('PY', sys.version_info[:2], os.getcwd()); "
        "print('CAS', ssl.create_default_context().cert_store_stats()['x509_ca']); "
        "print('PRIVATE', os.path.exists('/etc/ssl/private')); "
        "print('TMP', tempfile.mkstemp()[1]); "
        f"print('OTHER', pathlib.Path({str(other_project)!r}).exists())"
    )
    async with Sandbox(project, config) as sandbox:
        result = await sandbox.run(f'python3 -c "{code}"')
        tests = await sandbox.run(f"{PYTEST} test_calc.py")
    assert result.exit_code == 0, result.output
    assert f"PY (3, {sys.version_info[1]}) {project}" in result.output
    # TLS roots are there (as many as outside), TLS private keys are not.
    cas = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert f"CAS {cas}\n" in result.output and "PRIVATE False" in result.output
    assert "OTHER False" in result.output
    assert tests.exit_code == 0 and "1 passed" in tests.output, tests.output


@pytest.mark.skipif(not ISOLATED, reason="this machine has no namespaces")
async def test_toolchains_are_visible_but_their_credentials_read_empty(project: Path) -> None:
    cargo = Path(tempfile.mkdtemp(prefix="agentls-test-cargo-", dir="/var/tmp"))
    try:
        (cargo / "credentials.toml").write_text('[registry]\ntoken = "CARGO-TOKEN-s3cr3t"\n')
        (cargo / "config.toml").write_text("[net]\noffline = true\n")
        code = (
            "import pathlib; "
            f"home = pathlib.Path({str(cargo)!r}); "
            "print('CONFIG', (home / 'config.toml').read_text().split()); "
            "print('CREDENTIALS', repr((home / 'credentials.toml').read_text()))"
        )
        config = fast(allowed_commands=("python3 -c",))
        environ = {**os.environ, "CARGO_HOME": str(cargo)}
        async with Sandbox(project, config, environ=environ) as sandbox:
            result = await sandbox.run(f'python3 -c "{code}"')
    finally:
        shutil.rmtree(cargo, ignore_errors=True)
    assert "CONFIG ['[net]', 'offline', '=', 'true']" in result.output, result.output
    assert "CREDENTIALS ''" in result.output and "s3cr3t" not in result.output


async def test_special_files_are_not_copied_and_do_not_hang_the_copy(
    project: Path, mechanism: str
) -> None:
    os.mkfifo(project / "pipe")
    async with Sandbox(project, fast(), mechanism=mechanism) as sandbox:
        await sandbox.sync({})
        assert not (sandbox.work / "pipe").exists()
        assert (sandbox.work / "calc.py").is_file()


def test_toolchain_paths_show_toolchains_not_their_surroundings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    workspace = tmp_path / "work" / "proj"
    dirs = {
        "venv": tmp_path / "venvs" / "app",
        "pyenv": home / ".pyenv",
        "localbin": home / ".local" / "bin",
        "locallib": home / ".local" / "lib",
        "keyring": home / ".local" / "share",
        "node": tmp_path / "opt" / "node",
        "inside": workspace / ".venv",
        "homebin": home / "bin",
    }
    for path in [*dirs.values(), workspace]:
        path.mkdir(parents=True, exist_ok=True)
    for sub in ("bin",):
        (dirs["venv"] / sub).mkdir()
        (dirs["node"] / sub).mkdir()
    (dirs["node"] / "bin" / "node").write_text("")
    (dirs["node"] / "bin" / "node").chmod(0o755)
    env = {
        "PATH": os.pathsep.join(
            [
                str(dirs["venv"] / "bin"),
                str(dirs["localbin"]),
                str(dirs["node"] / "bin"),
                str(dirs["inside"]),
                str(home),
                "/usr/bin",
                str(tmp_path / "work"),
            ]
        ),
        "VIRTUAL_ENV": str(dirs["venv"]),
        "PYENV_ROOT": str(dirs["pyenv"]),
    }
    shown = toolchain_paths(env, ["node --test"], workspace=workspace, home=home)
    assert str(dirs["venv"]) in shown  # the venv, not only its bin
    assert str(dirs["pyenv"]) in shown
    assert str(dirs["node"]) in shown  # node's prefix, found from the allowed command
    assert str(dirs["localbin"]) in shown
    for hidden in ("keyring", "inside", "homebin"):
        assert str(dirs[hidden]) not in shown, hidden
    assert str(home) not in shown and str(tmp_path / "work") not in shown
    assert not any(p.startswith("/usr") for p in shown)


# -- network -------------------------------------------------------------------------------


def connect_test(port: int) -> str:
    return (
        "import socket\n\n\ndef test_connect():\n"
        "    try:\n"
        f"        s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "        s.sendall(b'LEAK')\n        print('CONNECTED')\n"
        "    except OSError as exc:\n        print('NO NETWORK', exc)\n"
    )


@pytest.mark.skipif(not ISOLATED, reason="this machine has no network namespaces")
async def test_no_network_from_inside(project: Path, listener: tuple[int, list[bytes]]) -> None:
    port, got = listener
    (project / "test_net.py").write_text(connect_test(port))
    async with Sandbox(project, fast()) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_net.py")
    assert result.network_isolated
    assert "NO NETWORK" in result.output and "CONNECTED" not in result.output
    await asyncio.sleep(0.3)
    assert got == []


async def test_without_isolation_the_command_is_refused_by_default(project: Path) -> None:
    unavailable = Isolation((), False, False, False, False, "unshare: Operation not permitted")
    async with Sandbox(project, fast(), isolation=unavailable) as sandbox:
        with pytest.raises(SandboxError) as caught:
            await sandbox.run(f"{PYTEST} test_calc.py")
    message = str(caught.value)
    assert NO_NETWORK in message and "agent.requireNetworkIsolation" in message
    assert "Operation not permitted" in message


async def test_without_isolation_and_not_required_it_runs_and_says_so(
    project: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    (project / "test_net.py").write_text(connect_test(port))
    unavailable = Isolation((), False, False, False, False, "no namespaces")
    config = fast(require_network_isolation=False)
    async with Sandbox(project, config, isolation=unavailable) as sandbox:
        result = await sandbox.run(f"{PYTEST} test_net.py")
    assert not result.network_isolated
    assert NO_NETWORK in result.summary()
    assert "CONNECTED" in result.output and got == [b"LEAK"]


def test_isolation_is_detected_once_and_described() -> None:
    first = detect_isolation()
    assert detect_isolation() is first
    if first.network:
        assert "private network namespace" in first.describe()
    else:
        assert NO_NETWORK in first.describe()


def test_fallback_helper_unshares_by_itself(tmp_path: Path) -> None:
    """Without the `unshare` program the helper calls unshare(2) itself."""
    result = probe((), True, tmp_path)
    if ISOLATED:
        assert result["net"] is True, result
    else:
        assert result["net"] is False and result["error"]


# -- command lines ------------------------------------------------------------------------


def test_settings_and_sandbox_default_to_the_same_commands() -> None:
    assert DEFAULT_ALLOWED_COMMANDS == sandbox_module.DEFAULT_ALLOWED_COMMANDS
    assert Settings().allowed_commands == DEFAULT_ALLOWED_COMMANDS


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("pytest", ["pytest"]),
        (
            "pytest -k 'a or b' tests/test_x.py::test_y",
            ["pytest", "-k", "a or b", "tests/test_x.py::test_y"],
        ),
        ("python -m pytest -x -q", ["python", "-m", "pytest", "-x", "-q"]),
        ("pytest 'tests/*.py'", ["pytest", "tests/*.py"]),
        ("pytest tests/*.py", ["pytest", "tests/*.py"]),  # globs stay plain arguments
        ("pytest -k 'a;b'", ["pytest", "-k", "a;b"]),  # quoted: data, not syntax
        ("go test ./...", ["go", "test", "./..."]),
        ("npm test -- --watch=false", ["npm", "test", "--", "--watch=false"]),
        ("ruff check src/../src", ["ruff", "check", "src/../src"]),
    ],
)
def test_allowed_command_lines(command: str, argv: list[str]) -> None:
    assert check_command(command, DEFAULT_ALLOWED_COMMANDS) == argv


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("pytest; rm -rf ~", "';'"),
        ("pytest && curl x", "'&'"),
        ("pytest || curl x", "'|'"),
        ("pytest | sh", "'|'"),
        ("pytest & sleep 1", "'&'"),
        ("pytest > out", "'>'"),
        ("pytest < in", "'<'"),
        ("pytest $(curl x)", "'$(...)'"),
        ('pytest "$(curl x)"', "'$(...)'"),
        ("pytest `curl x`", "backticks"),
        ("pytest $HOME", "'$' variable"),
        ('pytest "${HOME}"', "'$' variable"),
        ("pytest\ncurl x", "newline"),
        ("pytest # comment", "comment"),
        ("(pytest)", "subshell"),
        ("pytest 'unterminated", "unterminated"),
        ("FOO=1 pytest", "environment assignments"),
        ("curl http://example.com", "'curl' is not an allowed command"),
        ("/usr/bin/pytest", "not an allowed command"),
        ("python -c 'print(1)'", "not an allowed command"),
        ("pytest /etc", "outside the workspace"),
        ("pytest ../..", "outside the workspace"),
        ("pytest --rootdir=/", "outside the workspace"),
        ("pytest -c/etc/passwd", "outside the workspace"),
        ("pytest -o cache_dir=/tmp/x", "outside the workspace"),
        ("pytest ~/.ssh", "'~'"),
        ("", "empty"),
    ],
)
def test_refused_command_lines(command: str, reason: str) -> None:
    with pytest.raises(CommandRefused) as caught:
        check_command(command, DEFAULT_ALLOWED_COMMANDS)
    assert reason in str(caught.value)


def test_allowlist_comes_from_the_config() -> None:
    assert check_command("make test", ["make test"]) == ["make", "test"]
    with pytest.raises(CommandRefused, match="make"):
        check_command("make install", ["make test"])
    with pytest.raises(CommandRefused, match="bash is turned off"):
        check_command("pytest", [])


def test_the_copy_clones_where_the_file_system_can_and_copies_elsewhere(tmp_path: Path) -> None:
    """Reflinks (btrfs, XFS) cost no data and no disk; elsewhere (ext4, tmpfs) the first
    refusal switches the copy to plain copying."""
    from agentls.sandbox.copy import _clone

    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 100_000)
    source.chmod(0o750)
    clone = [True]
    cloned = _clone(source, tmp_path / "b.bin", clone)
    assert clone == [cloned]
    if cloned:
        assert (tmp_path / "b.bin").read_bytes() == source.read_bytes()
        assert (tmp_path / "b.bin").stat().st_mode == source.stat().st_mode
    else:
        assert not (tmp_path / "b.bin").exists()
    missing = [True]
    assert not _clone(tmp_path / "missing", tmp_path / "c.bin", missing)
    assert missing == [True]  # a file that cannot be read says nothing about the file system
