"""The editor's open documents as every layer sees them, in one leaf (no agentls imports).

A front end provides them (the LSP server's open buffers, an ACP client's files); the agent's
staged view reads through them (unsaved text wins over the disk), and the LSP edit builder
checks their versions so an edit never clobbers what the user typed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Snapshot(Protocol):
    """An open document: its text and the version the editor gave it (None: unversioned)."""

    @property
    def text(self) -> str: ...

    @property
    def version(self) -> int | None: ...


@dataclass(frozen=True)
class DocumentSnapshot:
    """The text of an open document and the version the editor gave it (a :class:`Snapshot`)."""

    text: str
    version: int | None


# The open buffer for a path, or None when the file is not open in the editor. A provider may
# also have ``open_paths()``: the paths of every open buffer. Then grep asks it only about
# those; without it, grep must ask about every file it searches (correct, slower).
DocumentProvider = Callable[[Path], Snapshot | None]


def no_documents(_path: Path) -> Snapshot | None:
    """A document provider with nothing open (the CLI): everything comes from disk."""
    return None


no_documents.open_paths = list  # type: ignore[attr-defined]  # none open: nothing to ask
