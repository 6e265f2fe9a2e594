"""Non-answer text in a model's reply: thinking, echoed tool results, chat-template tokens.

Servers normally split these off (reasoning parsers, special-token stripping); when they do
not, the raw markers reach us in ``content``. These finders return where they sit, so that
``recovery`` ignores calls a model only thought about and ``cleanup`` removes them from answers.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

from agentls.llm.callsyntax import NextIndex

# (opener, closer) of thinking: Qwen/DeepSeek <think>, Gemma 4's thought channel
# (<|channel>thought\n...<channel|>, per Ollama's gemma4 parser and Gemma 4's chat template),
# Mistral's Magistral [THINK].
THINKING = (("<think>", "</think>"), ("<|channel>", "<channel|>"), ("[THINK]", "[/THINK]"))
# Tool results a model echoes: Gemma 4's <|tool_response>response:NAME{...}<tool_response|>,
# Hermes/Qwen's <tool_response>, Mistral's [TOOL_RESULTS], Gemma 3's ```tool_output fence.
ECHOES = (
    ("<|tool_response>", "<tool_response|>"),
    ("<tool_response>", "</tool_response>"),
    ("[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
    ("```tool_output", "```"),
)
# Chat-template tokens that mean nothing in an answer: end of turn/message, role headers.
_SPECIAL_TOKENS_RE = re.compile(
    "|".join(
        [
            r"<start_of_turn>(?:model|user)?",  # Gemma 2/3
            r"<end_of_turn>",
            r"<\|turn>(?:model|user|system)?",  # Gemma 4
            r"<turn\|>",
            r"<\|think\|>",
            r"<eos>",
            r"<bos>",
            r"<\|start_header_id\|>\w*<\|end_header_id\|>",  # Llama 3
            r"<\|(?:eot_id|eom_id|end_of_text|begin_of_text|python_tag|python_start|python_end)\|>",
            r"<\|im_start\|>(?:assistant|user|system)?",  # ChatML (Qwen, Hermes)
            r"<\|im_end\|>",
            r"<\|endoftext\|>",
            r"<\|end\|>",
            r"<\|eot\|>",
            # Stray call/result markers whose partner is missing.
            r"<\|tool_call>",
            r"<tool_call\|>",
            r"</?tool_call>",
            r"<\|tool_response>",
            r"<tool_response\|>",
            r"\[TOOL_CALLS\]",
            r"\[/?TOOL_RESULTS\]",
            r"\[TOOL_CONTENT\]",
            r"</s>(?=\s*\Z)",  # Mistral's end of sequence; elsewhere it may be HTML
        ]
    )
)
# Thinking closers left over once the thinking is gone (a second stray </think>).
_THINKING_CLOSERS_RE = re.compile(r"</think>|\[/THINK\]|<channel\|>")

Span = tuple[int, int]


def thinking_spans(text: str, *, unclosed: bool, ignore: Sequence[Span] = ()) -> list[Span]:
    """Where the reply thinks, in order and merged.

    A closer with no opener before it (the opener was in the prompt, as Qwen3's template puts
    it, or the server dropped the special token) makes everything before it thinking. With
    ``unclosed``, an opener never closed makes the rest of the reply thinking (the model ran
    out of tokens while thinking), as the servers' reasoning parsers treat it. Markers inside
    ``ignore`` (tool calls: a ``</think>`` in code being written) do not count.
    """
    spans: list[Span] = []
    skip = merge(list(ignore))
    for opener, closer in THINKING:
        spans.extend(_pairs(text, opener, closer, skip, unclosed=unclosed, stray_close=True))
    return merge(spans)


def echo_spans(text: str, ignore: Sequence[Span] = ()) -> list[Span]:
    """Echoed tool results. An opener with no closer is a lone token (Gemma 4 writes
    ``<|tool_response>`` after a call to hand over), except a ``tool_output`` fence, which
    runs to the end. Markers inside ``ignore`` do not count."""
    spans: list[Span] = []
    skip = merge(list(ignore))
    for opener, closer in ECHOES:
        to_end = opener.startswith("```")
        spans.extend(_pairs(text, opener, closer, skip, unclosed=to_end, stray_close=False))
    return merge(spans)


def _pairs(
    text: str, opener: str, closer: str, skip: list[Span], *, unclosed: bool, stray_close: bool
) -> list[Span]:
    spans: list[Span] = []
    if opener not in text and not (stray_close and closer in text):
        return spans
    opens = _Markers(text, opener, skip)
    closes = _Markers(text, closer, skip)
    pos = 0
    if stray_close:
        first_close = closes(0)
        first_open = opens(0)
        if first_close >= 0 and (first_open < 0 or first_close < first_open):
            pos = first_close + len(closer)
            spans.append((0, pos))
    while (start := opens(pos)) >= 0:
        close = closes(start + len(opener))
        if close < 0:
            spans.append((start, len(text) if unclosed else start + len(opener)))
            break
        pos = close + len(closer)
        spans.append((start, pos))
    return spans


class _Markers:
    """Occurrences of a marker that are not quoted (an answer that explains a parser may write
    `</think>` in backticks, and that must not cut the answer) nor inside ``skip``."""

    def __init__(self, text: str, marker: str, skip: list[Span]) -> None:
        self.text = text
        self.marker = marker
        self.skip = skip
        self.find = NextIndex(text, marker)

    def __call__(self, pos: int) -> int:
        while (at := self.find(pos)) >= 0 and (
            _quoted(self.text, at, at + len(self.marker)) or starts_inside(at, self.skip)
        ):
            pos = at + 1
        return at


def _quoted(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` sits between the same quote or backtick on both sides."""
    return start > 0 and end < len(text) and text[start - 1] == text[end] and text[end] in "`\"'"


def merge(spans: list[Span]) -> list[Span]:
    """Sorted, with overlapping or touching spans joined."""
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def starts_inside(start: int, spans: list[Span]) -> bool:
    """Whether ``start`` lies inside one of ``spans`` (merged, as ``merge`` returns them)."""
    k = bisect.bisect_right(spans, (start, float("inf"))) - 1
    return k >= 0 and spans[k][0] <= start < spans[k][1]


def remove_tokens(text: str, *, thinking: bool) -> str:
    """``text`` without special tokens (and, with ``thinking``, stray thinking closers); a token
    between matching quotes or backticks is named by the answer, not emitted, and stays."""
    text = _drop_unquoted(_SPECIAL_TOKENS_RE, text)
    return _drop_unquoted(_THINKING_CLOSERS_RE, text) if thinking else text


def _drop_unquoted(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda m: m.group(0) if _quoted(text, m.start(), m.end()) else "", text)


def remove(text: str, spans: list[Span]) -> str:
    """``text`` without the (merged) spans."""
    parts: list[str] = []
    pos = 0
    for start, end in merge(spans):
        parts.append(text[pos:start])
        pos = max(pos, end)
    parts.append(text[pos:])
    return "".join(parts)


def blank(text: str, spans: list[Span]) -> str:
    """``text`` with the spans replaced by spaces: offsets stay valid for later searches."""
    parts: list[str] = []
    pos = 0
    for start, end in merge(spans):
        parts.append(text[pos:start])
        parts.append(" " * (end - start))
        pos = max(pos, end)
    parts.append(text[pos:])
    return "".join(parts)
