"""Tool-call syntaxes of model families that a model server may leave in the reply as text.

When the server's own parser misses a call (no template, a different parser, a small model
that drifts), the family's raw syntax arrives as plain ``content``. Each finder here returns
where such calls sit and what they say, whatever the tool's name; ``recovery`` keeps the calls
to known tools and ``cleanup`` removes the markup from answers.

- Gemma 4: ``<|tool_call>call:NAME{...}<tool_call|>`` (module ``gemma4``).
- Qwen3-Coder / Qwen 3.5 / Hermes XML: ``<function=NAME><parameter=K>V</parameter></function>``,
  inside ``<tool_call>`` or bare; Llama 3.1's ``<function=NAME>{json}</function>`` too.
- Mistral: ``[TOOL_CALLS][{"name", "arguments"}]`` (tokenizers before v11) and
  ``[TOOL_CALLS]NAME[ARGS]{...}`` (v11 and later; ``[CALL_ID]id`` optional).
- Python calls (module ``pycall``): Gemma 3's fenced ``tool_code`` blocks, Llama 3.x after
  ``<|python_tag|>`` (``x.call(...)``), Llama 4's ``<|python_start|>...<|python_end|>``, a
  ``<tool_call>`` tag holding ``f(...)``, and a reply that is nothing but a call list.

JSON calls (``{"name": ..., "arguments"|"parameters": ...}``, Llama 3.x and Hermes) are found by
``recovery`` itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from agentls.llm.callsyntax import Found, NextIndex, RawCall, skip_space
from agentls.llm.gemma4 import find_gemma4_calls
from agentls.llm.jsonfix import json_value_end, parse_json_lenient
from agentls.llm.pycall import parse_python_calls

TAG_OPEN, TAG_CLOSE = "<tool_call>", "</tool_call>"
_FUNC_OPEN, _FUNC_CLOSE = "<function=", "</function>"
_PARAM_OPEN, _PARAM_CLOSE = "<parameter=", "</parameter>"
_MISTRAL = "[TOOL_CALLS]"
_PYTHON_TAG = "<|python_tag|>"
_PYTHON_START, _PYTHON_END = "<|python_start|>", "<|python_end|>"
_LLAMA_ENDS = ("<|eom_id|>", "<|eot_id|>")
_CODE_FENCES = ("```tool_code", "```tool_call")
_NAME_RE = re.compile(r"[A-Za-z_][\w.:-]{0,100}")
# [TOOL_CALLS]read[ARGS]{...}, [TOOL_CALLS]read[CALL_ID]a1b2c3d4e[ARGS]{...}, [TOOL_CALLS]read{...}
_MISTRAL_CALL_RE = re.compile(
    r"\s*([A-Za-z_][\w.:-]{0,100}?)\s*(?:\[CALL_ID\]\s*([\w-]*)\s*)?(?:\[ARGS\])?\s*\{"
)
Schemas = Mapping[str, Mapping[str, Any]]
# How far a tag name may run before its '>': a longer one is prose, not a tag.
_MAX_TAG_NAME = 200
# Python blocks parsed per reply: each parse is cheap but not free, and a real reply holds a
# handful; a reply made of thousands of fence openers must stay fast.
_MAX_PYTHON_BLOCKS = 64


def find_family_calls(text: str, schemas: Schemas | None = None) -> list[Found]:
    """The calls of every family syntax with explicit markers, in order, without overlaps.

    Where two syntaxes claim overlapping text (a Qwen tag inside a Gemma 4 string), the one that
    starts first wins: the inner one is part of the outer call's arguments. ``schemas`` name
    positional arguments of Python calls.
    """
    spans = [
        *find_gemma4_calls(text),
        *find_xml_calls(text),
        *find_mistral_calls(text),
        *find_python_blocks(text, schemas),
    ]
    spans.sort(key=lambda f: (f.start, -f.end))
    kept: list[Found] = []
    for found in spans:
        if kept and found.start < kept[-1].end:
            continue
        kept.append(found)
    return kept


# -- Qwen / Hermes XML ------------------------------------------------------------------------


def find_xml_calls(text: str) -> list[Found]:
    """``<function=NAME>`` calls, with their ``<tool_call>`` wrapper when there is one.

    A value is the raw text between ``<parameter=K>`` and ``</parameter>`` minus the single
    newline the template puts at each end (as vLLM's and Ollama's qwen3coder parsers do). A
    missing ``</parameter>`` ends the value at the next parameter or the function's end.
    """
    found: list[Found] = []
    if _FUNC_OPEN not in text:
        return found
    funcs = NextIndex(text, _FUNC_OPEN)
    finders = {
        needle: NextIndex(text, needle)
        for needle in (_PARAM_CLOSE, _PARAM_OPEN, _FUNC_CLOSE, TAG_CLOSE)
    }
    pos = 0
    while (start := funcs(pos)) >= 0:
        name, after = _tag_name(text, start + len(_FUNC_OPEN))
        if name is None:
            pos = start + len(_FUNC_OPEN)
            continue
        nxt = funcs(after)
        limit = nxt if nxt >= 0 else len(text)
        arguments, stop, text_values = _xml_arguments(text, after, limit, finders)
        end = stop
        k = skip_space(text, end, limit)
        if text.startswith(_FUNC_CLOSE, k):
            end = k + len(_FUNC_CLOSE)
        outer_start, end = _wrapper(text, start, end)
        raw = text[after:stop]
        call = RawCall(name, arguments, raw, text_values=text_values)
        found.append(Found(outer_start, end, (call,)))
        pos = max(end, start + len(_FUNC_OPEN))
    return found


def _tag_name(text: str, pos: int) -> tuple[str | None, int]:
    """The name in ``<function=NAME>`` / ``<parameter=NAME>`` from ``pos``, and the index past
    the ``>``."""
    gt = text.find(">", pos, pos + _MAX_TAG_NAME)
    if gt < 0:
        return None, pos
    name = text[pos:gt].strip()
    if not name or "\n" in name or "<" in name:
        return None, pos
    return name, gt + 1


def _xml_arguments(
    text: str, pos: int, limit: int, finders: dict[str, NextIndex]
) -> tuple[dict[str, Any] | None, int, bool]:
    """The parameters of one function body starting at ``pos``; the index where they end;
    whether the values are raw text."""
    arguments: dict[str, Any] = {}
    i = skip_space(text, pos, limit)
    if text.startswith("{", i):
        # Llama 3.1's <function=NAME>{"arg": ...}</function>.
        stop = _json_stop(text, i, limit)
        value = parse_json_lenient(text[i:stop])
        return (value if isinstance(value, dict) else None), stop, False
    while text.startswith(_PARAM_OPEN, i):
        key, value_start = _tag_name(text, i + len(_PARAM_OPEN))
        if key is None:
            break
        # As vLLM's qwen3coder parser: the value ends at the first </parameter>, or, when that
        # is missing, at the next parameter or the function's end.
        ends = [
            (found, needle)
            for needle in (_PARAM_CLOSE, _PARAM_OPEN, _FUNC_CLOSE)
            if 0 <= (found := finders[needle](value_start)) < limit
        ]
        if ends:
            value_end, needle = min(ends)
            i = value_end + len(_PARAM_CLOSE) if needle == _PARAM_CLOSE else value_end
        else:
            tag_close = finders[TAG_CLOSE](value_start)
            value_end = i = tag_close if 0 <= tag_close < limit else limit
        value = text[value_start:value_end]
        # The template writes "<parameter=k>\nvalue\n</parameter>": one newline each side is
        # layout, anything more belongs to the value.
        value = value.removeprefix("\n").removesuffix("\n")
        arguments[key] = value
        i = skip_space(text, i, limit)
    return arguments, i, True


def _wrapper(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to a ``<tool_call>...</tool_call>`` around it."""
    j = start
    while j > 0 and text[j - 1].isspace():
        j -= 1
    if text.endswith(TAG_OPEN, 0, j):
        start = j - len(TAG_OPEN)
        k = skip_space(text, end)
        if text.startswith(TAG_CLOSE, k):
            end = k + len(TAG_CLOSE)
    return start, end


def coerce_text_values(
    arguments: dict[str, Any], schema: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Type raw-text values by the tool's JSON schema (integer, number, boolean, array, object).

    Without a schema, or for string properties, the text stays text: guessing would turn a
    ``write`` of a JSON file into an object, or an ``edit`` to ``0`` into a number, and the
    tools' validation already reads numeric text where a number is wanted.
    """
    props = (schema or {}).get("properties")
    if not isinstance(props, Mapping):
        return arguments
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        types = _types(props.get(key))
        out[key] = _coerce(value, types) if isinstance(value, str) and types else value
    return out


def _types(prop: Any) -> set[str]:
    if not isinstance(prop, Mapping):
        return set()
    declared = prop.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or [])
    for option in prop.get("anyOf") or prop.get("oneOf") or []:
        types |= _types(option)
    return {t for t in types if isinstance(t, str)}


def _coerce(value: str, types: set[str]) -> Any:
    if "string" in types:
        return value
    word = value.strip()
    if word.lower() == "null":
        return None
    if "boolean" in types and word.lower() in ("true", "false"):
        return word.lower() == "true"
    if "integer" in types:
        try:
            return int(word)
        except ValueError:
            pass
    if "number" in types:
        try:
            number = float(word)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return int(number) if number.is_integer() else number
    if types & {"array", "object"}:
        try:
            return json.loads(word)
        except ValueError:
            pass
    return value


# -- Mistral ----------------------------------------------------------------------------------


def find_mistral_calls(text: str) -> list[Found]:
    """``[TOOL_CALLS]`` calls, both the JSON-list form and the ``NAME[ARGS]{...}`` form."""
    found: list[Found] = []
    if _MISTRAL not in text:
        return found
    marks = NextIndex(text, _MISTRAL)
    pos = 0
    while (start := marks(pos)) >= 0:
        i = skip_space(text, start + len(_MISTRAL))
        nxt = marks(start + len(_MISTRAL))
        limit = nxt if nxt >= 0 else len(text)
        if i < limit and text[i] in "[{":
            stop = _json_stop(text, i, limit)
            value = parse_json_lenient(text[i:stop])
            items = value if isinstance(value, list) else [value]
            calls = tuple(c for item in items if (c := _json_call(item)) is not None)
            found.append(Found(start, stop, calls))
            pos = max(stop, start + len(_MISTRAL))
            continue
        match = _MISTRAL_CALL_RE.match(text, start + len(_MISTRAL))
        if match is None or match.end() > limit:
            pos = start + len(_MISTRAL)
            continue
        brace = match.end() - 1
        stop = _json_stop(text, brace, limit)
        raw = text[brace:stop]
        value = parse_json_lenient(raw)
        arguments = value if isinstance(value, dict) else None
        call = RawCall(match.group(1), arguments, raw, id=match.group(2) or "")
        found.append(Found(start, stop, (call,)))
        pos = max(stop, start + len(_MISTRAL))
    return found


def _json_stop(text: str, start: int, limit: int) -> int:
    """The end of the JSON value at ``start``, or ``limit`` when it does not close before it."""
    stop = json_value_end(text, start, limit)
    return stop if stop is not None else limit


def _json_call(item: Any) -> RawCall | None:
    """``{"name", "arguments"}`` (arguments possibly a JSON string) as a RawCall."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    raw_args = item.get("arguments", item.get("parameters", {}))
    raw = raw_args if isinstance(raw_args, str) else json.dumps(raw_args)
    if isinstance(raw_args, str):
        raw_args = parse_json_lenient(raw_args) if raw_args.strip() else {}
    arguments = raw_args if isinstance(raw_args, dict) else None
    call_id = item.get("id")
    return RawCall(item["name"], arguments, raw, id=call_id if isinstance(call_id, str) else "")


# -- Python calls -----------------------------------------------------------------------------


def find_python_blocks(text: str, schemas: Schemas | None = None) -> list[Found]:
    """Python calls inside explicit markers: ``tool_code`` fences, ``<|python_tag|>``,
    ``<|python_start|>``, and ``<tool_call>`` tags whose body is a call, not JSON."""
    found: list[Found] = []
    parse = _BlockParser(schemas)
    for fence in _CODE_FENCES:
        found.extend(_fenced_calls(text, fence, parse))
    found.extend(_python_tag_calls(text, parse))
    found.extend(_delimited_calls(text, _PYTHON_START, _PYTHON_END, parse))
    found.extend(_delimited_calls(text, TAG_OPEN, TAG_CLOSE, parse))
    return found


class _BlockParser:
    """``parse_python_calls`` while the reply's budget of parses lasts."""

    def __init__(self, schemas: Schemas | None) -> None:
        self.schemas = schemas
        self.left = _MAX_PYTHON_BLOCKS

    def __call__(self, body: str) -> list[RawCall] | None:
        if self.left <= 0:
            return None
        self.left -= 1
        return parse_python_calls(body, schemas=self.schemas)


def find_python_reply(
    text: str, names: Collection[str], schemas: Schemas | None = None
) -> Found | None:
    """The whole reply as a list of calls to known tools, ``[read(path="a.py")]`` (Gemma 3's
    and Llama 3.2's prompted format); None when it is anything else.

    Only a reply that is nothing but calls counts: code quoted in an explanation must never
    run as a tool call.
    """
    stripped = text.strip()
    if not stripped or stripped[-1] not in ")]":
        return None
    head = stripped.lstrip("[( \n")
    match = _NAME_RE.match(head)
    if match is None or match.group(0) not in names:
        return None
    calls = parse_python_calls(stripped, names, schemas)
    if not calls:
        return None
    start = len(text) - len(text.lstrip())
    return Found(start, start + len(stripped), tuple(calls))


def _fenced_calls(text: str, fence: str, parse: _BlockParser) -> list[Found]:
    found: list[Found] = []
    fences = NextIndex(text, fence)
    closes = NextIndex(text, "```")
    pos = 0
    while (start := fences(pos)) >= 0:
        body_start = start + len(fence)
        close = closes(body_start)
        body_end = close if close >= 0 else len(text)
        end = body_end + 3 if close >= 0 else body_end
        calls = parse(text[body_start:body_end])
        if calls:
            found.append(Found(start, end, tuple(calls)))
        pos = end
    return found


def _python_tag_calls(text: str, parse: _BlockParser) -> list[Found]:
    """Llama 3.x: ``<|python_tag|>`` then calls, up to ``<|eom_id|>``/``<|eot_id|>``. JSON after
    the tag is left to the JSON recovery."""
    found: list[Found] = []
    if _PYTHON_TAG not in text:
        return found
    tags = NextIndex(text, _PYTHON_TAG)
    enders = [NextIndex(text, token) for token in _LLAMA_ENDS]
    pos = 0
    while (start := tags(pos)) >= 0:
        body_start = start + len(_PYTHON_TAG)
        ends = [e for find in (tags, *enders) if (e := find(body_start)) >= 0]
        body_end = min(ends, default=len(text))
        end = body_end
        for token in _LLAMA_ENDS:
            if text.startswith(token, end):
                end += len(token)
        body = text[body_start:body_end]
        if not body.lstrip().startswith(("{", "[{")):
            calls = parse(body)
            if calls:
                found.append(Found(start, end, tuple(calls)))
        pos = max(end, body_start)
    return found


def _delimited_calls(text: str, open_tag: str, close_tag: str, parse: _BlockParser) -> list[Found]:
    """Calls written as Python between two markers (an unclosed one runs to the end)."""
    found: list[Found] = []
    if open_tag not in text:
        return found
    opens = NextIndex(text, open_tag)
    closes = NextIndex(text, close_tag)
    pos = 0
    while (start := opens(pos)) >= 0:
        body_start = start + len(open_tag)
        close = closes(body_start)
        body_end = close if close >= 0 else len(text)
        end = body_end + len(close_tag) if close >= 0 else body_end
        body = text[body_start:body_end]
        if "<function=" not in body and not body.lstrip().startswith(("{", "[{", "```")):
            calls = parse(body)
            if calls:
                found.append(Found(start, end, tuple(calls)))
        pos = max(end, body_start)
    return found
