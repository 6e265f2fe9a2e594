"""One file worked on alone: the staged view when there is no workspace folder around it.

When the editor opened no folder (or ``agentls run`` gets a file outside the current
directory) there is no project whose files the model may look at. The file's own folder is
no substitute: for ``/etc/hostname`` it is ``/etc``. So the tools see exactly one file: ``ls``
lists just it, ``find`` and ``grep`` search just it, and any other path (a sibling, ``..``,
the folder itself as a file) is refused. No bash tool is offered either (see ``prepare``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from agentls.agent.workspace import ToolError, Workspace
from agentls.documents import DocumentProvider
from agentls.secret_files import SecretFiles
from agentls.settings import DEFAULT_SECRET_FILES


class SingleFileWorkspace(Workspace):
    """The staged view of one file: the root is its folder only so that paths resolve."""

    def __init__(
        self,
        file: Path,
        documents: DocumentProvider,
        *,
        max_read_lines: int = 400,
        secret_files: Iterable[str] = DEFAULT_SECRET_FILES,
    ) -> None:
        file = Path(os.path.normpath(Path(file).expanduser().absolute()))
        secret_files = list(secret_files)
        super().__init__(
            file.parent,
            documents,
            max_read_lines=max_read_lines,
            secret_files=secret_files,
        )
        self.file = self.root / file.name
        # The secret patterns are normally matched below the workspace root; with the root
        # being the file's own folder, "~/.ssh/config" would only be seen as "config". Match
        # the whole path too, so a directory pattern such as ".ssh/" still applies.
        self._path_secrets = SecretFiles(secret_files)

    def _refusal(self, raw: str | Path) -> ToolError:
        return ToolError(
            f"path '{raw}' is not available: agentls is working on the single file "
            f"'{self.file.name}' alone (no workspace folder is open), so no other file or "
            f"directory can be read, listed, searched or written; use '{self.file.name}'"
        )

    def resolve(self, path: str | Path) -> Path:
        """Like :meth:`Workspace.resolve`, but only the file (and its folder for ``ls .``)."""
        full = super().resolve(path)
        if full not in (self.file, self.root):
            raise self._refusal(path)
        if full == self.file and self._is_secret_path(full):
            raise ToolError(
                f"'{self.file.name}' is a secret file; agentls does not read or write it "
                "(agent.secretFiles)"
            )
        return full

    def _is_secret_path(self, full: Path) -> bool:
        return any(
            self._path_secrets.matches(candidate.as_posix().lstrip("/"))
            for candidate in {full, full.resolve()}
        )

    def list_dir(self, path: str | Path = ".") -> list[str]:
        """The folder holds just the file, as far as the model can tell."""
        full = self.resolve(path)
        if full == self.file:
            raise ToolError(f"'{self.file.name}' is a file, not a directory")
        return [self.file.name] if self.exists(self.file) else []

    def _walk(self, start: Path) -> Iterator[Path]:
        # find and grep walk from here: only the one file, never the folder around it (which
        # may be a home directory or /). Overrides the base class's walk of the directory tree.
        if start in (self.file, self.root) and self.exists(self.file):
            yield self.file
