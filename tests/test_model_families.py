"""Tool calls that model families write as plain text, through the real loop and real HTTP.

The scripted model server answers with the raw text a model server leaves in ``content`` when
its own parser misses a call (Gemma 4, Qwen3-Coder XML, Mistral, Llama 3.x, Gemma 3), over both
wire formats (Ollama's ``/api/chat`` and OpenAI's ``/v1/chat/completions``). The tests check
what a user would: the edit landed byte for byte in the staged result, the read's result went
back to the model, the summary came through.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from scripted_model import Reply, ScriptedModelServer

MODEL = "gemma4:12b-it-qat"
OLD = "    return None  # TODO\n"
SOURCE = f"def render(x):\n{OLD}\n\ndef other():\n    pass\n"
# What the model writes in place of OLD: quotes of both kinds, backslashes, braces, a
# multi-line string, a line that only looks like a tag.
NEW = (
    '    """Render "x" as {x}."""\n'
    "    path = 'C:\\\\temp\\\\new'  # a \\n that stays two characters\n"
    '    body = {"k": [x, {x}], "s": f"{{x}}\\"{x}\\""}\n'
    "    # </think> <tool_call|>\n"
    "    return body\n"
)
DATA = "line one\nline two\nline three\n"


def _gemma4(name: str, args: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, str):
            return f'<|"|>{v}<|"|>'
        return json.dumps(v)

    body = ",".join(f"{k}:{value(v)}" for k, v in args.items())
    return f"<|tool_call>call:{name}{{{body}}}<tool_call|>"


def _qwen(name: str, args: dict[str, Any]) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def _qwen_bare(name: str, args: dict[str, Any]) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<function={name}>\n{params}</function>"


def _mistral(name: str, args: dict[str, Any]) -> str:
    return f"[TOOL_CALLS]{name}[ARGS]{json.dumps(args)}"


def _mistral_json(name: str, args: dict[str, Any]) -> str:
    return "[TOOL_CALLS] " + json.dumps([{"name": name, "arguments": args, "id": "abcDEF123"}])


def _llama_json(name: str, args: dict[str, Any]) -> str:
    return "<|python_tag|>" + json.dumps({"name": name, "parameters": args}) + "<|eom_id|>"


def _llama_call(name: str, args: dict[str, Any]) -> str:
    kwargs = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"<|python_tag|>{name}.call({kwargs})<|eom_id|>"


def _gemma3(name: str, args: dict[str, Any]) -> str:
    kwargs = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"```tool_code\nprint({name}({kwargs}))\n```"


def _python_list(name: str, args: dict[str, Any]) -> str:
    kwargs = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"[{name}({kwargs})]"


Family = Callable[[str, dict[str, Any]], str]
FAMILIES: dict[str, Family] = {
    "gemma4": _gemma4,
    "qwen3coder": _qwen,
    "qwen3coder-bare": _qwen_bare,
    "mistral": _mistral,
    "mistral-json": _mistral_json,
    "llama3-json": _llama_json,
    "llama3-call": _llama_call,
    "gemma3-tool_code": _gemma3,
    "python-list": _python_list,
}
# Some thinking or prose around the call, as the family writes it.
PREAMBLE = {
    "gemma4": "<|channel>thought\nEdit render, then finish.<channel|>",
    "qwen3coder": "I'll update the function.\n</think>\n\n",
    "mistral": "[THINK]Replace the body.[/THINK]",
    "gemma3-tool_code": "I will now make the change.\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(SOURCE)
    (tmp_path / "data.txt").write_text(DATA)
    return tmp_path


class _Quiet:
    def report(self, message: str, percentage: int | None = None) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


def _ctx(server: ScriptedModelServer, root: Path, wire: str, **overrides: Any) -> TaskContext:
    url = server.url if wire == "ollama" else server.openai_url
    settings = Settings(backend=wire, base_url=url, model=MODEL, **overrides)
    return TaskContext(
        root=root, settings=settings, backend=make_backend(settings), progress=_Quiet()
    )


def _tool_results(request: dict[str, Any]) -> list[str]:
    """What the model was told its tools answered (tool messages, or user messages in
    constrained mode)."""
    return [
        m["content"]
        for m in request["messages"]
        if m["role"] == "tool" or (m["role"] == "user" and m["content"].startswith("Result of"))
    ]


WIRES = ["ollama", "openai"]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("family", list(FAMILIES))
async def test_text_edit_lands_byte_exact(
    scripted_model: ScriptedModelServer, project: Path, wire: str, family: str
) -> None:
    write = FAMILIES[family]
    edit = write("edit", {"path": "app.py", "old_text": OLD, "new_text": NEW})
    finish = write("finish", {"summary": "Rendered the body."})
    scripted_model.script(
        [Reply(content=PREAMBLE.get(family, "") + edit), Reply(content=finish, chunk_size=5)]
    )
    ctx = _ctx(scripted_model, project, wire)
    result = await run_refactor(ctx, TaskRequest(project / "app.py", instruction="fill it in"))
    await ctx.backend.aclose()

    assert [c.path.name for c in result.changes] == ["app.py"]
    assert result.changes[0].new_text == SOURCE.replace(OLD, NEW)
    assert result.summary.startswith("Rendered the body.")
    assert (project / "app.py").read_text() == SOURCE
    assert len(scripted_model.requests) == 2
    assert all(
        r["_path"].endswith(("/api/chat", "/chat/completions")) for r in scripted_model.requests
    )


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("family", list(FAMILIES))
async def test_text_read_result_goes_back_to_the_model(
    scripted_model: ScriptedModelServer, project: Path, wire: str, family: str
) -> None:
    read = FAMILIES[family]("read", {"path": "data.txt", "offset": 2, "limit": 1})
    scripted_model.script([Reply(content=read), Reply(content="It holds three lines.")])
    ctx = _ctx(scripted_model, project, wire)
    result = await run_explain(ctx, TaskRequest(project / "app.py"))
    await ctx.backend.aclose()

    assert result.markdown == "It holds three lines."
    assert len(scripted_model.requests) == 2
    (answer,) = _tool_results(scripted_model.requests[1])
    # offset and limit worked as numbers, whatever syntax carried them.
    assert "line two" in answer
    assert "line one" not in answer and "line three" not in answer


@pytest.mark.parametrize("wire", WIRES)
async def test_gemma3_without_tool_support_in_constrained_mode(project: Path, wire: str) -> None:
    # Gemma 3 has no tools API; a tool_code block in a constrained reply still counts.
    edit = _gemma3("edit", {"path": "app.py", "old_text": OLD, "new_text": NEW})
    replies = [
        Reply(content=edit),
        Reply(content='{"tool": "finish", "arguments": {"summary": "ok"}}'),
    ]
    with ScriptedModelServer(replies, supports_tools=False) as server:
        ctx = _ctx(server, project, wire, tool_mode="constrained")
        result = await run_refactor(ctx, TaskRequest(project / "app.py"))
        await ctx.backend.aclose()
        requests = server.requests
    assert result.changes[0].new_text == SOURCE.replace(OLD, NEW)
    assert "tools" not in requests[0] or not requests[0]["tools"]
    assert any("app.py" in r for r in _tool_results(requests[1]))


@pytest.mark.parametrize("wire", WIRES)
async def test_several_gemma4_calls_in_one_reply_run_in_order(
    scripted_model: ScriptedModelServer, project: Path, wire: str
) -> None:
    reply = _gemma4("read", {"path": "data.txt"}) + _gemma4(
        "edit", {"path": "data.txt", "old_text": "line two\n", "new_text": "line 2 \\o/\n"}
    )
    scripted_model.script(
        [Reply(content=reply), Reply(content=_gemma4("finish", {"summary": "s"}))]
    )
    ctx = _ctx(scripted_model, project, wire)
    result = await run_refactor(ctx, TaskRequest(project / "data.txt"))
    await ctx.backend.aclose()

    read_result, edit_result = _tool_results(scripted_model.requests[1])
    assert "line two" in read_result
    assert not edit_result.startswith("Error")
    assert result.changes[0].new_text == "line one\nline 2 \\o/\nline three\n"


@pytest.mark.parametrize("wire", WIRES)
async def test_unknown_tool_in_family_syntax_is_not_run(
    scripted_model: ScriptedModelServer, project: Path, wire: str
) -> None:
    # A call to a tool the harness does not have is not a call: the reply is the answer.
    reply = "Here is the answer. " + _gemma4("web_search", {"q": "render"})
    scripted_model.script([Reply(content=reply)])
    ctx = _ctx(scripted_model, project, wire)
    result = await run_explain(ctx, TaskRequest(project / "app.py"))
    await ctx.backend.aclose()
    assert len(scripted_model.requests) == 1
    assert result.markdown.startswith("Here is the answer.")
