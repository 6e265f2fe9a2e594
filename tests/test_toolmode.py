"""Tool-call modes against the scripted model server: native, constrained, auto with fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.prompts import SYSTEM_PROMPT
from agentls.agent.tools import build_tools
from agentls.agent.workspace import Workspace
from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from scripted_model import Reply, ScriptedModelServer

SOURCE = "def area(w, h):\n    return w * h\n"
MODEL = "gemma4:12b-it-qat"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "geo.py").write_text(SOURCE)
    return tmp_path


def json_reply(tool: str, **arguments: Any) -> Reply:
    """What a model under a JSON-schema constraint sends: the call as the message content."""
    return Reply(content=json.dumps({"tool": tool, "arguments": arguments}))


def ctx_for(
    server: ScriptedModelServer, root: Path, backend: str = "ollama", **overrides: Any
) -> TaskContext:
    url = server.openai_url if backend == "openai" else server.url
    settings = Settings(backend=backend, base_url=url, model=MODEL, **overrides)
    return TaskContext(root=root, settings=settings, backend=make_backend(settings))


SWAP = {"path": "geo.py", "old_text": "return w * h", "new_text": "return h * w"}


@pytest.mark.parametrize("backend", ["ollama", "openai"])
async def test_constrained_mode_forces_one_json_call_per_reply(
    scripted_model: ScriptedModelServer, project: Path, backend: str
) -> None:
    scripted_model.script([json_reply("edit", **SWAP), json_reply("finish", summary="Swapped.")])
    ctx = ctx_for(scripted_model, project, backend, tool_mode="constrained")
    result = await run_refactor(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()

    assert result.summary == "Swapped.\n\nNo tests found; not verified."
    assert result.changes[0].new_text == "def area(w, h):\n    return h * w\n"
    first, second = scripted_model.requests
    assert "tools" not in first
    if backend == "ollama":
        schema = first["format"]
    else:
        assert first["response_format"]["type"] == "json_schema"
        schema = first["response_format"]["json_schema"]["schema"]
    tools = [v["properties"]["tool"]["const"] for v in schema["oneOf"]]
    assert tools == ["read", "ls", "find", "grep", "edit", "write", "bash", "finish"]
    edit = schema["oneOf"][4]["properties"]["arguments"]
    assert edit["required"] == ["path"]
    assert edit["properties"]["edits"]["items"]["additionalProperties"] is False
    # No tools API: the tool list is in the system prompt, results come back as user turns.
    assert "- edit(path, old_text?, new_text?, edits?: [{" in first["messages"][0]["content"]
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][3]["content"].startswith("Result of edit:")
    assert json.loads(second["messages"][2]["content"])["tool"] == "edit"


async def test_constrained_invalid_arguments_get_an_error_naming_the_field(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script(
        [
            json_reply("edit", path="geo.py", old_text="return w * h"),
            json_reply("finish", summary="gave up"),
        ]
    )
    ctx = ctx_for(scripted_model, project, tool_mode="constrained")
    await run_refactor(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()
    feedback = scripted_model.requests[1]["messages"][3]["content"]
    assert "new_text" in feedback and "Error" in feedback


async def test_constrained_explain_answers_through_finish(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([json_reply("finish", summary="Multiplies width by height.")])
    ctx = ctx_for(scripted_model, project, tool_mode="constrained")
    result = await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()
    assert result.markdown == "Multiplies width by height."
    assert result.stats.turns == 1


async def test_auto_uses_constrained_when_ollama_says_no_tools(project: Path) -> None:
    with ScriptedModelServer(supports_tools=False) as server:
        server.script([json_reply("finish", summary="ok")])
        ctx = ctx_for(server, project, tool_mode="auto")
        await run_explain(ctx, TaskRequest(project / "geo.py"))
        await ctx.backend.aclose()
        # An explain's first call may answer in prose, so no grammar; the tools are listed in
        # the system prompt instead of the tools API.
        first = server.requests[0]
        assert "tools" not in first and "format" not in first
        assert '{"tool": NAME' in first["messages"][0]["content"]


async def test_auto_falls_back_without_losing_the_turn_and_remembers(project: Path) -> None:
    # An OpenAI-compatible server cannot say whether a model takes tools: native is tried,
    # the server refuses, and the same turn is asked again in constrained mode.
    with ScriptedModelServer(supports_tools=False) as server:
        server.script([json_reply("edit", **SWAP), json_reply("finish", summary="done")])
        ctx = ctx_for(server, project, "openai", tool_mode="auto")
        result = await run_refactor(ctx, TaskRequest(project / "geo.py"))
        await ctx.backend.aclose()

        assert (
            result.summary == "done\n\nNo tests found; not verified." and len(result.changes) == 1
        )
        assert result.stats.turns == 2
        native, constrained = server.requests[0], server.requests[1]
        assert "tools" in native and "response_format" not in native
        assert "tools" not in constrained and "response_format" in constrained
        assert constrained["messages"][1] == native["messages"][1]

        # The next run on the same server and model starts in constrained mode directly.
        server.script([json_reply("finish", summary="again")])
        ctx = ctx_for(server, project, "openai", tool_mode="auto")
        await run_explain(ctx, TaskRequest(project / "geo.py"))
        await ctx.backend.aclose()
        # (an explain's first call may answer in prose: no grammar, tools in the system prompt)
        again = server.requests[-1]
        assert "tools" not in again and '{"tool": NAME' in again["messages"][0]["content"]


async def test_native_mode_is_used_when_the_model_takes_tools(
    scripted_model: ScriptedModelServer, project: Path
) -> None:
    scripted_model.script([Reply(content="It multiplies.")])
    ctx = ctx_for(scripted_model, project, tool_mode="auto")
    await run_explain(ctx, TaskRequest(project / "geo.py"))
    await ctx.backend.aclose()
    request = scripted_model.requests[0]
    assert "tools" in request and "format" not in request
    assert request["messages"][0]["content"] == SYSTEM_PROMPT


@pytest.mark.parametrize("mode", ["native", "constrained"])
async def test_prefix_is_byte_identical_across_turns_tasks_and_runs(
    scripted_model: ScriptedModelServer, project: Path, mode: str
) -> None:
    (project / "other.py").write_text("X = 1\n")
    for _ in range(2):  # two runs, each an explain and a two-turn refactor
        scripted_model.script(
            [
                json_reply("finish", summary="explained"),
                json_reply("read", path="other.py"),
                json_reply("finish", summary="done"),
            ]
            if mode == "constrained"
            else [
                Reply(content="explained"),
                Reply(tool_calls=[{"name": "read", "arguments": {"path": "other.py"}}]),
                Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "done"}}]),
            ]
        )
        ctx = ctx_for(scripted_model, project, tool_mode=mode)
        await run_explain(ctx, TaskRequest(project / "geo.py"))
        await run_refactor(ctx, TaskRequest(project / "other.py"))
        await ctx.backend.aclose()

    def prefix(request: dict[str, Any]) -> str:
        return json.dumps([request["messages"][0], request.get("tools")], sort_keys=True)

    assert len(scripted_model.requests) == 6
    assert len({prefix(r) for r in scripted_model.requests}) == 1
    # The reply grammar is no part of the prompt (an explain's first call goes without one),
    # but where it is sent it is the same every time.
    grammars = {json.dumps(r["format"]) for r in scripted_model.requests if "format" in r}
    assert len(grammars) == (1 if mode == "constrained" else 0)


def test_fixed_prefix_is_small() -> None:
    """The system prompt plus tool schemas stay under 3,000 characters in both modes."""
    from agentls.agent.toolmode import tools_prompt

    specs = build_tools(Workspace(Path("."), lambda _p: None)).specs()
    schemas = json.dumps(
        [{"name": s.name, "description": s.description, "parameters": s.parameters} for s in specs]
    )
    native = len(SYSTEM_PROMPT) + len(schemas)
    constrained = len(SYSTEM_PROMPT) + 2 + len(tools_prompt(specs))
    assert native < 3000, native
    assert constrained < 3000, constrained


def test_constrained_rendering_never_puts_two_user_turns_in_a_row() -> None:
    # A run that ended with finish, then a follow-up prompt (a chat session's next turn), and a
    # harness note appended after a tool result: Gemma's template refuses user, user.
    from agentls.agent.toolmode import render_constrained
    from agentls.llm.types import Message, ToolCall

    finish = ToolCall("finish", {"summary": "done"}, id="c1")
    history = [
        Message("system", "S"),
        Message("user", "explain a.py"),
        Message("assistant", '{"tool": "finish"}', tool_calls=[finish]),
        Message("tool", "done", tool_call_id="c1", name="finish"),
        Message("user", "now also rename it"),
    ]
    rendered = render_constrained(history)
    roles = [m.role for m in rendered]
    assert roles == ["system", "user", "assistant", "user"]
    assert rendered[-1].content == "Result of finish:\ndone\n\nnow also rename it"
    # The earlier turns render exactly as before, so the cached prefix holds.
    assert render_constrained(history[:4])[:3] == rendered[:3]
