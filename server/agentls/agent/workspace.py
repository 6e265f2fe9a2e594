"""The staged view of the workspace that the tools read, search and edit.

Nothing here writes to disk. The text of a file is, in order of preference: the text the
agent staged, the text it first saw (so the base of its edits never shifts under it),
the editor's open buffer, the file on disk.
"""

from __future__ import annotations

import os
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pathspec

from agentls.edits import FileChange, read_disk_text
from agentls.secret_files import SecretFiles
from agentls.settings import DEFAULT_SECRET_FILES


class ToolError(Exception):
    """A tool cannot do what was asked; the message goes back to the model verbatim."""


class Snapshot(Protocol):
    """An open document (``agentls.tasks.base.DocumentSnapshot`` has this shape).

    Declared structurally so ``agent`` does not import ``tasks`` (imports flow the other way).
    """

    @property
    def text(self) -> str: ...

    @property
    def version(self) -> int | None: ...


DocumentProvider = Callable[[Path], Snapshot | None]

# Directories nobody wants searched, ignored or not.
ALWAYS_SKIP = frozenset({".git", "node_modules", "__pycache__", ".venv"})

# Bigger files are skipped by grep: they are generated or data, and would flood the model.
GREP_MAX_FILE_BYTES = 2_000_000


def _no_documents(_path: Path) -> Snapshot | None:
    return None


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


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


class _IgnoreRules:
    """.gitignore files of the root and of nested directories, loaded lazily."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._specs: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, directory: Path) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._specs:
            spec = None
            gitignore = directory / ".gitignore"
            try:
                lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
                spec = pathspec.GitIgnoreSpec.from_lines(lines)
            except OSError:
                pass
            self._specs[directory] = spec
        return self._specs[directory]

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """Whether ``path`` (inside root) is ignored; deeper .gitignore files win."""
        if path.name in ALWAYS_SKIP and is_dir:
            return True
        rel = path.relative_to(self.root)
        verdict: bool | None = None
        directory = self.root
        for depth in range(len(rel.parts)):
            spec = self._spec(directory)
            if spec is not None:
                sub = Path(*rel.parts[depth:]).as_posix() + ("/" if is_dir else "")
                include = spec.check_file(sub).include
                if include is not None:
                    verdict = include
            directory = directory / rel.parts[depth]
        return bool(verdict)


def _class_end(pattern: str, start: int) -> int:
    """Index of the ']' closing the character class at ``start``, or -1 (then '[' is literal)."""
    j = start + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1  # a ']' right after '[' or '[!' belongs to the class
    return pattern.find("]", j)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob where ``**`` crosses directories and ``*`` does not."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := _class_end(pattern, i)) != -1:
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "{" and "}" in pattern[i:]:
            end = pattern.index("}", i)
            options = pattern[i + 1 : end].split(",")
            out.append("(?:" + "|".join(re.escape(o) for o in options) + ")")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


class Workspace:
    """The files under ``root`` as the agent sees them, with its edits staged in memory."""

    def __init__(
        self,
        root: Path,
        documents: DocumentProvider = _no_documents,
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
        self._ignore = _IgnoreRules(self.root)
        # The same matcher decides what the sandbox's scratch copy leaves out.
        self._secrets = SecretFiles(secret_files)

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
        if _is_binary(data):
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

    def _visible(self, path: Path, is_dir: bool) -> bool:
        # Secret files are left out of listings and searches altogether: a name the model
        # cannot open only tempts it into wasted turns, and grep must never show their lines.
        if path.is_symlink() and not path.resolve().is_relative_to(self._real_root):
            return False
        return not (self._ignore.ignored(path, is_dir) or self.is_secret(path))

    def list_dir(self, path: str | Path = ".") -> list[str]:
        """Names in a directory, sorted, directories with a trailing '/'.

        Ignored entries are left out; staged new files are included.
        """
        full = self.resolve(path)
        if not self.is_dir(full):
            if self.exists(full):
                raise ToolError(f"'{self.rel(full)}' is a file, not a directory")
            raise ToolError(f"directory '{self.rel(full)}' not found")
        entries: dict[str, bool] = {}
        if full.is_dir():
            try:
                children = list(full.iterdir())
            except OSError as exc:
                raise ToolError(f"cannot list '{self.rel(full)}': {exc.strerror}") from exc
            for child in children:
                is_dir = child.is_dir() and not child.is_symlink()
                if self._visible(child, is_dir):
                    entries[child.name] = is_dir
        for staged in self._staged:
            if staged.is_relative_to(full) and staged != full:
                first = staged.relative_to(full).parts[0]
                entries.setdefault(first, len(staged.relative_to(full).parts) > 1)
        return sorted(name + "/" if is_dir else name for name, is_dir in entries.items())

    def _walk(self, start: Path) -> Iterator[Path]:
        """Visible files under ``start`` (not following directory symlinks), then staged ones."""
        seen: set[Path] = set()
        if start.is_file():
            seen.add(start)
            yield start
        elif start.is_dir():
            stack = [start]
            while stack:
                directory = stack.pop()
                try:
                    children = sorted(directory.iterdir())
                except OSError:
                    continue
                subdirs: list[Path] = []
                for child in children:
                    is_dir = child.is_dir() and not child.is_symlink()
                    if not self._visible(child, is_dir):
                        continue
                    if is_dir:
                        subdirs.append(child)
                    elif child.is_file():
                        seen.add(child)
                        yield child
                stack.extend(reversed(subdirs))
        for staged in sorted(self._staged):
            if staged not in seen and (staged == start or staged.is_relative_to(start)):
                yield staged

    def find(self, pattern: str) -> list[str]:
        """Files (relative paths, sorted) matching a glob.

        ``**`` spans directories; a pattern without '/' matches file names anywhere.
        """
        pattern = pattern.strip().removeprefix("./").lstrip("/")
        if not pattern:
            raise ToolError("pattern is empty; try e.g. '*.py' or 'src/**/*.ts'")
        regex = _glob_regex(pattern)
        by_name = "/" not in pattern
        found: list[str] = []
        for path in self._walk(self.root):
            rel = self.rel(path)
            if regex.match(path.name if by_name else rel):
                found.append(rel)
        return sorted(found)

    def grep(self, pattern: str, path: str | Path | None = None) -> GrepResult:
        """Lines matching a Python regex (searched literally when the regex is invalid).

        Searches the staged view, so unsaved buffers and staged edits are included;
        binary and very large files are skipped.
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
        matches: list[GrepMatch] = []
        for file in self._walk(start):
            text = self._searchable_text(file)
            if text is None:
                continue
            rel = self.rel(file)
            for number, line in enumerate(text.split("\n"), start=1):
                line = line.rstrip("\r")
                if regex.search(line):
                    matches.append(GrepMatch(rel, number, line))
        return GrepResult(matches, literal)

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
