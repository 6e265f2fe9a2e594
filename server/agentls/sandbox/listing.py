"""What of the workspace a sandboxed command may see, found without copying anything.

The overlay view shows the workspace itself (read-only, under the staged edits) minus what
:func:`list_view` says to hide. What stays visible is exactly what the scratch copy used to
hold: git's view of the workspace (tracked files and untracked files that are not ignored;
every file when it is not a repository) minus version-control internals and caches, secret
files (``agent.secretFiles``, judged by the one matcher), links that leave the workspace or
lead to a secret, special files (FIFOs, sockets: a socket could reach a server outside the
sandbox) and nested repositories; plus the pass-through directories (virtualenvs,
``node_modules``), shown as they are.

The tree is walked once, by ``find`` (pruning ``.git`` and the pass-through directories),
while ``git ls-files -c`` reads the tracked files from the index (no walk). Whatever ``find``
saw that is not tracked is judged by ``git check-ignore``, topmost first: an ignored directory
is hidden whole, and only a directory git does not ignore is looked into. So the listing costs
one walk of the tree, about what ``git ls-files`` costs, and the secret check runs once over
all names (:mod:`agentls.sandbox.secret_scan`). Without git, or outside a repository, every
file is visible (as the copy's walk had it). Since the view shows what is not hidden, a
listing that failed is never used: :class:`ListingFailed`, and the sandbox copies instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agentls.sandbox.copy import PASSTHROUGH_NAMES, SKIP_DIRS, find_passthrough
from agentls.sandbox.secret_scan import secret_paths, spans_containing
from agentls.secret_files import SecretFiles

__all__ = ["Listing", "ListingFailed", "list_view", "topmost"]

_SPECIAL_TYPES = frozenset("psbc")  # find's %y: FIFO, socket, block and character device


class ListingFailed(OSError):
    """The workspace could not be listed completely; the view would show what was missed."""


@dataclass
class Listing:
    """What :func:`list_view` found: what to hide, what to show as it is, and counts."""

    hidden: set[str] = field(default_factory=set)  # relative paths: files or whole trees
    passthrough: list[str] = field(default_factory=list)
    secrets: int = 0  # secret files and links among the visible names (counted, not named)
    links_out: list[str] = field(default_factory=list)  # links that leave the workspace
    dirs: list[str] = field(default_factory=list)  # visible directories ("" is the root)
    source: str = "git"  # "find" outside a repository


def topmost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another one (a hidden tree hides its contents)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if kept and (path == kept[-1] or path.startswith(kept[-1] + "/")):
            continue
        kept.append(path)
    return kept


# -- the programs ------------------------------------------------------------------------


def _memory_file() -> IO[bytes]:
    """A file in memory (the disk may be slow and busy), else a temporary file."""
    try:
        return os.fdopen(os.memfd_create("agentls-listing"), "w+b")
    except (AttributeError, OSError):
        return tempfile.TemporaryFile()


def _split(file: IO[bytes]) -> list[str]:
    file.seek(0)
    # One decode of the whole output (what os.fsdecode does per name, at C speed).
    text = file.read().decode(sys.getfilesystemencoding(), "surrogateescape")
    return [n for n in text.split("\0") if n]


class _Program:
    """A program writing NUL-separated names into memory files (never a pipe, which would
    stall it until read: the programs run side by side)."""

    def __init__(self, argv: list[str], cwd: Path, extra: bool = False) -> None:
        self.out = _memory_file()
        self.extra = _memory_file() if extra else None
        fds = (self.extra.fileno(),) if self.extra is not None else ()
        argv = [a.replace("{extra}", f"/dev/fd/{fds[0]}") if fds else a for a in argv]
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=subprocess.DEVNULL,
            pass_fds=fds,
        )

    def names(self, timeout: float = 120) -> tuple[list[str], list[str]] | None:
        """Its output and extra output, split, or None when it failed."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        try:
            if self.process.returncode != 0:
                return None
            return _split(self.out), _split(self.extra) if self.extra is not None else []
        finally:
            self.out.close()
            if self.extra is not None:
                self.extra.close()


def _start(argv: list[str], cwd: Path, extra: bool = False) -> _Program | None:
    try:
        return _Program(argv, cwd, extra)
    except OSError:
        return None


def _find(root: Path, passthrough: list[str]) -> _Program | None:
    """``find`` over the workspace: regular files' paths on its output; ``TYPE PATH`` for
    every other entry and ``!TYPE PATH`` for each ``.git`` (not entered) on its extra
    output; pass-through directories are neither entered nor printed."""
    find = shutil.which("find")
    if find is None:
        return None
    pruned: list[str] = []
    for rel in passthrough:  # -path takes a glob: escape what the path itself holds
        pruned += ["-o", "-path", re.sub(r"([*?\[\]\\])", r"\\\1", str(root / rel))]
    return _start(
        [
            find,
            str(root),
            "-xdev",  # the overlay does not show what is mounted inside the workspace either
            "-mindepth",
            "1",  # the root itself may have any name
            "-name",
            ".git",
            "-fprintf",
            "{extra}",
            "!%y %P\\0",
            "-prune",
            "-o",
            "(",
            "-false",
            *pruned,
            ")",
            "-prune",
            "-o",
            "-type",
            "f",
            "-printf",
            "%P\\0",
            "-o",
            "-fprintf",
            "{extra}",
            "%y %P\\0",
        ],
        root,
        extra=True,
    )


def _check_ignore(git: str, root: Path, paths: list[str]) -> set[str] | None:
    """Which of ``paths`` git ignores (``git check-ignore``), or None when git failed."""
    try:
        done = subprocess.run(
            [git, "-C", str(root), "check-ignore", "-z", "--stdin"],
            input="\0".join(paths).encode(sys.getfilesystemencoding(), "surrogateescape"),
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode not in (0, 1):  # 1: nothing ignored
        return None
    text = done.stdout.decode(sys.getfilesystemencoding(), "surrogateescape")
    return {n for n in text.split("\0") if n}


# -- sorting what was found ---------------------------------------------------------------


def _ancestors(names: Iterable[str]) -> set[str]:
    """Every directory above the ``names``, the root ("") included."""
    dirs = {""}
    for parent in {n.rpartition("/")[0] for n in names}:
        while parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return dirs


def _skipped(rel: str, through: set[str]) -> str | None:
    """The topmost cache or version-control directory, or ``node_modules`` below the
    pass-through ones, on ``rel``'s way (the copy left their files out), if any."""
    parts = rel.split("/")
    for depth, part in enumerate(parts[:-1]):
        if part in SKIP_DIRS or part in PASSTHROUGH_NAMES:
            top = "/".join(parts[: depth + 1])
            if top not in through:
                return top
    return None


class _Sorter:
    """Turns ``find``'s entries, git's tracked files and its ignore rules into a Listing."""

    def __init__(self, root: Path, out: Listing, git: str | None) -> None:
        self.root = root
        self.out = out
        self.git = git
        self.through = set(out.passthrough)
        self.files: list[str] = []  # visible files and links (judged for secrets)
        self.links: list[str] = []
        self._untracked: tuple[set[str], set[str]] = (set(), set())
        self._index: dict[str, list[str]] | None = None

    def sort(self, found: tuple[list[str], list[str]], tracked: list[str] | None) -> None:
        file_list, others = found
        hidden = self.out.hidden
        dirs: list[str] = []
        links: list[str] = []
        repositories: list[str] = []
        for entry in others:
            if entry[0] == "!":  # a .git: never shown; its directory is a repository
                rel = entry[3:]
                hidden.add(rel)
                if "/" in rel:
                    repositories.append(rel.rpartition("/")[0])
                continue
            kind, rel = entry[0], entry[2:]
            if kind == "d":
                dirs.append(rel)
                name = rel.rpartition("/")[2]
                if name in SKIP_DIRS or (name in PASSTHROUGH_NAMES and rel not in self.through):
                    hidden.add(rel)  # caches; node_modules deeper than the top two levels
            elif kind == "l":
                links.append(rel)
            else:
                hidden.add(rel)  # FIFO, socket, device
        if tracked is None:
            self._no_repository(file_list, links, dirs)
        else:
            self._repository(file_list, links, dirs, repositories, tracked)
        self.out.dirs = ["", *dirs]

    def _no_repository(self, files: list[str], links: list[str], dirs: list[str]) -> None:
        """Every file is visible, as the copy's walk had it; virtualenvs below the top two
        levels are not (the walk did not enter them)."""
        for rel in files:
            if rel == "pyvenv.cfg" or not rel.endswith("/pyvenv.cfg"):
                continue
            venv = rel.rpartition("/")[0]
            if venv not in self.through:
                self.out.hidden.add(venv)
        self.files = self._drop_skipped(files) + links
        self.links = links
        self.out.source = "find"

    def _drop_skipped(self, names: list[str]) -> list[str]:
        """``names`` without those in caches, deeper node_modules or pass-through
        directories (hidden or shown as they are: not judged as files of the view)."""
        text = "\0".join(names)
        prefixes = tuple(p + "/" for p in self.out.passthrough)
        left_out: set[str] = set()
        for start, end in spans_containing(text, [*SKIP_DIRS, *PASSTHROUGH_NAMES]):
            rel = text[start:end]
            top = _skipped(rel, self.through)
            if top is not None:
                self.out.hidden.add(top)
                left_out.add(rel)
            elif rel.startswith(prefixes):
                left_out.add(rel)
        return [n for n in names if n not in left_out] if left_out else names

    def _repository(
        self,
        files: list[str],
        links: list[str],
        dirs: list[str],
        repositories: list[str],
        tracked: list[str],
    ) -> None:
        hidden = self.out.hidden
        tracked_set = set(tracked)
        tracked_dirs = _ancestors(tracked)
        for repository in repositories:
            if repository not in tracked_dirs:
                hidden.add(repository)  # a repository inside this one: none of it is listed
        for rel in dirs:
            if rel in tracked_set:
                hidden.add(rel)  # a submodule: the copy did not hold it either
        # What is not tracked: asked of git, topmost first (set differences run in C).
        untracked = set(files).union(links) - tracked_set
        untracked_dirs = {d for d in dirs if d not in tracked_dirs}
        queue = [e for e in untracked if e.rpartition("/")[0] in tracked_dirs]
        queue += [d for d in untracked_dirs if d.rpartition("/")[0] in tracked_dirs]
        self._untracked = (untracked, untracked_dirs)
        visible = self._judge(queue, untracked_dirs)
        # Tracked files in caches or deeper node_modules stay out, as in the copy.
        link_set = set(links)
        self.files = self._drop_skipped(tracked) + visible
        self.links = [rel for rel in self.files if rel in link_set]

    def _judge(self, queue: list[str], untracked_dirs: set[str]) -> list[str]:
        """Untracked entries git does not ignore (files), looking into directories it does
        not ignore; what it ignores is hidden, a directory as a whole."""
        hidden = self.out.hidden
        visible: list[str] = []
        while queue:
            queue = [e for e in queue if e not in hidden]
            if not queue:
                break
            ignored = _check_ignore(self.git, self.root, queue) if self.git else None
            if ignored is None:  # git could not say: keep it out of sight
                hidden.update(queue)
                break
            inside: list[str] = []
            for rel in queue:
                if rel in ignored:
                    hidden.add(rel)
                elif rel in untracked_dirs:
                    inside += self._children(rel)
                else:
                    visible.append(rel)
            queue = inside
        return visible

    def _children(self, rel_dir: str) -> list[str]:
        """The entries ``find`` saw in an untracked directory git does not ignore (grouped
        by directory once, when first needed: most repositories never need it)."""
        if self._index is None:
            self._index = {}
            files, dirs = self._untracked
            for rel in (*files, *dirs):
                parent = rel.rpartition("/")[0]
                if parent in dirs:
                    self._index.setdefault(parent, []).append(rel)
        return [c for c in self._index.get(rel_dir, ()) if c not in self.through]


def _secret_top(secrets: SecretFiles, rel: str) -> str:
    """The topmost secret directory above ``rel``, else ``rel`` itself (hide that)."""
    parts = rel.split("/")
    for depth in range(1, len(parts)):
        prefix = "/".join(parts[:depth])
        if secrets.matches(prefix, is_dir=True):
            return prefix
    return rel


def list_view(root: Path, secrets: SecretFiles) -> Listing:
    """What to hide from, and pass through into, the view of workspace ``root``."""
    git = shutil.which("git")
    index = _start([git, "-C", str(root), "ls-files", "-z", "-c"], root) if git else None
    out = Listing(passthrough=find_passthrough(root))
    program = _find(root, out.passthrough)
    found = program.names() if program is not None else None
    tracked = index.names() if index is not None else None
    if found is None:
        raise ListingFailed("find could not list the workspace")
    sorter = _Sorter(root, out, git)
    sorter.sort(found, tracked[0] if tracked is not None else None)
    files, links = sorter.files, sorter.links
    # Secret files among the visible names: found fast, judged by the one matcher.
    for rel in secret_paths(secrets, files):
        out.secrets += 1
        out.hidden.add(_secret_top(secrets, rel))
    # Links: hidden when they leave the workspace or lead to a secret (as the tools do).
    real_root = root.resolve()
    judged = set(out.hidden)
    for rel in links:
        if rel in judged:
            continue
        path = root / rel
        try:
            target = path.resolve()
        except (OSError, RuntimeError):  # a loop
            out.hidden.add(rel)
            continue
        if not target.is_relative_to(real_root):
            out.links_out.append(rel)
            out.hidden.add(rel)
        elif secrets.is_secret(path, root, real_root):
            out.secrets += 1
            out.hidden.add(rel)
    out.hidden = set(topmost(out.hidden))
    out.dirs = [d for d in out.dirs if not _under(d, out.hidden)]
    return out


def _under(rel: str, hidden: set[str]) -> bool:
    """Whether ``rel`` is a hidden path or inside one."""
    if not rel:
        return False
    parts = rel.split("/")
    return any("/".join(parts[:depth]) in hidden for depth in range(1, len(parts) + 1))
