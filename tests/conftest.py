"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from real_model import real_model  # noqa: F401  (session fixture: llama-server, Gemma 3 270M)
from scripted_model import ScriptedModelServer


@pytest.fixture(autouse=True)
def private_config_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point XDG_CONFIG_HOME at an empty folder, so the developer's own skills
    (~/.config/agentls/skills) never change what a test sends; server processes inherit it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModelServer]:
    """A started scripted model server (Ollama and OpenAI wire formats), stopped afterwards."""
    server = ScriptedModelServer().start()
    try:
        yield server
    finally:
        server.stop()
