"""The import direction of docs/architecture.md: only the front ends know their protocols, and
the layers below never import the ones above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "server" / "agentls"

# Layer -> module prefixes it must never import.
FORBIDDEN = {
    "agent": ("lsprotocol", "pygls", "acp", "agentls.tasks", "agentls.server", "agentls.lsp_"),
    "llm": ("lsprotocol", "pygls", "acp", "agentls.agent", "agentls.tasks", "agentls.lsp_"),
    "tasks": ("lsprotocol", "pygls", "acp", "agentls.server", "agentls.lsp_", "agentls.acp"),
    "sandbox": ("lsprotocol", "pygls", "acp", "agentls.agent", "agentls.tasks", "agentls.lsp_"),
}


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports, absolute names (relative imports resolved roughly)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules found under {layer}/"
    offending = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files
        for name in imports_of(path)
        if any(
            name == bad
            or name.startswith(bad + ".")
            or (bad.endswith("_") and name.startswith(bad))
            for bad in FORBIDDEN[layer]
        )
    ]
    assert offending == []
