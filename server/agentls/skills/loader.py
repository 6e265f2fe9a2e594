"""Reading skill files from the shipped, user and workspace folders; later folders override."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from agentls.languages import normalize_language
from agentls.skills.frontmatter import (
    FrontMatterError,
    FrontValue,
    parse_front_matter,
    split_front_matter,
)

SkillSource = Literal["builtin", "user", "workspace"]
# Lowest precedence first: a later source's skill replaces an earlier one of the same name.
SOURCES: tuple[SkillSource, ...] = ("builtin", "user", "workspace")
TASKS = ("explain", "refactor", "tests")
PI_SKILL_FILE = "SKILL.md"


def shipped_skills_dir() -> Path:
    """The folder of the skills shipped with agentls: ``skills/`` at the top of the repository,
    installed (wheel or editable install) as the package ``agentls.skills_builtin``."""
    try:
        folder = resources.files("agentls.skills_builtin")
    except ModuleNotFoundError:
        # server/ on PYTHONPATH with no install that maps the package (how the tests start
        # the server, or an install made before the skills moved): the checkout's own folder.
        return Path(__file__).resolve().parents[3] / "skills"
    # A regular package on disk (skills/__init__.py) is a real directory, not a zip member.
    return Path(str(folder))


BUILTIN_DIR = shipped_skills_dir()

# The same prior as agent/context.py's estimator. It over-counts English prose a little (real
# tokenizers give ~4 chars/token), which errs on the side of staying within the budget.
CHARS_PER_TOKEN = 3.5
# A stated ``tokens`` further than this from the estimate is not trusted for the budget.
TOKENS_TOLERANCE = 0.25

DEFAULT_PRIORITY = 50
# Skills without any of tasks/languages/globs/keywords (pi / little-coder style) rank below
# skills written for agentls: they are only matched loosely, by words of their description.
LOOSE_PRIORITY = 10

# Words that say nothing about when a skill applies; left out of description keywords.
_STOPWORD_TEXT = (
    "a about after all also an and any are as at be before by can code codes do does each "
    "file files for from function functions how if in into is it its make makes more most "
    "new not of on or other over should skill some such than that the their them then "
    "these they this those to use used uses using when where which while who will with "
    "without work works write you your project projects change changes task tasks help helps"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


class SkillError(ValueError):
    """A skill file that cannot be used; the message says why."""


@dataclass(frozen=True)
class Skill:
    """One skill: when it applies, its guidance text, and where it was loaded from."""

    name: str
    description: str
    body: str
    source: SkillSource
    path: Path
    tasks: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY
    tokens: int = 0  # what the budget counts: the stated size if plausible, else the estimate
    loose: bool = False  # no applicability keys: keywords come from name and description


@dataclass
class SkillSet:
    """The effective skills (overrides applied, sorted by name) and any loading warnings."""

    skills: list[Skill] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str) -> Skill | None:
        """The skill of that name, if loaded."""
        return next((s for s in self.skills if s.name == name), None)


def estimate_tokens(text: str) -> int:
    """Tokens a text is estimated to take in the prompt (characters / 3.5, rounded up)."""
    return math.ceil(len(text.strip()) / CHARS_PER_TOKEN)


def user_skills_dir() -> Path:
    """``$XDG_CONFIG_HOME/agentls/skills``, by default ``~/.config/agentls/skills``."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "agentls" / "skills"


def workspace_skills_dir(root: Path) -> Path:
    """The workspace's own skills: ``.agentls/skills`` under its root."""
    return root / ".agentls" / "skills"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9+#.-]*[a-z0-9+#]|[a-z0-9]", text.lower())


def _description_keywords(name: str, description: str) -> tuple[str, ...]:
    """Keywords for a loose skill: its name's parts and the telling words of its description."""
    found: list[str] = []
    for word in re.split(r"[-_\s]+", name.lower()):
        if len(word) >= 3 and word not in _STOPWORDS:
            found.append(word)
    for word in _words(description):
        if len(word) >= 4 and word not in _STOPWORDS:
            found.append(word)
    return tuple(dict.fromkeys(found))  # unique, in order: deterministic


def _as_list(meta: dict[str, FrontValue], key: str) -> tuple[str, ...]:
    value = meta.get(key)
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(v.strip() for v in value if v.strip())
    # "tasks: refactor" or "keywords: split, package": one item or a comma list.
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def _as_int(meta: dict[str, FrontValue], key: str) -> int | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    raise SkillError(f"'{key}' must be a whole number, got {value!r}")


def parse_skill(text: str, path: Path, source: SkillSource) -> tuple[Skill, list[str]]:
    """Build a skill from a file's text; raise SkillError for an unusable file.

    Returns the skill and non-fatal notes (e.g. a stated token count far from the estimate).
    """
    try:
        front, body = split_front_matter(text)
        meta = parse_front_matter(front)
    except FrontMatterError as exc:
        raise SkillError(str(exc)) from exc
    name = str(meta.get("name", "")).strip()
    if not name:
        raise SkillError("front matter has no 'name'")
    if any(c.isspace() for c in name):
        raise SkillError(f"'name' must not contain spaces: {name!r}")
    description = str(meta.get("description", "")).strip()
    if not description:
        raise SkillError("front matter has no 'description'")
    body = body.strip()
    if not body:
        raise SkillError("the skill has no text after the front matter")
    tasks = tuple(t.lower() for t in _as_list(meta, "tasks"))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SkillError(f"unknown task(s) {unknown} in 'tasks' (use {', '.join(TASKS)})")
    languages = tuple(normalize_language(x) for x in _as_list(meta, "languages"))
    globs = _as_list(meta, "globs")
    keywords = tuple(k.lower() for k in _as_list(meta, "keywords"))
    loose = not (tasks or languages or globs or keywords)
    if loose:
        keywords = _description_keywords(name, description)
    priority = _as_int(meta, "priority")
    if priority is None:
        priority = LOOSE_PRIORITY if loose else DEFAULT_PRIORITY

    notes: list[str] = []
    estimate = estimate_tokens(body)
    stated = _as_int(meta, "tokens")
    tokens = estimate
    if stated is not None:
        if stated > 0 and abs(stated - estimate) <= TOKENS_TOLERANCE * estimate:
            tokens = stated
        else:
            notes.append(
                f"skill file {path}: states tokens: {stated} but its text is about {estimate} "
                "tokens; using the estimate"
            )
    skill = Skill(
        name=name,
        description=description,
        body=body,
        source=source,
        path=path,
        tasks=tasks,
        languages=languages,
        globs=globs,
        keywords=keywords,
        priority=priority,
        tokens=tokens,
        loose=loose,
    )
    return skill, notes


def _skill_files(directory: Path) -> list[Path]:
    """``*.md`` files in the folder and ``<sub>/SKILL.md`` skill folders, in a stable order."""
    if not directory.is_dir():
        return []
    files: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            skill_md = entry / PI_SKILL_FILE
            if skill_md.is_file():
                files.append(skill_md)
        elif entry.suffix.lower() == ".md" and entry.name.lower() != "readme.md":
            files.append(entry)
    return files


def load_dir(directory: Path, source: SkillSource) -> tuple[list[Skill], list[str]]:
    """Every usable skill in one folder, and a warning naming each file that is not."""
    skills: list[Skill] = []
    warnings: list[str] = []
    seen: dict[str, Path] = {}
    try:
        files = _skill_files(directory)
    except OSError as exc:  # e.g. no permission: the other folders' skills still load
        return [], [f"skill folder {directory} ignored: {exc}"]
    for path in files:
        try:
            skill, notes = parse_skill(path.read_text(encoding="utf-8"), path, source)
        except (SkillError, OSError, UnicodeDecodeError) as exc:
            warnings.append(f"skill file {path} ignored: {exc}")
            continue
        warnings.extend(notes)
        if skill.name in seen:
            warnings.append(
                f"skill file {path} ignored: {seen[skill.name]} already defines {skill.name!r}"
            )
            continue
        seen[skill.name] = path
        skills.append(skill)
    return skills, warnings


def load_skills(
    workspace_root: Path | None = None,
    *,
    user_dir: Path | None = None,
    builtin_dir: Path = BUILTIN_DIR,
) -> SkillSet:
    """Load shipped, user and workspace skills; a later source replaces a same-named skill.

    ``user_dir`` defaults to :func:`user_skills_dir`. Files are small and few, so this reads
    them on every call: an edited skill takes effect on the next request, no restart needed.
    """
    dirs: list[tuple[Path, SkillSource]] = [
        (builtin_dir, "builtin"),
        (user_dir if user_dir is not None else user_skills_dir(), "user"),
    ]
    if workspace_root is not None:
        dirs.append((workspace_skills_dir(workspace_root), "workspace"))
    by_name: dict[str, Skill] = {}
    warnings: list[str] = []
    for directory, source in dirs:
        skills, found_warnings = load_dir(directory, source)
        warnings.extend(found_warnings)
        for skill in skills:
            by_name[skill.name] = skill
    return SkillSet(sorted(by_name.values(), key=lambda s: s.name), warnings)
