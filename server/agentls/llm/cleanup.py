"""The answer in a model's reply, without what the server should have split off.

``clean_answer`` is for the text the user reads (an explanation, a summary): it removes
thinking, echoed tool results, tool-call markup and chat-template tokens, and keeps the rest
exactly as written.
"""

from __future__ import annotations

from collections.abc import Collection

from agentls.llm.blocks import echo_spans, remove, remove_tokens, thinking_spans
from agentls.llm.recovery import scan_reply


def clean_answer(text: str, tool_names: Collection[str] = ()) -> str:
    """``text`` without thinking, tool-call syntax, echoed tool results and special tokens,
    then stripped. Everything else stays byte for byte.

    Removed: ``<think>...</think>`` (an unclosed ``<think>`` runs to the end; a ``</think>``
    without an opener drops everything before it), Gemma 4's ``<|channel>thought
    ...<channel|>`` and Magistral's ``[THINK]...[/THINK]`` alike; ``<|tool_response>...
    <tool_response|>``, ``<tool_response>...</tool_response>`` and ```tool_output fences; every
    call in a family syntax (``strip_tool_syntax``); leftover tokens such as ``<end_of_turn>``,
    ``<|eot_id|>``, ``<|im_end|>``, ``<turn|>``. Markers in quotes or backticks are text the
    answer talks about and stay. A reply that is all thinking cleans to "".
    """
    if not text:
        return ""
    return _strip(text, tool_names, thinking=True).strip()


def strip_tool_syntax(text: str, tool_names: Collection[str] = ()) -> str:
    """``text`` without tool-call markup, echoed tool results and special tokens.

    Family syntaxes (Gemma 4, Qwen XML, Mistral, Python calls in ``tool_code`` fences or after
    ``<|python_tag|>``) go whatever the tool's name; JSON calls and a reply that is only a
    Python call list go when they call one of ``tool_names`` (an unknown name in JSON is just
    JSON). Thinking stays (``clean_answer`` removes it too).
    """
    return _strip(text, tool_names, thinking=False)


def _strip(text: str, tool_names: Collection[str], *, thinking: bool) -> str:
    found = scan_reply(text, tool_names)
    calls = [(f.start, f.end) for f in (*found.family, *found.unmarked)]
    # Markers inside a call are the call's text (code being written), not the model's.
    drop = [*calls, *echo_spans(text, ignore=calls)]
    if thinking:
        drop.extend(thinking_spans(text, unclosed=True, ignore=calls))
    return remove_tokens(remove(text, drop), thinking=thinking)
