"""Lenient JSON: parse what models write, repairing the common ways they break it.

Pure functions shared by the tool-call recovery modules (``recovery``, ``syntaxes``).
"""

from __future__ import annotations

import json
from typing import Any

_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_CLOSERS = {"{": "}", "[": "]"}


def parse_json_lenient(text: str) -> Any:
    """Parse ``text`` as JSON, repairing it lightly if needed; None when it cannot be parsed."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(repair_json(text))
    except (ValueError, RecursionError):
        return None


def repair_json(text: str) -> str:
    """Fix the common ways models break JSON.

    Converts single-quoted strings and Python ``True``/``False``/``None``, quotes bare keys,
    escapes raw control characters inside strings, drops trailing commas, and closes strings,
    objects and arrays left open at the end.
    """
    out: list[str] = []
    stack: list[str] = []
    quote: str | None = None  # the quote character of the string we are in
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == "\\" and i + 1 < n:
                nxt = text[i + 1]
                # \' is valid in Python but not in JSON; inside a JSON string it is just '.
                out.append("'" if nxt == "'" else ch + nxt)
                i += 2
                continue
            if ch == quote:
                out.append('"')
                quote = None
            elif ch == '"':  # a double quote inside a single-quoted string
                out.append('\\"')
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\r":
                out.append("\\r")
            elif ch == "\t":
                out.append("\\t")
            elif ord(ch) < 0x20:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
            i += 1
            continue
        if ch in "\"'":
            quote = ch
            out.append('"')
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
            out.append(ch)
        elif ch in "}]":
            _drop_trailing_comma(out)
            if stack and stack[-1] == ch:
                stack.pop()
            out.append(ch)
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k] in " \t\r\n":
                k += 1
            if k < n and text[k] == ":" and stack and stack[-1] == "}":
                out.append(json.dumps(word))  # a bare key: {path: "a.py"}
            else:
                out.append(_PY_LITERALS.get(word, word))
            i = j
            continue
        else:
            out.append(ch)
        i += 1
    if quote is not None:
        out.append('"')
    _drop_trailing_comma(out)
    if out and "".join(out).rstrip().endswith(":"):
        out.append(" null")  # a key whose value never came
    out.extend(reversed(stack))
    return "".join(out)


def _drop_trailing_comma(out: list[str]) -> None:
    """Remove a comma (and whitespace after it) at the end of ``out``."""
    k = len(out) - 1
    while k >= 0 and out[k] in (" ", "\t", "\n", "\r"):
        k -= 1
    if k >= 0 and out[k] == ",":
        del out[k:]


def bracket_ends(text: str, start: int, end: int | None = None) -> dict[int, int | None]:
    """For every bracket opened outside strings from ``start`` on (before ``end``): the index
    just past its match, or None if it never closes.

    One pass serves every nested object, which keeps the search linear on long replies.
    """
    ends: dict[int, int | None] = {}
    stack: list[int] = []
    quote: str | None = None
    i = start
    n = len(text) if end is None else min(end, len(text))
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            # An apostrophe in a bare word (don't) is not a string start.
            if ch == '"' or i == 0 or not text[i - 1].isalnum():
                quote = ch
        elif ch in "{[":
            stack.append(i)
        elif ch in "}]" and stack:
            ends[stack.pop()] = i + 1
            if not stack and i + 1 < n:
                # Between top-level values, prose may hold stray quotes; let the next
                # object start its own pass rather than inherit a wrong string state.
                break
        i += 1
    for open_at in stack:
        ends[open_at] = None
    return ends


def json_value_end(text: str, start: int, end: int | None = None) -> int | None:
    """The index just past the JSON object or array opening at ``text[start]``; None when it
    does not close (before ``end``)."""
    return bracket_ends(text, start, end).get(start)
