"""Recovery of tool calls that a model wrote as text."""

from __future__ import annotations

import json
import time

import pytest

from agentls.llm.recovery import parse_json_lenient, recover_tool_calls, repair_json

TOOLS = {"read", "edit", "write", "grep", "finish"}


def _calls(text: str) -> list[tuple[str, dict[str, object]]]:
    return [(c.name, c.arguments) for c in recover_tool_calls(text, TOOLS)]


def test_fenced_json_block() -> None:
    text = (
        "I need to look at the file first.\n\n"
        '```json\n{"name": "read", "arguments": {"path": "src/app.py", "offset": 10}}\n```\n'
    )
    assert _calls(text) == [("read", {"path": "src/app.py", "offset": 10})]


def test_fence_without_language_and_unclosed_fence() -> None:
    assert _calls('```\n{"name": "read", "arguments": {"path": "a.py"}}\n```') == [
        ("read", {"path": "a.py"})
    ]
    # Cut off by the token limit: no closing fence and no closing braces.
    assert _calls('```json\n{"name": "read", "arguments": {"path": "a.py"') == [
        ("read", {"path": "a.py"})
    ]


def test_bare_json_in_prose() -> None:
    text = 'Let me search. {"tool": "grep", "args": {"pattern": "def main"}} Then I will edit.'
    assert _calls(text) == [("grep", {"pattern": "def main"})]


def test_tool_call_tags() -> None:
    text = (
        "<tool_call>\n"
        '{"name": "edit", "arguments": {"path": "a.py", "old_text": "x = 1",'
        ' "new_text": "x = 2"}}\n'
        "</tool_call>"
    )
    assert _calls(text) == [("edit", {"path": "a.py", "old_text": "x = 1", "new_text": "x = 2"})]


def test_tag_wrapping_a_fence_gives_one_call() -> None:
    text = (
        '<tool_call>\n```json\n{"name": "read", "arguments": {"path": "a.py"}}\n```\n</tool_call>'
    )
    assert _calls(text) == [("read", {"path": "a.py"})]


def test_several_calls_in_order() -> None:
    text = (
        '<tool_call>{"name": "read", "arguments": {"path": "a.py"}}</tool_call>\n'
        "and then\n"
        '```json\n[{"name": "read", "arguments": {"path": "b.py"}},'
        ' {"name": "finish", "arguments": {"summary": "done"}}]\n```'
    )
    assert _calls(text) == [
        ("read", {"path": "a.py"}),
        ("read", {"path": "b.py"}),
        ("finish", {"summary": "done"}),
    ]
    ids = [c.id for c in recover_tool_calls(text, TOOLS)]
    assert len(set(ids)) == 3 and all(ids)


@pytest.mark.parametrize(
    "obj",
    [
        {"name": "read", "arguments": {"path": "a.py"}},
        {"tool": "read", "arguments": {"path": "a.py"}},
        {"tool": "read", "args": {"path": "a.py"}},
        {"tool": "read", "parameters": {"path": "a.py"}},
        {"function": {"name": "read", "arguments": {"path": "a.py"}}},
        {"type": "function", "function": {"name": "read", "arguments": '{"path": "a.py"}'}},
        {"name": "read", "arguments": '{"path": "a.py"}'},
        {"tool_calls": [{"function": {"name": "read", "arguments": {"path": "a.py"}}}]},
    ],
)
def test_accepted_shapes(obj: dict[str, object]) -> None:
    assert _calls(json.dumps(obj)) == [("read", {"path": "a.py"})]


def test_unknown_tools_and_non_calls_are_ignored() -> None:
    assert _calls('{"name": "rm_rf", "arguments": {"path": "/"}}') == []
    assert _calls('The config is {"name": "my-package", "version": "1.0"}.') == []
    assert _calls("def f():\n    return {'a': {1, 2}}\n") == []
    assert _calls("No tool call here, just an explanation.") == []
    assert _calls("") == []


def test_original_id_kept() -> None:
    calls = recover_tool_calls(
        '{"id": "call_9", "name": "read", "arguments": {"path": "a"}}', TOOLS
    )
    assert calls[0].id == "call_9"


# -- repair ---------------------------------------------------------------------------------


def test_trailing_commas() -> None:
    text = '{"name": "read", "arguments": {"path": "a.py",},}'
    assert _calls(text) == [("read", {"path": "a.py"})]


def test_single_quotes_and_python_literals() -> None:
    text = (
        "{'name': 'grep', "
        "'arguments': {'pattern': 'it\\'s \"quoted\"', 'regex': True, 'path': None}}"
    )
    assert _calls(text) == [("grep", {"pattern": 'it\'s "quoted"', "regex": True, "path": None})]


def test_raw_newlines_inside_strings() -> None:
    text = '{"name": "write", "arguments": {"path": "t.py", "content": "import os\n\tprint(1)\n"}}'
    assert _calls(text) == [("write", {"path": "t.py", "content": "import os\n\tprint(1)\n"})]


def test_missing_closing_braces_before_prose() -> None:
    text = 'Calling {"name": "read", "arguments": {"path": "a.py"} now, then I will explain.'
    assert _calls(text) == [("read", {"path": "a.py"})]


def test_bare_keys() -> None:
    assert _calls('{name: "read", arguments: {path: "a.py"}}') == [("read", {"path": "a.py"})]


def test_json_in_strings_is_not_mangled() -> None:
    code = "x = {'a': True}  # it's fine, None of it"
    text = json.dumps({"name": "write", "arguments": {"path": "c.py", "content": code}}) + ","
    assert _calls(text) == [("write", {"path": "c.py", "content": code})]


def test_flattened_arguments() -> None:
    assert _calls('{"name": "finish", "summary": "Renamed the helper."}') == [
        ("finish", {"summary": "Renamed the helper."})
    ]


def test_unparseable_argument_string_is_kept_raw() -> None:
    calls = recover_tool_calls('{"name": "edit", "arguments": "path=a.py old=x"}', TOOLS)
    assert len(calls) == 1
    assert calls[0].arguments == {}
    assert calls[0].raw_arguments == "path=a.py old=x"


def test_repair_json_directly() -> None:
    assert json.loads(repair_json("{'a': [1, 2,], 'b': False,")) == {"a": [1, 2], "b": False}
    assert json.loads(repair_json('{"a": "unterminated')) == {"a": "unterminated"}
    assert json.loads(repair_json('{"a":')) == {"a": None}
    assert parse_json_lenient("not json at all") is None
    assert parse_json_lenient('{"ok": 1}') == {"ok": 1}


def test_large_code_reply_is_fast() -> None:
    # Long answers full of braces that are not calls must not make recovery crawl.
    code = "\n".join(f"def f{i}(x):\n    return {{'k{i}': [x, {{x}}]}}[" for i in range(500))
    unclosed = "\n".join(f'item {{"name": "read", "data": [{i}, {{"k": "v"' for i in range(300))
    started = time.perf_counter()
    assert _calls(f"```python\n{code}\n```") == []
    assert _calls(code + '\n{"name": "read", "arguments": {"path": "a"}}') == [
        ("read", {"path": "a"})
    ]
    _calls(unclosed)
    assert time.perf_counter() - started < 2.0  # was 17 s before the call-marker filter
