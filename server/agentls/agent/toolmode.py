"""Tool-call modes: native tools API, or one JSON tool call forced by structured output.

``constrained`` works with models that have no tool support at all (Gemma 3, base models): the
backend's structured output (Ollama ``format``, OpenAI ``response_format``) makes every reply
one ``{"tool": ..., "arguments": ...}`` object. ``auto`` asks the backend whether the model
takes tools and remembers the answer per server and model.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from agentls.agent.tools.base import signature
from agentls.llm.recovery import parse_json_lenient, recover_tool_calls
from agentls.llm.types import ChatBackend, Message, ToolCall, ToolSpec
from agentls.settings import Settings

Mode = Literal["native", "constrained"]

# (base URL, model) -> mode learned this process; a server answers the same way every time.
_learned: dict[tuple[str, str], Mode] = {}


def remember(backend: ChatBackend, mode: Mode) -> None:
    """Record the mode that works for this backend's model."""
    _learned[(backend.base_url, backend.model)] = mode


async def resolve_mode(backend: ChatBackend, settings: Settings) -> Mode:
    """The mode for this run: the setting, or for ``auto`` what the model advertises.

    When the server cannot say (OpenAI-compatible servers), ``native`` is tried first; the loop
    switches to ``constrained`` if the server answers that the model takes no tools.
    """
    if settings.tool_mode != "auto":
        return settings.tool_mode
    if not backend.model:
        await backend.resolve_model()
    key = (backend.base_url, backend.model)
    if key in _learned:
        return _learned[key]
    info = await backend.model_info()
    mode: Mode = "constrained" if info.supports_tools is False else "native"
    if info.supports_tools is not None:
        _learned[key] = mode
    return mode


def response_schema(specs: list[ToolSpec]) -> dict[str, Any]:
    """A oneOf over the tools: tool name as a constant, arguments as that tool's schema."""
    variants = []
    for spec in specs:
        arguments = _closed(copy.deepcopy(spec.parameters))
        variants.append(
            {
                "type": "object",
                "properties": {"tool": {"const": spec.name}, "arguments": arguments},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"oneOf": variants}


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """Every object of a schema closed: keeps a small model from inventing argument names
    the grammar would allow (nested list items included)."""
    if schema.get("type") == "object":
        schema["additionalProperties"] = False
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            _closed(prop)
    items = schema.get("items")
    if isinstance(items, dict):
        _closed(items)
    return schema


def tools_prompt(specs: list[ToolSpec]) -> str:
    """The tool list for the system prompt in constrained mode, where no tools API is used.

    One line per tool, arguments with ``?`` when optional, list items' fields in brackets
    (the same signature the usage text shows): far shorter than JSON schemas.
    """
    lines = ['Reply with exactly one JSON object: {"tool": NAME, "arguments": {...}}. Tools:']
    for spec in specs:
        lines.append(f"- {spec.name}({signature(spec.parameters)}): {spec.description}")
    return "\n".join(lines)


def parse_reply(content: str, names: list[str]) -> list[ToolCall]:
    """The tool call in a constrained reply; lenient, since a reply cut at the token limit is
    still worth reading."""
    value = parse_json_lenient(content)
    if isinstance(value, dict) and isinstance(value.get("tool"), str):
        arguments = value.get("arguments")
        if value["tool"] in names:
            return [
                ToolCall(
                    name=value["tool"],
                    arguments=arguments if isinstance(arguments, dict) else {},
                    raw_arguments=json.dumps(arguments) if arguments is not None else "",
                )
            ]
    return recover_tool_calls(content, names)


def render_constrained(messages: list[Message]) -> list[Message]:
    """Messages as a model without tool support reads them.

    Assistant tool calls become the JSON the model wrote; tool results become user messages,
    since templates without tools have no ``tool`` role. User messages in a row (a finish's
    result then a follow-up prompt) become one: templates such as Gemma's refuse a conversation
    whose roles do not alternate. Deterministic, so the rendered prefix stays byte-identical
    from turn to turn.
    """
    out: list[Message] = []
    for msg in messages:
        if msg.role == "assistant" and msg.tool_calls:
            rendered = Message("assistant", _as_written(msg))
        elif msg.role == "tool":
            rendered = Message("user", f"Result of {msg.name}:\n{msg.content}")
        else:
            rendered = msg
        if rendered.role == "user" and out and out[-1].role == "user":
            out[-1] = Message("user", out[-1].content + "\n\n" + rendered.content)
        else:
            out.append(rendered)
    return out


def _as_written(msg: Message) -> str:
    """The reply exactly as the model wrote it when it holds the same call, else the call as
    JSON: re-serialising would change the tokens and cost the KV cache the whole reply."""
    calls = [{"tool": c.name, "arguments": c.arguments} for c in msg.tool_calls]
    value = parse_json_lenient(msg.content)
    if value == calls[0] and len(calls) == 1:
        return msg.content
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
