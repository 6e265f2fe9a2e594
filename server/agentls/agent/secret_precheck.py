"""A cheap test in front of the one secret-file matcher, for listings of 50,000 paths.

:class:`agentls.secret_files.SecretFiles` costs about 12 us a path (pathspec tries every
pattern's regex); ripgrep lists 50,000 paths in 0.1 s. The pre-check here answers only "could
any secret pattern match this path component?", with plain string tests where it can. It may
say yes too often (then the matcher decides), never no when the matcher could say secret; so
every verdict of "secret" is still the matcher's.
"""

from __future__ import annotations

import re

from agentls.secret_files import SecretFiles


def _loose_segment(segment: str) -> str:
    """A regex matching at least every path component the glob ``segment`` can match."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "\\" and i + 1 < len(segment):
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in segment[i + 2 :]:
            out.append("[^/]")  # any one character: wider than the class, never narrower
            i = segment.index("]", i + 2) + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class SecretPrecheck:
    """Whether a path component could be where a secret pattern matches: never "no" when
    :class:`SecretFiles` could say "secret", and cheap (string tests before any regex)."""

    def __init__(self, segments: list[str]) -> None:
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.prefixes: list[str] = []
        self.inner: list[str] = []
        loose: list[str] = []
        for segment in segments:
            pieces = segment.lower().split("*")
            if any(c in segment for c in "?[\\"):
                loose.append(_loose_segment(segment))
            elif len(pieces) == 1:
                self.names.add(pieces[0])
            elif len(pieces) == 2 and not pieces[0]:
                self.suffixes.append(pieces[1])
            elif len(pieces) == 2 and not pieces[1]:
                self.prefixes.append(pieces[0])
            elif len(pieces) == 3 and not pieces[0] and not pieces[2]:
                self.inner.append(pieces[1])
            else:
                loose.append(_loose_segment(segment))
        self._suffixes = tuple(self.suffixes)
        self._prefixes = tuple(self.prefixes)
        self._loose = re.compile("|".join(loose), re.IGNORECASE) if loose else None

    def __call__(self, name: str) -> bool:
        """Whether some pattern's last segment may match the component ``name``."""
        low = name.lower()  # wider than a case-sensitive match, never narrower
        return (
            low in self.names
            or low.endswith(self._suffixes)
            or low.startswith(self._prefixes)
            or bool(self.inner and any(piece in low for piece in self.inner))
            or (self._loose is not None and self._loose.fullmatch(name) is not None)
        )


def secret_prefilter(secrets: SecretFiles) -> SecretPrecheck | None:
    """The check a path's components pass before :class:`SecretFiles` is asked about it.

    A gitignore pattern matches a path (or a directory above it) only if each of its segments
    matches one of the path's components, and ``!`` lines only ever make paths public. So a
    path none of whose components fits a chosen segment of each positive pattern (the last
    that is not just ``*``s) is not secret, and the matcher (~12 us a path; ripgrep lists
    50,000 paths in 0.1 s) need not be asked. None when a pattern can match anything (``**``,
    ``*``): then it is always asked.
    """
    segments: list[str] = []
    for pattern in secrets.patterns:
        if pattern.startswith(("!", "#")):
            continue  # re-includes and comments never make a path secret
        parts = [s for s in pattern.split("/") if s.strip("*")]
        if not parts:
            return None
        segments.append(parts[-1])
    return SecretPrecheck(segments)
