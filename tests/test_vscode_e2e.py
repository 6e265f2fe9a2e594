"""The VS Code extension in a real VS Code: code-server 4.100.3 (the VS Code 1.100 workbench
with a real extension host) in Debian's headless Chromium, driven by playwright-core.

The .vsix is built and installed as a user would (it carries this tree's agentls wheel); the
extension starts ``python -m agentls`` against the scripted model server, either this tree's
server or, for a Python without agentls, the private environment its "Install agentls" button
makes from the wheel. client-vscode/test/e2e/drive.mjs does what a user does and records what
they would see; this test checks the record and the files. Needs node 20, npm, chromium and
ripgrep (``.ci/run`` installs them); code-server and the npm packages are installed on first
use, outside git.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lsp_support import MODEL, call, closed_port, server_env
from scripted_model import Reply, ScriptedModelServer

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "client-vscode"
CHROMIUM = "/usr/bin/chromium"

ORIGINAL = """\
def total(items):
    t = 0
    for x in items:
        t = t + x
    return t


def mean(items):
    if len(items) == 0:
        return 0
    return total(items) / len(items)
"""
TOTAL_BODY = "    t = 0\n    for x in items:\n        t = t + x\n    return t"
AFTER_REFACTOR = ORIGINAL.replace(TOTAL_BODY, "    return sum(items)")
MEAN_GUARD = "    if len(items) == 0:\n        return 0"
AFTER_MEAN_GUARD = "    if not items:\n        return 0.0"
AFTER_CODE_ACTION = ORIGINAL.replace(MEAN_GUARD, AFTER_MEAN_GUARD)
AFTER_REFACTOR_SELECTION = AFTER_CODE_ACTION.replace(TOTAL_BODY, "    return sum(items)")
INSTRUCTION = "use the built-in sum"
TEST_TEXT = "from calc import mean, total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
EXPLANATION = "# What total does\n\nIt adds the items up, one by one."


def _run(cmd: list[str], cwd: Path, timeout: float) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )


def _require_tools() -> None:
    missing = [t for t in ("node", "npm", "rg") if shutil.which(t) is None]
    if not Path(CHROMIUM).exists():
        missing.append("chromium")
    if missing:
        raise AssertionError(
            f"the VS Code e2e test needs {', '.join(missing)}: "
            "apt-get install -y nodejs npm chromium ripgrep (.ci/run does this)"
        )


@pytest.fixture(scope="module")
def code_server() -> Path:
    """The code-server launcher, installed into a cache folder outside git when missing."""
    _require_tools()
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-code-server.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, f"installing code-server failed:\n{out.stdout}\n{out.stderr}"
    dest = Path(out.stdout.strip().splitlines()[-1].rsplit(" in ", 1)[-1])
    launcher = dest / "node_modules" / ".bin" / "code-server"
    assert launcher.exists(), f"no code-server launcher at {launcher}"
    return launcher


@pytest.fixture(scope="module")
def vsix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension packaged with vsce, as a user builds it."""
    _require_tools()
    if not (CLIENT / "node_modules" / ".bin" / "vsce").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"], CLIENT, 600)
    target = tmp_path_factory.mktemp("vsix") / "agentls.vsix"
    _run(
        [
            "npx",
            "vsce",
            "package",
            "--no-dependencies",
            "--allow-missing-repository",
            "-o",
            str(target),
        ],
        CLIENT,
        300,
    )
    return target


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"code-server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"code-server did not answer /healthz in {timeout}s:\n{log.read_text()}")


def _user_settings(**agent: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "extensions.ignoreRecommendations": True,
        "telemetry.telemetryLevel": "off",
        "security.workspace.trust.enabled": False,
    }
    settings.update({f"agent.{key}": value for key, value in agent.items()})
    return settings


@contextmanager
def _workbench(
    code_server: Path, vsix: Path, tmp_path: Path, settings: dict[str, Any], env: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """code-server with the extension installed, these user settings and a workspace holding
    calc.py; stopped (the whole process group) afterwards."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "calc.py").write_text(ORIGINAL)
    data = tmp_path / "data"
    settings_file = data / "user" / "User" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps(settings, indent=2))
    env = {**env, "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    common = [
        str(code_server),
        "--user-data-dir",
        str(data / "user"),
        "--extensions-dir",
        str(data / "ext"),
    ]
    install = subprocess.run(
        [*common, "--install-extension", str(vsix)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert any(p.name.startswith("agentls.agentls-") for p in (data / "ext").iterdir())

    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "code-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *common,
                "--bind-addr",
                f"127.0.0.1:{port}",
                "--auth",
                "none",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                str(workspace),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its extension host outlives it: kill the whole group
        )
    try:
        _wait_healthy(url, proc, log)
        yield {"url": url, "workspace": workspace, "data": data, "log": log, "pid": proc.pid}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def workbench(
    code_server: Path, vsix: Path, scripted_model: ScriptedModelServer, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """The extension runs this tree's server with the test's Python against the scripted
    model; explanations go to a private cache."""
    settings = _user_settings(
        pythonPath=sys.executable,
        backend="ollama",
        baseUrl=scripted_model.url,
        model=MODEL,
        testCommand="",  # no verification runs: the script has no replies for them
    )
    with _workbench(code_server, vsix, tmp_path, settings, server_env(tmp_path / "cache")) as wb:
        yield wb


def _drive(
    config: dict[str, Any], tmp_path: Path, workbench: dict[str, Any], timeout: float = 240
) -> dict[str, Any]:
    """Run drive.mjs with this config; its report, or an AssertionError telling what failed."""
    report_path = tmp_path / "report.json"
    config = {
        **config,
        "url": workbench["url"],
        "chromium": CHROMIUM,
        "file": str(workbench["workspace"] / "calc.py"),
        "fileName": "calc.py",
        "workspace": str(workbench["workspace"]),
        "outDir": str(tmp_path),
        "report": str(report_path),
        "codeServerPid": workbench["pid"],
    }
    config_path = tmp_path / "drive.json"
    config_path.write_text(json.dumps(config))
    started = time.monotonic()
    proc = subprocess.run(
        ["node", str(CLIENT / "test" / "e2e" / "drive.mjs"), str(config_path)],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.monotonic() - started
    report: dict[str, Any] = (
        json.loads(report_path.read_text()) if report_path.exists() else {"steps": {}}
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"driving VS Code failed after {elapsed:.0f}s:\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}\nreport: {json.dumps(report.get('failure'), indent=1)}\n"
            f"agentls output:\n{_agentls_log(workbench['data'])}"
        )
    return report


def _agentls_log(data: Path, limit: int = 4000) -> str:
    """The extension's Output channel ("agentls"), as code-server saved it (the last ``limit``
    characters of each log file)."""
    logs = sorted((data / "user" / "logs").rglob("*agentls*.log"))
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-limit:]}" for p in logs)


def test_vscode_extension_end_to_end(
    workbench: dict[str, Any], scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    scripted_model.script(
        [
            # Agent: Refactor Module, from the palette.
            call("edit", path="calc.py", old_text=TOTAL_BODY, new_text="    return sum(items)"),
            call("finish", summary="Used sum()."),
            # Agent: Refactor, chosen from Ctrl+. on mean().
            call("edit", path="calc.py", old_text=MEAN_GUARD, new_text=AFTER_MEAN_GUARD),
            call("finish", summary="Simplified the empty check."),
            # Agent: Explain Selection.
            Reply(content=EXPLANATION),
            # Agent: Generate Tests: a new file, through the Refactor Preview.
            call("write", path="tests/test_calc.py", content=TEST_TEXT),
            call("finish", summary="Added a test for total."),
            # Agent: Refactor Selection... on total(), with an instruction.
            call("edit", path="calc.py", old_text=TOTAL_BODY, new_text="    return sum(items)"),
            call("finish", summary="Used sum()."),
            # Agent: Generate Tests again, cancelled from the progress notification.
            Reply(content="Let me look at", hang=True),
        ]
    )
    shot = tmp_path / "refactor-preview.png"
    config = {
        "scenario": "user",
        "model": MODEL,
        "screenshot": str(shot),
        "expect": {
            "firstLine": "def total(items):",
            "original": ORIGINAL,
            "afterRefactor": AFTER_REFACTOR,
            "undoneMarker": "t = t + x",
            "codeActionLines": [8, 11],
            "afterCodeAction": AFTER_CODE_ACTION,
            "explanationName": "calc-explanation.md",
            "explanationText": "It adds the items up, one by one.",
            "progressText": "waiting for the model",
            "testFile": "tests/test_calc.py",
            "testText": TEST_TEXT,
            "otherModel": "gemma4:26b-a4b-it-qat",
            "instruction": INSTRUCTION,
            "afterRefactorSelection": AFTER_REFACTOR_SELECTION,
        },
        "settingsFile": str(workbench["data"] / "user" / "User" / "settings.json"),
    }
    report = _drive(config, tmp_path, workbench)
    steps = report["steps"]
    disk = workbench["workspace"] / "calc.py"

    # The status bar shows the model once the backend answered.
    assert MODEL in steps["open"]["statusBar"]

    # Refactor Module went through the Refactor Preview (the file listed), then to disk.
    # The palette ran the command with a cancellable progress notification too.
    preview = steps["refactorModule"]["preview"]
    assert any("calc.py" in row for row in preview["rows"])
    assert preview["tickedAtFirst"] == [False]  # needs confirmation: nothing applies unticked
    assert steps["refactorModule"]["disk"] == AFTER_REFACTOR
    assert "return sum(items)" in steps["refactorModule"]["editor"]
    assert shot.exists() and shot.stat().st_size > 10_000

    # One Ctrl+Z brought the whole refactor back.
    assert "t = t + x" in steps["undo"]["editor"] and "sum(items)" not in steps["undo"]["editor"]
    assert steps["undo"]["disk"] == ORIGINAL

    # Ctrl+. on mean() listed the server's actions; "Agent: Refactor" changed the file.
    actions = steps["codeAction"]["actions"]
    assert any("Agent: Refactor" in a for a in actions)
    assert any("Agent: Explain" in a for a in actions)
    assert steps["codeAction"]["disk"] == AFTER_CODE_ACTION

    # The explanation opened as a Markdown preview beside the code; the status bar then shows
    # how full the run's context was.
    assert "calc-explanation.md" in steps["explain"]["tab"]
    assert "What total does" in steps["explain"]["previewText"]
    assert steps["explain"]["editorGroups"] >= 2
    assert MODEL in steps["explain"]["statusBar"] and "ctx" in steps["explain"]["statusBar"]

    # Generate Tests created the test module through the preview (a new file, unticked too).
    tests_dir = workbench["workspace"] / "tests"
    assert steps["generateTests"]["preview"]["tickedAtFirst"] == [False]
    assert any("test_calc.py" in row for row in steps["generateTests"]["preview"]["rows"])
    assert (tests_dir / "test_calc.py").read_text() == TEST_TEXT

    # Refactor Selection... asked for an instruction, which reached the model with the range.
    assert steps["refactorSelection"]["disk"] == AFTER_REFACTOR_SELECTION
    selection_prompt = json.dumps(scripted_model.requests[7]["messages"])
    assert INSTRUCTION in selection_prompt

    # Cancel on the progress notification stopped the run: the model's stream was closed
    # and nothing changed.
    assert "Agent: Generate tests" in steps["cancel"]["notification"]
    assert "turn 1/" in steps["cancel"]["notification"]
    assert scripted_model.wait_for_disconnect(timeout=10)
    assert sorted(p.name for p in tests_dir.iterdir()) == ["test_calc.py"]
    assert (tests_dir / "test_calc.py").read_text() == TEST_TEXT
    assert disk.read_text() == AFTER_REFACTOR_SELECTION
    assert len(scripted_model.requests) == 10

    # A crashed server: the user reads that it stopped and restarts (vscode-languageclient
    # restarts it); the new one answers.
    crash = steps["crash"]
    assert "agentls: the server stopped unexpectedly" in crash["message"]
    assert "Restarting it." in crash["message"]
    assert crash["newPid"] != crash["oldPid"]
    assert f"{MODEL} on ollama at {scripted_model.url}" in crash["status"]
    assert "is ready" in crash["status"]

    # A change in the Settings UI reaches the running server: the status bar names the new model and
    # warns that the backend does not have it; still the same single server process.
    live = steps["liveSettings"]
    assert "gemma4:26b-a4b-it-qat" in live["statusBar"] and "warning" in live["statusBar"]
    assert live["servers"] == 1
    assert '"agent.model": "gemma4:26b-a4b-it-qat"' in live["settingsFile"]

    docs_shot = os.environ.get("AGENTLS_SAVE_SCREENSHOT")
    if docs_shot:  # refresh docs/img/vscode-refactor-preview.png by hand
        shutil.copyfile(shot, docs_shot)


def test_vscode_installs_agentls_for_a_python_without_it_and_then_explains(
    code_server: Path, vsix: Path, scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    """The bare-venv case through the install button: the message names the interpreter and
    the cause, "Install agentls" makes the private environment from the wheel in the .vsix
    (dependencies from the index pip is configured for), the server starts from there, says how
    to get a model while none answers, and explains once the model server is up."""
    from agentls.llm.defaults import default_model_candidates, total_memory_bytes

    bare = tmp_path / "bare"  # a real interpreter that has no agentls
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    # ... and one whose agentls dies on import (found by the probe, the server never starts).
    broken = tmp_path / "broken"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(broken)], check=True)
    (site,) = broken.glob("lib/python3*/site-packages")
    (site / "agentls").mkdir()
    (site / "agentls" / "__init__.py").write_text("raise ImportError('agentls is broken here')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    down = f"http://127.0.0.1:{closed_port()}"
    settings = _user_settings(pythonPath=str(bare / "bin" / "python"), baseUrl=down, testCommand="")
    scripted_model.script([Reply(content=EXPLANATION)])
    config = {
        "scenario": "install",
        "model": MODEL,
        "modelUrl": scripted_model.url,
        "downUrl": down,
        "barePython": str(bare / "bin" / "python"),
        "brokenPython": str(broken / "bin" / "python"),
        "expect": {"explanationText": "It adds the items up, one by one."},
    }
    with _workbench(code_server, vsix, tmp_path, settings, env) as workbench:
        config["settingsFile"] = str(workbench["data"] / "user" / "User" / "settings.json")
        report = _drive(config, tmp_path, workbench, timeout=480)
        output = _agentls_log(workbench["data"], limit=1_000_000)
    steps = report["steps"]

    missing = steps["brokenPython"]
    assert f"{bare}/bin/python -m agentls (from agent.pythonPath)" in missing["message"]
    assert "No module named agentls" in missing["message"]
    assert "pip install agentls" in missing["message"] and "agent.pythonPath" in missing["message"]
    assert missing["buttons"] == ["Install agentls", "Show Output"]
    assert "error" in missing["statusBar"]  # $(error) icon

    # The install ran with progress, and the server now runs from the private environment.
    install = steps["install"]
    assert "agentls: installing agentls" in install["progress"]
    storage = workbench["data"] / "user" / "User" / "globalStorage" / "agentls.agentls" / "venv"
    assert install["servers"] == [str(storage / "bin" / "python")]
    assert "pip install" in output and "Successfully installed" in output

    # No model server answered: start Ollama, pull the Gemma 4 for this machine's memory,
    # and agentls doctor's findings are in the output.
    recommended = default_model_candidates(total_memory_bytes())[0]
    assert f"no model server answers at {down}" in install["help"]
    assert "ollama serve" in install["help"] and f"ollama pull {recommended}" in install["help"]
    assert install["helpButtons"] == ["Show Doctor Findings", "Don't Show Again"]
    assert "agentls doctor:" in output and "[FAIL] server" in output

    # The model server came up: the status bar names its model; Explain works; the status bar
    # shows the run's numbers.
    assert MODEL in steps["modelUp"]["statusBar"]
    assert "It adds the items up" in steps["explain"]["previewText"]
    assert "tok/s" in steps["explain"]["statusBar"] and "ctx" in steps["explain"]["statusBar"]
    assert len(scripted_model.requests) == 1

    # A server that dies before it answers initialize: one message with its last stderr line
    # and the fixes (no second popup from vscode-languageclient), and it is not restarted.
    dead = steps["brokenServer"]
    who = f"{broken}/bin/python -m agentls (from agent.pythonPath)"
    assert f"{who} stopped before it started" in dead["message"]
    assert "ImportError: agentls is broken here" in dead["message"]
    assert dead["buttons"] == ["Install agentls", "Show Output", "Restart Server"]
    lc_popups = ("couldn't create connection", "initialization failed", "Connection to server")
    assert not [n for n in dead["notifications"] if any(p in n for p in lc_popups)]
    assert "error" in dead["statusBar"]
