"""What of the workspace a sandboxed command may see, found without copying anything.

The overlay view shows the workspace itself (read-only, under the staged edits) minus what
:func:`list_view` says to hide. What stays visible is exactly what the scratch copy used to
hold: git's view of the workspace (tracked files and untracked files that are not ignored;
every file when it is not a repository) minus version-control internals and caches, secret
files (``agent.secretFiles``, judged by the one matcher), links that leave the workspace or
lead to a secret, special files (FIFOs, sockets: a socket could reach a server outside the
sandbox) and nested repositories; plus the pass-through directories (virtualenvs,
``node_modules``), shown as they are.

The listing costs about what ``git ls-files`` costs: three programs run side by side, writing
into memory files (tracked and untracked files; ignored entries, a whole ignored directory as
one line, not entered; ``find`` for directories, links and special files, pruning ``.git`` and
the pass-through directories), and the secret check runs once over all names
(:mod:`agentls.sandbox.secret_scan`). (``find`` cannot skip ignored trees itself: naming
build directories to prune costs it more per entry than the walk it saves.)
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

__all__ = ["Listing", "list_view", "topmost"]

_SPECIAL_TYPES = frozenset("psbc")  # find's %y: FIFO, socket, block and character device


@dataclass
class Listing:
    """What :func:`list_view` found: what to hide, what to show as it is, and counts."""

    hidden: set[str] = field(default_factory=set)  # relative paths: files or whole trees
    passthrough: list[str] = field(default_factory=list)
    secrets: int = 0  # secret files and links among the visible names (counted, not named)
    links_out: list[str] = field(default_factory=list)  # links that leave the workspace
    dirs: list[str] = field(default_factory=list)  # visible directories ("" is the root)
    source: str = "git"  # or "walk"


def topmost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another one (a hidden tree hides its contents)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if kept and (path == kept[-1] or path.startswith(kept[-1] + "/")):
            continue
        kept.append(path)
    return kept


class _Program:
    """A program writing NUL-separated names into temporary files (never a pipe, which
    would stall it until read: the programs run side by side)."""

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


def _start(argv: list[str], cwd: Path, extra: bool = False) -> _Program | None:
    try:
        return _Program(argv, cwd, extra)
    except OSError:
        return None


def _names(program: _Program | None) -> list[str] | None:
    result = program.names() if program is not None else None
    return result[0] if result is not None else None


def _find_argv(root: Path, prune: list[str]) -> list[str] | None:
    """``find`` printing directories, links, special files and nested ``.git`` entries as
    ``TYPE PATH``."""
    find = shutil.which("find")
    if find is None:
        return None
    pruned: list[str] = []
    for rel in prune:  # -path takes a glob: escape what the path itself holds
        pruned += ["-o", "-path", re.sub(r"([*?\[\]\\])", r"\\\1", str(root / rel))]
    return [
        find,
        str(root),
        "-xdev",  # the overlay does not show what is mounted inside the workspace either
        "(",
        "-name",
        ".git",
        "-printf",
        "%y %P\\0",
        "-prune",
        ")",
        "-o",
        "(",
        "-false",
        *pruned,
        ")",
        "-prune",
        "-o",
        "(",
        "-type",
        "d",
        "-o",
        "-type",
        "l",
        "-o",
        "-type",
        "p",
        "-o",
        "-type",
        "s",
        "-o",
        "-type",
        "b",
        "-o",
        "-type",
        "c",
        ")",
        "-printf",
        "%y %P\\0",
    ]


def _walk(root: Path, passthrough: set[str], out: Listing) -> tuple[list[str], list[str]]:
    """Files and links under ``root`` (no git); hides caches, extra pass-through-like
    directories and special files as it goes. Returns (files and links, links)."""
    files: list[str] = []
    links: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        out.dirs.append(rel_dir)
        try:
            entries = list(os.scandir(root / rel_dir if rel_dir else root))
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_symlink():
                    links.append(rel)
                    files.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name in SKIP_DIRS:
                        out.hidden.add(rel)
                    elif rel in passthrough:
                        continue  # shown as it is
                    elif entry.name in PASSTHROUGH_NAMES or os.path.isfile(
                        os.path.join(entry.path, "pyvenv.cfg")
                    ):
                        out.hidden.add(rel)  # deeper than pass-through directories are found
                    else:
                        stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    files.append(rel)
                else:
                    out.hidden.add(rel)  # FIFO, socket, device
            except OSError:
                continue
    return files, links


def _ending_with_slash(text: str) -> list[str]:
    """The NUL-separated names in ``text`` that end with '/' (git's nested repositories)."""
    found: list[str] = []
    padded = text + "\0"
    position = 0
    while (index := padded.find("/\0", position)) >= 0:
        found.append(padded[padded.rfind("\0", 0, index) + 1 : index + 1])
        position = index + 2
    return found


def _hide_skipped(rel: str, out: Listing) -> bool:
    """Hide the topmost cache, version-control or deeper ``node_modules`` directory on
    ``rel``'s way, if any (the copy left their files out too)."""
    parts = rel.split("/")
    for depth, part in enumerate(parts[:-1]):
        if part in SKIP_DIRS or part in PASSTHROUGH_NAMES:
            out.hidden.add("/".join(parts[: depth + 1]))
            return True
    return False


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
    base = [git, "-C", str(root), "ls-files", "-z"] if git else []
    listed = _start([*base, "--cached", "--others", "--exclude-standard"], root) if git else None
    ignored = (
        _start([*base, "--others", "--ignored", "--exclude-standard", "--directory"], root)
        if git
        else None
    )
    # While git walks: the pass-through directories, which find does not need to enter.
    out = Listing(passthrough=find_passthrough(root))
    through = set(out.passthrough)
    through_prefixes = tuple(p + "/" for p in out.passthrough)
    find_argv = _find_argv(root, out.passthrough)
    found = _start(find_argv, root) if find_argv and git else None
    names = _names(listed)
    ignored_names = _names(ignored)
    found_names = _names(found)
    files: list[str] = []
    links: list[str] = []
    text: str | None = None  # "\0".join(files), once made
    if names is None or ignored_names is None or found_names is None:
        out.source = "walk"
        files, links = _walk(root, through, out)
    else:
        for rel in ignored_names:
            rel = rel.rstrip("/")
            if rel not in through and not rel.startswith(through_prefixes):
                out.hidden.add(rel)
        # Only names holding a cache or pass-through directory's name need a closer look.
        looks = [*SKIP_DIRS, *PASSTHROUGH_NAMES, *out.passthrough]
        text = "\0".join(names)
        left_out = {
            rel
            for rel in (text[a:b] for a, b in spans_containing(text, looks))
            if rel.startswith(through_prefixes) or _hide_skipped(rel, out)
        }
        # Untracked repositories inside this one are listed as "name/".
        for rel in _ending_with_slash(text):
            out.hidden.add(rel.rstrip("/"))
            left_out.add(rel)
        files = [rel for rel in names if rel not in left_out] if left_out else names
        if left_out:
            text = "\0".join(files)
        visible: set[str] | None = None
        for line in found_names:
            kind, _, rel = line.partition(" ")
            if kind == "d" and rel != ".git" and not rel.endswith("/.git"):
                out.dirs.append(rel)  # "" is the root
            elif not rel:
                continue
            elif kind == "l":
                visible = set(files) if visible is None else visible
                if rel in visible:  # links in hidden trees stay hidden with them
                    links.append(rel)
            elif rel == ".git" or rel.endswith("/.git"):
                out.hidden.add(rel.rpartition("/")[0] or ".git")  # the repository's own
            elif kind in _SPECIAL_TYPES:
                out.hidden.add(rel)
    if os.path.lexists(root / ".git"):
        out.hidden.add(".git")
    # Secret files among the visible names: found fast, judged by the one matcher.
    for rel in secret_paths(secrets, files, text):
        out.secrets += 1
        out.hidden.add(_secret_top(secrets, rel))
    # Links: hidden when they leave the workspace or lead to a secret (as the tools do).
    real_root = root.resolve()
    judged = set(out.hidden)
    for rel in links:
        if rel in judged or rel.startswith(through_prefixes):
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
