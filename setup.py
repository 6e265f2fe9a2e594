"""The package list, the one piece of packaging pyproject.toml cannot state (the rest is there).

``agentls.skills_builtin`` lives in the top-level ``skills/`` folder (``package-dir`` maps it),
where package discovery under ``server/`` cannot see it, so it is named here explicitly.
"""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages("server", include=["agentls*"]), "agentls.skills_builtin"])
