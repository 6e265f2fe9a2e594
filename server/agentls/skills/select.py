"""Choosing skills for one request, deterministically, within a token budget."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pathspec

from agentls.languages import language_of
from agentls.skills.loader import Skill

GUIDANCE_HEADER = "Guidance for this task:"

__all__ = ["GUIDANCE_HEADER", "applies", "language_of", "render_guidance", "select_skills"]


def _keyword_hit(keyword: str, text: str) -> bool:
    # Matched at the start of a word, so "test" finds "tests" and "testing" but not "latest".
    return re.search(r"(?<![a-z0-9])" + re.escape(keyword), text) is not None


def _glob_hit(globs: Sequence[str], rel_path: str) -> bool:
    # .gitignore syntax, as users already write it: "*.sql" matches at any depth,
    # "migrations/*.py" only at the workspace root, "**/migrations/*.py" anywhere.
    return bool(globs) and pathspec.GitIgnoreSpec.from_lines(globs).match_file(rel_path)


def applies(skill: Skill, task: str, rel_path: str, instruction: str | None) -> bool:
    """Whether the skill fits the request: every condition it states must hold.

    ``tasks``: the task is one of them. ``languages``/``globs``: the file's language is listed
    or its path matches a glob (either is enough). ``keywords``: the instruction contains one.
    """
    if skill.tasks and task not in skill.tasks:
        return False
    if skill.languages or skill.globs:
        language = language_of(rel_path)
        by_language = language is not None and language in skill.languages
        if not by_language and not _glob_hit(skill.globs, rel_path):
            return False
    if skill.keywords:
        words = (instruction or "").lower()
        if not any(_keyword_hit(k, words) for k in skill.keywords):
            return False
    return True


def select_skills(
    skills: Iterable[Skill],
    *,
    task: str,
    rel_path: str,
    instruction: str | None,
    budget: int,
) -> list[Skill]:
    """The skills for one request: those that apply, by priority (high first) then name,
    each taken if it still fits the token budget. Same request, same skills, same order."""
    eligible = sorted(
        (s for s in skills if applies(s, task, rel_path, instruction)),
        key=lambda s: (-s.priority, s.name),
    )
    chosen: list[Skill] = []
    used = 0
    for skill in eligible:
        # A skill too big for what is left is skipped, not truncated: half a rule misleads.
        if used + skill.tokens <= budget:
            chosen.append(skill)
            used += skill.tokens
    return chosen


def render_guidance(skills: Sequence[Skill]) -> str:
    """The guidance section of the first message: each chosen skill's text, in order."""
    if not skills:
        return ""
    return GUIDANCE_HEADER + "\n\n" + "\n\n".join(s.body for s in skills)


_reported: set[str] = set()


def unreported(warnings: Iterable[str]) -> list[str]:
    """The warnings not yet shown by this process.

    Skills are re-read on every request; a broken file should be reported once (and listed
    by agent/status), not pop up on every run.
    """
    fresh = [w for w in warnings if w not in _reported]
    _reported.update(fresh)
    return fresh
