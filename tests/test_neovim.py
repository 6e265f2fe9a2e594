"""Neovim 0.7.2 (Debian's package), headless, as the user drives it: editors/nvim/agentls.lua
loaded as docs/neovim.md says, a code action chosen through vim.lsp.buf.code_action(), then
:AgentTests, :AgentExplain (streamed into its split as the model writes) and a cancelled
:AgentExplain, against the scripted model server. The files on disk are what is checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lsp_support import call
from scripted_model import Reply, ScriptedModelServer

REPO = Path(__file__).resolve().parent.parent
NVIM_DIR = REPO / "editors" / "nvim"
INIT = Path(__file__).resolve().parent / "nvim" / "test_init.lua"

CALC = """\
def total(items):
    t = 0
    for i in range(len(items)):
        t = t + items[i]
    return t


def mean(items):
    return total(items) / len(items)
"""
OLD_LOOP = "    t = 0\n    for i in range(len(items)):\n        t = t + items[i]\n    return t\n"
NEW_LOOP = "    return sum(items)\n"
REFACTORED = CALC.replace(OLD_LOOP, NEW_LOOP)
EXPLANATION = "# calc\n\n`total` adds the items; `mean` divides that by their count."
TESTS = """\
from calc import mean, total


def test_total():
    assert total([1, 2]) == 3


def test_mean():
    assert mean([1, 3]) == 2
"""


def nvim_or_fail() -> str:
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.fail(
            "Neovim is not installed, so the Neovim client cannot be tested. Run .ci/run "
            "(it installs Debian's neovim when nvim is missing) or: apt-get install -y neovim"
        )
    return nvim


def report(proc: subprocess.CompletedProcess[str], log: Path, cache: Path) -> str:
    """Everything that explains a failure: the driver's log, Neovim's output, the LSP log."""
    parts = [f"nvim exited {proc.returncode}"]
    parts.append("--- driver log\n" + (log.read_text() if log.exists() else "(none)"))
    parts.append("--- nvim stdout\n" + proc.stdout[-4000:])
    parts.append("--- nvim stderr\n" + proc.stderr[-4000:])
    for lsp_log in cache.rglob("lsp.log"):
        parts.append(f"--- {lsp_log}\n" + lsp_log.read_text()[-6000:])
    return "\n".join(parts)


def test_code_action_and_commands_in_headless_neovim(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    nvim = nvim_or_fail()
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "calc"\n')
    (root / "calc.py").write_text(CALC)
    scripted_model.script(
        [
            # The code action "Agent: Refactor" (whole file: the cursor selects nothing).
            call("edit", path="calc.py", old_text=OLD_LOOP, new_text=NEW_LOOP),
            call("finish", summary="total uses sum()."),
            # :AgentTests
            call("write", path="tests/test_calc.py", content=TESTS),
            call("finish", summary="Added tests for total and mean."),
            # :AgentExplain, streamed slowly enough to be seen growing.
            Reply(content=EXPLANATION, chunk_size=6, delay=0.05),
            # :1,2AgentExplain, which never finishes until :AgentCancel.
            Reply(content="total adds", hang=True),
        ]
    )
    home = tmp_path / "home"
    cache = home / ".cache"
    log = tmp_path / "nvim-driver.log"
    flag = tmp_path / "explain-streaming"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(cache),
        "AGENTLS_NVIM_DIR": str(NVIM_DIR),
        "AGENTLS_PYTHON": sys.executable,
        "AGENTLS_MODEL_URL": scripted_model.url,
        "AGENTLS_NVIM_LOG": str(log),
        "AGENTLS_STREAMING_FLAG": str(flag),
    }
    started = time.monotonic()
    with subprocess.Popen(
        [nvim, "--headless", "-n", "-i", "NONE", "-u", str(INIT), "calc.py"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as nvim_proc:
        # Tell the driver when the explain's model stream is open, so :AgentCancel cancels a
        # run that is really waiting on the model (6 = 2 refactor + 2 tests + 2 explains).
        deadline = started + 90
        while nvim_proc.poll() is None and time.monotonic() < deadline:
            if len(scripted_model.requests) >= 6:
                flag.touch()
                break
            time.sleep(0.02)
        try:
            stdout, stderr = nvim_proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            nvim_proc.kill()
            stdout, stderr = nvim_proc.communicate()
    proc = subprocess.CompletedProcess(nvim_proc.args, nvim_proc.returncode, stdout, stderr)
    elapsed = time.monotonic() - started
    details = report(proc, log, cache)
    assert proc.returncode == 0, details

    # What the user checks: the files on disk.
    assert (root / "calc.py").read_text() == REFACTORED, details
    assert (root / "tests" / "test_calc.py").read_text() == TESTS, details
    assert sorted(p.name for p in root.rglob("*.py")) == ["calc.py", "test_calc.py"], details

    driver_log = log.read_text()
    # The explanation opened in a split beside the code (0.7 has no window/showDocument).
    saved = cache / "agentls" / "explanations" / "calc-explanation.md"
    assert saved.read_text() == EXPLANATION + "\n", details
    assert f"beside the code calc-explanation.md {EXPLANATION}" in driver_log, details
    # It streamed into that split before the run ended (agent/textDelta).
    line = driver_log.split("streamed while running ", 1)[1].split("\n", 1)[0]
    partial = line.replace("\\n", "\n")
    assert line != "(nothing)" and EXPLANATION.startswith(partial), details
    # The code action list came from the server; progress showed up the way docs/neovim.md says.
    assert "Agent: Explain" in driver_log and "choosing Agent: Refactor" in driver_log, details
    assert "progress end Agent: Refactor Done" in driver_log, details
    assert "statusline Agent: Refactor" in driver_log, details
    # The range reached the server and :AgentCancel stopped the model's stream.
    assert "The user selected lines 1-2." in scripted_model.requests[-1]["messages"][1]["content"]
    assert "explain progress ended with Cancelled" in driver_log, details
    assert scripted_model.wait_for_disconnect(timeout=5)
    assert len(scripted_model.requests) == 6
    print(f"headless Neovim run took {elapsed:.1f} s")
