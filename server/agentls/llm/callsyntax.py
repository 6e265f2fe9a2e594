"""Shared shapes for the tool-call syntaxes of model families (``gemma4``, ``pycall``,
``syntaxes``): a call as written, where it sits in the text, and a linear-time finder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawCall:
    """One call as a family syntax wrote it: not yet checked against the known tools."""

    name: str
    arguments: dict[str, Any] | None  # None: the arguments could not be parsed
    raw: str  # the argument text as written, for error messages
    id: str = ""  # the call's id when the syntax carries one
    # The values are raw text (Qwen's XML parameters): typed only by the tool's schema.
    text_values: bool = False


@dataclass(frozen=True)
class Found:
    """Calls recognised in ``text[start:end]``; the span covers their markup, so removing it
    leaves none of the syntax behind."""

    start: int
    end: int
    calls: tuple[RawCall, ...]


class NextIndex:
    """``text.find(needle, pos)`` with the last answer remembered.

    Finders ask for the next marker after ever-growing positions; remembering the answer keeps
    a reply with many openers and no closer linear instead of quadratic.
    """

    def __init__(self, text: str, needle: str) -> None:
        self.text = text
        self.needle = needle
        self._from = -1
        self._found = -1

    def __call__(self, pos: int) -> int:
        """The first index >= ``pos`` where the needle starts, or -1."""
        if self._from >= 0 and pos >= self._from and (self._found == -1 or self._found >= pos):
            return self._found
        self._from = pos
        self._found = self.text.find(self.needle, pos)
        return self._found


def skip_space(text: str, pos: int, end: int | None = None) -> int:
    """The first index at or after ``pos`` (before ``end``) that is not whitespace."""
    stop = len(text) if end is None else end
    while pos < stop and text[pos].isspace():
        pos += 1
    return pos
