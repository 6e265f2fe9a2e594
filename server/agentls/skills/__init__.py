"""Skills: short Markdown guidance for a task and language, chosen per request.

A skill is a Markdown file with front matter (see ``docs/skills.md``). Three places hold them,
later ones replacing earlier skills of the same name: the skills shipped with agentls (``skills/``
at the top of the repository, installed as ``agentls.skills_builtin``), the user's config
directory (``$XDG_CONFIG_HOME/agentls/skills``) and the workspace (``.agentls/skills/``). A
folder holding a ``SKILL.md`` (pi / little-coder style) is a skill too.

The chosen skills' text goes into the first user message, never into the system prompt: the
system prompt and tool schemas are the cached prefix and must stay byte-identical.

This package is a leaf: it imports nothing else from agentls but the ``languages`` leaf.
"""

from __future__ import annotations

from agentls.skills.loader import (
    BUILTIN_DIR,
    SOURCES,
    Skill,
    SkillSet,
    SkillSource,
    estimate_tokens,
    load_skills,
    user_skills_dir,
    workspace_skills_dir,
)
from agentls.skills.select import (
    GUIDANCE_HEADER,
    language_of,
    render_guidance,
    select_skills,
    unreported,
)

__all__ = [
    "BUILTIN_DIR",
    "GUIDANCE_HEADER",
    "SOURCES",
    "Skill",
    "SkillSet",
    "SkillSource",
    "estimate_tokens",
    "language_of",
    "load_skills",
    "render_guidance",
    "select_skills",
    "unreported",
    "user_skills_dir",
    "workspace_skills_dir",
]
