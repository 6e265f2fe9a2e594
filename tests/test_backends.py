"""Both chat backends against the scripted model server over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from agentls.llm import ollama as ollama_module
from agentls.llm.defaults import (
    GIB,
    choose_default_model,
    default_model_candidates,
    total_memory_bytes,
)
from agentls.llm.factory import make_backend
from agentls.llm.ollama import OllamaBackend
from agentls.llm.openai import OpenAIBackend
from agentls.llm.types import (
    BackendHTTPError,
    BackendTimeout,
    BackendUnreachable,
    ChatBackend,
    ChatRequest,
    Message,
    ModelNotFound,
    StreamBroken,
    StreamEvent,
    ToolCall,
    ToolSpec,
    ToolsUnsupported,
)
from agentls.settings import Settings
from scripted_model import Reply, ScriptedModelServer

MODEL = "gemma4:12b-it-qat"
READ = ToolSpec(
    "read",
    "Read a file.",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)

Factory = Callable[..., ChatBackend]


def _request(text: str = "Explain this.", **kwargs: Any) -> ChatRequest:
    return ChatRequest(messages=[Message("user", text)], **kwargs)


@pytest.fixture(params=["ollama", "openai"])
async def make(
    request: pytest.FixtureRequest, scripted_model: ScriptedModelServer
) -> AsyncIterator[Factory]:
    """Build a backend of the parametrized kind pointed at the scripted server."""
    kind = request.param
    made: list[ChatBackend] = []

    def build(**overrides: Any) -> ChatBackend:
        url = scripted_model.url if kind == "ollama" else scripted_model.openai_url
        values: dict[str, Any] = {"backend": kind, "base_url": url, "model": MODEL}
        values.update(overrides)
        backend = make_backend(Settings(**values))
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- streaming, tool calls, usage -----------------------------------------------------------


async def test_factory_picks_backend_by_setting() -> None:
    ollama = make_backend(Settings(backend="ollama"))
    openai = make_backend(Settings(backend="openai"))
    try:
        assert isinstance(ollama, OllamaBackend)
        assert ollama.base_url == "http://localhost:11434"
        assert isinstance(openai, OpenAIBackend)
        assert openai.base_url == "http://localhost:1234/v1"
    finally:
        await ollama.aclose()
        await openai.aclose()


async def test_streams_text_with_progress_events(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(content="The function adds two numbers.", chunk_size=5)])
    events: list[StreamEvent] = []
    response = await make().chat(_request(), events.append)

    assert response.content == "The function adds two numbers."
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    texts = [e.text for e in events if e.text]
    assert "".join(texts) == "The function adds two numbers."
    assert len(texts) == 6  # 30 characters in chunks of 5
    counts = [e.completion_tokens for e in events]
    assert counts == sorted(counts) and counts[-1] >= 6
    assert all(e.elapsed >= 0 for e in events)


async def test_native_tool_calls_are_parsed(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    args = {"path": "src/app.py", "old_text": 'x = {"a": 1}', "new_text": "x = dict(a=1)"}
    scripted_model.script(
        [
            Reply(
                content="Editing.",
                tool_calls=[
                    {"name": "edit", "arguments": args},
                    {"name": "finish", "arguments": {}},
                ],
                chunk_size=3,  # OpenAI: the argument JSON arrives in many 3-character fragments
            )
        ]
    )
    response = await make().chat(_request(tools=[READ]))

    assert [c.name for c in response.tool_calls] == ["edit", "finish"]
    assert response.tool_calls[0].arguments == args
    assert response.tool_calls[1].arguments == {}
    ids = [c.id for c in response.tool_calls]
    assert all(ids) and len(set(ids)) == 2
    assert response.content == "Editing."


async def test_malformed_tool_arguments_are_kept_raw(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    broken = '{"path": "a.py", "old_text": "x'
    scripted_model.script([Reply(tool_calls=[{"name": "edit", "arguments": broken}])])
    response = await make().chat(_request(tools=[READ]))

    assert len(response.tool_calls) == 1
    call = response.tool_calls[0]
    assert call.name == "edit"
    assert call.arguments == {}
    assert call.raw_arguments == broken


async def test_conversation_with_tool_results_is_sent_in_wire_format(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    history = [
        Message("system", "You are a coding agent."),
        Message("user", "Read a.py"),
        Message("assistant", "", tool_calls=[ToolCall("read", {"path": "a.py"}, id="call_7")]),
        Message("tool", "1: print('hi')", tool_call_id="call_7", name="read"),
    ]
    backend = make()
    await backend.chat(ChatRequest(messages=history, tools=[READ]))

    body = scripted_model.requests[-1]
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    call = messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "read"
    tool_spec = body["tools"][0]
    assert tool_spec == {
        "type": "function",
        "function": {
            "name": "read",
            "description": "Read a file.",
            "parameters": READ.parameters,
        },
    }
    if isinstance(backend, OllamaBackend):
        assert call["function"]["arguments"] == {"path": "a.py"}  # an object, not a string
        assert messages[3]["tool_name"] == "read"
    else:
        assert call["id"] == "call_7" and call["type"] == "function"
        assert json.loads(call["function"]["arguments"]) == {"path": "a.py"}
        assert messages[3]["tool_call_id"] == "call_7"


async def test_ollama_sends_num_ctx_keep_alive_temperature_on_every_request(
    scripted_model: ScriptedModelServer,
) -> None:
    settings = Settings(
        base_url=scripted_model.url, model=MODEL, context_length=24576, keep_alive="1h"
    )
    backend = OllamaBackend(settings)
    try:
        for _ in range(3):
            await backend.chat(_request(temperature=0.7))
    finally:
        await backend.aclose()

    assert len(scripted_model.requests) == 3
    for body in scripted_model.requests:
        assert body["_path"] == "/api/chat"
        assert body["stream"] is True
        assert body["options"] == {"num_ctx": 24576, "temperature": 0.7}
        assert body["keep_alive"] == "1h"
        assert "format" not in body


async def test_response_schema_is_passed_as_format_or_response_format(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    backend = make()
    await backend.chat(_request(response_schema=schema))

    body = scripted_model.requests[-1]
    if isinstance(backend, OllamaBackend):
        assert body["format"] == schema
    else:
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "tool_call", "strict": True, "schema": schema},
        }
        assert body["stream_options"] == {"include_usage": True}
        assert body["temperature"] == pytest.approx(0.2)


async def test_ollama_usage_maps_counts_and_speed(scripted_model: ScriptedModelServer) -> None:
    scripted_model.script([Reply(content="abcdefgh" * 4, prompt_tokens=1234, completion_tokens=40)])
    backend = OllamaBackend(Settings(base_url=scripted_model.url, model=MODEL))
    try:
        response = await backend.chat(_request())
    finally:
        await backend.aclose()

    usage = response.usage
    assert usage.prompt_tokens == 1234
    assert usage.completion_tokens == 40
    assert usage.cached_prompt_tokens is None  # Ollama does not report it
    assert usage.tokens_per_second is not None and usage.tokens_per_second > 0
    assert usage.time_to_first_token is not None
    assert 0 <= usage.time_to_first_token <= usage.wall_time


async def test_openai_usage_from_usage_chunk(scripted_model: ScriptedModelServer) -> None:
    scripted_model.script(
        [
            Reply(
                content="x" * 40,
                delay=0.01,
                prompt_tokens=900,
                completion_tokens=5,
                cached_tokens=700,
            )
        ]
    )
    backend = OpenAIBackend(
        Settings(backend="openai", base_url=scripted_model.openai_url, model=MODEL)
    )
    try:
        usage = (await backend.chat(_request())).usage
    finally:
        await backend.aclose()

    assert (usage.prompt_tokens, usage.completion_tokens) == (900, 5)
    assert usage.cached_prompt_tokens == 700
    # No server timings: speed comes from our own clock, 5 tokens over >= 40 ms of streaming.
    assert usage.tokens_per_second is not None and 0 < usage.tokens_per_second < 5 / 0.04
    assert usage.time_to_first_token is not None and usage.wall_time >= 0.04


async def test_openai_reads_llama_server_timings() -> None:
    with ScriptedModelServer(
        # usage.prompt_tokens_details is absent, so the cached count can only come from timings
        [Reply(content="hello", prompt_tokens=500, completion_tokens=3, cached_tokens=450)],
        openai_timings=True,
    ) as server:
        backend = OpenAIBackend(Settings(backend="openai", base_url=server.openai_url, model=MODEL))
        try:
            usage = (await backend.chat(_request())).usage
        finally:
            await backend.aclose()
    assert usage.cached_prompt_tokens == 450
    assert usage.prompt_tokens == 500
    assert usage.tokens_per_second is not None and usage.tokens_per_second > 0


def test_openai_usage_mapping_prefers_timings_over_own_clock() -> None:
    timings = {"cache_n": 10, "prompt_n": 90, "predicted_n": 7, "predicted_per_second": 42.5}
    usage = OpenAIBackend._usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
        timings,
        chunks=7,
        first_token=0.5,
        wall=1.0,
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (100, 7)
    assert usage.cached_prompt_tokens == 10
    assert usage.tokens_per_second == 42.5
    # Without usage or timings: counted chunks, speed from our clock (after the first token).
    bare = OpenAIBackend._usage(None, None, chunks=10, first_token=0.5, wall=1.5)
    assert (bare.prompt_tokens, bare.completion_tokens, bare.cached_prompt_tokens) == (0, 10, None)
    assert bare.tokens_per_second == pytest.approx(10.0)
    # llama-server without usage: prompt = newly processed + cached.
    only_timings = OpenAIBackend._usage(None, timings, chunks=1, first_token=None, wall=1.0)
    assert (only_timings.prompt_tokens, only_timings.completion_tokens) == (100, 7)


async def test_openai_sends_bearer_token(scripted_model: ScriptedModelServer) -> None:
    seen: list[str | None] = []

    async def capture(request: httpx.Request) -> None:
        seen.append(request.headers.get("authorization"))

    async with httpx.AsyncClient(event_hooks={"request": [capture]}) as client:
        backend = OpenAIBackend(
            Settings(
                backend="openai", base_url=scripted_model.openai_url, model=MODEL, api_key="s3cret"
            ),
            client,
        )
        await backend.resolve_model()
        await backend.chat(_request())
    assert seen == ["Bearer s3cret", "Bearer s3cret"]


# -- models ---------------------------------------------------------------------------------


def test_default_model_candidates_by_memory() -> None:
    # A "32 GB" laptop reports a little under 32 GiB.
    assert default_model_candidates(int(31.3 * GIB)) == [
        "gemma4:26b-a4b-it-qat",
        "gemma4:12b-it-qat",
    ]
    assert default_model_candidates(64 * GIB) == ["gemma4:26b-a4b-it-qat", "gemma4:12b-it-qat"]
    assert default_model_candidates(16 * GIB) == ["gemma4:12b-it-qat"]
    assert default_model_candidates(24 * GIB) == ["gemma4:12b-it-qat"]
    assert default_model_candidates(0) == ["gemma4:12b-it-qat"]  # unknown memory: be careful


def test_choose_default_model() -> None:
    pulled = ["llama3:latest", "gemma4:12b-it-qat", "gemma4:26b-a4b-it-qat"]
    assert choose_default_model(pulled, 32 * GIB) == "gemma4:26b-a4b-it-qat"
    assert choose_default_model(pulled, 16 * GIB) == "gemma4:12b-it-qat"
    assert choose_default_model(["gemma4:26b-a4b-it-qat"], 16 * GIB) == "gemma4:26b-a4b-it-qat"
    assert choose_default_model(["llama3:latest", "gemma3:4b"], 64 * GIB) is None
    assert total_memory_bytes() > 0


@pytest.mark.parametrize(
    ("memory", "expected"),
    [(32 * GIB, "gemma4:26b-a4b-it-qat"), (16 * GIB, "gemma4:12b-it-qat")],
)
async def test_ollama_default_model_from_tags(
    monkeypatch: pytest.MonkeyPatch, memory: int, expected: str
) -> None:
    monkeypatch.setattr(ollama_module, "total_memory_bytes", lambda: memory)
    models = ("qwen3:8b", "gemma4:12b-it-qat", "gemma4:26b-a4b-it-qat")
    with ScriptedModelServer(models=models) as server:
        backend = OllamaBackend(Settings(base_url=server.url))
        try:
            assert backend.model == ""
            assert await backend.resolve_model() == expected
            assert backend.model == expected
            await backend.chat(_request())
        finally:
            await backend.aclose()
        assert server.requests[0]["model"] == expected


async def test_ollama_no_gemma_pulled_names_the_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ollama_module, "total_memory_bytes", lambda: 16 * GIB)
    with ScriptedModelServer(models=("llama3:latest",)) as server:
        backend = OllamaBackend(Settings(base_url=server.url))
        try:
            with pytest.raises(ModelNotFound) as info:
                await backend.resolve_model()
        finally:
            await backend.aclose()
    assert "ollama pull gemma4:12b-it-qat" in info.value.hint
    assert "llama3:latest" in info.value.hint


async def test_configured_model_accepted_without_latest() -> None:
    with ScriptedModelServer(models=("mymodel:latest",)) as server:
        backend = OllamaBackend(Settings(base_url=server.url, model="mymodel"))
        try:
            assert await backend.resolve_model() == "mymodel"
        finally:
            await backend.aclose()


async def test_missing_configured_model_lists_available(make: Factory) -> None:
    backend = make(model="gemma4:31b-it-qat")
    with pytest.raises(ModelNotFound) as info:
        await backend.resolve_model()
    assert MODEL in info.value.hint
    if isinstance(backend, OllamaBackend):
        assert "Run: ollama pull gemma4:31b-it-qat" in info.value.hint


async def test_chat_with_unknown_model_raises_model_not_found(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    backend = make(model="nope:1b")
    with pytest.raises(ModelNotFound) as info:
        await backend.chat(_request())
    assert "nope:1b" in info.value.message
    if isinstance(backend, OllamaBackend):
        assert info.value.hint == "Run: ollama pull nope:1b"


async def test_openai_default_model_is_first_listed() -> None:
    with ScriptedModelServer(models=("local-model", "other")) as server:
        backend = OpenAIBackend(Settings(backend="openai", base_url=server.openai_url))
        try:
            assert await backend.resolve_model() == "local-model"
        finally:
            await backend.aclose()


async def test_model_info(make: Factory) -> None:
    backend = make()
    info = await backend.model_info()
    assert info.present and info.name == MODEL
    if isinstance(backend, OllamaBackend):
        assert info.supports_tools is True
        assert info.context_length == 32768
    else:
        assert info.supports_tools is None  # /v1/models does not say
    missing = await make(model="absent:7b").model_info()
    assert not missing.present
    assert MODEL in missing.available


async def test_ollama_model_info_without_tools() -> None:
    with ScriptedModelServer(models=("gemma3:4b",), supports_tools=False, context_length=8192) as s:
        backend = OllamaBackend(Settings(base_url=s.url, model="gemma3:4b"))
        try:
            info = await backend.model_info()
            assert (info.supports_tools, info.context_length) == (False, 8192)
            with pytest.raises(ToolsUnsupported):
                await backend.chat(_request(tools=[READ]))
        finally:
            await backend.aclose()


async def test_openai_tools_unsupported() -> None:
    with ScriptedModelServer(models=("gemma3:4b",), supports_tools=False) as s:
        backend = OpenAIBackend(
            Settings(backend="openai", base_url=s.openai_url, model="gemma3:4b")
        )
        try:
            with pytest.raises(ToolsUnsupported):
                await backend.chat(_request(tools=[READ]))
        finally:
            await backend.aclose()


# -- failures -------------------------------------------------------------------------------


async def test_server_down_is_unreachable_with_hint() -> None:
    port = _closed_port()
    for kind, url, hint in [
        ("ollama", f"http://127.0.0.1:{port}", "ollama serve"),
        ("openai", f"http://127.0.0.1:{port}/v1", "llama-server"),
    ]:
        backend = make_backend(Settings(backend=kind, base_url=url, model=MODEL))
        try:
            with pytest.raises(BackendUnreachable) as info:
                await backend.chat(_request())
            assert url in info.value.message
            assert hint in info.value.hint and "agent.baseUrl" in info.value.hint
            with pytest.raises(BackendUnreachable):
                await backend.resolve_model()
        finally:
            await backend.aclose()


async def test_http_500_includes_server_text(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(status=500, error="CUDA out of memory")])
    with pytest.raises(BackendHTTPError) as info:
        await make().chat(_request())
    assert info.value.status == 500
    assert "CUDA out of memory" in str(info.value)
    assert not isinstance(info.value, ToolsUnsupported)


async def test_broken_stream(make: Factory, scripted_model: ScriptedModelServer) -> None:
    scripted_model.script([Reply(content="partial answer " * 4, break_stream=True)])
    with pytest.raises(StreamBroken):
        await make().chat(_request())


async def test_error_inside_stream(make: Factory, scripted_model: ScriptedModelServer) -> None:
    scripted_model.script([Reply(content="abc", stream_error="model runner crashed")])
    with pytest.raises(StreamBroken) as info:
        await make().chat(_request())
    assert "model runner crashed" in str(info.value)


async def test_ollama_non_json_line(scripted_model: ScriptedModelServer) -> None:
    scripted_model.script(
        [Reply(raw_body='{"message": {"content": "a"}, "done": false}\nGARBAGE\n')]
    )
    backend = OllamaBackend(Settings(base_url=scripted_model.url, model=MODEL))
    try:
        with pytest.raises(StreamBroken, match="GARBAGE"):
            await backend.chat(_request())
    finally:
        await backend.aclose()


async def test_ollama_stream_without_done(scripted_model: ScriptedModelServer) -> None:
    scripted_model.script([Reply(raw_body='{"message": {"content": "a"}, "done": false}\n')])
    backend = OllamaBackend(Settings(base_url=scripted_model.url, model=MODEL))
    try:
        with pytest.raises(StreamBroken, match="ended before"):
            await backend.chat(_request())
    finally:
        await backend.aclose()


async def test_openai_non_json_event(scripted_model: ScriptedModelServer) -> None:
    scripted_model.script([Reply(raw_body="data: {not json\n\n")])
    backend = OpenAIBackend(
        Settings(backend="openai", base_url=scripted_model.openai_url, model=MODEL)
    )
    try:
        with pytest.raises(StreamBroken):
            await backend.chat(_request())
    finally:
        await backend.aclose()


async def test_slow_server_times_out(make: Factory, scripted_model: ScriptedModelServer) -> None:
    scripted_model.script([Reply(content="slow " * 5, chunk_size=5, delay=2.0)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BackendTimeout) as info:
        await make(request_timeout=0.3).chat(_request())
    assert loop.time() - started < 1.5  # gave up after one quiet gap, not after the stream
    assert "agent.requestTimeout" in info.value.hint


async def test_cancellation_closes_the_stream(
    make: Factory, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(content="thinking about it " * 10, hang=True)])
    events: list[StreamEvent] = []
    task = asyncio.create_task(make().chat(_request(), events.append))
    await asyncio.to_thread(scripted_model.wait_for_requests, 1)
    for _ in range(200):  # wait for the first streamed chunk to reach us
        if events:
            break
        await asyncio.sleep(0.01)
    assert events, "no chunk arrived before cancelling"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(scripted_model.wait_for_disconnect, 5)
