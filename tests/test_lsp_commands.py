"""The agent.* commands as editors run them from code actions: applyEdit and showDocument."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from lsp_support import (
    CALC,
    OLD_BODY,
    agent_client,
    apply_edits,
    call,
    closed_port,
    lsp_range,
    make_project,
    options,
    vscode_capabilities,
)
from scripted_model import Reply, ScriptedModelServer


def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {"calc.py": CALC})


def refactor_script() -> list[Reply]:
    return [
        call("edit", path="calc.py", old_text=OLD_BODY, new_text="    return sum(items)"),
        call("finish", summary="Used sum()."),
    ]


async def test_refactor_command_sends_apply_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(refactor_script())
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py", version=4)
        result = await agent.command("agent.refactor", doc, lsp_range(0, 0, 5, 0), "use sum")
    assert result["ok"] is True and result["applied"] is True
    assert result["summary"] == "Used sum().\n\nNo tests found; not verified."
    assert len(agent.applied_edits) == 1
    applied = agent.applied_edits[0]
    assert applied.label == "Agent: Refactor"
    changes = applied.edit.document_changes
    assert changes is not None and len(changes) == 1
    change = changes[0]
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document.uri == doc and change.text_document.version == 4
    edits = [
        {
            "range": {
                "start": {"line": e.range.start.line, "character": e.range.start.character},
                "end": {"line": e.range.end.line, "character": e.range.end.character},
            },
            "newText": e.new_text,
        }
        for e in change.edits
    ]
    assert apply_edits(CALC, edits) == CALC.replace(OLD_BODY, "    return sum(items)")
    assert "use sum" in scripted_model.requests[0]["messages"][1]["content"]


async def test_refactor_command_reports_a_refused_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(refactor_script())
    async with agent_client(root, options(scripted_model.url)) as agent:
        agent.apply_result = False
        doc = await agent.open(root / "calc.py")
        result = await agent.command("agent.refactor", doc)
        warnings = agent.messages(types.MessageType.Warning)
    assert result["ok"] is True and result["applied"] is False
    assert any("did not apply" in w for w in warnings)


async def test_explain_command_shows_a_markdown_document(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([Reply(content="# total\n\nSums the items.")])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.command("agent.explain", doc, None)
        shown = list(agent.client.shown_documents)
    assert result["ok"] is True
    assert len(shown) == 1
    assert shown[0].take_focus is False and shown[0].external is False
    assert result["document"] == shown[0].uri
    path = Path(to_fs_path(shown[0].uri) or "")
    assert path.name == "calc-explanation.md"
    assert path.parent == tmp_path / "proj-cache" / "agentls" / "explanations"
    assert path.read_text() == "# total\n\nSums the items.\n"


async def test_explain_command_without_show_document_uses_a_message(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([Reply(content="Sums the items.")])
    capabilities = vscode_capabilities()
    assert capabilities.window is not None
    capabilities.window.show_document = None
    async with agent_client(root, options(scripted_model.url), capabilities=capabilities) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.command("agent.explain", doc)
        infos = agent.messages(types.MessageType.Info)
    assert result["ok"] is True and "document" not in result
    assert not agent.client.shown_documents
    assert "Sums the items." in infos


async def test_command_failure_is_an_error_message_with_the_hint(tmp_path: Path) -> None:
    root = project(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}"
    async with agent_client(root, options(url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.command("agent.refactor", doc)
        errors = agent.messages(types.MessageType.Error)
        status = await agent.request("agent/status", {})
    assert result["ok"] is False
    assert "ollama serve" in result["hint"]
    assert any("Agent: Refactor failed" in e and "ollama serve" in e for e in errors)
    assert not agent.applied_edits
    assert status["reachable"] is False
