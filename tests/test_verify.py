"""Verified edits: test command detection, the import check, and refactor / generate-tests runs
whose staged result is tested in the sandbox, with failures sent back to the scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentls.agent.workspace import Workspace
from agentls.tasks.verify import (
    PYTEST,
    detect_test_command,
    imports_code_under_test,
    module_names,
)

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
