"""Which of many listed paths are secret, fast: a literal prefilter before the one matcher.

Asking :class:`~agentls.secret_files.SecretFiles` about each of 50,000 paths costs most of a
second (every pattern's regular expression is tried on every path). Yet a path can only match
a ``.gitignore`` pattern if it contains that pattern's literal text: ``.env*`` needs ``.env``,
``**/secrets/*.json`` needs ``secrets`` and ``.json``, and a file inside the directory
``vault/`` contains ``vault``. So one case-insensitive search for those literals over all the
paths at once (in C) finds the few candidates, and the one matcher judges each of them. The
prefilter only ever lets more paths through: a pattern whose literals cannot be worked out
(no literal at all, as in ``*``, or an unclosed ``[``) makes every path a candidate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agentls.secret_files import SecretFiles

__all__ = ["literal_pieces", "secret_paths", "spans_containing"]

_BREAK = frozenset("*?/") | frozenset(" \t\r\n\f\v")


def literal_pieces(pattern: str) -> list[str] | None:
    """The literal runs any path matched by the include ``pattern`` contains.

    Returns ``[]`` for a line that includes nothing (blank, comment, ``!`` negation) and None
    when the pattern may match a path without any literal text. Runs are split at wildcards,
    brackets, '/' (an anchoring slash is not in the path) and whitespace (trailing spaces are
    stripped by gitignore); splitting only ever makes the requirement weaker.
    """
    text = pattern.strip()
    if not text or text.startswith(("#", "!")):
        return []
    pieces: list[str] = []
    run: list[str] = []

    def cut() -> None:
        if run:
            pieces.append("".join(run))
            run.clear()

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                return None  # a dangling escape: let the matcher see every path
            escaped = text[i + 1]
            if escaped in _BREAK:
                cut()
            else:
                run.append(escaped)
            i += 2
            continue
        if char == "[":
            cut()
            end = _bracket_end(text, i)
            if end is None:
                return None
            i = end + 1
            continue
        if char in _BREAK:
            cut()
        else:
            run.append(char)
        i += 1
    cut()
    return pieces or None


def _bracket_end(text: str, start: int) -> int | None:
    """Index of the ']' closing the bracket expression opened at ``start``, or None."""
    i = start + 1
    if i < len(text) and text[i] in "!^":
        i += 1
    if i < len(text) and text[i] == "]":
        i += 1  # a ']' first is a literal member
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "]":
            return i
        i += 1
    return None


def _needles(patterns: Iterable[str]) -> list[str] | None:
    """The longest literal of each include pattern, or None if some pattern has none."""
    needles: set[str] = set()
    for pattern in patterns:
        pieces = literal_pieces(pattern)
        if pieces is None:
            return None
        if pieces:
            needles.add(max(pieces, key=len))
    return sorted(needles, key=len, reverse=True)


def secret_paths(secrets: SecretFiles, paths: Sequence[str], text: str | None = None) -> list[str]:
    """The ``paths`` (relative, POSIX) that ``secrets`` matches, themselves or by a parent
    directory, as :meth:`SecretFiles.matches` decides; symlinks are not followed here.
    ``text`` is ``"\\0".join(paths)`` when the caller has it already."""
    if not secrets or not paths:
        return []
    needles = _needles(secrets.patterns)
    if needles is None:
        return [p for p in paths if secrets.matches(p)]
    if not needles:
        return []  # only negations: nothing is included
    text = "\0".join(paths) if text is None else text
    candidates = (text[start:end] for start, end in spans_containing(text, needles))
    return [path for path in candidates if secrets.matches(path)]


def spans_containing(text: str, needles: Iterable[str]) -> list[tuple[int, int]]:
    """The (start, end) of each NUL-separated name in ``text`` that holds one of
    ``needles``, ignoring case, in order."""
    needles = [n for n in needles if n]
    folded = text.lower()
    spans: set[tuple[int, int]] = set()
    if len(folded) == len(text):
        # str.find runs at memory speed; a regex alternation would try every needle at
        # every position. Lower case on both sides: the match can only be wider.
        for needle in {n.lower() for n in needles}:
            position = 0
            while (index := folded.find(needle, position)) >= 0:
                span = _span(text, index, index + len(needle))
                spans.add(span)
                position = span[1] + 1
    elif needles:  # lower() changed a length (rare letters): offsets would shift, use a regex
        finder = re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)
        position = 0
        while (hit := finder.search(text, position)) is not None:
            span = _span(text, hit.start(), hit.end())
            spans.add(span)
            position = span[1] + 1
    return sorted(spans)


def _span(text: str, start: int, end: int) -> tuple[int, int]:
    """The bounds of the NUL-separated path holding ``text[start:end]``."""
    stop = text.find("\0", end)
    return text.rfind("\0", 0, start) + 1, len(text) if stop < 0 else stop
