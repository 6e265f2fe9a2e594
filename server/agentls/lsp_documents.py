"""The editor's open buffers as the agent sees them, and the workspace root of a document."""

from __future__ import annotations

import os
from pathlib import Path

from pygls.uris import to_fs_path
from pygls.workspace import Workspace

from agentls.tasks.base import DocumentProvider, DocumentSnapshot


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

    return provider


def workspace_root(workspace: Workspace, path: Path) -> Path:
    """The workspace folder holding ``path`` (the innermost), else the document's directory."""
    target = Path(_key(path))
    candidates: list[Path] = []
    uris = [folder.uri for folder in workspace.folders.values()]
    if workspace.root_uri:
        uris.append(workspace.root_uri)
    for uri in uris:
        fs_path = to_fs_path(uri)
        if not fs_path:
            continue
        folder = Path(_key(fs_path))
        if target == folder or folder in target.parents:
            candidates.append(Path(fs_path))
    if candidates:
        return max(candidates, key=lambda p: len(p.parts))
    return path.parent
