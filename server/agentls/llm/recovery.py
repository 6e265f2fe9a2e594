"""Recovery of tool calls a model wrote as text instead of making native calls.

Small models often answer with a fenced ```json block, a bare JSON object in prose, or
``<tool_call>...</tool_call>`` tags, and the JSON is frequently a little broken: trailing
commas, single quotes, raw newlines inside strings, Python literals, missing closing braces.
This module finds such calls, repairs the JSON lightly, and keeps only calls to known tools.
Everything here is a pure function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from typing import Any

from agentls.llm.types import ToolCall

_TAG_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL | re.IGNORECASE)
# A fence's language tag is optional; an unclosed fence runs to the end of the text
# (the model may have been cut off by the token limit).
_FENCE_RE = re.compile(r"```[ \t]*[\w.+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_ARGUMENT_KEYS = ("arguments", "args", "parameters", "params", "input")
_NAME_KEYS = ("name", "tool", "tool_name", "function")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_CLOSERS = {"{": "}", "[": "]"}
# How many shorter endings to try for an object whose closing braces are missing.
_MAX_TRUNCATIONS = 40
# Only the start of an unbalanced object is checked for a call marker before repairing it.
_CALL_KEY_WINDOW = 300
# Repairing an unbalanced object tries many endings; a reply full of unclosed braces that
# mention tool names could make that quadratic, so the number of such objects is capped.
_MAX_UNBALANCED = 4


def _call_marker(names: Collection[str]) -> re.Pattern[str]:
    """A pattern that any text holding a call to one of ``names`` must contain.

    Checking for it first keeps the search cheap on replies full of code, where most braces
    are not JSON at all.
    """
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(
        rf"""["']?\b(?:name|tool|tool_name)\b["']?\s*:\s*["']?(?:{alternatives})\b"""
        r"""|["']?\b(?:function|tool_calls)\b["']?\s*:"""
    )


def recover_tool_calls(text: str, tool_names: Collection[str]) -> list[ToolCall]:
    """Tool calls written as text in ``text``, in order; only calls to ``tool_names`` count.

    Accepted shapes: ``{"name", "arguments"}``, ``{"tool", "arguments"|"args"|"parameters"}``,
    ``{"function": {"name", "arguments"}}``, a ``{"tool_calls": [...]}`` wrapper, and arguments
    given as a JSON string. Calls may sit in ``<tool_call>`` tags, fenced blocks, or prose.
    """
    names = set(tool_names)
    if not names:
        return []
    marker = _call_marker(names)
    budget = [_MAX_UNBALANCED]
    calls: list[ToolCall] = []
    for region in _regions(text):
        for value in _json_values(region, marker, budget):
            for item in _flatten(value):
                call = _to_call(item, names)
                if call is not None:
                    call.id = call.id or f"recovered_{len(calls)}"
                    calls.append(call)
    return calls


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
    except ValueError:
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


def _regions(text: str) -> Iterator[str]:
    """The parts of ``text`` to search for JSON, in order: tag bodies, fence bodies, prose.

    Tags and fences bound the search, which lets an object with missing closing braces be
    repaired without swallowing the prose after it.
    """
    spans: list[tuple[int, int, int, int]] = []  # outer start/end, inner start/end
    for match in _TAG_RE.finditer(text):
        spans.append((match.start(), match.end(), match.start(1), match.end(1)))
    for match in _FENCE_RE.finditer(text):
        if not any(s <= match.start() < e for s, e, _, _ in spans):
            spans.append((match.start(), match.end(), match.start(1), match.end(1)))
    spans.sort()
    pos = 0
    for start, end, inner_start, inner_end in spans:
        if start < pos:
            continue  # a fence inside a tag: the tag body already covers it
        if start > pos:
            yield text[pos:start]
        yield text[inner_start:inner_end]
        pos = end
    if pos < len(text):
        yield text[pos:]


def _json_values(region: str, marker: re.Pattern[str], budget: list[int]) -> Iterator[Any]:
    """JSON objects that may be calls (``marker``) found in ``region``, repaired where needed.

    ``budget`` (a one-item list shared across regions) counts the unbalanced objects we may
    still try to repair.
    """
    i = 0
    next_marker: re.Match[str] | None = None
    ends: dict[int, int | None] = {}
    while True:
        start = region.find("{", i)
        if start < 0:
            return
        if next_marker is None or next_marker.start() < start:
            next_marker = marker.search(region, start)  # searched again only once passed
            if next_marker is None:
                return  # no object from here on can be a call
        if start not in ends:
            ends.update(_bracket_ends(region, start))
        end = ends[start]
        value: Any = None
        if end is not None and marker.search(region, start, end):
            value = parse_json_lenient(region[start:end])
        if (
            value is None
            and budget[0] > 0
            and marker.search(region, start, start + _CALL_KEY_WINDOW)
        ):
            # Unbalanced (or unparseable): try ever shorter endings, each repaired.
            budget[0] -= 1
            value, end = _parse_truncated(region, start, end)
        if isinstance(value, dict | list) and end is not None:
            yield value
            i = end
        else:
            i = start + 1


def _parse_truncated(region: str, start: int, end: int | None) -> tuple[Any, int | None]:
    """Parse the longest prefix of ``region[start:]`` ending at a plausible closing char."""
    limit = end if end is not None else len(region)
    candidates = [region[start:limit]]
    ends = [limit]
    k = limit
    while len(ends) < _MAX_TRUNCATIONS:
        k = max(
            region.rfind("}", start, k), region.rfind("]", start, k), region.rfind('"', start, k)
        )
        if k <= start:
            break
        candidates.append(region[start : k + 1])
        ends.append(k + 1)
    for candidate, stop in zip(candidates, ends, strict=True):
        value = parse_json_lenient(candidate)
        if isinstance(value, dict) and _looks_like_call(value):
            return value, stop
    return None, None


def _looks_like_call(value: dict[str, Any]) -> bool:
    return any(key in value for key in (*_NAME_KEYS, "tool_calls"))


def _bracket_ends(text: str, start: int) -> dict[int, int | None]:
    """For every bracket opened outside strings from ``start`` on: the index just past its
    match, or None if it never closes.

    One pass serves every nested object, which keeps the search linear on long replies.
    """
    ends: dict[int, int | None] = {}
    stack: list[int] = []
    quote: str | None = None
    i = start
    n = len(text)
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


def _flatten(value: Any) -> Iterator[Any]:
    """Single calls, lists of calls, and ``{"tool_calls": [...]}`` wrappers, as single items."""
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        yield from _flatten(value["tool_calls"])
    else:
        yield value


def _to_call(obj: Any, names: set[str]) -> ToolCall | None:
    """A ToolCall from one of the accepted shapes, or None."""
    if not isinstance(obj, dict):
        return None
    raw_id = obj.get("id")
    call_id = raw_id if isinstance(raw_id, str) else ""
    body = obj
    if isinstance(obj.get("function"), dict):
        body = obj["function"]
    name = next((body[k] for k in _NAME_KEYS if isinstance(body.get(k), str)), None)
    if name not in names:
        return None
    assert isinstance(name, str)
    raw = next((body[k] for k in _ARGUMENT_KEYS if k in body), None)
    if raw is None:
        # Flattened form, {"name": "read", "path": "a.py"}: the other keys are the arguments.
        raw = {k: v for k, v in body.items() if k not in (*_NAME_KEYS, "id", "type")}
    if isinstance(raw, str):
        parsed = parse_json_lenient(raw) if raw.strip() else {}
        if isinstance(parsed, dict):
            return ToolCall(name=name, arguments=parsed, id=call_id, raw_arguments=raw)
        return ToolCall(name=name, arguments={}, id=call_id, raw_arguments=raw)
    if isinstance(raw, dict):
        return ToolCall(name=name, arguments=raw, id=call_id, raw_arguments=json.dumps(raw))
    return ToolCall(name=name, arguments={}, id=call_id, raw_arguments=json.dumps(raw))
