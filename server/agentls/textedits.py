"""Minimal text edits in LSP coordinates, and applying them the way an editor does.

A leaf beside :mod:`agentls.textdiff` (standard library only, no lsprotocol). Positions
follow LSP: zero-based lines, characters counted in UTF-16 code units, lines split at
``\\n``, ``\\r\\n`` and ``\\r``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from agentls.textdiff import (
    common_prefix,
    common_suffix,
    count_breaks,
    hunks,
    line_start,
    split_lines,
)


@dataclass(frozen=True)
class PlainEdit:
    """A text edit in LSP coordinates, independent of lsprotocol.

    Ranges refer to the original text (as in LSP: all edits of one document are
    relative to the same version); edits never overlap and come sorted.
    """

    start_line: int
    start_character: int
    end_line: int
    end_character: int
    new_text: str


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (characters beyond the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def text_edits(old: str, new: str) -> list[PlainEdit]:
    """Minimal edits that turn ``old`` into ``new``, sorted, relative to ``old``.

    A line diff finds the changed regions; each region is then trimmed to the characters
    that actually differ, so renaming one word yields one small edit, not a whole line.
    Linear in the text's size for a few changes (see :mod:`agentls.textdiff`).
    """
    edits: list[PlainEdit] = []
    for hunk in hunks(old, new):
        start, end = hunk.old_from, hunk.old_to
        old_seg = old[start:end]
        new_seg = new[hunk.new_from : hunk.new_to]
        prefix = common_prefix(old_seg, new_seg)
        suffix = common_suffix(old_seg, new_seg, min(len(old_seg), len(new_seg)) - prefix)
        a, b = start + prefix, end - suffix
        replacement = new_seg[prefix : len(new_seg) - suffix]
        # LSP cannot address a position between "\r" and "\n": widen the edit by one.
        if 0 < a < len(old) and old[a - 1] == "\r" and old[a] == "\n":
            a -= 1
            replacement = "\r" + replacement
        if 0 < b < len(old) and old[b - 1] == "\r" and old[b] == "\n":
            b += 1
            replacement += "\n"
        if a == b and not replacement:
            continue
        # Counting from the hunk's own first line keeps this linear in the hunk, not the file.
        start_line = hunk.start + count_breaks(old, start, a)
        end_line = start_line + count_breaks(old, a, b)
        start_char = utf16_len(old[line_start(old, a, start) : a])
        end_char = utf16_len(old[line_start(old, b, start) : b])
        edits.append(PlainEdit(start_line, start_char, end_line, end_char, replacement))
    return edits


class _Positions:
    """Converts LSP positions to code-point offsets for one text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = split_lines(text)
        self.starts: list[int] = []
        offset = 0
        for line in self.lines:
            self.starts.append(offset)
            offset += len(line)
        # A text ending in a line break has one more (empty) line; so does an empty text.
        if not self.lines or self.lines[-1].endswith(("\n", "\r")):
            self.starts.append(offset)
            self.lines.append("")

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, utf16_len(self.text[self.starts[line] : offset])

    def offset(self, line: int, character: int) -> int:
        if line < 0:
            return 0
        if line >= len(self.lines):
            return len(self.text)
        content = self.lines[line].rstrip("\r\n")
        units = 0
        for index, char in enumerate(content):
            if units >= character:
                return self.starts[line] + index
            units += 2 if ord(char) > 0xFFFF else 1
        # LSP: a character past the end of the line means the end of the line.
        return self.starts[line] + len(content)


def apply_text_edits(text: str, edits: Iterable[PlainEdit]) -> str:
    """Apply LSP-style edits (ranges relative to ``text``) the way an editor does.

    Raises ``ValueError`` for overlapping edits, which LSP forbids.
    """
    positions = _Positions(text)
    spans = sorted(
        (
            positions.offset(e.start_line, e.start_character),
            positions.offset(e.end_line, e.end_character),
            index,
            e.new_text,
        )
        for index, e in enumerate(edits)
    )
    out: list[str] = []
    cursor = 0
    for start, end, _index, new_text in spans:
        if start < cursor or end < start:
            raise ValueError("text edits overlap or have an inverted range")
        out.append(text[cursor:start])
        out.append(new_text)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)
