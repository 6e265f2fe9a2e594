"""Change annotations: edits need confirmation (VS Code's refactor preview) only for clients
that advertise ``workspace.workspaceEdit.changeAnnotationSupport``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types

from lsp_support import (
    AgentClient,
    agent_client,
    apply_edits,
    call,
    document_changes,
    make_project,
    options,
    text_edits_for,
    uri,
    vscode_capabilities,
)
from scripted_model import Reply, ScriptedModelServer

CALC = "def total(items):\n    t = 0\n    for x in items:\n        t = t + x\n    return t\n"
OLD_BODY = "    t = 0\n    for x in items:\n        t = t + x\n    return t"
NEW_BODY = "    return sum(items)"
TEST_TEXT = "from calc import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"


def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {"calc.py": CALC})


def refactor_script() -> list[Reply]:
    return [
        call("edit", path="calc.py", old_text=OLD_BODY, new_text=NEW_BODY),
        call("finish", summary="Used sum()."),
    ]


def without_annotations() -> types.ClientCapabilities:
    """VS Code's capabilities less changeAnnotationSupport (as Neovim and Emacs send them)."""
    capabilities = vscode_capabilities()
    assert capabilities.workspace is not None and capabilities.workspace.workspace_edit
    capabilities.workspace.workspace_edit.change_annotation_support = None
    return capabilities


def edit_json(agent: AgentClient) -> dict[str, Any]:
    """The one edit the server sent with workspace/applyEdit, as JSON."""
    from lsprotocol.converters import get_converter

    assert len(agent.applied_edits) == 1
    data = get_converter().unstructure(agent.applied_edits[0].edit, types.WorkspaceEdit)
    assert isinstance(data, dict)
    return data


async def test_refactor_edits_need_confirmation_when_the_client_supports_annotations(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(refactor_script())
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.command("agent.refactor", doc)
    assert result["ok"] is True and result["applied"] is True
    edit = edit_json(agent)
    annotations = edit["changeAnnotations"]
    assert list(annotations.values()) == [
        {
            "label": "agentls",
            "needsConfirmation": True,
            "description": "Changes proposed by the agent",
        }
    ]
    (change,) = text_edits_for(edit, doc)
    assert change["edits"] and all(e["annotationId"] in annotations for e in change["edits"])
    assert apply_edits(CALC, change["edits"]) == CALC.replace(OLD_BODY, NEW_BODY)


async def test_no_annotations_for_a_client_without_support(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(refactor_script())
    async with agent_client(
        root, options(scripted_model.url), capabilities=without_annotations()
    ) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.command("agent.refactor", doc)
    assert result["ok"] is True and result["applied"] is True
    edit = edit_json(agent)
    assert "changeAnnotations" not in edit
    (change,) = text_edits_for(edit, doc)
    assert change["edits"] and not any("annotationId" in e for e in change["edits"])
    assert apply_edits(CALC, change["edits"]) == CALC.replace(OLD_BODY, NEW_BODY)


async def test_generated_test_file_creation_is_annotated_too(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            call("write", path="tests/test_calc.py", content=TEST_TEXT),
            call("finish", summary="Added a test for total."),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request("agent/generateTests", {"textDocument": {"uri": doc}})
    edit = result["edit"]
    test_uri = uri(root / "tests" / "test_calc.py")
    annotation_ids = set(edit["changeAnnotations"])
    create = next(c for c in document_changes(edit) if c.get("kind") == "create")
    assert create["uri"] == test_uri and create["annotationId"] in annotation_ids
    (filled,) = text_edits_for(edit, test_uri)
    assert all(e["annotationId"] in annotation_ids for e in filled["edits"])
    assert apply_edits("", filled["edits"]) == TEST_TEXT
    assert not (root / "tests").exists()
