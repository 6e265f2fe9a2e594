"""Staged changes -> minimal text edits, unified diffs and LSP WorkspaceEdits; edit matching.

(Being written: see the helper's brief. FileChange is the shared contract.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileChange:
    """One file the agent changed: text it read (None for a new file), text it wants."""

    path: Path  # absolute
    old_text: str | None
    new_text: str
    version: int | None = None  # editor version of the open document the agent read
