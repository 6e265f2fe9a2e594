"""Recovery of tool calls that a model wrote as text."""

from __future__ import annotations

import json
import time

import pytest

from agentls.llm.cleanup import clean_answer, strip_tool_syntax
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


# -- model families: text the model server's own parser missed ---------------------------------
# Fixture texts are the exact strings from the cited parsers' tests, so a change in the way a
# family writes calls shows up here first.


def _family(text: str, *names: str) -> list[tuple[str, dict[str, object]]]:
    return [(c.name, c.arguments) for c in recover_tool_calls(text, set(names) or TOOLS)]


# Gemma 4: ollama/ollama model/parsers/gemma4_test.go (TestGemma4Parser, TestGemma4ArgsToJSON).
GEMMA4_FIXTURES = [
    (
        '<|tool_call>call:get_weather{location:<|"|>Paris<|"|>,units:<|"|>metric<|"|>}<tool_call|>',
        {"location": "Paris", "units": "metric"},
    ),
    ("<|tool_call>call:get_weather{value:42}<tool_call|>", {"value": 42}),
    ("<|tool_call>call:get_weather{enabled:true}<tool_call|>", {"enabled": True}),
    (
        '<|tool_call>call:get_weather{config:{enabled:true,name:<|"|>test<|"|>}}<tool_call|>',
        {"config": {"enabled": True, "name": "test"}},
    ),
    (
        '<|tool_call>call:get_weather{items:[<|"|>a<|"|>,<|"|>b "quoted"<|"|>,<|"|>c<|"|>]}'
        "<tool_call|>",
        {"items": ["a", 'b "quoted"', "c"]},
    ),
    # Strings are raw: an escaped quote stays a backslash and a quote.
    (
        '<|tool_call>call:get_weather{query:<|"|>say \\"hello\\"<|"|>}<tool_call|>',
        {"query": 'say \\"hello\\"'},
    ),
    (
        '<|tool_call>call:get_weather{path:<|"|>C:\\users\\bob\\file.txt<|"|>}<tool_call|>',
        {"path": "C:\\users\\bob\\file.txt"},
    ),
    (
        '<|tool_call>call:get_weather{query:"raw \\"quoted\\"",note:<|"|>gemma "quoted"<|"|>}'
        "<tool_call|>",
        {"query": 'raw "quoted"', "note": 'gemma "quoted"'},
    ),
    (
        '<|tool_call>call:get_weather{steps:[{title:<|"|>step "one"<|"|>,done:false},'
        '{title:<|"|>step \\"two\\"<|"|>,done:true}]}<tool_call|>',
        {
            "steps": [
                {"title": 'step "one"', "done": False},
                {"title": 'step \\"two\\"', "done": True},
            ]
        },
    ),
    (
        '<|tool_call>call:get_weather{query:<|"|>a,b:{c}[d]<|"|>}<tool_call|>',
        {"query": "a,b:{c}[d]"},
    ),
    # Cut off before <tool_call|>: Ollama flushes the call at the end of the reply.
    (
        '<|tool_call>call:get_weather{query:<|"|>say "hello" and "bye"<|"|>}',
        {"query": 'say "hello" and "bye"'},
    ),
    # The closing <|"|> never came: Ollama's repair closes the string before the brace.
    ('<|tool_call>call:get_weather{command:<|"|>ls}<tool_call|>', {"command": "ls"}),
]


@pytest.mark.parametrize(("text", "arguments"), GEMMA4_FIXTURES)
def test_gemma4_fixtures(text: str, arguments: dict[str, object]) -> None:
    assert _family(text, "get_weather") == [("get_weather", arguments)]


def test_gemma4_multiline_edit_of_objects_is_byte_exact() -> None:
    # gemma4_test.go: tool_call_edit_with_array_of_objects_multiline_markdown_and_quotes
    text = (
        "<|tool_call>call:edit{edits:[\n"
        '  {newText:<|"|># Gemma4 + openclaude speed optimization guide\n\n'
        'Use "nvfp4" only after validating tool calls.\n'
        '<|"|>,oldText:<|"|># Gemma4 + openclaude speed optimization guide\n\n'
        "Use the default quantization.\n"
        '<|"|>},\n'
        '  {newText:<|"|>## 14. Methods tried but not adopted\n\n### 1. Model quantization\n'
        'Do not enable "mxfp8" by default.\n'
        '<|"|>,oldText:<|"|>## 14. Methods tried but not adopted\n'
        '<|"|>}\n'
        "]}<tool_call|>"
    )
    assert _family(text, "edit") == [
        (
            "edit",
            {
                "edits": [
                    {
                        "newText": "# Gemma4 + openclaude speed optimization guide\n\n"
                        'Use "nvfp4" only after validating tool calls.\n',
                        "oldText": "# Gemma4 + openclaude speed optimization guide\n\n"
                        "Use the default quantization.\n",
                    },
                    {
                        "newText": "## 14. Methods tried but not adopted\n\n"
                        '### 1. Model quantization\nDo not enable "mxfp8" by default.\n',
                        "oldText": "## 14. Methods tried but not adopted\n",
                    },
                ]
            },
        )
    ]


# Code whose every character is a trap for a sloppy parser: quotes of both kinds, backslashes,
# braces, a Gemma string token spelt out, call markers and a thinking tag.
TRICKY_CODE = (
    'def render(x):\n    """Say "hi" {x}."""\n'
    "    path = 'C:\\\\temp\\\\new'  # \\n stays two characters\n"
    '    return {"k": [x, {x}]} if x else f"{{}}<tool_call|>}}"\n'
    '\n# </think> <|tool_call>call:read{path:"x"} [TOOL_CALLS] <function=read>\n'
)


def test_gemma4_edit_keeps_code_byte_exact_and_calls_follow_in_order() -> None:
    text = (
        "I'll fix it.\n"
        '<|tool_call>call:edit{path:<|"|>src/app.py<|"|>,old_text:<|"|>return None<|"|>,'
        'new_text:<|"|>' + TRICKY_CODE + '<|"|>}<tool_call|>'
        '<|tool_call>call:finish{summary:<|"|>Done.<|"|>}<tool_call|>'
    )
    calls = recover_tool_calls(text, TOOLS)
    assert [c.name for c in calls] == ["edit", "finish"]
    assert calls[0].arguments == {
        "path": "src/app.py",
        "old_text": "return None",
        "new_text": TRICKY_CODE,
    }
    assert calls[1].arguments == {"summary": "Done."}


def test_gemma4_calls_in_thinking_are_drafts_and_namespaces_are_dropped() -> None:
    # gemma4_test.go thinking_then_tool_call: the thought channel precedes the real call.
    text = (
        '<|channel>thought\nI could <|tool_call>call:read{path:<|"|>draft.py<|"|>}<tool_call|>'
        " but no<channel|>"
        '<|tool_call>call:default_api:read{path:<|"|>a.py<|"|>,offset:2}<tool_call|>'
        "<tool_call|><|tool_response>"
    )
    assert _family(text) == [("read", {"path": "a.py", "offset": 2})]


def test_gemma4_unparseable_call_is_handed_on_with_its_raw_text() -> None:
    calls = recover_tool_calls('<|tool_call>call:edit{path:<|"|>a.py<|"|>,:}<tool_call|>', TOOLS)
    assert [(c.name, c.arguments) for c in calls] == [("edit", {})]
    assert calls[0].raw_arguments == '{path:<|"|>a.py<|"|>,:}'


# Qwen3-Coder XML: ollama/ollama model/parsers/qwen3coder_test.go (TestQwenToolParser) and
# vLLM tool_parsers/qwen3coder_tool_parser.py (one newline trimmed at each end of a value).


def test_qwen3coder_xml_in_tool_call_tags() -> None:
    text = (
        "<tool_call>\n<function=get_current_temperature>\n<parameter=location>\nSan Francisco\n"
        "</parameter>\n<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>"
    )
    assert _family(text, "get_current_temperature") == [
        ("get_current_temperature", {"location": "San Francisco", "unit": "celsius"})
    ]


def test_qwen3coder_values_are_raw_text_minus_one_newline_each_side() -> None:
    value = '\n  if a < b && c > "d":\n\treturn {\'x\': "\\\\"}\n\n'
    text = (
        "<function=write>\n<parameter=path>\nout.py\n</parameter>\n"
        f"<parameter=content>\n{value}\n</parameter>\n</function>"
    )
    assert _family(text) == [("write", {"path": "out.py", "content": value})]


def test_qwen3coder_bare_and_several_calls() -> None:
    text = (
        "Let me look.\n\n<function=read>\n<parameter=path>\na.py\n</parameter>\n</function>\n"
        "<tool_call>\n<function=grep>\n<parameter=pattern>\ndef main\n</parameter>\n</function>\n"
        "</tool_call>"
    )
    assert _family(text) == [("read", {"path": "a.py"}), ("grep", {"pattern": "def main"})]


def test_qwen3coder_values_typed_by_the_schema_only() -> None:
    text = (
        "<function=calculate>\n<parameter=x>\n3.14\n</parameter>\n<parameter=y>\n42\n</parameter>"
        '\n<parameter=enabled>\ntrue\n</parameter>\n<parameter=items>\n["a", "b", "c"]\n'
        "</parameter>\n<parameter=label>\n42\n</parameter>\n</function>"
    )
    schema = {
        "properties": {
            "x": {"type": "number"},
            "y": {"type": "integer"},
            "enabled": {"type": "boolean"},
            "items": {"type": "array"},
            "label": {"type": "string"},
        }
    }
    typed = recover_tool_calls(text, {"calculate"}, schemas={"calculate": schema})
    assert typed[0].arguments == {
        "x": 3.14,
        "y": 42,
        "enabled": True,
        "items": ["a", "b", "c"],
        "label": "42",
    }
    # Without a schema nothing is guessed: a write of "42" or of a JSON file stays text.
    untyped = recover_tool_calls(text, {"calculate"})
    assert untyped[0].arguments["y"] == "42"
    assert untyped[0].arguments["items"] == '["a", "b", "c"]'


def test_qwen3coder_missing_parameter_close_and_cut_off_call() -> None:
    text = (
        "<tool_call>\n<function=edit>\n<parameter=path>\na.py\n<parameter=old_text>\nx = 1\n"
        "</parameter>\n<parameter=new_text>\nx = 2\n"
    )
    assert _family(text) == [("edit", {"path": "a.py", "old_text": "x = 1", "new_text": "x = 2"})]


def test_llama31_function_tag_with_json_body() -> None:
    # llama.cpp's format for Llama 3.1 custom tools: <function=NAME>{json}</function>.
    assert _family('<function=read>{"path": "a.py", "limit": 5}</function>') == [
        ("read", {"path": "a.py", "limit": 5})
    ]


# Llama 3.x: ggml-org/llama.cpp tests/test-chat.cpp (Llama-3.1-8B-Instruct templates).


def test_llama3_json_after_python_tag_with_end_tokens() -> None:
    assert _family(
        '<|python_tag|>{"name": "special_function", "parameters": {"arg1": 1}}<|eom_id|>',
        "special_function",
    ) == [("special_function", {"arg1": 1})]
    assert _family(
        '{"type": "function", "name": "read", "parameters": {"path": "a.py"}}<|eot_id|>'
    ) == [("read", {"path": "a.py"})]


def test_llama3_builtin_call_form_after_python_tag() -> None:
    assert _family("<|python_tag|>python.call(code=\"print('hey')\")<|eom_id|>", "python") == [
        ("python", {"code": "print('hey')"})
    ]
    text = '<|python_tag|>read.call(path="a.py"); grep.call(pattern="x")<|eom_id|>'
    assert _family(text) == [("read", {"path": "a.py"}), ("grep", {"pattern": "x"})]


def test_llama3_several_json_calls_separated_by_semicolons() -> None:
    text = (
        '<|python_tag|>{"name": "read", "parameters": {"path": "a.py"}}; '
        '{"name": "read", "parameters": {"path": "b.py"}}<|eom_id|>'
    )
    assert _family(text) == [("read", {"path": "a.py"}), ("read", {"path": "b.py"})]


# Mistral: vLLM tool_parsers/mistral_tool_parser.py (pre-v11 JSON list, v11+ NAME{args}) and
# ollama/ollama model/parsers/ministral_test.go ([TOOL_CALLS]NAME[ARGS]{...}).


def test_mistral_v11_name_args_form() -> None:
    text = '[TOOL_CALLS]get_weather[ARGS]{"location": "San Francisco"}'
    assert _family(text, "get_weather") == [("get_weather", {"location": "San Francisco"})]


def test_mistral_several_calls_call_ids_and_end_token() -> None:
    text = (
        'Sure.[TOOL_CALLS]read[CALL_ID]abcDEF123[ARGS]{"path": "a.py"}'
        '[TOOL_CALLS]grep[ARGS]{"pattern": "caf\\u00e9 \\"best\\""}</s>'
    )
    calls = recover_tool_calls(text, TOOLS)
    assert [(c.name, c.arguments) for c in calls] == [
        ("read", {"path": "a.py"}),
        ("grep", {"pattern": 'café "best"'}),
    ]
    assert calls[0].id == "abcDEF123"


def test_mistral_pre_v11_json_list() -> None:
    text = (
        '[TOOL_CALLS] [{"name": "read", "arguments": {"path": "a.py"}, "id": "abcDEF123"}, '
        '{"name": "grep", "arguments": {"pattern": "x"}, "id": "xyzXYZ789"}]</s>'
    )
    assert _family(text) == [("read", {"path": "a.py"}), ("grep", {"pattern": "x"})]


def test_mistral_compact_form_without_args_token() -> None:
    # vLLM's v11 parsing splits at the first '{': [TOOL_CALLS]add{"a": 3.5, "b": 4}
    assert _family('[TOOL_CALLS]add{"a": 3.5, "b": 4}', "add") == [("add", {"a": 3.5, "b": 4})]


# Gemma 3: ai.google.dev/gemma/docs/capabilities/function-calling (the tool_code fence and the
# [func(a=1)] list format).


def test_gemma3_tool_code_fence_with_python_literals() -> None:
    text = (
        "I will read it.\n```tool_code\nprint(read(path='src/a.py', offset=10, limit=None))\n```\n"
        '```tool_code\nedit(path="a.py", old_text="""x = \'1\'\n""", new_text=\'x = "2"\\n\')\n```'
    )
    assert _family(text) == [
        ("read", {"path": "src/a.py", "offset": 10, "limit": None}),
        ("edit", {"path": "a.py", "old_text": "x = '1'\n", "new_text": 'x = "2"\n'}),
    ]


def test_gemma3_tool_code_with_a_result_variable() -> None:
    text = '```tool_code\nresult = grep(pattern="def main", path="src")\nprint(result)\n```'
    assert _family(text) == [("grep", {"pattern": "def main", "path": "src"})]
    # Anything beyond calls is a program, not a call.
    assert _family('```tool_code\nn = len(grep(pattern="x"))\nprint(n + 1)\n```') == []


def test_gemma3_call_list_reply_and_positional_arguments() -> None:
    assert _family('[read(path="a.py"), grep(pattern=\'TODO\', path=".")]') == [
        ("read", {"path": "a.py"}),
        ("grep", {"pattern": "TODO", "path": "."}),
    ]
    schemas = {"read": {"properties": {"path": {}, "offset": {}}, "required": ["path"]}}
    calls = recover_tool_calls('```tool_code\nread("a.py", 3)\n```', TOOLS, schemas=schemas)
    assert [(c.name, c.arguments) for c in calls] == [("read", {"path": "a.py", "offset": 3})]


def test_python_calls_are_never_evaluated_and_quoted_code_is_not_a_call() -> None:
    # Non-literal arguments make it code, not a call; nothing runs.
    assert _family('```tool_code\nread(path=__import__("os").getcwd())\n```') == []
    # A call list inside an explanation is code the user wrote, not a request.
    assert _family('The loop does `files = [read(path="a.py")]` then returns.') == []
    assert _family('```python\nread(path="a.py")\n```') == []
    assert _family("[read(path)]") == []


def test_family_markers_for_unknown_tools_are_ignored() -> None:
    assert _family('<|tool_call>call:web_search{q:<|"|>x<|"|>}<tool_call|>') == []
    assert _family("<function=rm>\n<parameter=path>\n/\n</parameter>\n</function>") == []
    assert _family('[TOOL_CALLS]rm[ARGS]{"path": "/"}') == []


def test_qwen_think_block_hides_drafts_but_not_code_in_arguments() -> None:
    text = (
        "Okay, reading first. <function=read><parameter=path>draft.py</parameter></function>\n"
        "</think>\n\n<tool_call>\n<function=write>\n<parameter=path>\np.py\n</parameter>\n"
        "<parameter=content>\nTHINK = '<think>'  # a tag in code\n</parameter>\n</function>\n"
        "</tool_call>"
    )
    assert _family(text) == [
        ("write", {"path": "p.py", "content": "THINK = '<think>'  # a tag in code"})
    ]


# -- long replies -------------------------------------------------------------------------------


def test_long_replies_full_of_markers_stay_correct() -> None:
    # 200 KB of code plus thousands of openers that never close, in every family's syntax: the
    # finders remember where the next marker is, so this is linear (timing is left to bench).
    code = "\n".join(f"def f{i}(x):\n    return {{'k{i}': [x, {{x}}]}}[" for i in range(2500))
    junk = (
        '<|tool_call>call:write{content:<|"|>'
        "<function=read><parameter=path>"
        "[TOOL_CALLS]read[ARGS]{"
        "```tool_code\nread(path='a'"
        "<think><|python_tag|>read("
    ) * 500
    real = '<|tool_call>call:read{path:<|"|>real.py<|"|>}<tool_call|>'
    text = f"```python\n{code}\n```\n{real}\n{code}"
    assert len(text) > 200_000
    assert _family(text) == [("read", {"path": "real.py"})]
    assert clean_answer(text, TOOLS) == f"```python\n{code}\n```\n\n{code}"
    big_write = (
        '<|tool_call>call:write{path:<|"|>big.py<|"|>,content:<|"|>' + code + '<|"|>}<tool_call|>'
    )
    assert _family(big_write) == [("write", {"path": "big.py", "content": code})]
    # Cut-off calls end where the next call starts: they never swallow the real one.
    calls = _family(junk + "\n" + real)
    assert len(calls) == 501
    assert calls[-1] == ("read", {"path": "real.py"})
    assert {name for name, _ in calls[:-1]} == {"write"}


# -- clean_answer -------------------------------------------------------------------------------


ANSWER = (
    "`mean` divides the **total** by the count.\n\n"
    '```python\ndef mean(items):\n    return total(items) / len(items)  # "safe"\n```\n'
    "It fails on an empty list."
)


@pytest.mark.parametrize(
    "reply",
    [
        f"<think>\nThe user wants...\n</think>\n\n{ANSWER}<|im_end|>",
        # Qwen3's template opens <think> in the prompt: only the closer is in the reply.
        f"Let me see, mean calls total.\n</think>\n\n{ANSWER}",
        # Gemma 4: ollama gemma4_test.go thinking_then_content, then the end of turn.
        f"<|channel>thought\nLet me think about this...<channel|>{ANSWER}<turn|>",
        # Magistral's [THINK] tokens and Mistral's end of sequence.
        f"[THINK]Short.[/THINK]{ANSWER}</s>",
        f"{ANSWER}<end_of_turn>\n",
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{ANSWER}<|eot_id|>",
    ],
)
def test_clean_answer_keeps_the_answer_exactly(reply: str) -> None:
    assert clean_answer(reply) == ANSWER


def test_clean_answer_drops_call_markup_and_echoed_results() -> None:
    # ollama gemma4_test.go: extra <tool_call|> and a <|tool_response> hand-over after a call.
    reply = (
        '<|tool_call>call:get_weather{location:<|"|>Paris<|"|>}<tool_call|><tool_call|>'
        "<|tool_response>Done."
    )
    assert clean_answer(reply) == "Done."
    reply = (
        "Before.\n"
        '<|tool_response>response:read{value:<|"|>1 | import os<|"|>}<tool_response|>'
        '<tool_response>\n{"ok": true}\n</tool_response>\n'
        "<tool_call>\n<function=read>\n<parameter=path>\na.py\n</parameter>\n</function>\n"
        "</tool_call>\n"
        '[TOOL_CALLS]web_search[ARGS]{"q": "x"}\n'
        "```tool_code\nprint(read(path='a.py'))\n```\n"
        "```tool_output\n1 | import os\n```\nAfter."
    )
    assert clean_answer(reply) == "Before.\n\n\n\n\n\nAfter."


def test_clean_answer_removes_json_calls_only_to_known_tools() -> None:
    reply = (
        'Summary first.\n```json\n{"name": "finish", "arguments": {"summary": "ok"}}\n```\n'
        'The config is {"name": "my-package", "version": "1.0"}.'
    )
    assert clean_answer(reply, TOOLS) == (
        'Summary first.\n\nThe config is {"name": "my-package", "version": "1.0"}.'
    )
    assert clean_answer(reply) == reply  # without tool names, JSON is just JSON


def test_clean_answer_all_thinking_and_quoted_markers() -> None:
    assert clean_answer("<think>I ran out of tokens while thinking about") == ""
    quoted = 'The parser drops `</think>` and "<|im_end|>" from replies; see `<|tool_call>`.'
    assert clean_answer(quoted) == quoted
    assert clean_answer("") == ""


def test_clean_answer_keeps_thinking_markers_inside_calls_out_of_the_answer() -> None:
    reply = (
        'Writing it.<|tool_call>call:write{path:<|"|>t.py<|"|>,content:<|"|>x = "</think>"\n<|"|>}'
        "<tool_call|>Then done."
    )
    assert clean_answer(reply, TOOLS) == "Writing it.Then done."


def test_strip_tool_syntax_keeps_thinking() -> None:
    reply = '<think>plan</think>Text.<|python_tag|>read.call(path="a")<|eom_id|>'
    assert strip_tool_syntax(reply, TOOLS) == "<think>plan</think>Text."
