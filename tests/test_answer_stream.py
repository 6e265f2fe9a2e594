"""The streamed answer: thinking and markup split off chunk by chunk, and what streams is what
``clean_answer`` keeps of the whole reply (a prefix of it where a call cuts the stream)."""

from __future__ import annotations

import random

import pytest

from agentls.agent.answer_stream import AnswerStream
from agentls.llm.cleanup import clean_answer

TOOLS = ["read", "ls", "find", "grep", "edit", "write", "finish"]


def stream(text: str, size: int | None = None, seed: int = 0) -> tuple[str, str]:
    """Feed ``text`` in chunks (fixed ``size``, or random 1-12 characters); return the answer
    and the thinking that came out."""
    rng = random.Random(seed)
    s = AnswerStream(TOOLS)
    pieces = []
    pos = 0
    while pos < len(text):
        n = size or rng.randint(1, 12)
        pieces.extend(s.feed(text[pos : pos + n]))
        pos += n
    pieces.extend(s.finish())
    answer = "".join(t for kind, t in pieces if kind == "answer")
    thinking = "".join(t for kind, t in pieces if kind == "thinking")
    return answer, thinking


# Replies whose streamed answer equals the cleaned reply exactly.
EXACT = [
    "The module adds numbers.\n\n## total\n\nIt sums the list.\n",
    "<think>The user wants an explanation.</think>\n\nThe module adds numbers.",
    "<think>\nplan: read it\n</think>The answer.  <end_of_turn>",
    "Intro <think>aside</think> more text.",
    "<|channel>thought\nthinking here<channel|>Gemma 4 answers.",
    "[THINK]hmm[/THINK]Magistral answers.",
    "The parser looks for `<think>` and `</think>` markers.",
    'Quoted "<tool_call>" is only named.',
    "   \n  Leading space goes, trailing too.   \n\n",
    "A [link](http://x) and `code` and ```python\nprint(1)\n```\ndone",
    "Qwen answer<|im_end|>",
    "reading the code shows [a list] and (read) words.",
    "Llama answer<|eot_id|>",
    "<think>never closed, the model ran out of tokens",
    "",
]

# Replies where a call or an echo cuts the stream: what streamed is a prefix of the cleaned text.
CUT = [
    'Let me read it.\n<tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call>',
    'I will look.<|tool_call>call:read{path:<|"|>a.py<|"|>}<tool_call|>',
    'Checking. [TOOL_CALLS][{"name": "ls", "arguments": {}}]',
    "Let me see.\n```tool_code\nread(path='a.py')\n```",
    "Hmm <tool_response>echoed</tool_response> and then the answer.",
    '{"name": "read", "arguments": {"path": "a.py"}}',
    '```json\n{"name": "read", "arguments": {"path": "a.py"}}\n```',
    '[{"name": "read", "arguments": {"path": "a.py"}}]',
    "[read(path='a.py')]",
    "edit(path='a.py', old_text='x', new_text='y')",
]


@pytest.mark.parametrize("text", EXACT)
@pytest.mark.parametrize("size", [1, 2, 3, 7, None])
def test_streamed_answer_equals_the_cleaned_reply(text: str, size: int | None) -> None:
    for seed in range(3):
        answer, _ = stream(text, size, seed)
        assert answer == clean_answer(text, TOOLS), (size, seed)


@pytest.mark.parametrize("text", CUT)
@pytest.mark.parametrize("size", [1, 3, None])
def test_a_call_ends_the_streamed_answer(text: str, size: int | None) -> None:
    for seed in range(3):
        answer, _ = stream(text, size, seed)
        assert clean_answer(text, TOOLS).startswith(answer), (size, seed, answer)
        assert "{" not in answer and "tool" not in answer


@pytest.mark.parametrize("size", [1, 4, None])
def test_thinking_streams_apart_and_never_as_answer(size: int | None) -> None:
    text = "<think>secret plan: read a.py</think>The answer<think>more secret</think> ends."
    answer, thinking = stream(text, size)
    assert answer == "The answer ends."
    assert thinking == "secret plan: read a.pymore secret"
    assert "secret" not in answer


def test_held_text_waits_for_the_next_chunk() -> None:
    s = AnswerStream()
    assert s.feed("Hello <thi") == [("answer", "Hello")]
    assert s.feed("nk>x</think> world") == [("thinking", "x"), ("answer", "  world")]
    assert s.feed("   ") == []
    assert s.finish() == []


def test_a_long_reply_streams_in_linear_time() -> None:
    text = ("word " * 20 + "\n") * 2000  # 200 KB
    s = AnswerStream()
    out = []
    for i in range(0, len(text), 4):
        out.extend(s.feed(text[i : i + 4]))
    out.extend(s.finish())
    assert "".join(t for _, t in out) == text.strip()


@pytest.mark.parametrize("size", [1, 3, None])
def test_a_json_call_in_the_middle_of_the_text_ends_the_answer(size: int | None) -> None:
    text = 'I will fix the call now.\n```json\n{"name": "edit", "arguments": {"path": "a.py"}}\n```'
    answer, _ = stream(text, size)
    assert answer == "I will fix the call now."
    text = "Dicts like {x: 1} and {'a': 2} and [1, 2] stay text."
    assert stream(text, size)[0] == text
