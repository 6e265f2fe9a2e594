"""The client side of the ACP tests: the official SDK's client connection
(``acp.spawn_agent_process``) driving a real ``python -m agentls acp`` process.

:class:`EditorClient` plays the editor: it records every ``session/update``, serves
``fs/read_text_file`` from its buffers (unsaved text it holds) and then the disk, takes
``fs/write_text_file`` into its buffers (never the disk, as an editor would until saved), and
answers ``session/request_permission`` as the test tells it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import acp
from acp.interfaces import Agent, Client
from acp.schema import (
    AgentMessageChunk,
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    FileSystemCapabilities,
    Implementation,
    PermissionOption,
    ReadTextFileResponse,
    RequestPermissionResponse,
    ToolCallUpdate,
    WriteTextFileResponse,
)

from lsp_support import server_env

# Generous bounds for a machine shared by several test runs; a healthy run takes seconds.
TIMEOUT = 60.0


@dataclass
class PermissionAsked:
    """One ``session/request_permission`` the agent sent."""

    tool_call: ToolCallUpdate
    options: list[PermissionOption]


class EditorClient:
    """An editor as ACP sees it (the parts of ``acp.Client`` agentls uses)."""

    def __init__(self, permission: str = "apply") -> None:
        self.buffers: dict[Path, str] = {}  # open buffers, possibly unsaved
        self.reads: list[Path] = []
        self.writes: list[tuple[Path, str]] = []
        self.updates: list[Any] = []
        self.asked: list[PermissionAsked] = []
        # "apply", "apply-always", "reject" (option ids), or "cancelled" (the outcome)
        self.permission = permission
        self.release_permission: asyncio.Event | None = None  # set: hold the answer until set
        self.before_answer: Callable[[], None] | None = None  # e.g. the user types meanwhile
        self._changed = asyncio.Event()

    def _note(self) -> None:
        self._changed.set()

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        """Record the update."""
        self.updates.append(update)
        self._note()

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **_: Any,
    ) -> RequestPermissionResponse:
        """Answer as ``self.permission`` says (after ``release_permission``, if set)."""
        self.asked.append(PermissionAsked(tool_call, options))
        self._note()
        if self.release_permission is not None:
            await self.release_permission.wait()
        if self.before_answer is not None:
            self.before_answer()
        if self.permission == "cancelled":
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=self.permission)
        )

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **_: Any,
    ) -> ReadTextFileResponse:
        """A buffer's text, else the disk's; an error for a file that is neither."""
        p = Path(path)
        self.reads.append(p)
        self._note()
        if p in self.buffers:
            return ReadTextFileResponse(content=self.buffers[p])
        if p.is_file():
            return ReadTextFileResponse(content=p.read_text())
        raise acp.RequestError.resource_not_found(path)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **_: Any
    ) -> WriteTextFileResponse:
        """Into the buffer (unsaved), as an editor applies an edit."""
        p = Path(path)
        self.writes.append((p, content))
        self.buffers[p] = content
        self._note()
        return WriteTextFileResponse()

    # -- what the tests read -----------------------------------------------------------------

    def of(self, kind: type[Any]) -> list[Any]:
        """The updates of one type, in order."""
        return [u for u in self.updates if isinstance(u, kind)]

    def chunks(self) -> list[str]:
        """The agent message chunks' texts."""
        return [u.content.text for u in self.of(AgentMessageChunk)]

    def text(self) -> str:
        """Everything the agent said."""
        return "".join(self.chunks())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` holds, re-checked on each thing the agent sends."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Agent_:
    """A running agent: its connection, process, client and the session opened in ``root``."""

    conn: Any  # acp.client.connection.ClientSideConnection
    process: asyncio.subprocess.Process
    client: EditorClient
    root: Path
    session_id: str = ""
    config_options: list[Any] | None = None

    async def new_session(self) -> str:
        """Open a session in ``root``; it becomes the default one."""
        response = await asyncio.wait_for(
            self.conn.new_session(cwd=str(self.root), mcp_servers=[]), TIMEOUT
        )
        self.session_id = response.session_id
        self.config_options = response.config_options
        return self.session_id

    async def prompt(
        self, *blocks: Any, session_id: str | None = None, timeout: float = TIMEOUT
    ) -> Any:
        """Send a prompt (text strings or content blocks) and wait for its response."""
        content = [acp.text_block(b) if isinstance(b, str) else b for b in blocks]
        return await asyncio.wait_for(
            self.conn.prompt(session_id=session_id or self.session_id, prompt=content), timeout
        )


def file_link(path: Path, fragment: str = "") -> Any:
    """An @-mention as Zed sends it: a resource link with a file URI."""
    return acp.resource_link_block(path.name, path.as_uri() + (f"#{fragment}" if fragment else ""))


def embedded(path: Path, text: str) -> Any:
    """An @-mention with the buffer's text embedded."""
    return acp.resource_block(acp.embedded_text_resource(path.as_uri(), text))


@asynccontextmanager
async def running_agent(
    root: Path,
    cache: Path,
    env: dict[str, str],
    *args: str,
    client: EditorClient | None = None,
    fs: bool = True,
    stderr: Path | None = None,
) -> AsyncIterator[Agent_]:
    """``python -m agentls acp`` in ``root`` with ``env`` (AGENTLS_*), initialized with (or
    without) the fs capabilities, and a session open in ``root``."""
    client = client or EditorClient()
    log = open(stderr or cache / "agent-stderr.log", "ab")  # noqa: SIM115 (closed below)
    full_env = {**server_env(cache), **env}
    try:
        async with acp.spawn_agent_process(
            cast(Callable[[Agent], Client], lambda _agent: client),
            sys.executable,
            "-m",
            "agentls",
            "acp",
            *args,
            env=full_env,
            cwd=root,
            transport_kwargs={"stderr": log.fileno()},
        ) as (conn, process):
            await asyncio.wait_for(
                conn.initialize(
                    protocol_version=acp.PROTOCOL_VERSION,
                    client_capabilities=ClientCapabilities(
                        fs=FileSystemCapabilities(read_text_file=fs, write_text_file=fs)
                    ),
                    client_info=Implementation(name="pytest", version="1"),
                ),
                TIMEOUT,
            )
            agent = Agent_(conn, process, client, root)
            await agent.new_session()
            yield agent
    finally:
        log.close()


def agent_env(
    url: str, backend: str = "ollama", model: str = "gemma4:12b-it-qat"
) -> dict[str, str]:
    """The environment an editor's ACP config would set for a (scripted) model server."""
    return {
        "AGENTLS_BACKEND": backend,
        "AGENTLS_BASE_URL": url,
        "AGENTLS_MODEL": model,
        "PYTHONUNBUFFERED": "1",
        "PATH": os.environ.get("PATH", ""),
    }
