"""The skills shipped with agentls: the Markdown files beside this one (see docs/skills.md).

Installed as the package ``agentls.skills_builtin`` (``package-dir`` in pyproject.toml), so the
wheel carries them and ``agentls.skills`` finds them with ``importlib.resources``. This file
makes the folder a regular package, which ``importlib.resources`` gives as a plain directory.
"""
