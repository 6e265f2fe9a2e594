"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from real_model import real_model  # noqa: F401  (session fixture: llama-server, Gemma 3 270M)
from scripted_model import ScriptedModelServer


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModelServer]:
    """A started scripted model server (Ollama and OpenAI wire formats), stopped afterwards."""
    server = ScriptedModelServer().start()
    try:
        yield server
    finally:
        server.stop()
