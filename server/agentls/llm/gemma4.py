"""Gemma 4's tool-call syntax: ``<|tool_call>call:NAME{key:<|"|>text<|"|>,n:3}<tool_call|>``.

Keys are bare, strings sit between ``<|"|>`` tokens and are raw text (no escapes: quotes,
backslashes and braces inside are kept byte for byte), numbers, ``true``/``false``/``null``,
objects and arrays are written as in JSON. Calls may follow each other without separators.

Parsing follows Ollama's ``model/parsers/gemma4.go`` and vLLM's ``tool_parsers/gemma4_*``: a
string ends at the first ``<|"|>`` after it opens; JSON-quoted strings (``"..."``) and single
-quoted ones are tolerated; a call cut off at the token limit (no ``<tool_call|>``, a string or
object left open) is repaired the way Ollama repairs it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentls.llm.callsyntax import Found, NextIndex, RawCall, skip_space

OPEN = "<|tool_call>"
CLOSE = "<tool_call|>"
DELIM = '<|"|>'
# Some Gemma 4 builds end a call with the end of turn instead of <tool_call|> (vLLM notes it).
_TURN_END = "<turn|>"
# The name after the opener; ``call:`` is what Gemma 4 writes, tolerated when missing.
_NAME_RE = re.compile(r"\s*(?:call\s*:)?\s*([A-Za-z_][\w.:-]{0,100}?)\s*\{")
_NUMBER_RE = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
_BARE_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_MAX_DEPTH = 64
# A strict parse runs from the opener to wherever the call really ends (strings may hold any
# text). A malformed call could make it run far, so only this many may fail; after that every
# call is parsed within its own region, which keeps a pathological reply linear.
_MAX_UNBOUNDED_FAILURES = 4


class _Malformed(Exception):
    """The text is not Gemma 4 argument syntax (in strict mode: not complete)."""


def find_gemma4_calls(text: str) -> list[Found]:
    """Every ``<|tool_call>`` call in ``text``, in order, whatever the tool's name."""
    found: list[Found] = []
    if OPEN not in text:
        return found
    opens = NextIndex(text, OPEN)
    failures = 0
    pos = 0
    while (start := opens(pos)) >= 0:
        match = _NAME_RE.match(text, start + len(OPEN))
        if match is None:
            pos = start + len(OPEN)
            continue
        name = match.group(1)
        brace = match.end() - 1
        nxt = opens(brace)
        region_end = nxt if nxt >= 0 else len(text)
        value: dict[str, Any] | None = None
        stop = brace
        if failures < _MAX_UNBOUNDED_FAILURES:
            try:
                value, stop = _Args(text, len(text), lenient=False).obj(brace, 1)
            except _Malformed:
                failures += 1
        if value is None:
            body_end = _body_end(text, brace, region_end)
            try:
                value, stop = _Args(text, body_end, lenient=True).obj(brace, 1)
            except _Malformed:
                value, stop = None, body_end
        raw = text[brace:stop]
        end = _skip_closers(text, stop)
        found.append(Found(start, end, (RawCall(name, value, raw),)))
        pos = max(end, start + len(OPEN))
    return found


def _body_end(text: str, brace: int, region_end: int) -> int:
    """Where a call that did not parse strictly ends: its last ``<tool_call|>`` before the
    next call, else an end of turn, else the next call (or the end of the reply)."""
    close = text.rfind(CLOSE, brace, region_end)
    if close >= 0:
        return close
    turn = text.find(_TURN_END, brace, region_end)
    return turn if turn >= 0 else region_end


def _skip_closers(text: str, pos: int) -> int:
    """Past the ``<tool_call|>`` after a call; Gemma 4 sometimes repeats it (Ollama drops the
    extras as noise)."""
    end = pos
    while True:
        k = skip_space(text, end)
        if text.startswith(CLOSE, k):
            end = k + len(CLOSE)
        else:
            return end


class _Args:
    """A recursive-descent parser for one call's arguments, over ``text[:end]``.

    ``lenient``: the end of the region closes whatever is still open (a call cut off at the
    token limit), and a string left open ends before the region's final ``}``.
    """

    def __init__(self, text: str, end: int, *, lenient: bool) -> None:
        self.text = text
        self.end = end
        self.lenient = lenient
        self.delims = NextIndex(text, DELIM)

    def value(self, i: int, depth: int) -> tuple[Any, int]:
        """The value starting at ``i`` (after whitespace) and the index just past it."""
        t = self.text
        i = skip_space(t, i, self.end)
        if i >= self.end:
            if self.lenient:
                return None, i
            raise _Malformed
        if t.startswith(DELIM, i):
            return self.gemma_string(i + len(DELIM))
        ch = t[i]
        if ch == "{":
            return self.obj(i, depth + 1)
        if ch == "[":
            return self.arr(i, depth + 1)
        if ch == '"':
            return self.json_string(i)
        if ch == "'":
            return self.single_quoted(i)
        return self.bare(i)

    def obj(self, i: int, depth: int) -> tuple[dict[str, Any], int]:
        """The object whose ``{`` is at ``i``."""
        if depth > _MAX_DEPTH:
            raise _Malformed
        t = self.text
        result: dict[str, Any] = {}
        i += 1
        while True:
            i = skip_space(t, i, self.end)
            if i >= self.end:
                return self._unclosed(result, i)
            if t[i] == "}":
                return result, i + 1
            key, i = self.key(i)
            i = skip_space(t, i, self.end)
            if i >= self.end:
                result[key] = None
                return self._unclosed(result, i)
            if t[i] != ":":
                raise _Malformed
            result[key], i = self.value(i + 1, depth)
            i = skip_space(t, i, self.end)
            if i >= self.end:
                return self._unclosed(result, i)
            if t[i] == ",":
                i += 1
            elif t[i] != "}":
                raise _Malformed

    def arr(self, i: int, depth: int) -> tuple[list[Any], int]:
        """The array whose ``[`` is at ``i``."""
        if depth > _MAX_DEPTH:
            raise _Malformed
        t = self.text
        items: list[Any] = []
        i += 1
        while True:
            i = skip_space(t, i, self.end)
            if i >= self.end:
                return self._unclosed(items, i)
            if t[i] == "]":
                return items, i + 1
            item, i = self.value(i, depth)
            items.append(item)
            i = skip_space(t, i, self.end)
            if i >= self.end:
                return self._unclosed(items, i)
            if t[i] == ",":
                i += 1
            elif t[i] != "]":
                raise _Malformed

    def _unclosed(self, value: Any, i: int) -> tuple[Any, int]:
        if self.lenient:
            return value, i
        raise _Malformed

    def key(self, i: int) -> tuple[str, int]:
        """A bare key, or one quoted with ``<|"|>`` or ``"``."""
        t = self.text
        if t.startswith(DELIM, i):
            key, j = self.gemma_string(i + len(DELIM))
            return key, j
        if t[i] == '"':
            key, j = self.json_string(i)
            return str(key), j
        j = i
        while j < self.end and t[j] not in ':{}[],"' and not t[j].isspace():
            if t[j] == "<" and t.startswith(DELIM, j):
                break
            j += 1
        if j == i:
            raise _Malformed
        return t[i:j], j

    def gemma_string(self, i: int) -> tuple[str, int]:
        """Raw text up to the next ``<|"|>``; ``i`` is just past the opening one."""
        close = self.delims(i)
        if close >= 0 and close + len(DELIM) <= self.end:
            return self.text[i:close], close + len(DELIM)
        if not self.lenient:
            raise _Malformed
        # Cut off: the string runs to the end of the call, before the call's closing brace
        # (Ollama's repairGemma4MissingStringDelimiter).
        stop = self.end
        while stop > i and self.text[stop - 1].isspace():
            stop -= 1
        if stop > i and self.text[stop - 1] in "}]":
            stop -= 1
        return self.text[i:stop], stop

    def json_string(self, i: int) -> tuple[str, int]:
        """A JSON string with escapes, as Ollama accepts next to Gemma strings."""
        t = self.text
        j = i + 1
        while j < self.end:
            ch = t[j]
            if ch == "\\":
                j += 2
                continue
            if ch == '"':
                try:
                    value = json.loads(t[i : j + 1], strict=False)
                except ValueError:
                    value = t[i + 1 : j]
                return str(value), j + 1
            j += 1
        if not self.lenient:
            raise _Malformed
        return t[i + 1 : self.end], self.end

    def single_quoted(self, i: int) -> tuple[str, int]:
        """``'text'``, kept raw (Ollama's repairGemma4SingleQuotedValues); a Gemma delimiter
        straight after it is a stray and dropped."""
        t = self.text
        j = i + 1
        while j < self.end:
            if t[j] == "\\":
                j += 2
                continue
            if t[j] == "'":
                stop = j + 1
                if t.startswith(DELIM, stop):
                    stop += len(DELIM)
                return t[i + 1 : j], stop
            j += 1
        raise _Malformed

    def bare(self, i: int) -> tuple[Any, int]:
        """A number, ``true``/``false``/``null``, or (leniently, as vLLM does) bare text."""
        t = self.text
        j = i
        # '<' ends it too: a bare value never holds one, and a missing '}' before
        # <tool_call|> must not swallow the closer.
        while j < self.end and t[j] not in ",}]<\n":
            j += 1
        word = t[i:j].strip()
        if not word:
            raise _Malformed
        if word in _BARE_LITERALS:
            return _BARE_LITERALS[word], j
        number = _NUMBER_RE.fullmatch(word)
        if number is not None:
            is_float = number.group(1) is not None or number.group(2) is not None
            return (float(word) if is_float else int(word)), j
        return word, j
