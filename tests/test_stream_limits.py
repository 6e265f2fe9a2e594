"""Model streams that never end are stopped (issue 11): the client-side output cap and the
per-call deadline (``agent.modelCallTimeout``), for both wire formats, over real HTTP on
127.0.0.1 (the scripted server's ``endless`` and ``keepalive_only`` replies)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

import test_backends
from agentls.llm.factory import make_backend
from agentls.llm.http_backend import CAP_FACTOR, CAP_SLACK, HTTPChatBackend, output_cap
from agentls.llm.types import (
    BackendTimeout,
    ChatBackend,
    ChatRequest,
    Message,
    StreamEvent,
    StreamRunaway,
)
from agentls.settings import Settings, load_settings
from lsp_support import CALC, agent_client, make_project, options
from scripted_model import DEFAULT_CONTENT, Reply, ScriptedModelServer
from test_backends import MODEL, Factory

# The fixture `make` builds a backend of each kind pointed at the scripted server.
make = test_backends.make


def _request(max_tokens: int | None = 32) -> ChatRequest:
    return ChatRequest(messages=[Message("user", "Explain this.")], max_tokens=max_tokens)


async def _still_answers(backend: ChatBackend) -> None:
    """The scripted server (and the backend's client) serve the next call normally."""
    response = await backend.chat(_request())
    assert response.content == DEFAULT_CONTENT


# -- the output cap -------------------------------------------------------------------------


def test_the_cap_leaves_room_past_max_tokens() -> None:
    assert output_cap(16) == 84
    assert output_cap(2048) == 2624
    for max_tokens in (16, 100, 2048, 131072):
        assert output_cap(max_tokens) >= max_tokens * CAP_FACTOR + CAP_SLACK


@pytest.mark.parametrize("extra", [0, 1])
async def test_a_reply_up_to_the_cap_passes_and_one_past_it_is_stopped(
    make: Factory, scripted_model: ScriptedModelServer, extra: int
) -> None:
    chunks = output_cap(16) + extra
    scripted_model.script([Reply(content="x" * chunks, chunk_size=1)])
    backend = make()
    if not extra:
        response = await backend.chat(_request(max_tokens=16))
        assert response.content == "x" * chunks
        return
    with pytest.raises(StreamRunaway) as info:
        await backend.chat(_request(max_tokens=16))
    assert "16 tokens" in info.value.message
    assert "agent.maxOutputTokens" in info.value.hint


async def test_an_endless_stream_is_stopped_and_its_connection_closed(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(content="Let me see. ", endless=True)])
    events: list[StreamEvent] = []
    backend = make()
    with pytest.raises(StreamRunaway) as info:
        await backend.chat(_request(max_tokens=32), events.append)
    assert f"about {output_cap(32) + 1} tokens" in info.value.message
    assert "max_tokens" in info.value.hint and "agent.maxOutputTokens" in info.value.hint
    assert len(events) == output_cap(32)  # progress up to the cap, not past it
    # The server sees the client leave: it stops generating.
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)
    await _still_answers(backend)


async def test_a_server_packing_many_tokens_into_each_chunk_is_stopped_by_characters(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    # 40 chunks of 2000 characters: few chunks, but far more text than 16 tokens can be.
    scripted_model.script([Reply(content="word " * 16000, chunk_size=2000)])
    with pytest.raises(StreamRunaway):
        await make().chat(_request(max_tokens=16))


async def test_without_max_tokens_the_setting_caps_the_reply(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(endless=True)])
    with pytest.raises(StreamRunaway) as info:
        await make(max_output_tokens=20).chat(_request(max_tokens=None))
    assert "cap of 20 tokens" in info.value.message


async def test_thinking_counts_toward_the_cap(scripted_model: ScriptedModelServer) -> None:
    # A model that thinks forever (Ollama's `thinking`, OpenAI's `reasoning_content`) never
    # writes an answer token, and must be stopped all the same.
    think = '{"message":{"role":"assistant","content":"","thinking":"hmm "},"done":false}\n'
    reason = 'data: {"choices":[{"index":0,"delta":{"reasoning_content":"hmm "}}]}\n\n'
    for kind, body in (("ollama", think), ("openai", reason)):
        scripted_model.script([Reply(raw_body=body * 200)])
        url = scripted_model.url if kind == "ollama" else scripted_model.openai_url
        backend = make_backend(Settings(backend=kind, base_url=url, model=MODEL))
        try:
            with pytest.raises(StreamRunaway):
                await backend.chat(_request(max_tokens=16))
        finally:
            await backend.aclose()


# -- the deadline ---------------------------------------------------------------------------


async def test_a_keepalive_only_stream_hits_the_deadline(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    # Keep-alives every 50 ms: the 0.3 s per-read timeout never fires, only the deadline can.
    scripted_model.script([Reply(keepalive_only=True)])
    backend = make(model_call_timeout=0.6, request_timeout=0.3)
    with pytest.raises(BackendTimeout) as info:
        await backend.chat(_request())
    assert "agent.modelCallTimeout (0.6s)" in info.value.message
    assert "no tokens had arrived" in info.value.message
    assert "agent.modelCallTimeout" in info.value.hint
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)
    await _still_answers(backend)


async def test_keepalives_after_some_text_hit_the_deadline(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(content="Let me think about it.", keepalive_only=True)])
    with pytest.raises(BackendTimeout) as info:
        await make(model_call_timeout=0.6, request_timeout=0.3).chat(_request())
    assert "chunks had arrived" in info.value.message
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)


async def test_a_slow_endless_stream_within_its_cap_hits_the_deadline(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(endless=True, delay=0.02)])
    with pytest.raises(BackendTimeout) as info:
        await make(model_call_timeout=0.5).chat(_request(max_tokens=100_000))
    assert "agent.modelCallTimeout" in info.value.message
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)


async def test_cancelling_the_caller_is_not_reported_as_the_deadline(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(keepalive_only=True)])
    task = asyncio.create_task(make(model_call_timeout=60).chat(_request()))
    await asyncio.to_thread(scripted_model.wait_for_requests, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 10)


async def test_both_backends_share_the_base(make: Factory) -> None:
    assert isinstance(make(), HTTPChatBackend)


# -- the setting ----------------------------------------------------------------------------


def test_model_call_timeout_setting_is_validated() -> None:
    settings, warnings = load_settings({"agent": {"modelCallTimeout": 90}})
    assert settings.model_call_timeout == 90 and warnings == []
    default = Settings.model_fields["model_call_timeout"].default
    assert default == 600
    for bad in (0, -5, "soon", 10**9):
        settings, warnings = load_settings({"agent": {"modelCallTimeout": bad}})
        assert settings.model_call_timeout == default
        assert len(warnings) == 1 and warnings[0].startswith("agent.modelCallTimeout: invalid")


# -- through the language server ------------------------------------------------------------


async def test_the_language_server_reports_both_and_keeps_answering(
    tmp_path: Path, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script(
        [Reply(endless=True), Reply(keepalive_only=True), Reply(content="It adds numbers.")]
    )
    root = make_project(tmp_path, {"calc.py": CALC})
    init = options(scripted_model.url, maxOutputTokens=16, modelCallTimeout=2)
    async with agent_client(root, init) as agent:
        doc = await agent.open(root / "calc.py")
        messages = []
        for _ in range(2):
            with pytest.raises(JsonRpcException) as exc:
                await agent.request("agent/explain", {"textDocument": {"uri": doc}})
            messages.append(exc.value.message)
        status = await agent.request("agent/status", {})
        result = await agent.request("agent/explain", {"textDocument": {"uri": doc}})
    assert "kept generating past the reply cap of 16 tokens" in messages[0]
    assert "agent.modelCallTimeout (2s)" in messages[1]
    assert status["reachable"] is True
    assert "It adds numbers." in result["markdown"]
    assert scripted_model.disconnects >= 2
