"""Verified edits: test command detection, the import check, and refactor / generate-tests runs
whose staged result is tested in the sandbox, with failures sent back to the scripted model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.workspace import Workspace
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from agentls.tasks.tests import run_generate_tests
from agentls.tasks.verify import (
    PYTEST,
    detect_test_command,
    imports_code_under_test,
    module_names,
)
from lsp_support import call
from scripted_model import ScriptedModelServer

# ---- detection ------------------------------------------------------------------------------


def _ws(tmp_path: Path, files: dict[str, str]) -> Workspace:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return Workspace(tmp_path)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"app.py": "x = 1\n"}, None),
        ({"app.py": "", "tests/test_app.py": ""}, PYTEST),
        ({"app.py": "", "test_app.py": ""}, PYTEST),
        ({"app.py": "", "pyproject.toml": "[tool.pytest.ini_options]\n"}, PYTEST),
        ({"app.py": "", "setup.cfg": "[tool:pytest]\n"}, PYTEST),
        ({"app.py": "", "pyproject.toml": "[project]\nname = 'x'\n"}, None),
        (
            {"app.js": "", "package.json": json.dumps({"scripts": {"test": "node --test"}})},
            "npm test",
        ),
        (
            {
                "app.js": "",
                "package.json": json.dumps(
                    {"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}
                ),
            },
            None,
        ),
        ({"main.go": "", "go.mod": "module x\n"}, "go test ./..."),
        ({"src/lib.rs": "", "Cargo.toml": "[package]\n"}, "cargo test"),
    ],
)
def test_detects_the_projects_test_command(
    tmp_path: Path, files: dict[str, str], expected: str | None
) -> None:
    source = next(iter(files))
    assert detect_test_command(_ws(tmp_path, files), source) == expected


def test_detection_prefers_the_language_of_the_file(tmp_path: Path) -> None:
    ws = _ws(
        tmp_path,
        {
            "tests/test_tool.py": "",
            "web/app.ts": "",
            "package.json": json.dumps({"scripts": {"test": "vitest"}}),
        },
    )
    assert detect_test_command(ws, "web/app.ts") == "npm test"
    assert detect_test_command(ws, "tool.py") == PYTEST


def test_detection_sees_a_staged_test_file(tmp_path: Path) -> None:
    ws = _ws(tmp_path, {"stats.py": "x = 1\n"})
    assert detect_test_command(ws, "stats.py") is None
    ws.stage("tests/test_stats.py", "from stats import x\n")
    assert detect_test_command(ws, "stats.py") == PYTEST


# ---- the import check ---------------------------------------------------------------------------


def test_module_names_of_a_path() -> None:
    assert module_names("src/pkg/stats.py") == {"src.pkg.stats", "pkg.stats", "stats"}
    assert module_names("pkg/__init__.py") == {"pkg"}


@pytest.mark.parametrize(
    "text",
    [
        "from stats import mean\n",
        "import stats\n",
        "from pkg.stats import mean\n",
        "from pkg import stats\n",
        "import pkg.stats as s\n",
        "import importlib\nmod = importlib.import_module('pkg.stats')\n",
    ],
)
def test_python_tests_that_import_the_code_pass_the_check(text: str) -> None:
    assert imports_code_under_test(text, "tests/test_stats.py", "pkg/stats.py") is True


@pytest.mark.parametrize(
    "text",
    [
        "def mean(xs):\n    return sum(xs) / len(xs)\n\n"
        "def test_mean():\n    assert mean([2]) == 2\n",
        "import statistics\n",
        "from pkg import other\n",
    ],
)
def test_python_tests_of_a_copy_fail_the_check(text: str) -> None:
    assert imports_code_under_test(text, "tests/test_stats.py", "pkg/stats.py") is False


def test_js_import_check() -> None:
    assert imports_code_under_test("import { f } from './math.js'\n", "math.test.ts", "math.ts")
    assert imports_code_under_test(
        "const m = require('../src/math')\n", "t/m.test.js", "src/math.js"
    )
    assert not imports_code_under_test("const f = (a) => a\n", "math.test.ts", "math.ts")
    assert imports_code_under_test("package x\n", "x_test.go", "x.go") is None


def test_syntax_error_is_left_to_the_test_run() -> None:
    assert imports_code_under_test("def (:\n", "tests/test_x.py", "x.py") is None


# ---- refactor and generate-tests, verified in the sandbox ------------------------------------

STATS = """\
def total(items):
    t = 0
    for i in range(len(items)):
        t = t + items[i]
    return t
"""

STATS_TEST = """\
from stats import total


def test_total():
    assert total([1, 2, 3]) == 6
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "stats.py").write_text(STATS)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_stats.py").write_text(STATS_TEST)
    return tmp_path


class Recorder:
    """A progress sink that keeps its warnings (what an editor would pop up)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def report(self, message: str, percentage: int | None = None) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def make_ctx(server: ScriptedModelServer, root: Path, **overrides: Any) -> TaskContext:
    settings = Settings(
        backend="ollama", base_url=server.url, model="gemma4:12b-it-qat", **overrides
    )
    return TaskContext(
        root=root, settings=settings, backend=make_backend(settings), progress=Recorder()
    )


def user_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


BREAK = {"path": "stats.py", "old_text": "return t", "new_text": "return t + 1"}
FIX = {"path": "stats.py", "old_text": "return t + 1", "new_text": "return t"}
SUM = {
    "path": "stats.py",
    "old_text": (
        "    t = 0\n    for i in range(len(items)):\n        t = t + items[i]\n    return t"
    ),
    "new_text": "    return sum(items)",
}


async def test_refactor_that_breaks_the_tests_gets_the_failure_and_repairs_it(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            call("edit", **BREAK),
            call("finish", summary="Tidied total()."),
            call("edit", **FIX),
            call("edit", **SUM),
            call("finish", summary="Used sum()."),
        ]
    )
    ctx = make_ctx(scripted_model, project)
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    # The model was told the tests failed, with pytest's own words, and then repaired it.
    feedback = user_messages(scripted_model.requests[2])[-1]
    assert "`python -m pytest -q`" in feedback and "failed (exit code 1)" in feedback
    assert "assert 7 == 6" in feedback
    assert result.verification is not None
    assert result.verification.passed is True
    assert result.verification.command == "python -m pytest -q"
    assert result.verification.attempts == 2
    assert "1 passed" in result.verification.output
    assert result.summary == "Used sum().\n\nTests pass: `python -m pytest -q`."
    (change,) = result.changes
    assert "return sum(items)" in change.new_text
    assert (project / "stats.py").read_text() == STATS  # the sandbox ran it, not the disk


async def test_tests_that_still_fail_are_reported_plainly_and_the_edit_is_returned(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            call("edit", **BREAK),
            call("finish", summary="Tidied total()."),
            call("edit", path="stats.py", old_text="return t + 1", new_text="return t + 2"),
            call("finish", summary="The tests are wrong."),
        ]
    )
    ctx = make_ctx(scripted_model, project, repair_turns=1)
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()

    assert len(scripted_model.requests) == 4  # one repair round, then it stops asking
    verification = result.verification
    assert verification is not None and verification.passed is False
    assert verification.exit_code == 1 and verification.attempts == 2
    assert "assert 8 == 6" in verification.output
    assert result.summary.startswith(
        "The tests are wrong.\n\nTests FAIL: `python -m pytest -q` exited 1 after 2 attempts."
    )
    assert "review it before you keep it" in result.summary
    assert isinstance(ctx.progress, Recorder)
    assert any("Tests FAIL" in w for w in ctx.progress.warnings)
    assert len(result.changes) == 1  # returned for the user to judge, not withheld


async def test_a_project_without_tests_says_not_verified(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    (tmp_path / "stats.py").write_text(STATS)
    scripted_model.script([call("edit", **SUM), call("finish", summary="Used sum().")])
    ctx = make_ctx(scripted_model, tmp_path)
    result = await run_refactor(ctx, TaskRequest(tmp_path / "stats.py"))
    await ctx.backend.aclose()
    assert result.summary == "Used sum().\n\nNo tests found; not verified."
    assert result.verification is not None
    assert result.verification.passed is None and result.verification.command is None


async def test_empty_test_command_turns_verification_off(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([call("edit", **BREAK), call("finish", summary="Done.")])
    ctx = make_ctx(scripted_model, project, test_command="")
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    assert len(scripted_model.requests) == 2
    assert result.verification is not None and result.verification.passed is None
    assert "agent.testCommand is empty" in result.summary


async def test_custom_test_command_runs_without_widening_the_bash_allowlist(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    (project / "tests" / "__init__.py").write_text("")
    (project / "tests" / "test_unit.py").write_text(
        "import unittest\n\nfrom stats import total\n\n\n"
        "class T(unittest.TestCase):\n    def test_total(self):\n"
        "        self.assertEqual(total([1, 2]), 3)\n"
    )
    scripted_model.script(
        [
            call("bash", command="python -m unittest"),
            call("edit", **SUM),
            call("finish", summary="Used sum()."),
        ]
    )
    ctx = make_ctx(scripted_model, project, test_command="python -m unittest")
    result = await run_refactor(ctx, TaskRequest(project / "stats.py"))
    await ctx.backend.aclose()
    bash_result = [m for m in scripted_model.requests[1]["messages"] if m["role"] == "tool"][-1]
    assert "not an allowed command" in bash_result["content"]  # the model may not run it
    assert result.verification is not None and result.verification.passed is True
    assert result.verification.command == "python -m unittest"
    assert "OK" in result.verification.output


COPY_TEST = """\
def total(items):
    return sum(items)


def test_total():
    assert total([1, 2]) == 3
"""

REAL_TEST = """\
from stats import total


def test_total():
    assert total([1, 2]) == 3


def test_empty():
    assert total([]) == 0
"""


async def test_generated_tests_must_import_the_code_under_test_and_pass(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    (tmp_path / "stats.py").write_text(STATS)
    scripted_model.script(
        [
            call("write", path="tests/test_stats.py", content=COPY_TEST),
            call("finish", summary="Wrote tests."),
            call("write", path="tests/test_stats.py", content=REAL_TEST.replace("== 0", "== 1")),
            call("finish", summary="Now importing stats."),
            call("write", path="tests/test_stats.py", content=REAL_TEST),
            call("finish", summary="Tests for total()."),
        ]
    )
    ctx = make_ctx(scripted_model, tmp_path)
    result = await run_generate_tests(ctx, TaskRequest(tmp_path / "stats.py"))
    await ctx.backend.aclose()

    first = user_messages(scripted_model.requests[2])[-1]
    assert "does not import the code under test (stats.py)" in first
    second = user_messages(scripted_model.requests[4])[-1]
    assert "python -m pytest -q tests/test_stats.py" in second and "assert 0 == 1" in second
    assert result.verification is not None and result.verification.passed is True
    assert result.verification.attempts == 3
    assert result.test_file == tmp_path / "tests" / "test_stats.py"
    assert result.summary.endswith("Tests pass: `python -m pytest -q tests/test_stats.py`.")
    assert not (tmp_path / "tests").exists()
