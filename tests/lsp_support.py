"""Shared helpers for the LSP tests: a real agentls process on stdio driven by pytest-lsp."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

_ids = itertools.count(1)
SERVER_DIR = Path(__file__).resolve().parents[1] / "server"
MODEL = "gemma4:12b-it-qat"

# The sample module most LSP tests refactor, and the body the scripted model rewrites.
CALC = """\
def total(items):
    t = 0
    for i in range(len(items)):
        t = t + items[i]
    return t


def mean(items):
    return total(items) / len(items)
"""
OLD_BODY = "    t = 0\n    for i in range(len(items)):\n        t = t + items[i]\n    return t"
NEW_BODY = "    return sum(items)"


def make_project(tmp_path: Path, files: dict[str, str]) -> Path:
    """A workspace folder ``tmp_path/proj`` holding ``files`` (relative path -> text)."""
    root = tmp_path / "proj"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).write_text(text)
    return root


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain(value: Any) -> Any:
    """pygls hands custom results to the client as namedtuples; turn them back into JSON."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def options(base_url: str, **extra: Any) -> dict[str, Any]:
    """initializationOptions pointing the server at a (scripted) Ollama."""
    return {"backend": "ollama", "baseUrl": base_url, "model": MODEL, **extra}


def uri(path: Path) -> str:
    """A file URI."""
    return path.as_uri()


def server_env(cache_dir: Path) -> dict[str, str]:
    """Environment of the server process: the source tree importable, a private cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SERVER_DIR), env.get("PYTHONPATH")) if p)
    env["XDG_CACHE_HOME"] = str(cache_dir)
    return env


class AgentClient:
    """A started pytest-lsp client plus what the server asked of it."""

    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.applied_edits: list[types.ApplyWorkspaceEditParams] = []
        self.apply_result = True

    async def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        """didOpen a file (its disk text unless given); returns its URI."""
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri(path),
                    language_id="python",
                    version=version,
                    text=path.read_text() if text is None else text,
                )
            )
        )
        return uri(path)

    def close(self, path: Path) -> None:
        """didClose a file (an unsaved buffer's text is discarded, as when the user closes
        it without saving)."""
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri(path))
            )
        )

    def change(self, path: Path, version: int, rng: types.Range, text: str) -> None:
        """An incremental didChange."""
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri(path), version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=rng, text=text),
                ],
            )
        )

    async def request(self, method: str, params: dict[str, Any], msg_id: str | None = None) -> Any:
        """A custom request; the result as plain JSON."""
        result = await self.client.protocol.send_request_async(method, params, msg_id=msg_id)
        return plain(result)

    async def raw_request(self, method: str, params: Any) -> Any:
        """A standard request whose result is returned as plain JSON, not lsprotocol types.

        lsprotocol's client-side converter turns a ``CodeAction`` carrying a ``Command`` into
        a ``Command`` with the whole object stringified as its ``command`` (the union
        ``Command | CodeAction`` is ambiguous to cattrs); editors parse JSON and never see
        this, so tests read the JSON too.
        """
        msg_id = f"raw-{next(_ids)}"
        future = self.client.protocol.send_request(method, params, msg_id=msg_id)
        self.client.protocol._result_types.pop(msg_id, None)
        return plain(await asyncio.wrap_future(future))

    async def command(self, name: str, *arguments: Any) -> Any:
        """workspace/executeCommand; the result as plain JSON."""
        result = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(arguments))
        )
        return plain(result)

    def messages(self, kind: types.MessageType | None = None) -> list[str]:
        """window/showMessage texts received so far."""
        return [m.message for m in self.client.messages if kind is None or m.type == kind]

    def logs(self, kind: types.MessageType | None = None) -> list[str]:
        """window/logMessage texts received so far."""
        return [m.message for m in self.client.log_messages if kind is None or m.type == kind]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10) -> None:
        """Poll until ``check()`` holds (notifications arrive asynchronously)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)


def vscode_capabilities() -> types.ClientCapabilities:
    """A real client's capabilities: VS Code (showDocument, progress, configuration...)."""
    return client_capabilities("visual-studio-code")


@asynccontextmanager
async def agent_client(
    root: Path,
    init_options: dict[str, Any] | None = None,
    *,
    capabilities: types.ClientCapabilities | None = None,
    configuration: dict[str, Any] | None = None,
    folders: dict[str, Any] | None = None,
) -> AsyncIterator[AgentClient]:
    """Start ``python -m agentls``, initialize it on ``root``, shut it down afterwards.

    ``folders`` overrides the workspace fields of InitializeParams (``root_uri``,
    ``root_path``, ``workspace_folders``), e.g. all None for an editor with no folder open;
    ``root`` then only names the server's private cache.
    """
    client = make_test_lsp_client()
    if configuration is not None:
        client.set_configuration(configuration)
    agent = AgentClient(client, root)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        agent.applied_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=agent.apply_result)

    cache = root.parent / f"{root.name}-cache"
    await client.start_io(sys.executable, "-m", "agentls", env=server_env(cache))
    try:
        workspace: dict[str, Any] = {
            "root_uri": uri(root),
            "workspace_folders": [types.WorkspaceFolder(uri=uri(root), name=root.name)],
        }
        workspace.update(folders or {})
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities or vscode_capabilities(),
                initialization_options=init_options,
                **workspace,
            )
        )
        yield agent
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), 10)
        finally:
            await client.stop()


def call(name: str, **arguments: Any) -> Any:
    """A scripted model reply that makes one native tool call."""
    from scripted_model import Reply

    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def lsp_range(start_line: int, start_char: int, end_line: int, end_char: int) -> dict[str, Any]:
    """An LSP Range as JSON."""
    return {
        "start": {"line": start_line, "character": start_char},
        "end": {"line": end_line, "character": end_char},
    }


def apply_edits(text: str, edits: list[dict[str, Any]]) -> str:
    """Apply JSON TextEdits to text (ASCII test files: UTF-16 units are characters)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos: dict[str, int]) -> int:
        line = pos["line"]
        return (starts[line] if line < len(starts) else len(text)) + pos["character"]

    spans = sorted(
        ((offset(e["range"]["start"]), offset(e["range"]["end"]), e["newText"]) for e in edits),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def document_changes(edit: dict[str, Any]) -> list[dict[str, Any]]:
    """documentChanges of a WorkspaceEdit as JSON."""
    changes: list[dict[str, Any]] = edit.get("documentChanges") or []
    return changes


def text_edits_for(edit: dict[str, Any], target: str) -> list[dict[str, Any]]:
    """All TextDocumentEdits of a WorkspaceEdit addressed to ``target`` (a URI)."""
    return [
        c
        for c in document_changes(edit)
        if "textDocument" in c and c["textDocument"]["uri"] == target
    ]


# -- responsiveness: is agent/status answered while a run works? ----------------------------


async def idle_status_latency(agent: AgentClient, samples: int = 3) -> float:
    """The slowest of ``samples`` agent/status answers with nothing else running (a status
    asks the model server twice, so it is not free)."""
    latencies: list[float] = []
    for _ in range(samples):
        sent = time.monotonic()
        await agent.request("agent/status", {})
        latencies.append(time.monotonic() - sent)
    return max(latencies)


async def statuses_while(agent: AgentClient, busy: Callable[[], bool]) -> list[tuple[float, float]]:
    """Ask agent/status again and again while ``busy()``: (sent, latency) of each answer."""
    answered: list[tuple[float, float]] = []
    while busy():
        sent = time.monotonic()
        status = await agent.request("agent/status", {})
        answered.append((sent, time.monotonic() - sent))
        assert status["model"]
        await asyncio.sleep(0.01)
    return answered
