"""Skills: shipped files, selection by task / language / keywords, the budget, overrides,
malformed files, pi-style folders, and how a task run carries them to the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentls.agent.prompts import SYSTEM_PROMPT
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.skills import (
    BUILTIN_DIR,
    GUIDANCE_HEADER,
    Skill,
    estimate_tokens,
    load_skills,
    render_guidance,
    select_skills,
)
from agentls.skills.frontmatter import parse_front_matter, split_front_matter
from agentls.skills.loader import load_dir
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.common import skills_budget
from agentls.tasks.refactor import run_refactor
from agentls.tasks.registry import TASKS
from lsp_support import MODEL, call
from scripted_model import ScriptedModelServer

SHIPPED = {
    "python",
    "pytest",
    "typescript-javascript",
    "split-module-into-package",
    "good-explanation",
    "edit-tool-for-small-models",
    "common-lisp",
    "clojure",
}


def skill_file(folder: Path, filename: str, front: str, body: str = "Do the thing.") -> Path:
    """Write a skill file (front matter lines + body) and return its path."""
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{front.strip()}\n---\n{body}\n")
    return path


def names(skills: list[Skill]) -> list[str]:
    return [s.name for s in skills]


def shipped() -> list[Skill]:
    found = load_skills(None, user_dir=Path("/nonexistent"))
    assert found.warnings == []
    return found.skills


def choose(task: str, path: str, instruction: str | None = None, budget: int = 600) -> list[str]:
    return names(
        select_skills(shipped(), task=task, rel_path=path, instruction=instruction, budget=budget)
    )


# --- shipped skills ---------------------------------------------------------------------


def test_shipped_skills_load_without_warnings_and_are_short() -> None:
    skills = shipped()
    assert {s.name for s in skills} == SHIPPED
    for skill in skills:
        assert skill.source == "builtin" and skill.path.parent == BUILTIN_DIR
        assert skill.description
        assert 80 <= skill.tokens <= 250, (skill.name, skill.tokens)


def test_shipped_skills_state_their_size_close_to_the_estimate() -> None:
    for path in sorted(BUILTIN_DIR.glob("*.md")):
        front, body = split_front_matter(path.read_text())
        stated = parse_front_matter(front)["tokens"]
        estimate = estimate_tokens(body)
        assert isinstance(stated, int)
        assert abs(stated - estimate) <= 0.1 * estimate, (path.name, stated, estimate)


# --- selection --------------------------------------------------------------------------


def test_selection_by_task() -> None:
    assert choose("explain", "calc.py") == ["good-explanation", "python"]
    assert choose("refactor", "calc.py") == ["edit-tool-for-small-models", "python"]
    assert choose("tests", "calc.py") == ["edit-tool-for-small-models", "pytest", "python"]


def test_selection_by_language() -> None:
    assert choose("refactor", "web/app.ts") == [
        "edit-tool-for-small-models",
        "typescript-javascript",
    ]
    assert "typescript-javascript" in choose("explain", "index.mjs")
    assert "clojure" in choose("explain", "src/core.cljs")
    assert "common-lisp" in choose("explain", "src/main.lisp")
    # pytest is for Python files only; a language nobody wrote a skill for gets only task skills.
    assert choose("tests", "lib.rs") == ["edit-tool-for-small-models"]
    assert choose("explain", "notes.txt") == ["good-explanation"]


def test_selection_by_keyword_in_the_instruction() -> None:
    plain = choose("refactor", "big.py", "rename total to sum_items")
    split = choose("refactor", "big.py", "Split this module into a package")
    assert "split-module-into-package" not in plain
    assert "split-module-into-package" in split
    # Keywords match at the start of a word: "splitting" counts, and case does not matter.
    assert "split-module-into-package" in choose("refactor", "big.py", "SPLITTING it up please")
    # The keyword skill is for refactors only.
    assert "split-module-into-package" not in choose("explain", "big.py", "split it")


def test_selection_by_glob(tmp_path: Path) -> None:
    skill_file(
        tmp_path,
        "migrations.md",
        "name: migrations\ndescription: Django migrations.\nglobs: ['**/migrations/*.py', '*.sql']",
    )
    skills, warnings = load_dir(tmp_path, "workspace")
    assert warnings == []
    pick = lambda path: names(  # noqa: E731
        select_skills(skills, task="explain", rel_path=path, instruction=None, budget=600)
    )
    assert pick("app/migrations/0001_initial.py") == ["migrations"]
    assert pick("schema/tables.sql") == ["migrations"]
    assert pick("migrations/0002_more.py") == ["migrations"]
    assert pick("app/models.py") == []


def test_same_request_same_skills_in_priority_then_name_order(tmp_path: Path) -> None:
    for name, priority in (("zeta", 5), ("alpha", 5), ("mid", 20)):
        skill_file(
            tmp_path,
            f"{name}.md",
            f"name: {name}\ndescription: x\ntasks: [explain]\npriority: {priority}",
        )
    skills, _ = load_dir(tmp_path, "user")
    runs = {
        tuple(
            names(
                select_skills(skills, task="explain", rel_path="a.py", instruction=None, budget=600)
            )
        )
        for _ in range(5)
    }
    assert runs == {("mid", "alpha", "zeta")}


def test_budget_takes_skills_by_priority_and_skips_what_does_not_fit(tmp_path: Path) -> None:
    words = "word " * 70  # about 100 tokens
    skill_file(
        tmp_path, "big.md", "name: big\ndescription: x\npriority: 90\ntasks: [refactor]", words * 3
    )
    skill_file(
        tmp_path,
        "medium.md",
        "name: medium\ndescription: x\npriority: 80\ntasks: [refactor]",
        words,
    )
    skill_file(
        tmp_path,
        "small.md",
        "name: small\ndescription: x\npriority: 10\ntasks: [refactor]",
        "Be brief.",
    )
    skills, warnings = load_dir(tmp_path, "workspace")
    assert warnings == []
    sizes = {s.name: s.tokens for s in skills}

    def pick(budget: int) -> list[str]:
        chosen = select_skills(
            skills, task="refactor", rel_path="a.py", instruction=None, budget=budget
        )
        assert sum(s.tokens for s in chosen) <= budget
        return names(chosen)

    assert pick(1000) == ["big", "medium", "small"]
    # big does not fit: skipped whole, and the lower-priority ones that fit still go in.
    assert pick(sizes["medium"] + sizes["small"]) == ["medium", "small"]
    assert pick(sizes["small"]) == ["small"]
    assert pick(0) == []
    # The shipped skills for a Python test-writing request fit the default budget together.
    assert choose("tests", "calc.py", budget=Settings().skills_budget) == [
        "edit-tool-for-small-models",
        "pytest",
        "python",
    ]


def test_guidance_text_is_the_chosen_skills_in_order() -> None:
    skills = select_skills(
        shipped(), task="tests", rel_path="calc.py", instruction=None, budget=600
    )
    text = render_guidance(skills)
    assert text.startswith(GUIDANCE_HEADER)
    positions = [text.index(s.body) for s in skills]
    assert positions == sorted(positions)
    assert render_guidance([]) == ""


# --- user skills ------------------------------------------------------------------------


def test_user_config_replaces_shipped_and_workspace_replaces_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    root = tmp_path / "proj"
    front = "name: python\ndescription: House Python rules.\nlanguages: [python]"
    user = skill_file(config / "agentls" / "skills", "python.md", front, "Use tabs. (user)")

    found = load_skills(root)
    python = found.get("python")
    assert python is not None and python.source == "user" and python.path == user
    assert python.body == "Use tabs. (user)"
    assert found.get("pytest") is not None and found.get("pytest").source == "builtin"  # type: ignore[union-attr]

    ws = skill_file(root / ".agentls" / "skills", "py.md", front, "Use spaces. (workspace)")
    python = load_skills(root).get("python")
    assert python is not None and python.source == "workspace" and python.path == ws
    # Only one python skill is loaded, so only the workspace's text reaches the model.
    chosen = select_skills(
        load_skills(root).skills, task="refactor", rel_path="a.py", instruction=None, budget=600
    )
    guidance = render_guidance(chosen)
    assert "Use spaces. (workspace)" in guidance and "Use tabs" not in guidance
    assert "Keep the file's existing style" not in guidance  # the shipped python text


def test_default_user_dir_is_under_dot_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentls.skills import user_skills_dir

    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_skills_dir() == tmp_path / ".config" / "agentls" / "skills"


def test_pi_style_skill_folder_loads_and_applies_by_description_words(tmp_path: Path) -> None:
    folder = tmp_path / "skills"
    (folder / "sqlalchemy-models").mkdir(parents=True)
    (folder / "sqlalchemy-models" / "SKILL.md").write_text(
        "---\n"
        "name: sqlalchemy-models\n"
        "description: >\n"
        "  Declaring SQLAlchemy 2.0 ORM models with Mapped[] annotations.\n"
        "  Use when the user mentions ORM tables or relationships.\n"
        "license: MIT\n"
        "metadata:\n"
        "  author: someone\n"
        "  version: '1.0'\n"
        "---\n"
        "# SQLAlchemy models\n\nUse `Mapped[int]` and `mapped_column()`.\n"
    )
    (folder / "sqlalchemy-models" / "reference.md").write_text("not a skill on its own\n")
    skills, warnings = load_dir(folder, "user")
    assert warnings == []
    [skill] = skills
    assert skill.name == "sqlalchemy-models" and skill.loose
    assert skill.description.startswith("Declaring SQLAlchemy 2.0 ORM models")
    assert skill.priority < min(s.priority for s in shipped())

    def pick(instruction: str | None) -> list[str]:
        return names(
            select_skills(
                skills, task="refactor", rel_path="db.py", instruction=instruction, budget=600
            )
        )

    assert pick("add a relationships field to the User model") == ["sqlalchemy-models"]
    assert pick("convert these to sqlalchemy 2 style") == ["sqlalchemy-models"]
    assert pick("rename the variable x") == []
    assert pick(None) == []


def test_malformed_files_are_named_in_warnings_and_the_rest_still_load(tmp_path: Path) -> None:
    folder = tmp_path / "skills"
    folder.mkdir()
    (folder / "no-front.md").write_text("# Just Markdown\n")
    (folder / "unclosed.md").write_text("---\nname: x\ndescription: y\n")
    skill_file(folder, "no-name.md", "description: nameless")
    skill_file(folder, "bad-task.md", "name: bad-task\ndescription: x\ntasks: [explain, deploy]")
    skill_file(folder, "bad-priority.md", "name: bad-priority\ndescription: x\npriority: high")
    skill_file(folder, "bad-line.md", "name: bad-line\ndescription: x\nthis is not yaml")
    skill_file(folder, "empty.md", "name: empty\ndescription: x", "")
    skill_file(folder, "good.md", "name: good\ndescription: fine\ntasks: [explain]", "Be good.")
    (folder / "README.md").write_text("About these skills (not a skill itself).\n")

    skills, warnings = load_dir(folder, "workspace")
    assert names(skills) == ["good"]
    expected = {
        "no-front.md": "no front matter",
        "unclosed.md": "not closed",
        "no-name.md": "no 'name'",
        "bad-task.md": "deploy",
        "bad-priority.md": "'priority' must be a whole number",
        "bad-line.md": "line 4",
        "empty.md": "no text",
    }
    assert len(warnings) == len(expected)
    for filename, reason in expected.items():
        [warning] = [w for w in warnings if str(folder / filename) in w]
        assert "ignored" in warning and reason in warning, warning


def test_an_unreadable_skills_folder_is_reported_and_the_rest_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config" / "agentls" / "skills"
    config.mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    real_iterdir = Path.iterdir

    def iterdir(self: Path):  # type: ignore[no-untyped-def]
        if self == config:  # chmod does not stop root, so fake the permission error
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    found = load_skills(tmp_path / "proj")
    assert {s.name for s in found.skills} == SHIPPED
    [warning] = found.warnings
    assert str(config) in warning and "Permission denied" in warning


def test_a_stated_size_far_from_the_text_is_not_trusted(tmp_path: Path) -> None:
    skill_file(tmp_path, "liar.md", "name: liar\ndescription: x\ntokens: 5", "word " * 200)
    [skill], [warning] = load_dir(tmp_path, "workspace")
    assert skill.tokens == estimate_tokens("word " * 200)
    assert "liar.md" in warning and "tokens: 5" in warning


def test_front_matter_forms() -> None:
    meta = parse_front_matter(
        'name: "quoted name"\n'
        "tasks: [explain, 'refactor']\n"
        "keywords:\n  - split\n  - break up\n"
        "priority: 7\n"
        "description: |\n  line one\n  line two\n"
        "# a comment\n"
    )
    assert meta == {
        "name": "quoted name",
        "tasks": ["explain", "refactor"],
        "keywords": ["split", "break up"],
        "priority": 7,
        "description": "line one\nline two",
    }


# --- in a task run ----------------------------------------------------------------------


def test_each_task_names_the_skills_task_it_selects_for() -> None:
    # The registry says it; nothing is guessed from the words of the task text any more.
    assert {spec.name: spec.skills_task for spec in TASKS} == {
        "explain": "explain",
        "refactor": "refactor",
        "generateTests": "tests",
    }


async def test_a_refactor_carries_its_skills_after_the_prefix_and_names_them_in_stats(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    skill_file(
        tmp_path / ".agentls" / "skills",
        "house.md",
        "name: house\ndescription: House rules.\ntasks: [refactor]\nkeywords: [house]",
        "HOUSE RULE: name things plainly.",
    )
    scripted_model.script([call("finish", summary="ok"), call("finish", summary="ok")])
    settings = Settings(backend="ollama", base_url=scripted_model.url, model=MODEL)
    ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
    plain = await run_refactor(ctx, TaskRequest(tmp_path / "calc.py", instruction="tidy"))
    housed = await run_refactor(ctx, TaskRequest(tmp_path / "calc.py", instruction="house style"))
    await ctx.backend.aclose()

    assert plain.stats.skills == ["edit-tool-for-small-models", "python"]
    # A user skill without a priority gets the default, 50, below the shipped ones.
    assert housed.stats.skills == ["edit-tool-for-small-models", "python", "house"]
    first, second = scripted_model.requests
    assert (
        first["messages"][0]
        == second["messages"][0]
        == {"role": "system", "content": SYSTEM_PROMPT}
    )
    assert first["tools"] == second["tools"]
    message = second["messages"][1]["content"]
    assert "HOUSE RULE" not in first["messages"][1]["content"]
    # Task, instruction, guidance, then the file.
    assert (
        message.index("house style") < message.index("HOUSE RULE") < message.index("File calc.py")
    )


def test_cli_warns_on_stderr_about_a_malformed_skill(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    broken = tmp_path / ".agentls" / "skills" / "broken.md"
    broken.parent.mkdir(parents=True)
    broken.write_text("name: broken\n")
    scripted_model.script([call("finish", summary="Adds.")])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentls",
            "run",
            "explain",
            "calc.py",
            "--backend",
            "ollama",
            "--base-url",
            scripted_model.url,
            "--model",
            MODEL,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"skill file {broken} ignored: no front matter" in proc.stderr
    assert proc.stdout.strip() == "Adds."


def test_cli_names_the_skills_used_and_takes_a_budget(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    scripted_model.script([call("finish", summary="Adds."), call("finish", summary="Adds.")])
    base = [sys.executable, "-m", "agentls", "run", "explain", "calc.py", "--json"]
    backend = ["--backend", "ollama", "--base-url", scripted_model.url, "--model", MODEL]
    runs = [
        subprocess.run(
            base + backend + extra,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        for extra in ([], ["--skills-budget", "0"])
    ]
    assert [p.returncode for p in runs] == [0, 0], [p.stderr for p in runs]
    used, none = (json.loads(p.stdout)["stats"]["skills"] for p in runs)
    assert used == ["good-explanation", "python"]
    assert none == []
    assert "Guidance" not in scripted_model.requests[1]["messages"][1]["content"]


# --- the budget follows the window ------------------------------------------------------


@pytest.mark.parametrize(
    ("context_length", "setting", "expected"),
    [(16384, 600, 600), (8192, 600, 600), (4096, 600, 409), (2048, 600, 204), (2048, 0, 0)],
)
def test_the_skills_budget_is_at_most_a_tenth_of_the_window(
    context_length: int, setting: int, expected: int
) -> None:
    settings = Settings(context_length=context_length, skills_budget=setting)
    assert skills_budget(settings) == expected
