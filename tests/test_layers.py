"""The import direction of docs/architecture.md: only the front ends know their protocols, and
the layers below never import the ones above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "server" / "agentls"

# Layer -> modules (and their submodules) it must never import.
FRONT_ENDS = ("lsprotocol", "pygls", "acp", "agentls.lsp", "agentls.acp", "agentls.cli")
FORBIDDEN = {
    "agent": (*FRONT_ENDS, "agentls.tasks"),
    "llm": (*FRONT_ENDS, "agentls.agent", "agentls.tasks", "agentls.sandbox"),
    "tasks": FRONT_ENDS,
    "sandbox": (*FRONT_ENDS, "agentls.agent", "agentls.tasks", "agentls.llm"),
    "skills": (*FRONT_ENDS, "agentls.agent", "agentls.tasks", "agentls.llm", "agentls.sandbox"),
}
# The leaves at the package's top: they import only each other (and the standard library and
# third-party libraries below the protocols).
LEAVES = (
    "changes", "documents", "errors", "languages", "secret_files", "settings", "textdiff",
    "textedits",
)  # fmt: skip


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports, absolute names (relative imports resolved roughly)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _offending(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files
        for name in imports_of(path)
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    ]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules found under {layer}/"
    assert _offending(files, FORBIDDEN[layer]) == []


def test_the_leaves_import_no_layer() -> None:
    layers = ("agentls.agent", "agentls.llm", "agentls.tasks", "agentls.sandbox")
    files = [PACKAGE / f"{name}.py" for name in LEAVES]
    assert _offending(files, (*FRONT_ENDS, *layers)) == []


def test_only_the_lsp_package_knows_lsp() -> None:
    # The CLI starts the server, so it may import agentls.lsp (lazily), never LSP types.
    outside = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ("lsp", "cli")
    ]
    assert outside, "no modules found"
    assert _offending(outside, ("lsprotocol", "pygls", "agentls.lsp")) == []
    cli = sorted((PACKAGE / "cli").rglob("*.py"))
    assert _offending(cli, ("lsprotocol", "pygls")) == []


def test_a_module_has_at_most_500_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > 500
    }
    assert long == {}
