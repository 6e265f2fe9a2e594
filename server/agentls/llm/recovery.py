"""Recovery of tool calls a model wrote as text instead of making native calls.

Two kinds of text calls are recovered, in the order they appear:

- family syntaxes with explicit markers (Gemma 4, Qwen/Hermes XML, Mistral, Python calls in
  Gemma 3's ``tool_code`` fences or after Llama's ``<|python_tag|>``): see ``syntaxes``;
- JSON calls, as small models write them: a fenced ```json block, a bare object in prose,
  ``<tool_call>`` tags, often a little broken (trailing commas, single quotes, raw newlines in
  strings, Python literals, missing closing braces), repaired lightly (``jsonfix``).

Calls the model only thought about (inside ``<think>`` or Gemma 4's thought channel) do not
count. Only calls to known tools are returned; they go through the same validation as native
calls. Everything here is a pure function, linear in the length of the reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentls.llm.blocks import Span, blank, starts_inside, thinking_spans
from agentls.llm.callsyntax import Found, RawCall
from agentls.llm.jsonfix import bracket_ends, parse_json_lenient, repair_json
from agentls.llm.syntaxes import coerce_text_values, find_family_calls, find_python_reply
from agentls.llm.types import ToolCall

__all__ = ["Scan", "parse_json_lenient", "recover_tool_calls", "repair_json", "scan_reply"]

_TAG_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL | re.IGNORECASE)
# A fence's language tag is optional; an unclosed fence runs to the end of the text
# (the model may have been cut off by the token limit).
_FENCE_RE = re.compile(r"```[ \t]*[\w.+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_ARGUMENT_KEYS = ("arguments", "args", "parameters", "params", "input")
_NAME_KEYS = ("name", "tool", "tool_name", "function")
# How many shorter endings to try for an object whose closing braces are missing.
_MAX_TRUNCATIONS = 40
# Only the start of an unbalanced object is checked for a call marker before repairing it.
_CALL_KEY_WINDOW = 300
# Repairing an unbalanced object tries many endings; a reply full of unclosed braces that
# mention tool names could make that quadratic, so the number of such objects is capped.
_MAX_UNBALANCED = 4

Schemas = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Scan:
    """What a reply holds besides its answer.

    ``family``: calls in family syntaxes, whatever the tool's name (their markup is never part
    of an answer); ``unmarked``: calls recognised by their shape alone (JSON objects, a reply
    that is nothing but Python calls), so only calls to known tools; ``thinking``: where the
    model thought (closed blocks, or everything before a closer without an opener).
    """

    family: list[Found]
    unmarked: list[Found]
    thinking: list[Span]


def recover_tool_calls(
    text: str, tool_names: Collection[str], *, schemas: Schemas | None = None
) -> list[ToolCall]:
    """Tool calls written as text in ``text``, in order; only calls to ``tool_names`` count.

    JSON shapes: ``{"name", "arguments"}``, ``{"tool", "arguments"|"args"|"parameters"}``,
    ``{"function": {"name", "arguments"}}``, a ``{"tool_calls": [...]}`` wrapper, arguments
    given as a JSON string; in ``<tool_call>`` tags, fenced blocks or prose. Family syntaxes:
    see ``agentls.llm.syntaxes``. ``schemas`` (tool name -> JSON schema of its arguments) types
    Qwen XML's text values and names positional Python arguments; without it they stay text.
    """
    names = set(tool_names)
    if not names or not text:
        return []
    found = scan_reply(text, names, schemas=schemas)
    calls: list[ToolCall] = []
    for item in sorted([*found.family, *found.unmarked], key=lambda f: f.start):
        for raw in item.calls:
            call = _to_tool_call(raw, names, schemas)
            if call is not None:
                call.id = call.id or f"recovered_{len(calls)}"
                calls.append(call)
    return calls


def scan_reply(text: str, names: Collection[str], *, schemas: Schemas | None = None) -> Scan:
    """Find the calls and the thinking in a reply (see ``Scan``)."""
    names = set(names)
    family = find_family_calls(text, schemas)
    unmarked = list(_json_calls(blank(text, _spans(family)), names)) if names else []
    # A thinking marker inside a call is part of its arguments (code being edited); a call
    # inside thinking is a draft the model did not make.
    thinking = thinking_spans(text, unclosed=False, ignore=_spans([*family, *unmarked]))
    family = [f for f in family if not starts_inside(f.start, thinking)]
    unmarked = [f for f in unmarked if not starts_inside(f.start, thinking)]
    if names and not family and not unmarked:
        # A reply that parses as calls as it stands has no thinking in it, whatever its
        # strings hold; else try again without the thinking.
        whole = find_python_reply(text, names, schemas)
        if whole is None and thinking:
            whole = find_python_reply(blank(text, thinking), names, schemas)
        unmarked = [whole] if whole else []
    return Scan(family, unmarked, thinking)


def _spans(found: list[Found]) -> list[Span]:
    return [(f.start, f.end) for f in found]


def _to_tool_call(raw: RawCall, names: set[str], schemas: Schemas | None) -> ToolCall | None:
    name = _known_name(raw.name, names)
    if name is None:
        return None
    arguments = raw.arguments
    if arguments is None:
        return ToolCall(name=name, arguments={}, id=raw.id, raw_arguments=raw.raw)
    if raw.text_values:
        arguments = coerce_text_values(arguments, (schemas or {}).get(name))
    return ToolCall(name=name, arguments=arguments, id=raw.id, raw_arguments=raw.raw)


def _known_name(name: str, names: set[str]) -> str | None:
    """``name`` as a known tool: as written, without a namespace (``default_api:read``,
    ``functions.read``), or in lower case."""
    for candidate in (name, re.split(r"[:.]", name)[-1]):
        for spelling in (candidate, candidate.strip().lower()):
            if spelling in names:
                return spelling
    return None


# -- JSON calls -------------------------------------------------------------------------------


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


def _json_calls(text: str, names: set[str]) -> Iterator[Found]:
    """JSON calls to known tools; a call in a fence or tag spans the whole fence or tag."""
    marker = _call_marker(names)
    budget = [_MAX_UNBALANCED]
    for outer_start, outer_end, inner_start, inner_end in _regions(text):
        region = text[inner_start:inner_end]
        bounded = outer_start != inner_start
        for value, start, end in _json_values(region, marker, budget):
            calls = tuple(c for item in _flatten(value) if (c := _to_raw_call(item, names)))
            if calls:
                span = (outer_start, outer_end) if bounded else (start, end)
                offset = 0 if bounded else inner_start
                yield Found(span[0] + offset, span[1] + offset, calls)


def _regions(text: str) -> Iterator[tuple[int, int, int, int]]:
    """The parts of ``text`` to search for JSON, in order, as (outer start, outer end, inner
    start, inner end): tag bodies, fence bodies, prose (whose outer and inner are the same).

    Tags and fences bound the search, which lets an object with missing closing braces be
    repaired without swallowing the prose after it.
    """
    spans: list[tuple[int, int, int, int]] = []
    for match in _TAG_RE.finditer(text):
        spans.append((match.start(), match.end(), match.start(1), match.end(1)))
    tags = [(s, e) for s, e, _, _ in spans]  # in order and disjoint, as finditer gives them
    for match in _FENCE_RE.finditer(text):
        if not starts_inside(match.start(), tags):
            spans.append((match.start(), match.end(), match.start(1), match.end(1)))
    spans.sort()
    pos = 0
    for start, end, inner_start, inner_end in spans:
        if start < pos:
            continue  # a fence inside a tag: the tag body already covers it
        if start > pos:
            yield pos, start, pos, start
        yield start, end, inner_start, inner_end
        pos = end
    if pos < len(text):
        yield pos, len(text), pos, len(text)


def _json_values(
    region: str, marker: re.Pattern[str], budget: list[int]
) -> Iterator[tuple[Any, int, int]]:
    """JSON objects that may be calls (``marker``) found in ``region``, repaired where needed,
    with where they start and end.

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
            ends.update(bracket_ends(region, start))
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
            yield value, start, end
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


def _flatten(value: Any) -> Iterator[Any]:
    """Single calls, lists of calls, and ``{"tool_calls": [...]}`` wrappers, as single items."""
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        yield from _flatten(value["tool_calls"])
    else:
        yield value


def _to_raw_call(obj: Any, names: set[str]) -> RawCall | None:
    """A call to a known tool from one of the accepted JSON shapes, or None."""
    if not isinstance(obj, dict):
        return None
    raw_id = obj.get("id")
    call_id = raw_id if isinstance(raw_id, str) else ""
    body = obj
    if isinstance(obj.get("function"), dict):
        body = obj["function"]
    name = next((body[k] for k in _NAME_KEYS if isinstance(body.get(k), str)), None)
    if name is None or _known_name(name, names) is None:
        return None
    raw = next((body[k] for k in _ARGUMENT_KEYS if k in body), None)
    if raw is None:
        # Flattened form, {"name": "read", "path": "a.py"}: the other keys are the arguments.
        raw = {k: v for k, v in body.items() if k not in (*_NAME_KEYS, "id", "type")}
    if isinstance(raw, str):
        parsed = parse_json_lenient(raw) if raw.strip() else {}
        return RawCall(name, parsed if isinstance(parsed, dict) else None, raw, id=call_id)
    arguments = raw if isinstance(raw, dict) else None
    return RawCall(name, arguments, json.dumps(raw), id=call_id)
