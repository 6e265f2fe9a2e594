"""Shared pytest fixtures."""

from __future__ import annotations

import socket
import threading
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


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's 127.0.0.1 recording every connection (the "attacker" that
    sandboxed commands must not reach): yields its port and what it received."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    got.append(conn.recv(100) or b"(connected)")
                except OSError:
                    got.append(b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], got
    stop.set()
    thread.join()
    server.close()
