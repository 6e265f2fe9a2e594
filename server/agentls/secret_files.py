"""Which files are secret (``agent.secretFiles``): the one matcher the tools and the sandbox share.

A leaf module (pathspec only). The patterns have ``.gitignore`` semantics, as pathspec's
``GitIgnoreSpec`` implements them: a pattern with a '/' other than at its end is anchored at the
workspace root (``/private.txt`` is the root's file only), ``**`` spans directories, a trailing
'/' matches directories only, ``!`` re-includes, and the last matching pattern wins.

Two rules on top, both on the safe side and both git's own:

* a path is secret when **any directory above it** is secret: git cannot re-include a file
  inside an excluded directory, and neither can ``!`` here (``secrets/`` then
  ``!secrets/a.json`` keeps ``secrets/a.json`` secret);
* a symlink is judged by its own path **and** by its target's, so an innocently named link to
  ``.env`` is as secret as ``.env``.

Keeping this in one place matters: when the tools and the sandbox's scratch copy disagreed, a
file the tools hid was copied into the sandbox and a test that printed it handed it to the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pathspec

__all__ = ["SecretFiles"]


class SecretFiles:
    """The secret-file patterns of one workspace; an empty list matches nothing."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p.strip() for p in patterns if p.strip())
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns) if self.patterns else None
        # Directory verdicts, asked again for every file below them (thousands in a copy).
        self._dirs: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return self._spec is not None

    def _matches_dir(self, rel_dir: str) -> bool:
        verdict = self._dirs.get(rel_dir)
        if verdict is None:
            assert self._spec is not None
            verdict = self._spec.match_file(rel_dir + "/")
            self._dirs[rel_dir] = verdict
        return verdict

    def matches(self, rel: str, is_dir: bool = False) -> bool:
        """Whether the relative POSIX path ``rel`` is secret: itself (as a directory when
        ``is_dir``) or any directory above it. Symlinks are not followed (see :meth:`is_secret`).
        """
        if self._spec is None:
            return False
        rel = rel.strip("/")
        if not rel or rel == ".":
            return False  # the workspace root itself
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self._matches_dir("/".join(parts[:depth])):
                return True
        return self._matches_dir(rel) if is_dir else self._spec.match_file(rel)

    def is_secret(self, path: Path, root: Path, real_root: Path | None = None) -> bool:
        """Whether ``path`` (absolute, inside ``root``) or what it links to is a secret file.

        ``real_root`` is ``root`` with its symlinks resolved (computed when not given). The
        link target counts only when it is inside the workspace; a link that leaves the root is
        refused by the path checks anyway.
        """
        if self._spec is None:
            return False
        real_root = real_root if real_root is not None else root.resolve()
        is_dir = path.is_dir()
        seen: set[str] = set()
        for candidate, base in ((path, root), (Path(os.path.realpath(path)), real_root)):
            if candidate == base or not candidate.is_relative_to(base):
                continue
            rel = candidate.relative_to(base).as_posix()
            if rel in seen:
                continue
            seen.add(rel)
            if self.matches(rel, is_dir):
                return True
        return False
