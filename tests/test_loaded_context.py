"""The context window the server actually loaded (issue 10, item 4).

Scripted servers imitate LM Studio (``/api/v0/models``), llama-server (``/props``, 400
``exceed_context_size_error``), vLLM (``max_model_len``) and Ollama (``/api/ps`` behind its
``/v1``) over real HTTP on 127.0.0.1; the last test reads the real llama-server's window.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.budget import MIN_SERVER_WINDOW, ContextWindow, truncated_prompt
from agentls.agent.progress import TaskError
from agentls.cli.doctor import print_report, run_checks
from agentls.llm.factory import make_backend
from agentls.llm.ollama import OllamaBackend
from agentls.llm.openai import OpenAIBackend
from agentls.llm.types import (
    ChatBackend,
    ChatRequest,
    ContextOverflow,
    EmptyReply,
    LoadedContext,
    Message,
)
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from lsp_support import call
from real_model import RealModel
from scripted_model import Reply, ScriptedModelServer

MODEL = "gemma4:12b-it-qat"
FLAVOURS = ("lmstudio", "llama-server", "vllm", "ollama")
# What each server's fix must say.
FIXES = {
    "lmstudio": "--context-length 32768",
    "llama-server": "-c 32768",
    "vllm": "--max-model-len 32768",
    "ollama": "OLLAMA_CONTEXT_LENGTH=32768",
}
SOURCES = {
    "lmstudio": "GET /api/v0/models",
    "llama-server": "GET /props",
    "vllm": "GET /v1/models max_model_len",
    "ollama": "GET /api/ps",
}


class Recorder:
    """A progress sink that keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def report(self, message: str, percentage: int | None = None) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def big_file(name: str, lines: int = 380) -> str:
    """A Python file of about ``lines * 45`` characters."""
    return "".join(
        f"{name}_{k} = compute({k}, {k + 1}, 'padding text')  # n\n" for k in range(lines)
    )


def openai_settings(server: ScriptedModelServer, **extra: Any) -> Settings:
    values: dict[str, Any] = {"backend": "openai", "base_url": server.openai_url, "model": MODEL}
    values.update(extra)
    return Settings(**values)


Backend = OpenAIBackend | OllamaBackend


@pytest.fixture
async def backends() -> AsyncIterator[Callable[[Settings], Backend]]:
    """Builds backends and closes them after the test."""
    made: list[ChatBackend] = []

    def build(settings: Settings) -> Backend:
        backend = make_backend(settings)
        assert isinstance(backend, OpenAIBackend | OllamaBackend)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.aclose()


# -- reading the window ---------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_each_server_reports_the_window_it_loaded(
    flavour: str, backends: Callable[[Settings], Backend]
) -> None:
    with ScriptedModelServer(flavour=flavour, context_length=131072, loaded_context=4096) as s:
        backend = backends(openai_settings(s))
        loaded = await backend.loaded_context()
        assert loaded is not None
        assert (loaded.length, loaded.server, loaded.source) == (4096, flavour, SOURCES[flavour])
        info = await backend.model_info()
        assert info.loaded_context_length == 4096 and info.loaded == loaded
        if flavour == "llama-server":
            assert info.context_length == 131072  # meta.n_ctx_train: the trained maximum


async def test_the_probe_is_cached_and_a_server_without_endpoints_is_unknown(
    backends: Callable[[Settings], Backend],
) -> None:
    with ScriptedModelServer(flavour="llama-server", loaded_context=4096) as s:
        backend = backends(openai_settings(s))
        for _ in range(3):
            assert (await backend.loaded_context()) == LoadedContext(
                4096, "llama-server", "GET /props"
            )
        await backend.chat(ChatRequest([Message("user", "hi")]))
        await backend.loaded_context()
        assert s.gets.count("/props") == 1
    # A plain OpenAI-compatible server: every probe is a 404, and that just means "unknown".
    with ScriptedModelServer() as s:
        backend = backends(openai_settings(s))
        assert await backend.loaded_context() is None
        assert await backend.loaded_context() is None
        assert (await backend.model_info()).loaded_context_length is None
        # Each endpoint asked once (Ollama's first: /v1/models says owned_by "library").
        probes = [p for p in s.gets if p != "/v1/models"]
        assert probes == ["/api/ps", "/props", "/api/v0/models", "/api/v1/models"]


@pytest.mark.parametrize("flavour", ["lmstudio", "ollama"])
async def test_a_model_loaded_just_in_time_is_asked_again_after_the_first_reply(
    flavour: str, backends: Callable[[Settings], Backend]
) -> None:
    with ScriptedModelServer(flavour=flavour, loaded_context=8192, model_loaded=False) as s:
        backend = backends(openai_settings(s))
        assert await backend.loaded_context() is None  # known to the server, not loaded yet
        assert await backend.loaded_context() is None  # no new probe until a chat happened
        await backend.chat(ChatRequest([Message("user", "hi")]))
        loaded = await backend.loaded_context()
        assert loaded is not None and loaded.length == 8192


async def test_lmstudio_v1_api_when_v0_is_gone(backends: Callable[[Settings], Backend]) -> None:
    with ScriptedModelServer(flavour="lmstudio", loaded_context=6144) as s:
        backend = backends(openai_settings(s))
        assert isinstance(backend, OpenAIBackend)
        found, _ = await backend._probe_lmstudio(MODEL)
        assert found is not None and found.length == 6144
        # LM Studio 0.4's own API, read directly: loaded_instances[].config.context_length.
        data = await backend._get_root("/api/v1/models")
        assert data["models"][0]["loaded_instances"][0]["config"]["context_length"] == 6144


async def test_native_ollama_loads_the_setting_capped_at_the_trained_maximum(
    backends: Callable[[Settings], Backend],
) -> None:
    with ScriptedModelServer(context_length=8192) as s:
        fits = backends(Settings(base_url=s.url, model=MODEL, context_length=4096))
        capped = backends(Settings(base_url=s.url, model=MODEL, context_length=16384))
        assert isinstance(fits, OllamaBackend)
        assert (await fits.loaded_context()) == LoadedContext(
            4096, "ollama-native", "num_ctx (agent.contextLength)"
        )
        loaded = await capped.loaded_context()
        assert loaded is not None and (loaded.length, loaded.server) == (8192, "ollama-native")
        assert "trained maximum" in loaded.fix(16384)


# -- fitting every request to it ------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_the_loop_fits_requests_to_the_loaded_window_and_warns(
    flavour: str, tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text("def f(x):\n    return x + 1\n")
    (tmp_path / "big1.py").write_text(big_file("one"))
    (tmp_path / "big2.py").write_text(big_file("two"))
    steps = [
        call("read", path="big1.py"),
        call("read", path="big2.py"),
        call("finish", summary="Read both."),
    ]
    with ScriptedModelServer(
        steps, flavour=flavour, context_length=131072, loaded_context=8192
    ) as s:
        settings = openai_settings(s, context_length=32768)
        progress = Recorder()
        ctx = TaskContext(
            root=tmp_path, settings=settings, backend=make_backend(settings), progress=progress
        )
        try:
            result = await run_refactor(ctx, TaskRequest(tmp_path / "main.py", instruction="x"))
        finally:
            await ctx.backend.aclose()
        requests = s.requests

    # agent.contextLength alone (32768) would hold both files; the loaded 8192 does not.
    assert len(requests) == 3
    last_tools = [m["content"] for m in requests[2]["messages"] if m["role"] == "tool"]
    assert last_tools[0].startswith("[elided to save context: read of big1.py")
    assert last_tools[1].startswith("   1|") or "two_0" in last_tools[1]
    for body in requests:
        assert len(str(body["messages"])) // 4 < 8192
    if flavour == "vllm":
        # vLLM refuses prompt + max_tokens over max_model_len, so max_tokens fits beside it.
        assert all(body["max_tokens"] <= 4096 for body in requests)
    assert result.stats.context_length == 8192
    assert result.stats.to_json()["contextLength"] == 8192
    mismatch = [w for w in progress.warnings if "agent.contextLength is 32768" in w]
    assert len(mismatch) == 1
    assert "8192-token context window" in mismatch[0] and FIXES[flavour] in mismatch[0]


async def test_a_window_learned_after_the_first_reply_fits_the_rest(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def f(x):\n    return x + 1\n")
    (tmp_path / "big1.py").write_text(big_file("one"))
    (tmp_path / "big2.py").write_text(big_file("two"))
    steps = [
        call("read", path="big1.py"),
        call("read", path="big2.py"),
        call("finish", summary="Read both."),
    ]
    with ScriptedModelServer(
        steps, flavour="lmstudio", loaded_context=8192, model_loaded=False
    ) as s:
        settings = openai_settings(s, context_length=32768)
        progress = Recorder()
        ctx = TaskContext(
            root=tmp_path, settings=settings, backend=make_backend(settings), progress=progress
        )
        try:
            result = await run_refactor(ctx, TaskRequest(tmp_path / "main.py", instruction="x"))
        finally:
            await ctx.backend.aclose()
        requests = s.requests
    assert result.stats.context_length == 8192
    assert any("LM Studio loaded the model with a 8192-token" in w for w in progress.warnings)
    last_tools = [m["content"] for m in requests[2]["messages"] if m["role"] == "tool"]
    assert last_tools[0].startswith("[elided to save context")


# -- silent truncation ----------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["lmstudio", "ollama"])
async def test_a_silently_truncated_prompt_is_an_error_not_an_answer(
    flavour: str, tmp_path: Path
) -> None:
    # The model is loaded just in time with a 4096-token window; the first request, sent before
    # anyone knew, holds a file of about 5000 tokens. The server cuts it and answers anyway.
    (tmp_path / "big.py").write_text(big_file("big", 380))
    with ScriptedModelServer(
        [Reply(content="It computes things.")],
        flavour=flavour,
        loaded_context=4096,
        model_loaded=False,
    ) as s:
        settings = openai_settings(s, context_length=32768)
        ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
        try:
            with pytest.raises(TaskError) as caught:
                await run_explain(ctx, TaskRequest(tmp_path / "big.py"))
        finally:
            await ctx.backend.aclose()
    message = str(caught.value)
    assert "saw only 4096 of the about" in message
    assert "4096-token context window it loaded" in message
    assert FIXES[flavour] in message


async def test_truncation_behind_a_server_that_reports_no_window(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text(big_file("big", 380))
    with ScriptedModelServer([Reply(content="Fine.", prompt_tokens=1800)]) as s:
        settings = openai_settings(s, context_length=32768)
        ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
        try:
            with pytest.raises(TaskError, match="saw only 1800 of the about"):
                await run_explain(ctx, TaskRequest(tmp_path / "big.py"))
        finally:
            await ctx.backend.aclose()


async def test_low_counts_from_the_kv_cache_are_not_truncation(tmp_path: Path) -> None:
    # Several Ollama versions count only the tokens not served from the cache. The window is
    # known (num_ctx), every request fits it, so a low count is not taken for truncation.
    (tmp_path / "main.py").write_text("def f(x):\n    return x + 1\n")
    (tmp_path / "big1.py").write_text(big_file("one"))
    replies = [
        Reply(tool_calls=[{"name": "read", "arguments": {"path": "big1.py"}}], prompt_tokens=900),
        Reply(tool_calls=[{"name": "finish", "arguments": {"summary": "ok"}}], prompt_tokens=40),
    ]
    with ScriptedModelServer(replies) as s:
        settings = Settings(base_url=s.url, model=MODEL, context_length=16384)
        ctx = TaskContext(root=tmp_path, settings=settings, backend=make_backend(settings))
        try:
            result = await run_refactor(ctx, TaskRequest(tmp_path / "main.py", instruction="x"))
        finally:
            await ctx.backend.aclose()
        # num_ctx stays the setting: Ollama loads what it is asked for.
        assert all(body["options"]["num_ctx"] == 16384 for body in s.requests)
    assert result.summary.endswith("ok")  # finished, no truncation error


def test_truncation_rule() -> None:
    # Known window: a prompt the window holds was not cut, whatever the count (KV cache).
    assert not truncated_prompt(estimated=3000, reported=100, window=4096)
    # We sent more than the window holds and the server saw less than half of it.
    assert truncated_prompt(estimated=9000, reported=4000, window=4096)
    # ... or it saw a prompt that fills the whole window (Ollama keeps exactly its window).
    assert truncated_prompt(estimated=5000, reported=4096, window=4096)
    # An overshooting estimate with a count that fits is not truncation.
    assert not truncated_prompt(estimated=5000, reported=3900, window=4096)
    # Unknown window: no server loads less than MIN_SERVER_WINDOW.
    assert not truncated_prompt(estimated=MIN_SERVER_WINDOW, reported=10, window=None)
    assert truncated_prompt(estimated=6000, reported=2000, window=None)
    assert not truncated_prompt(estimated=6000, reported=0, window=None)  # no count given


def test_context_window_budget() -> None:
    window = ContextWindow(32768, 2048)
    assert (window.length, window.budget, window.max_tokens) == (32768, 32768 - 2048, 2048)
    window.loaded = LoadedContext(4096, "lmstudio", "test")
    assert (window.length, window.budget) == (4096, 4096 - 614)
    window.loaded = LoadedContext(4096, "vllm", "test")
    assert (window.length, window.budget, window.max_tokens) == (4096, 2048, 2048)


# -- refusals and empty replies -------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["llama-server", "vllm"])
async def test_a_refused_prompt_names_the_window_and_the_fix(
    flavour: str, backends: Callable[[Settings], Backend]
) -> None:
    with ScriptedModelServer(
        [Reply(prompt_tokens=9000)], flavour=flavour, loaded_context=8192, slots=2
    ) as s:
        backend = backends(openai_settings(s, context_length=32768))
        with pytest.raises(ContextOverflow) as caught:
            await backend.chat(ChatRequest([Message("user", "hi")], max_tokens=256))
    error = caught.value
    assert error.status == 400 and error.window == 8192
    if flavour == "llama-server":
        assert error.prompt_tokens == 9000
        assert "llama-server refused the request: it needs 9000 tokens" in error.message
        assert "-c 65536` (it splits -c across its 2 slots)" in error.hint
    else:
        assert error.prompt_tokens == 9256  # vLLM counts max_tokens in
        assert "--max-model-len 32768" in error.hint


async def test_lmstudio_overflow_errors_are_recognised(
    backends: Callable[[Settings], Backend],
) -> None:
    texts = [
        "Trying to keep the first 10136 tokens when context the overflows. However, the model "
        "is loaded with context length of only 7866 tokens, which is not enough. Try to load "
        "the model with a larger context length, or provide a shorter input",
        "Cannot truncate prompt with n_keep (10136) >= n_ctx (7866)",
    ]
    with ScriptedModelServer(
        [Reply(status=400, error=text) for text in texts], flavour="lmstudio", loaded_context=7866
    ) as s:
        backend = backends(openai_settings(s, context_length=32768))
        for _ in texts:
            with pytest.raises(ContextOverflow) as caught:
                await backend.chat(ChatRequest([Message("user", "hi")]))
            assert (caught.value.window, caught.value.prompt_tokens) == (7866, 10136)
            assert "--context-length 32768" in caught.value.hint


@pytest.mark.parametrize("finish", ["length", "stop"])
async def test_an_empty_reply_is_an_error_naming_the_window(
    finish: str, backends: Callable[[Settings], Backend]
) -> None:
    with ScriptedModelServer(
        [Reply(content="", done_reason=finish, prompt_tokens=4090)],
        flavour="lmstudio",
        loaded_context=4096,
    ) as s:
        backend = backends(openai_settings(s, context_length=32768))
        with pytest.raises(EmptyReply) as caught:
            await backend.chat(ChatRequest([Message("user", "hi")]))
    assert "empty reply to a prompt of 4090 tokens" in caught.value.message
    assert "loaded context window is 4096 tokens" in caught.value.message
    assert "--context-length 32768" in caught.value.hint


async def test_native_ollama_empty_reply_is_an_error(
    backends: Callable[[Settings], Backend],
) -> None:
    with ScriptedModelServer([Reply(content="", done_reason="stop")]) as s:
        backend = backends(Settings(base_url=s.url, model=MODEL))
        with pytest.raises(EmptyReply, match="Ollama returned an empty reply"):
            await backend.chat(ChatRequest([Message("user", "hi")]))


# -- doctor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_doctor_prints_the_loaded_window_and_the_fix(flavour: str) -> None:
    with ScriptedModelServer(flavour=flavour, context_length=131072, loaded_context=4096) as s:
        checks = await run_checks(openai_settings(s, context_length=32768))
        out = io.StringIO()
        code = print_report(checks, out)
    loaded = next(c for c in checks if c.name == "loaded")
    assert loaded.ok is False
    assert "4096-token context window" in loaded.detail and "32768" in loaded.detail
    assert FIXES[flavour] in loaded.fix
    text = out.getvalue()
    assert "[FAIL] loaded" in text and f"fix: {loaded.fix}" in text
    assert code == 1


async def test_doctor_when_the_loaded_window_fits() -> None:
    with ScriptedModelServer(flavour="lmstudio", loaded_context=32768) as s:
        checks = await run_checks(openai_settings(s, context_length=16384))
    loaded = next(c for c in checks if c.name == "loaded")
    assert loaded.ok is True and "32768-token context window" in loaded.detail
    with ScriptedModelServer() as s:  # no probe endpoints: unknown, not a failure
        checks = await run_checks(openai_settings(s, context_length=16384))
    assert next(c for c in checks if c.name == "loaded").ok is None


def test_doctor_command_prints_the_loaded_window(tmp_path: Path) -> None:
    with ScriptedModelServer(flavour="llama-server", loaded_context=4096) as s:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentls",
                "doctor",
                "--backend",
                "openai",
                "--base-url",
                s.openai_url,
                "--model",
                MODEL,
                "--context-length",
                "16384",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert "[FAIL] loaded   llama-server loaded" in proc.stdout
    assert "4096-token context window" in proc.stdout
    assert "fix: Restart llama-server with `-c 16384`" in proc.stdout
    assert proc.returncode == 1


# -- the real llama-server ------------------------------------------------------------------


@pytest.mark.timeout(900)
async def test_the_real_llama_server_reports_its_loaded_window(real_model: RealModel) -> None:
    settings = Settings(
        backend="openai", base_url=real_model.url, model=real_model.model, context_length=16384
    )
    backend = OpenAIBackend(settings)
    try:
        loaded = await backend.loaded_context()
        info = await backend.model_info()
        assert loaded == LoadedContext(8192, "llama-server", "GET /props", 1)  # -c 8192
        assert info.context_length == 32768  # Gemma 3 270M's trained window (meta.n_ctx_train)
        # A prompt over the window: the real 400 exceed_context_size_error, mapped.
        with pytest.raises(ContextOverflow) as caught:
            await backend.chat(ChatRequest([Message("user", "word " * 9000)], max_tokens=8))
        assert caught.value.window == 8192
        assert caught.value.prompt_tokens is not None and caught.value.prompt_tokens > 8192
        assert "-c 16384" in caught.value.hint
    finally:
        await backend.aclose()
    checks = await run_checks(settings)
    loaded_check = next(c for c in checks if c.name == "loaded")
    assert loaded_check.ok is False and "8192-token context window" in loaded_check.detail


async def test_agent_status_shows_the_loaded_window_beside_the_setting(tmp_path: Path) -> None:
    from lsp_support import agent_client

    with ScriptedModelServer(flavour="llama-server", loaded_context=4096) as s:
        settings = {"backend": "openai", "baseUrl": s.openai_url, "contextLength": 16384}
        async with agent_client(tmp_path, {"agent": settings}) as agent:
            status = await agent.request("agent/status", {})
    assert status["reachable"] is True
    assert status["contextLength"] == 16384 and status["loadedContextLength"] == 4096
