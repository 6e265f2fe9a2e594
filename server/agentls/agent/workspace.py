"""The staged view of the workspace that the tools read, search and edit.

Nothing here writes to disk. The text of a file is, in order of preference: the text the
agent staged, the text it first saw (so the base of its edits never shifts under it),
the editor's open buffer, the file on disk.

Listing and searching the disk is :mod:`agentls.agent.search`'s job (ripgrep, or a Python
walk); this module overlays the staged view on it. The ``a``-prefixed methods (``afind``,
``agrep``, ``alist_dir``) run the blocking work in a worker thread, so the language server
keeps answering while a large tree is searched.
"""

from __future__ import annotations

import os
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentls.agent.offloop import run_off_loop
from agentls.agent.ripgrep import find_ripgrep, is_binary
from agentls.agent.search import ALWAYS_SKIP as ALWAYS_SKIP
from agentls.agent.search import (
    GREP_MAX_FILE_BYTES,
    DiskTree,
    IgnoreRules,
    glob_regex,
    ranked,
    search_text,
    searchable_disk_text,
    walk_key,
)
from agentls.changes import FileChange, read_disk_text
from agentls.documents import DocumentProvider as DocumentProvider
from agentls.documents import Snapshot as Snapshot
from agentls.documents import no_documents
from agentls.secret_files import SecretFiles
from agentls.settings import DEFAULT_SECRET_FILES


class ToolError(Exception):
    """A tool cannot do what was asked; the message goes back to the model verbatim."""


# Characters that read as '/', '\\' or '.' to a person or to a lenient decoder further down
# the line, and that NFKC normalisation does not already fold.
_LOOKALIKES = str.maketrans(
    {
        "\u2215": "/",  # division slash
        "\u2044": "/",  # fraction slash
        "\u29f8": "/",  # big solidus
        "\u2216": "\\",  # set minus
        "\u29f9": "\\",  # big reverse solidus
    }
)


def _readings(text: str) -> Iterator[str]:
    """``text`` as successively more lenient consumers could read it.

    A path is only accepted when every reading stays inside the root, so an encoded
    ``..`` cannot slip past this check and be decoded by something else later (a URL
    parser, a Windows tool, a shell expanding ``$HOME``, a font rendering look-alikes).
    """
    yield text
    for _ in range(3):  # %252e%252e is %2e%2e is ..
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            break
        text = decoded
        yield text
    text = unicodedata.normalize("NFKC", text).translate(_LOOKALIKES)
    yield text
    text = text.replace("\\", "/")
    yield text
    yield os.path.expandvars(text)


@dataclass(frozen=True)
class _Original:
    text: str | None  # None: the file did not exist
    version: int | None


@dataclass(frozen=True)
class GrepMatch:
    """One matching line: path relative to the root, 1-based line number, the line."""

    path: str
    line: int
    text: str


@dataclass(frozen=True)
class GrepResult:
    """All matches, and whether the pattern was searched literally (invalid regex)."""

    matches: list[GrepMatch]
    literal: bool = False


class Workspace:
    """The files under ``root`` as the agent sees them, with its edits staged in memory."""

    def __init__(
        self,
        root: Path,
        documents: DocumentProvider = no_documents,
        *,
        max_read_lines: int = 400,
        secret_files: Iterable[str] = DEFAULT_SECRET_FILES,
    ) -> None:
        # Keep the root as given (absolute, normalised) rather than resolved: editor URIs
        # name files through it, and a resolved path would not match them.
        self.root = Path(os.path.normpath(Path(root).expanduser().absolute()))
        self._real_root = self.root.resolve()
        self.documents = documents
        self.max_read_lines = max_read_lines
        self._staged: dict[Path, str] = {}
        self._originals: dict[Path, _Original] = {}
        # The same matcher decides what the sandbox's scratch copy leaves out.
        self._secrets = SecretFiles(secret_files)
        # The disk's visible files, listed once per run (a Workspace lives for one run).
        self._tree = DiskTree(self.root, self._real_root, self._secrets, find_ripgrep())
        self._ignore: IgnoreRules = self._tree.ignore

    # -- paths ---------------------------------------------------------------------------

    def resolve(self, path: str | Path) -> Path:
        """An absolute path for ``path`` (relative paths start at the root).

        Raises :class:`ToolError` when the path leaves the workspace (after ``..``, ``~``,
        symlinks, and under any decoding in :func:`_readings`: ``%2e%2e``, ``..\\``,
        ``$HOME``, look-alike slashes), contains a NUL byte, or names a secret file.
        ``file://`` URIs are accepted as paths.
        """
        raw = str(path).strip()
        text = raw
        if text.lower().startswith("file:"):
            # A model may echo an editor URI; its path part is the path (decoded once).
            text = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        # An absolute path inside the root is judged by its part below the root, so a root
        # that itself contains '%' or '$' (my%20project) does not trip the decoding checks.
        for prefix in {str(self.root), str(self._real_root)}:
            if text == prefix or text.startswith(prefix + "/"):
                text = text[len(prefix) :].lstrip("/") or "."
                break
        for reading in _readings(text):
            if "\x00" in reading:
                raise ToolError(f"path {raw!r} contains a NUL byte; use a plain relative path")
            if reading != text or reading.startswith("~"):
                self._confine(raw, reading)
        full = self._confine(raw, text)
        self._refuse_secret(full)
        return full

    def _confine(self, raw: str, text: str) -> Path:
        """``text`` as a path under the root; ToolError if it, or its real path, leaves it."""
        candidate = Path(text).expanduser() if text.startswith("~") else Path(text)
        full = Path(os.path.normpath(self.root / candidate))
        real = full.resolve()
        if not (full.is_relative_to(self.root) and real.is_relative_to(self._real_root)):
            shown = "" if text == raw else f" (read as '{text}')"
            raise ToolError(
                f"path '{raw}'{shown} is outside the workspace; "
                "use a path relative to the workspace root"
            )
        return full

    def is_secret(self, full: Path) -> bool:
        """Whether ``full`` (inside the root), a directory above it, or the file it links to is
        a secret file (see :class:`agentls.secret_files.SecretFiles`)."""
        return self._secrets.is_secret(full, self.root, self._real_root)

    def _refuse_secret(self, full: Path) -> None:
        if self.is_secret(full):
            raise ToolError(
                f"'{self.rel(full)}' is a secret file; agentls does not read or write it "
                "(agent.secretFiles)"
            )

    def rel(self, path: Path) -> str:
        """The path relative to the root, with forward slashes ('.' for the root)."""
        return path.relative_to(self.root).as_posix() if path != self.root else "."

    # -- file text -----------------------------------------------------------------------

    def _live(self, path: Path) -> _Original:
        """What the file holds right now outside the agent: open buffer, else disk."""
        snapshot = self.documents(path)
        if snapshot is not None:
            return _Original(snapshot.text, snapshot.version)
        if path.is_dir():
            raise ToolError(f"'{self.rel(path)}' is a directory; use ls to list it")
        if not path.is_file():
            if path.exists():  # a FIFO, socket or device: reading it could block forever
                raise ToolError(
                    f"'{self.rel(path)}' is not a regular file (a named pipe, socket or "
                    "device); only regular files can be read"
                )
            return _Original(None, None)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ToolError(f"cannot read '{self.rel(path)}': {exc.strerror}") from exc
        if is_binary(data):
            raise ToolError(f"'{self.rel(path)}' is a binary file; it cannot be read as text")
        return _Original(read_disk_text(path), None)

    def _remember(self, path: Path) -> _Original:
        if path not in self._originals:
            self._originals[path] = self._live(path)
        return self._originals[path]

    def _current(self, path: Path, remember: bool) -> str | None:
        if path in self._staged:
            return self._staged[path]
        if path in self._originals:
            return self._originals[path].text
        return (self._remember(path) if remember else self._live(path)).text

    def read_text(self, path: str | Path) -> str:
        """The file's text in the staged view. Raises :class:`ToolError` if it does not exist.

        The first read fixes the file's base: later reads return the same text even if
        the user keeps typing, so the agent's edits stay consistent with what it saw.
        """
        full = self.resolve(path)
        text = self._current(full, remember=True)
        if text is None:
            raise ToolError(
                f"file '{self.rel(full)}' not found; use find or ls to locate it, "
                "or write to create it"
            )
        return text

    def exists(self, path: str | Path) -> bool:
        """Whether the file exists in the staged view (directories count too)."""
        full = self.resolve(path)
        if full in self._staged:
            return True
        if full in self._originals:
            return self._originals[full].text is not None
        if full.is_dir() or self._has_staged_under(full):
            return True
        return self.documents(full) is not None or full.is_file()

    def is_dir(self, path: str | Path) -> bool:
        """Whether ``path`` is a directory on disk or holds staged new files."""
        full = self.resolve(path)
        return full.is_dir() or self._has_staged_under(full)

    def _has_staged_under(self, directory: Path) -> bool:
        return any(p.is_relative_to(directory) and p != directory for p in self._staged)

    def stage(self, path: str | Path, new_text: str) -> Path:
        """Set the file's text in the staged view; returns the resolved path."""
        full = self.resolve(path)
        if full == self.root or full.is_dir() or self._has_staged_under(full):
            raise ToolError(f"'{self.rel(full)}' is a directory")
        self._remember(full)
        self._staged[full] = new_text
        return full

    def stage_all(self, texts: Mapping[Path, str]) -> None:
        """Stage several files at once, all or none: every path is checked (inside the
        workspace, not secret, not a directory, readable) before any text is staged."""
        checked: list[tuple[Path, str]] = []
        for path, text in texts.items():
            full = self.resolve(path)
            if full == self.root or full.is_dir() or self._has_staged_under(full):
                raise ToolError(f"'{self.rel(full)}' is a directory")
            self._remember(full)  # the base of the change; raises for unreadable files
            checked.append((full, text))
        for full, text in checked:
            self._staged[full] = text

    def changes(self) -> list[FileChange]:
        """The staged files that differ from what the agent first saw, sorted by path."""
        result: list[FileChange] = []
        for path in sorted(self._staged, key=self.rel):
            original = self._originals[path]
            text = self._staged[path]
            if text == original.text:
                continue
            result.append(FileChange(path, original.text, text, original.version))
        return result

    # -- listing and searching -------------------------------------------------------------

    def list_dir(self, path: str | Path = ".") -> list[str]:
        """Names in a directory, sorted, directories with a trailing '/'.

        Ignored and secret entries, and links leaving the root, are left out (a name the model
        cannot open only tempts it into wasted turns); staged new files are included.
        """
        full = self.resolve(path)
        if not self.is_dir(full):
            if self.exists(full):
                raise ToolError(f"'{self.rel(full)}' is a file, not a directory")
            raise ToolError(f"directory '{self.rel(full)}' not found")
        entries: dict[str, bool] = {}
        if full.is_dir():
            try:
                entries = self._tree.entries(full)
            except OSError as exc:
                raise ToolError(f"cannot list '{self.rel(full)}': {exc.strerror}") from exc
        for staged in self._staged:
            if staged.is_relative_to(full) and staged != full:
                first = staged.relative_to(full).parts[0]
                entries.setdefault(first, len(staged.relative_to(full).parts) > 1)
        return sorted(name + "/" if is_dir else name for name, is_dir in entries.items())

    def _view_files(self, start: Path) -> tuple[list[str], list[str], bool]:
        """The files under ``start`` in the staged view, as relative paths: those on disk (any
        order; ``walk_key`` sorts them), then staged files not among them, in order; and
        whether the disk ones may be searched with ripgrep."""
        if type(self)._walk is not Workspace._walk:
            # A subclass narrowed the walk (a file worked on alone): its word is final.
            return [self.rel(p) for p in self._walk(start)], [], False
        if start.is_file():
            return [self.rel(start)], [], False
        disk = self._tree.files(start) if start.is_dir() else []
        on_disk = set(disk)
        extra = [
            self.rel(p)
            for p in sorted(self._staged)
            if (p == start or p.is_relative_to(start)) and self.rel(p) not in on_disk
        ]
        return disk, extra, True

    def _walk(self, start: Path) -> Iterator[Path]:
        """Visible files under ``start`` (not following directory links), then staged ones.

        The hook a narrower view overrides (see ``agentls.tasks.single_file``).
        """
        disk, extra, _ = self._view_files(start)
        for rel in [*sorted(disk, key=walk_key), *extra]:
            yield self.root / rel

    def find(self, pattern: str) -> list[str]:
        """Files (relative paths, sorted) matching a glob.

        ``**`` spans directories; a pattern without '/' matches file names anywhere.
        """
        pattern = pattern.strip().removeprefix("./").lstrip("/")
        if not pattern:
            raise ToolError("pattern is empty; try e.g. '*.py' or 'src/**/*.ts'")
        if pattern.startswith("**/") and "/" not in pattern[3:]:
            pattern = pattern[3:]  # '**/*.py' is '*.py': the name alone, matched cheaper
        regex = glob_regex(pattern)
        disk, extra, _ = self._view_files(self.root)
        if "/" in pattern:
            return sorted({rel for rel in (*disk, *extra) if regex.match(rel)})
        return sorted({rel for rel in (*disk, *extra) if regex.match(rel[rel.rfind("/") + 1 :])})

    def grep(self, pattern: str, path: str | Path | None = None) -> GrepResult:
        """Lines matching a Python regex (searched literally when the regex is invalid).

        Searches the staged view, so unsaved buffers and staged edits are included; binary
        and very large files are skipped. ripgrep searches the disk; the texts of the staged
        view that differ from it are searched here.
        """
        literal = False
        try:
            regex = re.compile(pattern)
        except re.error:
            regex = re.compile(re.escape(pattern))
            literal = True
        start = self.resolve(path if path is not None else ".")
        if not self.exists(start):
            raise ToolError(f"'{self.rel(start)}' not found")
        base_walk = type(self)._walk is Workspace._walk
        # ripgrep searches while the tree is listed (both are needed; they overlap).
        run = (
            self._tree.search_start(pattern, literal, start)
            if base_walk and start.is_dir()
            else None
        )
        try:
            disk, extra, searchable = self._view_files(start)
            overlaid = self._overlaid(disk, extra)
        except BaseException:
            if run is not None:
                run.kill()
            raise
        found: dict[str, list[tuple[int, str]]] = {}
        python = [*overlaid, *self._tree.links.intersection(disk)]
        if searchable:
            wanted = set(disk).difference(python)
            found, unsettled = self._tree.search_finish(run, regex, wanted)
            python += unsettled
        else:
            python += [rel for rel in disk if rel not in overlaid]
        for rel in python:
            # Files not overlaid are known to be the disk's: no need to ask the editor again.
            path = self.root / rel
            text = self._searchable_text(path) if rel in overlaid else searchable_disk_text(path)
            if text is not None and (hits := search_text(regex, text)):
                found[rel] = hits
        lines = [GrepMatch(rel, n, text) for rel in ranked(found, extra) for n, text in found[rel]]
        return GrepResult(lines, literal)

    def _overlaid(self, disk: list[str], extra: list[str]) -> set[str]:
        """Which of these files' text in the staged view may differ from the disk: staged,
        already read (the base stays fixed), or open in the editor."""
        candidates = set(disk)
        candidates.update(extra)
        known = {self.rel(p) for p in (*self._staged, *self._originals) if self._inside(p)}
        result = known & candidates
        open_paths = self._open_paths()
        if open_paths is None:
            asked = (rel for rel in disk if rel not in result)  # the provider cannot list
        else:
            asked = (rel for rel in open_paths if rel in candidates and rel not in result)
        result.update(rel for rel in asked if self.documents(self.root / rel) is not None)
        return result

    def _open_paths(self) -> list[str] | None:
        """Relative paths of the editor's open buffers, when the provider can list them."""
        lister = getattr(self.documents, "open_paths", None)
        if not callable(lister):
            return None
        rels: list[str] = []
        for raw in lister():
            path = Path(os.path.normpath(raw))
            if self._inside(path):
                rels.append(self.rel(path))
            elif (real := Path(os.path.realpath(path))).is_relative_to(self._real_root):
                rels.append(real.relative_to(self._real_root).as_posix())
        return rels

    def _inside(self, path: Path) -> bool:
        return path != self.root and path.is_relative_to(self.root)

    def _searchable_text(self, path: Path) -> str | None:
        on_disk_only = (
            path not in self._staged
            and path not in self._originals
            and self.documents(path) is None
        )
        if on_disk_only:
            try:
                if path.stat().st_size > GREP_MAX_FILE_BYTES:
                    return None
            except OSError:
                return None
        try:
            return self._current(path, remember=False)
        except ToolError:
            return None  # binary or unreadable: not worth mentioning in search results

    # -- off the event loop ------------------------------------------------------------------

    async def afind(self, pattern: str) -> list[str]:
        """:meth:`find` in a worker thread (stopped if the caller is cancelled)."""
        return await run_off_loop(self.find, pattern)

    async def agrep(self, pattern: str, path: str | Path | None = None) -> GrepResult:
        """:meth:`grep` in a worker thread (stopped if the caller is cancelled)."""
        return await run_off_loop(self.grep, pattern, path)

    async def alist_dir(self, path: str | Path = ".") -> list[str]:
        """:meth:`list_dir` in a worker thread."""
        return await run_off_loop(self.list_dir, path)
