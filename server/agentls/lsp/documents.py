"""The editor's open buffers as the agent sees them, and the workspace scope of a document."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pygls.uris import to_fs_path
from pygls.workspace import Workspace

from agentls.documents import DocumentProvider, DocumentSnapshot


def _key(path: Path | str) -> str:
    # resolve() so that /tmp vs /private/tmp and "a/../b" spellings compare equal; normcase
    # for case-insensitive file systems.
    return os.path.normcase(str(Path(path).resolve()))


def open_documents(workspace: Workspace) -> DocumentProvider:
    """A DocumentProvider over the live workspace: each call sees the buffer as it is now.

    Only documents open in the editor are returned; everything else comes from disk. Being
    live matters twice: the agent reads the unsaved text, and after the run the same provider
    tells ``to_workspace_edit`` what the user typed meanwhile.
    """

    def provider(path: Path) -> DocumentSnapshot | None:
        wanted = _key(path)
        # Few documents are open at once, so a scan is cheaper than keeping an index in sync.
        for uri, document in list(workspace.text_documents.items()):
            fs_path = to_fs_path(uri)
            if fs_path and uri.startswith("file:") and _key(fs_path) == wanted:
                return DocumentSnapshot(text=document.source, version=document.version)
        return None

    def open_paths() -> list[Path]:
        # grep asks the provider about these files only, not about each of 50,000 (issue 13;
        # see agentls.documents.DocumentProvider).
        return [
            Path(fs_path)
            for uri in list(workspace.text_documents)
            if uri.startswith("file:") and (fs_path := to_fs_path(uri))
        ]

    provider.open_paths = open_paths  # type: ignore[attr-defined]
    return provider


class OutsideWorkspace(Exception):
    """The document lies outside every folder the editor opened; agentls refuses to work on it."""

    def __init__(self, path: Path, folders: list[Path]) -> None:
        shown = ", ".join(str(folder) for folder in folders)
        self.message = (
            f"{path} is outside the workspace folders ({shown}); agentls works only on files "
            "inside them."
        )
        self.hint = "Open the file's folder, or add it to the workspace, and try again."
        super().__init__(self.message)


@dataclass(frozen=True)
class DocumentScope:
    """Where a request's file may be worked on: the root the tools see, and whether the file
    is worked on alone (no folder is open, so no directory around it is shown)."""

    root: Path
    single_file: bool = False


def workspace_folders(workspace: Workspace) -> list[Path]:
    """The folders the client opened: workspaceFolders and rootUri (or rootPath), deduplicated."""
    uris = [folder.uri for folder in workspace.folders.values()]
    if workspace.root_uri:
        uris.append(workspace.root_uri)  # pygls turns a bare rootPath into root_uri
    folders: dict[str, Path] = {}
    for uri in uris:
        fs_path = to_fs_path(uri) if uri.startswith("file:") else None
        if fs_path:
            folders.setdefault(_key(fs_path), Path(fs_path))
    return list(folders.values())


def document_scope(workspace: Workspace, path: Path) -> DocumentScope:
    """The scope of a request on ``path``; raises :class:`OutsideWorkspace` when it has none.

    Inside the open folders the innermost folder holding the file is the root (multi-root
    workspaces, nested folders). A file outside all of them is refused: falling back to its
    directory would hand the model whatever sits next to it (``/etc`` for ``/etc/hostname``).
    Only when the client opened no folder at all is the file worked on alone.
    """
    folders = workspace_folders(workspace)
    if not folders:
        return DocumentScope(path.parent, single_file=True)
    # Compared resolved, so a symlinked spelling of a path outside cannot pass as inside.
    target = Path(_key(path))
    holding = [f for f in folders if target == Path(_key(f)) or Path(_key(f)) in target.parents]
    if not holding:
        raise OutsideWorkspace(path, folders)
    return DocumentScope(max(holding, key=lambda f: len(Path(_key(f)).parts)))
