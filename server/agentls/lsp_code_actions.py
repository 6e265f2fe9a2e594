"""The three agent code actions: cheap to compute, each only carries its command."""

from __future__ import annotations

from lsprotocol import types

from agentls.protocol import KIND_COMMANDS, KIND_TITLES, TaskKind, command_arguments, range_from_lsp

# On a selection the actions are refactor kinds, which VS Code puts in the light bulb; on a
# bare cursor they act on the whole file, which is what "source" actions mean in LSP.
SELECTION_KINDS: dict[TaskKind, str] = {
    "explain": "refactor.agent.explain",
    "refactor": types.CodeActionKind.RefactorRewrite.value,
    "generateTests": "refactor.agent.generateTests",
}
FILE_KINDS: dict[TaskKind, str] = {
    "explain": "source.agent.explain",
    "refactor": "source.agent.refactor",
    "generateTests": "source.agent.generateTests",
}
ALL_KINDS: list[str] = sorted({*SELECTION_KINDS.values(), *FILE_KINDS.values()})


def _wanted(kind: str, only: list[str] | None) -> bool:
    # Kinds are hierarchical: asking for "refactor" includes "refactor.rewrite".
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def code_actions(params: types.CodeActionParams) -> list[types.CodeAction]:
    """Explain / Refactor / Generate tests for the selection, or the file when none."""
    if not params.text_document.uri.startswith("file:"):
        return []  # untitled buffers and virtual documents have no file the agent can read
    rng = range_from_lsp(params.range)
    kinds = SELECTION_KINDS if rng else FILE_KINDS
    only = [
        str(k.value if isinstance(k, types.CodeActionKind) else k)
        for k in params.context.only or []
    ]
    actions: list[types.CodeAction] = []
    for task_kind, title in KIND_TITLES.items():
        kind = kinds[task_kind]
        if not _wanted(kind, only):
            continue
        command = types.Command(
            title=title,
            command=KIND_COMMANDS[task_kind],
            arguments=command_arguments(params.text_document.uri, rng),
        )
        actions.append(types.CodeAction(title=title, kind=kind, command=command))
    return actions
