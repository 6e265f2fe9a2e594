"""An unsaved buffer closed while the agent works: the edit must fit the text it lands on.

The agent reads the editor's unsaved buffer. If the user closes it without saving, the
unsaved text is gone, and an edit with version null is applied by the editor to the file on
disk. Computed against the closed buffer, its positions land on the wrong characters
(``def add(a, b)`` became ``def add(2, b)``). The edit is rebased onto the disk text instead,
or refused with the staged change kept. Real client, real server process, scripted model
over real HTTP; the model holds its edit until the buffer is closed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from agentls.changes import EditConflict, FileChange
from agentls.lsp.workspace_edit import to_workspace_edit
from lsp_support import AgentClient, agent_client, apply_edits, call, make_project, options
from lsp_support import text_edits_for as edits_for
from scripted_model import Reply, ScriptedModelServer

DISK = "def add(a, b):\n    return a + b\n"
# The user typed a call above the function and has not saved it.
BUFFER = "x = add(1, 2)\n\n\n" + DISK


def edits_json(change: types.TextDocumentEdit) -> list[dict[str, Any]]:
    """A TextDocumentEdit's edits as the JSON an editor gets."""
    edits = []
    for e in change.edits:
        assert isinstance(e, types.TextEdit | types.AnnotatedTextEdit)
        edits.append(
            {
                "range": {
                    "start": {"line": e.range.start.line, "character": e.range.start.character},
                    "end": {"line": e.range.end.line, "character": e.range.end.character},
                },
                "newText": e.new_text,
            }
        )
    return edits


def held(gate: threading.Event, replies: list[Reply]) -> Callable[[dict[str, Any]], Reply]:
    """A script whose first reply waits for ``gate``: the agent has read the buffer (it is in
    the first request) but has not edited yet."""
    queue = list(replies)
    first = [True]

    def next_reply(_body: dict[str, Any]) -> Reply:
        if first[0]:
            first[0] = False
            gate.wait(30)
        return queue.pop(0) if queue else Reply(content="done")

    return next_reply


async def close_while_the_agent_works(
    agent: AgentClient, model: ScriptedModelServer, path: Path, gate: threading.Event
) -> None:
    """Wait until the model has the buffer, close it, and let the model go on once the
    server has handled the close."""
    await asyncio.to_thread(model.wait_for_requests, 1)
    assert "x = add(1, 2)" in model.requests[0]["messages"][1]["content"]
    agent.close(path)
    # The server handles messages in order: once this answer is back, didClose was handled.
    await agent.raw_request(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            range=types.Range(start=types.Position(0, 0), end=types.Position(0, 0)),
            context=types.CodeActionContext(diagnostics=[]),
        ),
    )
    gate.set()


async def test_closing_the_unsaved_buffer_mid_refactor_gives_an_edit_for_the_disk_text(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": DISK})
    path = root / "calc.py"
    gate = threading.Event()
    scripted_model.script(
        held(
            gate,
            [
                call(
                    "edit",
                    path="calc.py",
                    old_text="    return a + b",
                    new_text='    """Add two numbers."""\n    return a + b',
                ),
                call("finish", summary="Documented add()."),
            ],
        )
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(path, BUFFER, version=5)
        pending = asyncio.ensure_future(
            agent.request("agent/refactor", {"textDocument": {"uri": doc}})
        )
        await close_while_the_agent_works(agent, scripted_model, path, gate)
        result = await asyncio.wait_for(pending, 30)
    (change,) = edits_for(result["edit"], doc)
    # Not open any more: version null, which an editor applies to the file on disk.
    assert change["textDocument"]["version"] is None
    after = apply_edits(DISK, change["edits"])
    assert after == 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n'
    assert "def add(2, b)" not in after
    assert path.read_text() == DISK  # the server never writes


async def test_an_edit_of_the_discarded_unsaved_text_is_refused_and_nothing_is_lost(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": DISK})
    path = root / "calc.py"
    gate = threading.Event()
    # The case: the agent changes the unsaved call; computed against the closed
    # buffer and applied to the disk text, that edit turned `def add(a, b)` into `add(2, b)`.
    scripted_model.script(
        held(
            gate,
            [
                call("edit", path="calc.py", old_text="x = add(1, 2)", new_text="x = add(2, 2)"),
                call("finish", summary="Changed the first argument to 2."),
            ],
        )
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(path, BUFFER, version=5)
        pending = asyncio.ensure_future(
            agent.request("agent/refactor", {"textDocument": {"uri": doc}})
        )
        await close_while_the_agent_works(agent, scripted_model, path, gate)
        with pytest.raises(JsonRpcException) as exc:
            await asyncio.wait_for(pending, 30)
        await agent.wait_for(
            lambda: any("not applied" in m for m in agent.logs(types.MessageType.Warning))
        )
        logged = "\n".join(agent.logs(types.MessageType.Warning))
    assert exc.value.code == -32803  # RequestFailed
    message = exc.value.message
    assert str(path) in message and "closed without saving" in message
    assert "nothing was applied" in message
    assert "Changed the first argument to 2." in message  # what was staged, in words
    data = exc.value.data
    assert data is not None
    diff = data["diff"] if isinstance(data, dict) else data.diff
    assert "-x = add(1, 2)\n+x = add(2, 2)\n" in diff  # ... and as a diff, in the error
    assert "-x = add(1, 2)\n+x = add(2, 2)\n" in logged  # and in the log
    assert agent.applied_edits == []
    assert path.read_text() == DISK


async def test_the_refactor_command_applies_the_rebased_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = make_project(tmp_path, {"calc.py": DISK})
    path = root / "calc.py"
    gate = threading.Event()
    scripted_model.script(
        held(
            gate,
            [
                call("edit", path="calc.py", old_text="return a + b", new_text="return b + a"),
                call("finish", summary="Swapped."),
            ],
        )
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(path, BUFFER, version=2)
        pending = asyncio.ensure_future(agent.command("agent.refactor", doc))
        await close_while_the_agent_works(agent, scripted_model, path, gate)
        result = await asyncio.wait_for(pending, 30)
    assert result["ok"] is True and result["applied"] is True
    (applied,) = agent.applied_edits
    (change,) = applied.edit.document_changes or []
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document.version is None
    edits = edits_json(change)
    assert apply_edits(DISK, edits) == "def add(a, b):\n    return b + a\n"


# ---- to_workspace_edit with the disk text (the same rule without an editor) ------------------


def disk_of(files: dict[Path, str]) -> Callable[[Path], str | None]:
    return files.get


def test_an_unopened_file_that_changed_on_disk_gets_the_edit_rebased(tmp_path: Path) -> None:
    path = tmp_path / "calc.py"
    change = FileChange(path, DISK, DISK.replace("a + b", "b + a"))
    saved_meanwhile = "# saved from another editor\n" + DISK
    edit = to_workspace_edit([change], lambda p: None, disk=disk_of({path: saved_meanwhile}))
    (doc_edit,) = edit.document_changes or []
    assert isinstance(doc_edit, types.TextDocumentEdit)
    assert doc_edit.text_document.version is None
    edits = edits_json(doc_edit)
    assert apply_edits(saved_meanwhile, edits) == saved_meanwhile.replace("a + b", "b + a")


def test_a_deleted_file_or_a_created_file_that_now_exists_is_a_conflict(tmp_path: Path) -> None:
    gone = FileChange(tmp_path / "gone.py", DISK, DISK + "\n")
    with pytest.raises(EditConflict, match="gone from disk"):
        to_workspace_edit([gone], lambda p: None, disk=disk_of({}))
    new = FileChange(tmp_path / "new.py", None, "X = 1\n")
    with pytest.raises(EditConflict, match="exists on disk now"):
        to_workspace_edit([new], lambda p: None, disk=disk_of({new.path: "X = 0\n"}))
