"""``didChange`` applied as VS Code applies it: positions in the negotiated encoding, line
ends of every kind (``\r\n``, ``\r``, ``\n``), ranges clamped to the text."""

from __future__ import annotations

import re
from typing import Any

from lsprotocol import types

# ---- documents -----------------------------------------------------------------------------

_EOL_RE = re.compile(r"\r\n|\r|\n")


def _units(char: str, encoding: str) -> int:
    if encoding == types.PositionEncodingKind.Utf8:
        return len(char.encode("utf-8", "surrogatepass"))
    if encoding == types.PositionEncodingKind.Utf32:
        return 1
    return 2 if ord(char) > 0xFFFF else 1


def offset_at(text: str, position: types.Position, encoding: str) -> int:
    """The string index of an LSP position, clamped the way VS Code's TextDocument clamps.

    Only ``\\n``, ``\\r\\n`` and ``\\r`` end lines (pygls uses ``str.splitlines``, which also
    splits at form feeds, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028/2029; so its line numbers drift
    from the editor's on such files and edits land on the wrong line: pygls bug). A line past
    the end is the end of the text; a character past the end of a line is the line's end (the
    spec's rule); a position inside a UTF-16 surrogate pair rounds down to the character.
    """
    start = 0
    if position.line > 0:
        for index, match in enumerate(_EOL_RE.finditer(text), start=1):
            if index == position.line:
                start = match.end()
                break
        else:
            return len(text)
    eol = _EOL_RE.search(text, start)
    end = eol.start() if eol else len(text)
    wanted = position.character
    if encoding == types.PositionEncodingKind.Utf32 or (
        encoding == types.PositionEncodingKind.Utf16 and text[start:end].isascii()
    ):
        return start + min(wanted, end - start)
    units = 0
    offset = start
    while offset < end:
        step = _units(text[offset], encoding)
        if units + step > wanted:
            break
        units += step
        offset += 1
    return offset


def apply_change(text: str, change: Any, encoding: str = "utf-16") -> str:
    """``text`` after one didChange content change (whole-document or ranged).

    A range given end-first is applied start-first, as VS Code does.
    """
    rng = getattr(change, "range", None)
    if rng is None:
        return str(change.text)
    a = offset_at(text, rng.start, encoding)
    b = offset_at(text, rng.end, encoding)
    if a > b:
        a, b = b, a
    return text[:a] + str(change.text) + text[b:]


# ---- serving -------------------------------------------------------------------------------
