"""`agentls run` and `agentls doctor` as a terminal user runs them: a real process, real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_support import call, closed_port
from scripted_model import Reply, ScriptedModelServer

SOURCE = "def add(a, b):\n    return a + b\n"


def agentls(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentls", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def backend_args(server: ScriptedModelServer) -> list[str]:
    return ["--backend", "ollama", "--base-url", server.url, "--model", "gemma4:12b-it-qat"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "calc.py").write_text(SOURCE)
    return tmp_path


def test_run_explain_prints_markdown(scripted_model: ScriptedModelServer, project: Path) -> None:
    scripted_model.script([Reply(content="# add\nAdds two numbers.")])
    proc = agentls("run", "explain", "calc.py", *backend_args(scripted_model), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "# add\nAdds two numbers."
    assert "1 turns" in proc.stderr


def test_run_refactor_prints_a_diff_and_applies_only_when_asked(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    replies = [
        call("edit", path="calc.py", old_text="return a + b", new_text="return b + a"),
        call("finish", summary="Swapped."),
    ]
    scripted_model.script(list(replies))
    proc = agentls("run", "refactor", "calc.py", *backend_args(scripted_model), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "-    return a + b\n+    return b + a" in proc.stdout
    assert "--- a/calc.py" in proc.stdout
    assert (project / "calc.py").read_text() == SOURCE

    scripted_model.script(list(replies))
    proc = agentls(
        "run",
        "refactor",
        "calc.py",
        "--apply",
        "--json",
        *backend_args(scripted_model),
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["applied"] is True and payload["files"] == ["calc.py"]
    assert payload["stats"]["turns"] == 2
    assert (project / "calc.py").read_text() == "def add(a, b):\n    return b + a\n"


def test_run_tests_creates_the_test_file_with_apply(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    test_src = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    scripted_model.script(
        [call("write", path="tests/test_calc.py", content=test_src), call("finish", summary="ok")]
    )
    proc = agentls("run", "tests", "calc.py", "--apply", *backend_args(scripted_model), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "+++ b/tests/test_calc.py" in proc.stdout
    assert (project / "tests" / "test_calc.py").read_text() == test_src


def test_run_with_server_down_says_how_to_start_it(project: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    proc = agentls("run", "explain", "calc.py", "--base-url", url, cwd=project)
    assert proc.returncode == 3
    assert "ollama serve" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_with_missing_model_names_the_pull_command(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    proc = agentls(
        "run",
        "explain",
        "calc.py",
        "--base-url",
        scripted_model.url,
        "--model",
        "qwen9:1b",
        cwd=project,
    )
    assert proc.returncode == 3
    assert "ollama pull qwen9:1b" in proc.stderr


def test_run_refuses_a_path_outside_the_workspace(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([call("read", path="../../../etc/passwd"), Reply(content="fine")])
    proc = agentls("run", "explain", "calc.py", *backend_args(scripted_model), cwd=project)
    assert proc.returncode == 0, proc.stderr
    tool_result = next(m for m in scripted_model.requests[1]["messages"] if m["role"] == "tool")
    assert "outside the workspace" in tool_result["content"]
    assert "root:" not in tool_result["content"]


def test_run_rejects_a_bad_range(scripted_model: ScriptedModelServer, project: Path) -> None:
    proc = agentls(
        "run", "explain", "calc.py", "--range", "9-2", *backend_args(scripted_model), cwd=project
    )
    assert proc.returncode == 2
    assert "--range" in proc.stderr


def test_doctor_reports_each_check(scripted_model: ScriptedModelServer, project: Path) -> None:
    proc = agentls(
        "doctor", *backend_args(scripted_model), "--context-length", "65536", cwd=project
    )
    assert "[ok  ] server" in proc.stdout
    assert "[ok  ] model" in proc.stdout
    assert "[ok  ] tools" in proc.stdout
    # The scripted model reports a 32768-token maximum: asking for more is a failure with a fix.
    assert "[FAIL] context" in proc.stdout and "fix: Set agent.contextLength" in proc.stdout
    assert proc.returncode == 1


def test_doctor_with_server_down_prints_the_fix(project: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    proc = agentls("doctor", "--base-url", url, cwd=project)
    assert proc.returncode == 1
    assert "[FAIL] server" in proc.stdout and "ollama serve" in proc.stdout
