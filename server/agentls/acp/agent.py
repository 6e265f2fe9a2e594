"""The ACP agent: ``initialize``, ``session/new``, ``session/prompt``, ``session/cancel`` and
``session/set_config_option``, on the official SDK's connection (``acp.run_agent``).

The agent holds the sessions; each session does the work (:mod:`agentls.acp.session`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acp import PROTOCOL_VERSION, RequestError
from acp.helpers import update_available_commands
from acp.interfaces import Client
from acp.schema import (
    AgentCapabilities,
    AvailableCommand,
    AvailableCommandInput,
    ClientCapabilities,
    Implementation,
    InitializeResponse,
    NewSessionResponse,
    PromptCapabilities,
    PromptResponse,
    SetSessionConfigOptionResponse,
    UnstructuredCommandInput,
)

from agentls import __version__
from agentls.acp.prompt import ContentBlock, commands
from agentls.acp.session import Session
from agentls.settings import Settings

log = logging.getLogger(__name__)


def available_commands() -> list[AvailableCommand]:
    """The slash commands, from the task registry (the same tasks as the LSP requests)."""
    return [
        AvailableCommand(
            name=word,
            description=spec.description or spec.title,
            input=AvailableCommandInput(
                root=UnstructuredCommandInput(hint="@file, then what you want (optional)")
            ),
        )
        for word, spec in commands().items()
    ]


class AgentlsAgent:
    """agentls as an ACP agent; one per connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: Client | None = None
        self.capabilities: ClientCapabilities | None = None
        self.sessions: dict[str, Session] = {}
        self._background: set[asyncio.Task[None]] = set()  # kept: the loop holds tasks weakly

    def on_connect(self, conn: Client) -> None:
        """The SDK hands over the client side of the connection."""
        self.conn = conn

    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: ClientCapabilities | None = None,
        client_info: Implementation | None = None,
        **_: Any,
    ) -> InitializeResponse:
        """Agree on the protocol version; say what prompts may hold (text, @-mentioned files
        as links and as embedded text)."""
        self.capabilities = client_capabilities
        if client_info is not None:
            log.info("client: %s %s", client_info.name, client_info.version)
        return InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(
                load_session=False,
                prompt_capabilities=PromptCapabilities(
                    embedded_context=True, image=False, audio=False
                ),
            ),
            agent_info=Implementation(name="agentls", title="agentls", version=__version__),
            auth_methods=[],
        )

    async def new_session(
        self, cwd: str, mcp_servers: Sequence[Any] | None = None, **_: Any
    ) -> NewSessionResponse:
        """A session working in ``cwd`` (absolute): the workspace root, nothing outside it."""
        if self.conn is None:
            raise RequestError.internal_error({"details": "no connection"})
        if not os.path.isabs(cwd):
            raise RequestError.invalid_params({"details": f"cwd must be absolute: {cwd!r}"})
        root = Path(os.path.normpath(cwd))
        if not root.is_dir():
            raise RequestError.invalid_params({"details": f"cwd is not a directory: {cwd}"})
        if mcp_servers:
            log.info("MCP servers are not used by agentls; %d ignored", len(mcp_servers))
        session = Session(uuid.uuid4().hex, root, self.settings, self.conn, self.capabilities)
        await session.start()
        self.sessions[session.id] = session
        # After the response (the client must know the session first): the slash commands.
        task = session.loop.create_task(
            self.conn.session_update(
                session_id=session.id, update=update_available_commands(available_commands())
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return NewSessionResponse(session_id=session.id, config_options=session.config_options())

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise RequestError.invalid_params({"details": f"unknown session {session_id!r}"})
        return session

    async def prompt(
        self, prompt: Sequence[ContentBlock], session_id: str, **_: Any
    ) -> PromptResponse:
        """Run the prompt in its session (see :meth:`Session.prompt`)."""
        return await self._session(session_id).prompt(prompt)

    async def cancel(self, session_id: str, **_: Any) -> None:
        """``session/cancel`` (a notification: an unknown session is ignored)."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.cancel()

    async def set_config_option(
        self, config_id: str, session_id: str, value: str | bool, **_: Any
    ) -> SetSessionConfigOptionResponse:
        """Change the session's model or tool mode."""
        options = await self._session(session_id).set_option(config_id, value)
        return SetSessionConfigOptionResponse(config_options=options)

    async def close(self) -> None:
        """End every session (their prompts, backends and engine threads)."""
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            try:
                await session.close()
            except Exception:  # closing one must not keep the others open
                log.exception("closing session %s", session.id)
