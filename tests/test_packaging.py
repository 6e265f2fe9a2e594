"""The wheel carries what an install needs: the shipped skills (the top-level ``skills/``,
installed as ``agentls.skills_builtin``), the demo's chat template and ``py.typed``; and an
installed copy finds its skills through ``importlib.resources``, not through the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from agentls.skills import BUILTIN_DIR

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_skills_are_the_top_level_skills_folder() -> None:
    assert BUILTIN_DIR == REPO / "skills"
    assert sorted(BUILTIN_DIR.glob("*.md"))


def build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the sources (what an sdist holds).

    Not built in the checkout: setuptools reuses its build/ folder, and files left there by
    an earlier layout would end up in the wheel.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("server/agentls", "skills"):
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    dist = tmp_path / "dist"
    # Built as pip builds it for users: isolated, with the setuptools pyproject.toml asks for.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
        timeout=170,
    )
    (wheel,) = dist.glob("agentls-*.whl")
    return wheel


def test_the_wheel_carries_the_skills_and_an_install_loads_them(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"agentls/skills_builtin/{p.name}" for p in BUILTIN_DIR.glob("*.md")}
    assert shipped <= names
    assert {"agentls/py.typed", "agentls/demo/gemma3-chat-template.jinja"} <= names
    assert not any(n.startswith("agentls/skills/builtin/") for n in names)  # the old place

    # The wheel's files, first on the path (before the checkout an editable install adds).
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "import json; from agentls.skills import BUILTIN_DIR, load_skills; "
        "s = load_skills(None, user_dir=BUILTIN_DIR / 'none'); "
        "print(json.dumps([str(BUILTIN_DIR), [x.name for x in s.skills], s.warnings]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    folder, loaded, warnings = json.loads(out)
    assert Path(folder) == site / "agentls" / "skills_builtin"
    assert sorted(loaded) == sorted(p.stem for p in BUILTIN_DIR.glob("*.md"))
    assert warnings == []
