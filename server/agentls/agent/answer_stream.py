"""Splitting a model's streamed text into answer and thinking, as it arrives.

``clean_answer`` works on a whole reply; while the reply streams, :class:`AnswerStream` does
what can be done chunk by chunk, in linear time: ``<think>`` blocks (and Gemma 4's thought
channel, Magistral's ``[THINK]``) go out as thinking; chat-template tokens are dropped; a
tool call or an echoed tool result written as text ends the answer for this reply (what
follows is markup, and the final ``clean_answer`` keeps any text after it). A reply that
opens with JSON is a call, not an answer. Text that might be the start of a marker, and
trailing whitespace, are held back until the next chunk shows what they are, so the answer
streamed is a prefix of the cleaned reply in all the common cases. Markers between matching
quotes or backticks are text the answer talks about, as in ``clean_answer``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from agentls.llm.blocks import ECHOES, THINKING

Kind = Literal["answer", "thinking"]
Piece = tuple[Kind, str]

# Where a call written as text begins (Gemma 4, Qwen/Hermes, Qwen XML, Mistral, Llama 3.x,
# Gemma 3's fences); echoed tool results end the answer the same way.
CALL_OPENERS = (
    "<|tool_call>",
    "<tool_call>",
    "<function=",
    "[TOOL_CALLS]",
    "<|python_tag|>",
    "```tool_code",
    "```tool_call",
    *(opener for opener, _ in ECHOES),
)
# Chat-template tokens that mean nothing in an answer (the common ones; clean_answer has the
# full list and the final word).
SPECIAL_TOKENS = (
    "<end_of_turn>",
    "<start_of_turn>",
    "<|turn>",
    "<turn|>",
    "<|think|>",
    "<eos>",
    "<bos>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|begin_of_text|>",
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<|end|>",
    "<|eot|>",
    "</tool_call>",
    "<tool_call|>",
    "<tool_response|>",
    "[/TOOL_RESULTS]",
    "[TOOL_CONTENT]",
    # A thinking closer with no opener: the text before it was thinking, which can no longer
    # be taken back; the closer at least does not show.
    *(closer for _, closer in THINKING),
)
_OPENERS = {opener: closer for opener, closer in THINKING}
_STOPS = frozenset(CALL_OPENERS)
_MARKERS = sorted({*_OPENERS, *CALL_OPENERS, *SPECIAL_TOKENS}, key=len, reverse=True)
_MARKER_RE = re.compile("|".join(re.escape(m) for m in _MARKERS))
# Every proper prefix of a marker: a chunk ending in one is held until the next chunk.
_PREFIXES = frozenset(m[:i] for m in _MARKERS for i in range(1, len(m)))
_LONGEST = max(len(m) for m in _MARKERS)
_QUOTES = "`\"'"
# A JSON call anywhere in the text ({"name": ..., {"tool": ..., fenced or not, in a list),
# with the keys ``recovery`` reads.
_CALL_KEYS = ("name", "tool", "tool_name", "function", "tool_calls")
_CALL_JSON_RE = re.compile(
    r"(?:```(?:json)?\s*)?\[?\s*\{\s*[\"']?(?:" + "|".join(_CALL_KEYS) + r")[\"']?\s*:"
)
# The start of such a call, cut off by the chunk's end: held until the next chunk.
_PARTIAL_CALL_RE = re.compile(
    r"(?:`{1,3}(?:j(?:s(?:o(?:n)?)?)?)?\s*)?\[?\s*(?:\{\s*(?:[\"']?([a-z_]*)[\"']?\s*)?)?"
)
# A reply that opens like a JSON call (``{``, ``[{``, a fenced ``{``) is not an answer.
_JSON_START_RE = re.compile(r"(?:```(?:json)?\s*)?\[?\s*\{")
_MAYBE_JSON_RE = re.compile(r"(?:`{1,3}(?:j(?:s(?:o(?:n)?)?)?)?\s*)?\[?\s*")


class AnswerStream:
    """One reply's text, fed chunk by chunk; ``feed`` and ``finish`` return the pieces of
    answer and thinking to show, in order."""

    def __init__(self, tool_names: Collection[str] = ()) -> None:
        # A reply that opens with a Python call of a tool, ``[read(path="a.py")]`` (Gemma 3
        # without fences), is a call too.
        names = "|".join(re.escape(n) for n in sorted(tool_names, key=len, reverse=True))
        self._pycall = re.compile(rf"\[?\s*(?:{names})\s*\(") if names else None
        self._pycall_partial = re.compile(r"\[?\s*([A-Za-z_]*)\s*") if names else None
        self._names = tuple(tool_names)
        self._buf = ""  # text not yet decided on
        self._closer: str | None = None  # inside thinking: the marker that ends it
        self._started = False  # some answer text went out (leading whitespace is dropped)
        self._stopped = False  # a call began: no more answer from this reply
        self._space = ""  # trailing whitespace held until more text follows
        self._last = ""  # the last character decided on (for quoted markers)

    def feed(self, chunk: str) -> list[Piece]:
        """The pieces ``chunk`` completes."""
        if self._stopped or not chunk:
            return []
        self._buf += chunk
        return self._drain(final=False)

    def finish(self) -> list[Piece]:
        """The reply ended: what was held back, except trailing whitespace."""
        if self._stopped:
            return []
        out = self._drain(final=True)
        self._buf = ""
        return out

    # -- the state machine ----------------------------------------------------------------

    def _drain(self, final: bool) -> list[Piece]:
        out: list[Piece] = []
        while self._buf and not self._stopped:
            state = (len(self._buf), self._closer)
            if self._closer is not None:
                self._thinking(out, final)
            elif self._started or self._leading(final):
                self._answer(out, final)
            if (len(self._buf), self._closer) == state:
                break  # nothing decided: wait for the next chunk
        return out

    def _leading(self, final: bool) -> bool:
        """Before any answer: drop leading whitespace; a reply opening like JSON is a call.
        False when the text so far cannot tell yet (or was dropped)."""
        stripped = self._buf.lstrip()
        self._buf = stripped
        if not stripped:
            return False
        if _JSON_START_RE.match(stripped) or (self._pycall and self._pycall.match(stripped)):
            self._stop()
            return False
        if final:
            return True
        # "```js", "[", "rea": only the next chunk says whether a call follows.
        return not (_MAYBE_JSON_RE.fullmatch(stripped) or self._maybe_pycall(stripped))

    def _maybe_pycall(self, text: str) -> bool:
        partial = self._pycall_partial.fullmatch(text) if self._pycall_partial else None
        if partial is None:
            return False
        word = partial.group(1)
        return any(name.startswith(word) for name in self._names)

    def _answer(self, out: list[Piece], final: bool) -> None:
        buf = self._buf
        match = _MARKER_RE.search(buf)
        call = _CALL_JSON_RE.search(buf)
        if call is not None and (match is None or call.start() < match.start()):
            self._emit_answer(out, buf[: call.start()], final=False)
            self._stop()
            return
        if match is None:
            keep = 0 if final else max(_held_prefix(buf), _held_call(buf))
            self._emit_answer(out, buf[: len(buf) - keep], final)
            self._buf = buf[len(buf) - keep :]
            return
        start, end = match.span()
        before = buf[start - 1] if start else self._last
        if before and before in _QUOTES:
            if end == len(buf) and not final:
                self._emit_answer(out, buf[:start], final=False)
                self._buf = buf[start:]
                return
            if end < len(buf) and buf[end] == before:  # `</think>` named by the answer
                self._emit_answer(out, buf[:end], final=False)
                self._buf = buf[end:]
                return
        self._emit_answer(out, buf[:start], final=False)
        self._buf = buf[end:]
        marker = match.group()
        if marker in _OPENERS:
            self._closer = _OPENERS[marker]
        elif marker in _STOPS:
            self._stop()

    def _thinking(self, out: list[Piece], final: bool) -> None:
        closer = self._closer
        assert closer is not None
        buf = self._buf
        pos = 0
        while (at := buf.find(closer, pos)) >= 0:
            end = at + len(closer)
            quoted = (
                at > 0 and buf[at - 1] in _QUOTES and end < len(buf) and buf[end] == buf[at - 1]
            )
            if not quoted:
                break
            pos = at + 1
        if at < 0:
            keep = 0 if final else _held_suffix(buf, closer)
            if len(buf) > keep:
                out.append(("thinking", buf[: len(buf) - keep]))
            self._buf = buf[len(buf) - keep :]
            return
        if at:
            out.append(("thinking", buf[:at]))
        self._buf = buf[at + len(closer) :]
        self._closer = None

    def _emit_answer(self, out: list[Piece], text: str, final: bool) -> None:
        if not self._started:
            text = text.lstrip()
        if not text:
            return
        self._last = text[-1]
        body = text.rstrip()
        if not body:
            self._space += text
            return
        self._started = True
        out.append(("answer", self._space + body))
        self._space = text[len(body) :]

    def _stop(self) -> None:
        self._stopped = True
        self._buf = ""


def _held_prefix(text: str) -> int:
    """Length of the longest end of ``text`` that could begin a marker."""
    for k in range(max(0, len(text) - _LONGEST + 1), len(text)):
        if text[k:] in _PREFIXES:
            return len(text) - k
    return 0


def _held_call(text: str) -> int:
    """Length of the longest end of ``text`` that could begin a JSON call."""
    for k in range(max(0, len(text) - 40), len(text)):
        if text[k] not in "`[{":
            continue
        partial = _PARTIAL_CALL_RE.fullmatch(text, k)
        if partial is None:
            continue
        word = partial.group(1)
        if not word or any(key.startswith(word) for key in _CALL_KEYS):
            return len(text) - k
    return 0


def _held_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that could begin ``marker``."""
    for k in range(max(0, len(text) - len(marker) + 1), len(text)):
        if marker.startswith(text[k:]):
            return len(text) - k
    return 0
