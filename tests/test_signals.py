"""The server's end while a sandboxed command runs: SIGTERM/SIGINT/SIGHUP, shutdown + exit.

A real ``python -m agentls`` on pipes, a scripted model that writes a test which sleeps (and
starts a child that sleeps) and then runs it with ``bash``. When the server is told to stop,
it must exit, promptly and quietly, leaving no process of the sandbox and no scratch copy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentls.sandbox import detect_isolation
from lsp_support import MODEL, SERVER_DIR, options
from scripted_model import Reply, ScriptedModelServer

pytestmark = pytest.mark.skipif(
    not detect_isolation().network, reason="commands need network isolation to run at all"
)

# Generous bounds, not measurements (the machine may be busy): a server that takes longer
# "did not exit"; a run whose command has not started by then "did not start".
EXIT_TIMEOUT = 10.0
START_TIMEOUT = 120.0
CALC = "def add(a, b):\n    return a + b\n"


def processes_with(marker: str) -> list[int]:
    """Live processes (not zombies) whose command line contains ``marker``."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def wait_until(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


class RawServer:
    """``python -m agentls`` on pipes, spoken to in raw JSON-RPC frames."""

    def __init__(self, root: Path, tmp: Path, model_url: str) -> None:
        self.root = root
        self.tmp = tmp  # the server's TMPDIR: where its scratch copies go
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVER_DIR), env.get("PYTHONPATH")]))
        env["TMPDIR"] = str(tmp)
        env["XDG_CACHE_HOME"] = str(tmp / "cache")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentls"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=root,
        )
        self.messages: list[dict[str, Any]] = []
        self.stderr = bytearray()
        self._lock = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.request(
            1,
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": options(
                    model_url, trustedWorkspace=True, commandTimeout=300, maxTurns=10
                ),
            },
        )
        self.wait_for(lambda m: m.get("id") == 1, START_TIMEOUT)
        self.notify("initialized", {})

    def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not line:
                return
            body = json.loads(stream.read(length))
            with self._lock:
                self.messages.append(body)
                self._lock.notify_all()

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := os.read(stream.fileno(), 65536):
            self.stderr += chunk

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.process.stdin.flush()

    def request(self, msg_id: int, method: str, params: Any) -> None:
        self.send({"id": msg_id, "method": method, "params": params})

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def wait_for(self, match: Any, timeout: float = 30) -> dict[str, Any]:
        with self._lock:
            found: list[dict[str, Any]] = []

            def seen() -> bool:
                found[:] = [m for m in self.messages if match(m)]
                return bool(found)

            if not self._lock.wait_for(seen, timeout):
                raise AssertionError(f"no such message within {timeout}s: {self.messages[-5:]}")
            return found[0]

    def wait_exit(self) -> int | None:
        try:
            return self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def copies(self) -> list[Path]:
        return sorted(self.tmp.glob("agentls-sandbox-*"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def script_sleeper(model: ScriptedModelServer, root: Path) -> str:
    """Make ``root`` a project and script a model that writes a sleeping test and runs it;
    returns the marker in the command line of the test's child process."""
    marker = f"agentls-signal-{uuid.uuid4().hex}"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    test_name = f"test_sleep_{uuid.uuid4().hex}.py"
    sleeper = (
        "import subprocess, sys, time\n\n\ndef test_sleep():\n"
        f"    code = 'import time; time.sleep(600)'\n"
        f"    subprocess.Popen([sys.executable, '-c', code, '{marker}'])\n"
        "    time.sleep(600)\n"
    )
    command = f"python -m pytest -q -s -p no:cacheprovider --disable-plugin-autoload {test_name}"
    write = {"name": "write", "arguments": {"path": test_name, "content": sleeper}}
    model.script(
        [
            Reply(tool_calls=[write]),
            Reply(tool_calls=[{"name": "bash", "arguments": {"command": command}}]),
        ]
    )
    return marker


@pytest.fixture
def running(tmp_path: Path, scripted_model: ScriptedModelServer) -> Iterator[tuple[RawServer, str]]:
    """A server in the middle of a ``bash`` call whose test sleeps; yields (server, marker)."""
    root = tmp_path / "proj"
    marker = script_sleeper(scripted_model, root)
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    server = RawServer(root, tmp, scripted_model.url)
    try:
        server.request(
            2,
            "agent/refactor",
            {"textDocument": {"uri": (root / "calc.py").as_uri()}, "instruction": "test it"},
        )
        assert wait_until(lambda: bool(processes_with(marker)), START_TIMEOUT), (
            "the sandboxed test did not start: " + server.stderr.decode(errors="replace")[-2000:]
        )
        assert server.copies(), "no scratch copy was made"
        yield server, marker
    finally:
        server.kill()


def assert_clean(server: RawServer, marker: str, code: int | None) -> None:
    assert code is not None, "the server did not exit"
    # The kernel takes a moment to reap a killed PID namespace.
    assert wait_until(lambda: not processes_with(marker), 5), "sandbox processes survived"
    assert server.copies() == [], "the scratch copy was left behind"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_ends_the_server_its_sandbox_processes_and_copies(
    running: tuple[RawServer, str], sig: signal.Signals
) -> None:
    server, marker = running
    server.process.send_signal(sig)
    code = server.wait_exit()
    assert_clean(server, marker, code)
    assert code == 128 + sig
    stderr = server.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]


def test_shutdown_and_exit_during_a_command_are_prompt_and_quiet(
    running: tuple[RawServer, str],
) -> None:
    server, marker = running
    server.request(3, "shutdown", None)
    server.wait_for(lambda m: m.get("id") == 3, timeout=EXIT_TIMEOUT)
    # shutdown alone already stops the command and removes the copy
    assert wait_until(lambda: not processes_with(marker), 5), "shutdown left the command running"
    assert wait_until(lambda: not server.copies(), 5), "shutdown left the scratch copy"
    server.notify("exit", None)
    code = server.wait_exit()
    assert_clean(server, marker, code)
    assert code == 0
    time.sleep(0.2)  # the stderr reader drains what is left
    assert len(server.stderr) < 4096, server.stderr[-3000:]
    assert b"Traceback" not in server.stderr, server.stderr[-3000:]


def test_exit_without_shutdown_during_a_command_cleans_up_too(
    running: tuple[RawServer, str],
) -> None:
    server, marker = running
    server.notify("exit", None)
    code = server.wait_exit()
    assert_clean(server, marker, code)
    assert code == 1
    time.sleep(0.2)
    assert len(server.stderr) < 4096, server.stderr[-3000:]
    assert b"Traceback" not in server.stderr, server.stderr[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agentls_run_ends_its_sandbox_on_a_signal(
    tmp_path: Path, scripted_model: ScriptedModelServer, sig: signal.Signals
) -> None:
    root = tmp_path / "proj"
    marker = script_sleeper(scripted_model, root)
    tmp = tmp_path / "run-tmp"
    tmp.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVER_DIR), env.get("PYTHONPATH")]))
    env["TMPDIR"] = str(tmp)
    backend = ["--backend", "ollama", "--base-url", scripted_model.url, "--model", MODEL]
    process = subprocess.Popen(
        [sys.executable, "-m", "agentls", "run", "refactor", "calc.py", *backend],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        started = wait_until(lambda: bool(processes_with(marker)), START_TIMEOUT)
        assert started, "the test did not start"
        assert list(tmp.glob("agentls-sandbox-*")), "no scratch copy was made"
        process.send_signal(sig)
        try:
            _out, err = process.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("agentls run did not exit")
        assert wait_until(lambda: not processes_with(marker), 5), "sandbox processes survived"
        assert list(tmp.glob("agentls-sandbox-*")) == [], "the scratch copy was left behind"
        assert process.returncode == 128 + sig
        assert b"nothing was written" in err and b"Traceback" not in err, err[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
