"""The workspace's files on disk, listed and searched: ripgrep, or a pure-Python walk.

``find``, ``grep`` and test detection used to walk the tree in Python and pay, for every
entry, a ``Path.resolve``, the ``.gitignore`` rules of every directory above it and the
secret-file patterns: 80-90 times ripgrep's cost, again for every call. Now ripgrep lists and
searches the disk (:mod:`agentls.agent.ripgrep`), once per run for the listing, and Python only
does what ripgrep cannot know:

- **secret files**: every path ripgrep reports goes through :class:`SecretFiles`, the one
  matcher, behind a quick pre-check (:mod:`agentls.agent.secret_precheck`) that skips the
  paths no secret pattern could possibly match, which is nearly all of them;
- **symlinks**: ripgrep skips them; a walk over the directories finds them, and the rules the
  walk always had decide (a link to a file inside the root is listed, one that leaves the root
  is not, a directory link is never descended);
- **the staged view** (staged edits, new files, open buffers) is overlaid by the workspace,
  which searches those texts in Python.

Both paths use the same ignore rules: ``.gitignore`` files of the root and of nested
directories, hidden files included, :data:`ALWAYS_SKIP` directories skipped. Without ripgrep
(none installed, or ``AGENTLS_RIPGREP=off``) the same listing and search run in Python.
Everything here blocks; the tools call it through :func:`agentls.agent.offloop.run_off_loop`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pathspec

from agentls.agent import ripgrep
from agentls.agent.offloop import check_stop
from agentls.agent.secret_precheck import secret_prefilter
from agentls.secret_files import SecretFiles

# Directories nobody wants searched, ignored or not.
ALWAYS_SKIP = frozenset({".git", "node_modules", "__pycache__", ".venv"})

# Bigger files are skipped by grep: they are generated or data, and would flood the model.
GREP_MAX_FILE_BYTES = 2_000_000

Matches = dict[str, list[tuple[int, str]]]  # relative path -> [(line number, line)]


def walk_key(rel: str) -> str:
    """Sort key giving the walk's order: a directory's files by name, then its subdirectories
    one after another (each with everything under it)."""
    *dirs, name = rel.split("/")
    return "".join(f"\x02{d}\x00" for d in dirs) + "\x01" + name


class IgnoreRules:
    """.gitignore files of the root and of nested directories, loaded lazily."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
        if rel_dir not in self._specs:
            spec = None
            try:
                text = (self.root / rel_dir / ".gitignore").read_text("utf-8", errors="replace")
                spec = pathspec.GitIgnoreSpec.from_lines(text.splitlines())
            except OSError:
                pass
            self._specs[rel_dir] = spec
        return self._specs[rel_dir]

    def ignored_rel(self, rel: str, is_dir: bool) -> bool:
        """Whether ``rel`` (POSIX, relative to the root) is ignored; deeper .gitignore wins."""
        parts = rel.split("/")
        if is_dir and parts[-1] in ALWAYS_SKIP:
            return True
        verdict: bool | None = None
        suffix = "/" if is_dir else ""
        for depth in range(len(parts)):
            spec = self._spec("/".join(parts[:depth]))
            if spec is not None:
                include = spec.check_file("/".join(parts[depth:]) + suffix).include
                if include is not None:
                    verdict = include
        return bool(verdict)

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """Whether ``path`` (absolute, inside the root) is ignored."""
        return self.ignored_rel(path.relative_to(self.root).as_posix(), is_dir)


class DiskTree:
    """The visible files of one workspace on disk, for one run.

    Visible: a regular file, or a link to one inside the root, that is not ignored, not secret,
    and not inside a skipped, ignored or secret directory or a directory link. The listing of
    the whole tree is made once and kept for the run: nothing the agent does writes to disk,
    and staged files are overlaid by the workspace.
    """

    def __init__(self, root: Path, real_root: Path, secrets: SecretFiles, rg: str | None) -> None:
        self.root = root
        self.real_root = real_root
        self.secrets = secrets
        self.ignore = IgnoreRules(root)
        self.rg = rg
        self._maybe_secret = secret_prefilter(secrets)
        self._maybe_secret_dirs: dict[str, bool] = {"": False}
        self._all: list[str] | None = None
        self._lock = threading.Lock()
        self.links: set[str] = set()  # listed links: ripgrep does not search through them

    # -- secrets and links --

    def secret_rel(self, rel: str, is_dir: bool = False) -> bool:
        """Whether ``rel`` (no link on its way from the root) is a secret file."""
        maybe = self._maybe_secret
        if maybe is not None:
            directory, _, name = rel.rpartition("/")
            if not maybe(name) and not self._maybe_secret_dir(directory):
                return False
        return self.secrets.matches(rel, is_dir)

    def _maybe_secret_dir(self, directory: str) -> bool:
        """Whether a component of ``directory`` fits the pre-check (asked once a directory)."""
        verdict = self._maybe_secret_dirs.get(directory)
        if verdict is None:
            assert self._maybe_secret is not None
            parent, _, name = directory.rpartition("/")
            verdict = self._maybe_secret(name) or self._maybe_secret_dir(parent)
            self._maybe_secret_dirs[directory] = verdict
        return verdict

    def link_visible(self, path: Path, rel: str) -> bool:
        """A link met in a walk is listed when it leads to a file inside the root and is
        neither ignored by its own name nor secret by its name or its target's."""
        if not Path(os.path.realpath(path)).is_relative_to(self.real_root):
            return False
        if not path.is_file():  # a directory link is never descended, a broken link is nothing
            return False
        if self.ignore.ignored_rel(rel, False):
            return False
        return not self.secrets.is_secret(path, self.root, self.real_root)

    def canonical(self, directory: Path) -> bool:
        """Whether no link lies on the way from the root to ``directory``."""
        if directory == self.root:
            return True
        rel = directory.relative_to(self.root)
        return os.path.realpath(directory) == os.path.join(self.real_root, rel)

    # -- listing --

    def entries(self, directory: Path) -> dict[str, bool]:
        """The visible entries of one directory (``ls``): name -> is a directory. Links are
        shown (never as directories) when they stay inside the root; OSError if unreadable."""
        prefix = "" if directory == self.root else directory.relative_to(self.root).as_posix()
        prefix += "/" if prefix else ""
        canonical = self.canonical(directory)
        with os.scandir(directory) as it:
            children = list(it)
        found: dict[str, bool] = {}
        for entry in children:
            rel = prefix + entry.name
            try:
                link = entry.is_symlink()
                is_dir = not link and entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if link and not Path(os.path.realpath(entry.path)).is_relative_to(self.real_root):
                continue
            if self.ignore.ignored_rel(rel, is_dir):
                continue
            if link or not canonical:
                secret = self.secrets.is_secret(Path(entry.path), self.root, self.real_root)
            else:
                secret = self.secret_rel(rel, is_dir)
            if not secret:
                found[entry.name] = is_dir
        return found

    def files(self, start: Path) -> list[str]:
        """Relative paths of the visible files under the directory ``start`` (any order)."""
        rel = "" if start == self.root else start.relative_to(self.root).as_posix()
        if not self.canonical(start):
            # Through a directory link the model named: the Python walk of that part, judging
            # secrets with links resolved, as the walk always did.
            return list(self._walk(start, rel, exact=True, files=True))
        if rel and any(part in ALWAYS_SKIP for part in rel.split("/")):
            # Inside a dependency folder the model named: the whole listing leaves it out.
            return self._list(start, rel)
        whole = self._whole()
        if not rel:
            return whole
        prefix = rel + "/"
        return [f for f in whole if f.startswith(prefix)]

    def _whole(self) -> list[str]:
        with self._lock:
            if self._all is None:
                self._all = self._list(self.root, "")
            return self._all

    def _list(self, start: Path, rel: str) -> list[str]:
        if self.rg is not None:
            try:
                return self._rg_list(start, rel)
            except OSError:
                self.rg = None  # not runnable here: the Python walk from now on
        return list(self._walk(start, rel, exact=False, files=True))

    def _rg_list(self, start: Path, rel: str) -> list[str]:
        assert self.rg is not None
        argv = [self.rg, "--files", "--null", *ripgrep.walk_flags(ALWAYS_SKIP)]
        run = ripgrep.Run(argv, self.root, rel)
        try:
            found = self._links(start, rel)  # while ripgrep lists the regular files
        except BaseException:
            run.kill()
            raise
        _, out = run.result()
        paths = ripgrep.parse_files(out, rel)
        if rel:
            below = _BelowStart(self.ignore, rel)
            paths = [path for path in paths if not below.hidden(path)]
        return found + self._not_secret(paths)

    def _not_secret(self, paths: list[str]) -> list[str]:
        """``paths`` without the secret ones: :meth:`secret_rel` unrolled for 50,000 paths."""
        maybe, matches = self._maybe_secret, self.secrets.matches
        if maybe is None:
            return [path for path in paths if not matches(path)]
        dirs = self._maybe_secret_dirs
        kept: list[str] = []
        for path in paths:
            directory, _, name = path.rpartition("/")
            suspect = dirs[directory] if directory in dirs else self._maybe_secret_dir(directory)
            if not ((suspect or maybe(name)) and matches(path)):
                kept.append(path)
        return kept

    def _links(self, start: Path, rel: str) -> list[str]:
        """The visible links under ``start``: :meth:`_walk` cut down to what ripgrep does not
        list (no sorting, no look at a regular file beyond its type, which costs no stat)."""
        found: list[str] = []
        stack: list[tuple[str, str]] = [(str(start), rel)]
        while stack:
            check_stop()
            directory, prefix = stack.pop()
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            child = f"{prefix}/{entry.name}" if prefix else entry.name
                            if not self._hidden(entry.path, child, True, False):
                                stack.append((entry.path, child))
                        elif entry.is_symlink():
                            child = f"{prefix}/{entry.name}" if prefix else entry.name
                            if self.link_visible(Path(entry.path), child):
                                self.links.add(child)
                                found.append(child)
            except OSError:
                continue
        return found

    def _walk(self, start: Path, rel: str, exact: bool, files: bool) -> Iterator[str]:
        """The walk in Python: visible files (``files``) or just the visible links, in walk
        order. ``exact``: links may lie on the way to ``start``, so secrets are judged with
        links resolved (else a path's own name is enough)."""
        stack: list[tuple[str, str]] = [(str(start), rel)]
        while stack:
            check_stop()
            directory, prefix = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            subdirs: list[tuple[str, str]] = []
            for entry in entries:
                child = f"{prefix}/{entry.name}" if prefix else entry.name
                try:
                    if entry.is_symlink():
                        if self.link_visible(Path(entry.path), child):
                            self.links.add(child)
                            yield child
                    elif entry.is_dir(follow_symlinks=False):
                        if not self._hidden(entry.path, child, True, exact):
                            subdirs.append((entry.path, child))
                    elif (
                        files
                        and entry.is_file(follow_symlinks=False)
                        and not self._hidden(entry.path, child, False, exact)
                    ):
                        yield child
                except OSError:
                    continue
            stack.extend(reversed(subdirs))

    def _hidden(self, path: str, rel: str, is_dir: bool, exact: bool) -> bool:
        if self.ignore.ignored_rel(rel, is_dir):
            return True
        if exact:
            return self.secrets.is_secret(Path(path), self.root, self.real_root)
        return self.secret_rel(rel, is_dir)

    # -- searching --

    def search_start(self, pattern: str, literal: bool, start: Path) -> ripgrep.Run | None:
        """Start ripgrep on the directory ``start`` (None without ripgrep); the caller lists
        the tree meanwhile and then calls :meth:`search_finish`."""
        if self.rg is None:
            return None
        rel = "" if start == self.root else start.relative_to(self.root).as_posix()
        argv = [
            self.rg,
            *ripgrep.search_flags(pattern, literal, GREP_MAX_FILE_BYTES),
            *ripgrep.walk_flags(ALWAYS_SKIP),
        ]
        try:
            return ripgrep.Run(argv, self.root, rel)
        except OSError:
            self.rg = None  # not runnable here: the Python search from now on
            return None

    def search_finish(
        self, run: ripgrep.Run | None, regex: re.Pattern[str], wanted: set[str]
    ) -> tuple[Matches, list[str]]:
        """Matching lines of the disk files ``wanted`` (relative paths under the start).

        Returns the matches by file, and the files ripgrep could not settle (it refused the
        pattern, met a NUL byte past the harness's 8 KiB rule, or decoded UTF-16), which the
        caller searches in Python. Without ripgrep every wanted file is unsettled.
        """
        if run is None:
            return {}, sorted(wanted)
        status, out = run.result()
        if status == 2 and not out:
            # A pattern Python accepts and ripgrep's engine does not (look-around,
            # backreferences): Python searches, over the same listing.
            return {}, sorted(wanted)
        matches, noted = ripgrep.parse_matches(out, regex, wanted)
        unsettled = [path for path in noted if not ripgrep.binary_file(self.root / path)]
        for path in list(matches):
            if ripgrep.starts_utf16(self.root / path):
                del matches[path]
                if not ripgrep.binary_file(self.root / path):
                    unsettled.append(path)
        return matches, sorted(unsettled)


class _BelowStart:
    """The rules for paths ripgrep listed from below the root: it did not read the .gitignore
    files above ``start``, so each directory under ``start`` and the file itself are judged as
    the walk from ``start`` judges them (the directories above ``start`` are not: the model
    named it)."""

    def __init__(self, ignore: IgnoreRules, start_rel: str) -> None:
        self.ignore = ignore
        self.depth = len(start_rel.split("/"))
        self._dirs: dict[str, bool] = {}

    def hidden(self, rel: str) -> bool:
        parts = rel.split("/")
        for depth in range(self.depth + 1, len(parts)):
            directory = "/".join(parts[:depth])
            verdict = self._dirs.get(directory)
            if verdict is None:
                verdict = self._dirs[directory] = self.ignore.ignored_rel(directory, True)
            if verdict:
                return True
        return self.ignore.ignored_rel(rel, False)


def ranked(found: Matches, extra: list[str]) -> list[str]:
    """The files of ``found`` in the walk's order, then those of ``extra`` in its order (staged
    files that are not on disk, as the walk listed them last)."""
    late = {rel: i for i, rel in enumerate(extra)}
    disk = sorted((rel for rel in found if rel not in late), key=walk_key)
    return disk + sorted((rel for rel in found if rel in late), key=late.__getitem__)


def searchable_disk_text(path: Path) -> str | None:
    """A file's text on disk for grep (decoded as ``edits.read_disk_text`` does); None when it
    is too big, binary or unreadable."""
    try:
        if path.stat().st_size > GREP_MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return None if ripgrep.is_binary(data) else data.decode("utf-8-sig", errors="replace")


def search_text(regex: re.Pattern[str], text: str) -> list[tuple[int, str]]:
    """Matching lines of ``text``: 1-based numbers, lines without their '\\r', and no phantom
    line after a final newline (ripgrep and ``read`` count lines so too)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    found: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if regex.search(line):
            found.append((number, line))
    return found


def glob_regex(pattern: str) -> re.Pattern[str]:
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


def _class_end(pattern: str, start: int) -> int:
    """Index of the ']' closing the character class at ``start``, or -1 (then '[' is literal)."""
    j = start + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1  # a ']' right after '[' or '[!' belongs to the class
    return pattern.find("]", j)
