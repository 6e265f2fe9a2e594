"""`agentls acp` driven by the official SDK's client side, through the scripted model server on
both wire formats: streaming, edits with consent through the client's fs, follow-ups, cancel,
unsaved buffers, safety, and every error ending the prompt with a message (never the agent)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acp.schema import (
    AgentMessageChunk,
    AgentThoughtChunk,
    AvailableCommandsUpdate,
    ToolCallProgress,
    ToolCallStart,
    UsageUpdate,
)

from acp_support import EditorClient, agent_env, embedded, file_link, running_agent
from lsp_support import CALC, call, closed_port
from scripted_model import Reply, ScriptedModelServer

SOURCE = CALC  # the sample module the LSP tests use too
APP = "from stats import mean\n\nprint(mean([1, 2]))\n"
MEAN_SRC = "def mean(items):\n    return total(items) / len(items)\n"
EXPLANATION = (
    "`mean` divides the **total** of the items by their count; `total` sums them with an "
    "index loop."
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "stats.py").write_text(SOURCE)
    (root / "app.py").write_text(APP)
    return root


@pytest.fixture(params=["ollama", "openai"])
def wire(request: pytest.FixtureRequest) -> str:
    """The model server's wire format: Ollama's NDJSON or OpenAI's SSE."""
    return str(request.param)


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    server = ScriptedModelServer(models=["gemma4:12b-it-qat", "gemma4:26b-a4b-it-qat"]).start()
    try:
        yield server
    finally:
        server.stop()


def env_for(server: ScriptedModelServer, wire: str, **extra: Any) -> dict[str, str]:
    url = server.url if wire == "ollama" else server.openai_url
    env = agent_env(url, backend=wire)
    if extra:
        env["AGENTLS_SETTINGS"] = json.dumps(extra)
    return env


def first_user(request: dict[str, Any]) -> str:
    return str(next(m["content"] for m in request["messages"] if m["role"] == "user"))


# ---- handshake ------------------------------------------------------------------------------


async def test_handshake_offers_the_slash_commands_and_the_model_selector(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        await agent.client.wait_for(lambda: bool(agent.client.of(AvailableCommandsUpdate)))
        (commands,) = agent.client.of(AvailableCommandsUpdate)
        assert [c.name for c in commands.available_commands] == ["explain", "refactor", "tests"]
        options = {o.id: o for o in agent.config_options or []}
        assert options["model"].current_value == "gemma4:12b-it-qat"
        assert [o.value for o in options["model"].options] == [
            "gemma4:12b-it-qat",
            "gemma4:26b-a4b-it-qat",
        ]
        assert options["tool_mode"].current_value == "auto"

        # The selector changes the model of the next prompt.
        response = await agent.conn.set_config_option(
            config_id="model", session_id=agent.session_id, value="gemma4:26b-a4b-it-qat"
        )
        assert {o.id: o.current_value for o in response.config_options}["model"] == (
            "gemma4:26b-a4b-it-qat"
        )
        model.script([Reply(content="Short answer.")])
        await agent.prompt("what is in stats.py?")
        assert model.requests[-1]["model"] == "gemma4:26b-a4b-it-qat"


# ---- explain, streamed --------------------------------------------------------------------------


async def test_explain_streams_the_answer_in_chunks(
    project: Path, tmp_path: Path, model: ScriptedModelServer, wire: str
) -> None:
    model.script([Reply(content=EXPLANATION, chunk_size=8)])
    async with running_agent(project, tmp_path, env_for(model, wire)) as agent:
        response = await agent.prompt("/explain ", file_link(project / "stats.py"))

        assert response.stop_reason == "end_turn"
        assert len(agent.client.chunks()) > 3  # streamed, not sent in one piece
        assert agent.client.text().strip() == EXPLANATION
        assert len(model.requests) == 1
        assert "def mean(items):" in first_user(model.requests[0])
        # The file was read through the client (its buffer, were it unsaved).
        assert project / "stats.py" in agent.client.reads
        assert agent.client.of(UsageUpdate)
        usage = agent.client.of(UsageUpdate)[-1]
        assert 0 < usage.used <= usage.size


async def test_thinking_streams_as_thought_chunks(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    model.script([Reply(content="<think>The loop could be sum().</think>It sums the items.")])
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        await agent.prompt("/explain ", file_link(project / "stats.py"))
        thought = "".join(u.content.text for u in agent.client.of(AgentThoughtChunk))
        said = agent.client.text()
    assert "could be sum()" in thought
    assert said.strip() == "It sums the items." and "think" not in said


async def test_explain_of_a_selection_sends_its_lines(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    model.script([Reply(content="It averages.")])
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        await agent.prompt("/explain ", file_link(project / "stats.py", "L8:9"))
    assert "The user selected lines 8-9." in first_user(model.requests[0])


# ---- edits: consent, then the client's fs -------------------------------------------------------


def split_script() -> list[Reply]:
    return [
        call("write", path="averages.py", content="from stats import total\n\n\n" + MEAN_SRC),
        call("edit", path="stats.py", old_text="\n\n" + MEAN_SRC, new_text=""),
        call(
            "edit",
            path="app.py",
            old_text="from stats import mean",
            new_text="from averages import mean",
        ),
        call("finish", summary="Moved mean to averages.py."),
    ]


async def test_module_split_is_written_through_the_client_after_consent(
    project: Path, tmp_path: Path, model: ScriptedModelServer, wire: str
) -> None:
    model.script(split_script())
    async with running_agent(project, tmp_path, env_for(model, wire)) as agent:
        response = await agent.prompt(
            "/refactor ", file_link(project / "stats.py"), " move mean to averages.py"
        )
        client = agent.client

    assert response.stop_reason == "end_turn"
    (asked,) = client.asked
    assert asked.tool_call.kind == "edit"
    diffs = {Path(c.path).name: c for c in asked.tool_call.content or []}
    assert set(diffs) == {"averages.py", "stats.py", "app.py"}
    assert diffs["averages.py"].old_text is None
    assert diffs["stats.py"].old_text == SOURCE
    assert {o.kind for o in asked.options} >= {"allow_once", "reject_once"}

    written = dict(client.writes)
    assert written[project / "app.py"].startswith("from averages import mean")
    assert "def mean" not in written[project / "stats.py"]
    assert "def mean" in written[project / "averages.py"]
    # Written through the editor, so the disk is the editor's business (not saved yet).
    assert (project / "stats.py").read_text() == SOURCE
    assert not (project / "averages.py").exists()

    starts = {u.tool_call_id: u for u in client.of(ToolCallStart)}
    kinds = [u.kind for u in starts.values()]
    assert kinds.count("edit") >= 4  # write, two edits, and the consent call
    done = {u.tool_call_id: u.status for u in client.of(ToolCallProgress) if u.status}
    assert all(done.get(i) == "completed" for i in starts), done
    assert "Moved mean to averages.py." in client.text()
    # Each edit's card shows its own diff as it is staged, before the consent request.
    card_diffs = [
        c
        for u in client.of(ToolCallProgress)
        if u.tool_call_id != asked.tool_call.tool_call_id
        for c in u.content or []
        if getattr(c, "type", None) == "diff"
    ]
    new_module = [c for c in card_diffs if Path(c.path).name == "averages.py"]
    assert new_module and new_module[0].old_text is None and "def mean" in new_module[0].new_text
    assert any(Path(c.path).name == "stats.py" and c.old_text == SOURCE for c in card_diffs)


async def test_a_rejected_permission_changes_nothing(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    model.script(split_script())
    client = EditorClient(permission="reject")
    async with running_agent(project, tmp_path, env_for(model, "ollama"), client=client) as agent:
        response = await agent.prompt("/refactor ", file_link(project / "stats.py"), " split it")
        # The follow-up's model knows its edits did not land.
        model.script([Reply(content="Understood.")])
        await agent.prompt("why not?")
        follow_up = model.requests[-1]["messages"][-1]["content"]
        assert "rejected your changes" in follow_up and "why not?" in follow_up
    assert response.stop_reason == "end_turn"
    assert len(client.asked) == 1
    assert client.writes == []
    assert (project / "stats.py").read_text() == SOURCE
    assert (project / "app.py").read_text() == APP
    assert not (project / "averages.py").exists()
    assert "nothing was written" in client.text()
    edit_call = client.asked[0].tool_call.tool_call_id
    assert [u.status for u in client.of(ToolCallProgress) if u.tool_call_id == edit_call] == [
        "failed"
    ]


async def test_typing_while_the_agent_works_is_kept_and_a_clash_writes_nothing(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    client = EditorClient()
    app = project / "app.py"
    # The user adds a line at the end of app.py while the agent waits for consent.
    client.before_answer = lambda: client.buffers.__setitem__(app, APP + "print('typed')\n")
    model.script(split_script())
    async with running_agent(project, tmp_path, env_for(model, "ollama"), client=client) as agent:
        await agent.prompt("/refactor ", file_link(project / "stats.py"), " split it")
        merged = dict(client.writes)[app]
        assert merged.startswith("from averages import mean") and "print('typed')" in merged

        # Now the user rewrites the very line the agent changes: nothing is written at all.
        client.writes.clear()
        client.buffers.clear()
        client.before_answer = lambda: client.buffers.__setitem__(
            app, APP.replace("from stats import mean", "from stats import mean as average")
        )
        model.script(split_script())
        await agent.prompt("/refactor ", file_link(project / "stats.py"), " split it again")
        assert client.writes == []
        assert "Not applied" in client.text() and "app.py" in client.text()


async def test_always_apply_stops_asking_for_the_session(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    client = EditorClient(permission="apply-always")
    async with running_agent(project, tmp_path, env_for(model, "ollama"), client=client) as agent:
        model.script(split_script())
        await agent.prompt("/refactor ", file_link(project / "stats.py"), " split it")
        model.script(
            [
                call("edit", path="app.py", old_text="print(", new_text="print('mean:', "),
                call("finish", summary="Labelled the output."),
            ]
        )
        await agent.prompt("label the printed mean")
    assert len(client.asked) == 1  # the second edit was applied without asking again
    assert client.buffers[project / "app.py"].endswith("print('mean:', mean([1, 2]))\n")
    assert client.text().count("Applied through the editor") == 2


async def test_without_fs_capabilities_consent_writes_the_disk(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    model.script(split_script())
    async with running_agent(project, tmp_path, env_for(model, "openai"), fs=False) as agent:
        await agent.prompt("/refactor ", file_link(project / "stats.py"), " split it")
        client = agent.client
    assert len(client.asked) == 1 and client.writes == [] and client.reads == []
    assert (project / "app.py").read_text().startswith("from averages import mean")
    assert "def mean" in (project / "averages.py").read_text()
    assert "Applied to disk" in client.text()


async def test_the_general_request_answers_or_edits_with_every_tool(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    model.script(
        [
            call("grep", pattern="def mean"),
            call(
                "edit",
                path="stats.py",
                old_text="    t = 0\n    for i in range(len(items)):\n"
                "        t = t + items[i]\n    return t",
                new_text="    return sum(items)",
            ),
            call("finish", summary="total() uses sum() now."),
        ]
    )
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        await agent.prompt("make total use sum")
        client = agent.client
    first = first_user(model.requests[0])
    assert "The user's instruction: make total use sum" in first
    # Every tool is offered and runs (grep and edit here).
    assert (
        "def mean"
        in next(m for m in model.requests[1]["messages"] if m["role"] == "tool")["content"]
    )
    assert "return sum(items)" in dict(client.writes)[project / "stats.py"]
    kinds = [u.kind for u in client.of(ToolCallStart)]
    assert kinds[:2] == ["search", "edit"]


# ---- a session keeps its conversation -----------------------------------------------------------


async def test_a_follow_up_continues_the_same_conversation(
    project: Path, tmp_path: Path, model: ScriptedModelServer, wire: str
) -> None:
    model.script([Reply(content="`total` sums with an index loop."), Reply(content="Done.")])
    async with running_agent(project, tmp_path, env_for(model, wire)) as agent:
        await agent.prompt("/explain ", file_link(project / "stats.py"))
        await agent.prompt("and what does mean do with an empty list?")
    first, second = model.requests
    # The second request extends the first: the same messages (so the server's cached prefix
    # holds), then the model's answer, then the new request.
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert "index loop" in second["messages"][len(first["messages"])]["content"]
    assert "mean do with an empty list" in json.dumps(second["messages"][-1])


# ---- cancel ---------------------------------------------------------------------------------


async def test_cancel_mid_stream_closes_the_model_stream(
    project: Path, tmp_path: Path, model: ScriptedModelServer, wire: str
) -> None:
    # Words that never repeat: a repeated phrase would be stopped as a loop before the cancel.
    text = " ".join(f"part{n} of an explanation that never ends." for n in range(20))
    model.script([Reply(content=text, chunk_size=4, hang=True)])
    async with running_agent(project, tmp_path, env_for(model, wire)) as agent:
        prompt = asyncio.ensure_future(agent.prompt("/explain ", file_link(project / "stats.py")))
        await agent.client.wait_for(lambda: bool(agent.client.chunks()))
        await agent.conn.cancel(session_id=agent.session_id)
        response = await asyncio.wait_for(prompt, 30)
        assert response.stop_reason == "cancelled"
        assert await asyncio.to_thread(model.wait_for_disconnect, 10)
        # The agent is still there and the session takes the next prompt.
        model.script([Reply(content="Back again.")])
        again = await agent.prompt("still there?")
        assert again.stop_reason == "end_turn"
        assert "Back again." in agent.client.text()


async def test_cancel_while_asking_permission_writes_nothing(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    model.script(split_script())
    client = EditorClient(permission="cancelled")
    client.release_permission = asyncio.Event()
    async with running_agent(project, tmp_path, env_for(model, "ollama"), client=client) as agent:
        prompt = asyncio.ensure_future(agent.prompt("/refactor ", file_link(project / "stats.py")))
        await client.wait_for(lambda: bool(client.asked))
        await agent.conn.cancel(session_id=agent.session_id)
        client.release_permission.set()
        response = await asyncio.wait_for(prompt, 30)
    assert response.stop_reason == "cancelled"
    assert client.writes == [] and not (project / "averages.py").exists()


# ---- buffers the editor holds --------------------------------------------------------------------


async def test_an_unsaved_buffer_is_what_the_model_reads(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    unsaved = SOURCE + "\n\ndef median(items):\n    return sorted(items)[len(items) // 2]\n"
    client = EditorClient()
    client.buffers[project / "stats.py"] = unsaved
    model.script([call("read", path="app.py"), Reply(content="It has median too.")])
    async with running_agent(project, tmp_path, env_for(model, "ollama"), client=client) as agent:
        await agent.prompt("/explain ", file_link(project / "stats.py"))
    assert "def median(items):" in first_user(model.requests[0])
    assert (project / "stats.py").read_text() == SOURCE  # the disk never had it
    assert project / "app.py" in client.reads  # the model's own reads go through the client


async def test_an_embedded_buffer_is_used_as_sent(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    text = "def shout(s):\n    return s.upper()\n"
    model.script([Reply(content="It shouts.")])
    async with running_agent(project, tmp_path, env_for(model, "openai")) as agent:
        await agent.prompt("what does this do? ", embedded(project / "shout.py", text))
    assert "return s.upper()" in first_user(model.requests[0])
    assert "`shout.py`" in first_user(model.requests[0])


# ---- safety -------------------------------------------------------------------------------------


async def test_files_outside_cwd_and_secrets_are_refused(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("TOP SECRET")
    (project / ".env").write_text("API_KEY=hunter2")
    model.script([Reply(content="Nothing to see.")])
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        await agent.prompt("read this ", file_link(secret), " and ", embedded(secret, "TOP SECRET"))
        text = agent.client.text()
        assert "outside the workspace" in text
        await agent.prompt("/explain ", file_link(project / ".env"))
        assert "secret file" in agent.client.text()
    sent = json.dumps(model.requests)
    assert "TOP SECRET" not in sent and "hunter2" not in sent
    assert secret not in agent.client.reads


# ---- errors end the prompt, never the agent ---------------------------------------------------


async def test_backend_down_says_how_to_start_it(project: Path, tmp_path: Path) -> None:
    env = agent_env(f"http://127.0.0.1:{closed_port()}")
    async with running_agent(project, tmp_path, env) as agent:
        response = await agent.prompt("/explain ", file_link(project / "stats.py"))
        assert response.stop_reason == "end_turn"
        text = agent.client.text()
        assert "Cannot reach Ollama" in text and "**Fix:**" in text and "ollama serve" in text
        again = await agent.prompt("hello?")  # the agent survived and answers again
        assert again.stop_reason == "end_turn"
        assert agent.process.returncode is None


async def test_a_missing_model_says_how_to_get_it(project: Path, tmp_path: Path, wire: str) -> None:
    with ScriptedModelServer(models=["llama3.2:1b"]) as server:
        env = env_for(server, wire)
        async with running_agent(project, tmp_path, env) as agent:
            response = await agent.prompt("/explain ", file_link(project / "stats.py"))
            text = agent.client.text()
    assert response.stop_reason == "end_turn"
    assert "gemma4:12b-it-qat" in text and "**Fix:**" in text


async def test_a_context_overflow_says_what_to_change(project: Path, tmp_path: Path) -> None:
    with ScriptedModelServer(flavour="llama-server", loaded_context=600) as server:
        env = env_for(server, "openai")
        async with running_agent(project, tmp_path, env) as agent:
            response = await agent.prompt("/explain ", file_link(project / "stats.py"))
            text = agent.client.text()
    assert response.stop_reason == "end_turn"
    assert "agentls could not finish" in text
    assert "contextLength" in text or "-c " in text


async def test_a_stop_signal_ends_the_agent_with_128_plus_the_signal(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    text = " ".join(f"never finished {n}" for n in range(50))  # no loop to stop
    model.script([Reply(content=text, chunk_size=4, hang=True)])
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        prompt = asyncio.ensure_future(agent.prompt("/explain ", file_link(project / "stats.py")))
        await agent.client.wait_for(lambda: bool(agent.client.chunks()))
        agent.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.process.wait(), 30) == 128 + signal.SIGTERM
        prompt.cancel()
    assert await asyncio.to_thread(model.wait_for_disconnect, 10)


async def test_a_slash_command_without_a_file_says_how(
    project: Path, tmp_path: Path, model: ScriptedModelServer
) -> None:
    async with running_agent(project, tmp_path, env_for(model, "ollama")) as agent:
        response = await agent.prompt("/tests")
        assert response.stop_reason == "end_turn"
        assert "`/tests @src/app.py`" in agent.client.text()
    assert model.requests == []


def test_the_chunk_type_is_the_sdks() -> None:
    # The helpers build the SDK's own types, so the tests read exactly what a client would.
    assert AgentMessageChunk.model_fields["content"]
