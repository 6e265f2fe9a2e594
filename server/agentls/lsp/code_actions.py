"""The agent code actions, one per task in the registry: cheap to compute, each only carries
its command."""

from __future__ import annotations

from lsprotocol import types

from agentls.lsp.protocol import command_arguments, range_from_lsp
from agentls.tasks.registry import TASKS

# On a selection the actions are refactor kinds, which VS Code puts in the light bulb; on a
# bare cursor they act on the whole file, which is what "source" actions mean in LSP.
ALL_KINDS: list[str] = sorted(
    {*(spec.selection_kind for spec in TASKS), *(spec.file_kind for spec in TASKS)}
)


def _wanted(kind: str, only: list[str] | None) -> bool:
    # Kinds are hierarchical: asking for "refactor" includes "refactor.rewrite".
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def code_actions(params: types.CodeActionParams) -> list[types.CodeAction]:
    """Explain / Refactor / Generate tests for the selection, or the file when none."""
    if not params.text_document.uri.startswith("file:"):
        return []  # untitled buffers and virtual documents have no file the agent can read
    rng = range_from_lsp(params.range)
    only = [
        str(k.value if isinstance(k, types.CodeActionKind) else k)
        for k in params.context.only or []
    ]
    actions: list[types.CodeAction] = []
    for spec in TASKS:
        kind = spec.selection_kind if rng else spec.file_kind
        if not _wanted(kind, only):
            continue
        command = types.Command(
            title=spec.title,
            command=spec.command,
            arguments=command_arguments(params.text_document.uri, rng),
        )
        actions.append(types.CodeAction(title=spec.title, kind=kind, command=command))
    return actions
