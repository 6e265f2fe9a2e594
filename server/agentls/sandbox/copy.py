"""The scratch copy: which files are copied, how, and how staged edits are written over it.

Secret files (``agent.secretFiles``) are judged by :class:`agentls.secret_files.SecretFiles`,
the same matcher the tools use, on every path that puts a file into the copy: the first copy,
and the restore of a file that is no longer staged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agentls.sandbox.config import SandboxError
from agentls.sandbox.isolation import Isolation
from agentls.secret_files import SecretFiles

# One change to the sandbox's files: ("put", rel, text) writes text (None: deletes the file),
# ("restore", rel, None) puts the workspace's own file back (a staged change was dropped).
Change = tuple[str, str, str | None]

__all__ = [
    "PASSTHROUGH_NAMES",
    "SKIP_DIRS",
    "Change",
    "CopyStats",
    "CopyView",
    "copy_target",
    "copy_tree",
    "find_passthrough",
    "put_file",
    "restore_file",
    "safe_rel",
]

# Never copied: version control internals and caches the tools rebuild themselves.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
    }
)
# Not copied but made visible read-only (mount mode) or linked (fallback): too big to copy,
# yet `npm test` needs node_modules and a project's `.venv/bin/python` must keep working.
PASSTHROUGH_NAMES = frozenset({"node_modules"})


def git_files(root: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files under ``root`` (relative), or None."""
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = {os.fsdecode(n) for n in done.stdout.split(b"\0") if n}
    return sorted(names)


def walk_files(root: Path) -> Iterator[str]:
    """Every file under ``root`` (relative), pruning skipped and passthrough directories."""
    for directory, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIP_DIRS
            and d not in PASSTHROUGH_NAMES
            and not (Path(directory, d) / "pyvenv.cfg").exists()
        ]
        rel_dir = Path(directory).relative_to(root)
        for name in files:
            yield (rel_dir / name).as_posix()
        for name in dirs:  # symlinked directories: os.walk lists but does not enter them
            if Path(directory, name).is_symlink():
                yield (rel_dir / name).as_posix()


def find_passthrough(root: Path) -> list[str]:
    """Virtualenvs and node_modules at the top two levels (where projects keep them)."""
    found: list[str] = []
    level = [""]
    for _depth in range(2):
        nxt: list[str] = []
        for rel_dir in level:
            try:
                with os.scandir(root / rel_dir if rel_dir else root) as entries:
                    children = sorted(
                        (e.name, e.path)
                        for e in entries
                        if e.is_dir(follow_symlinks=False) and e.name not in SKIP_DIRS
                    )
            except OSError:
                continue
            for name, path in children:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if name in PASSTHROUGH_NAMES or os.path.isfile(os.path.join(path, "pyvenv.cfg")):
                    found.append(rel)
                else:
                    nxt.append(rel)
        level = nxt
    return found


def safe_rel(rel: str) -> str:
    """A normalised relative path that stays inside the copy, else :class:`SandboxError`."""
    norm = os.path.normpath(rel.replace("\\", "/"))
    if os.path.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
        raise SandboxError(f"staged path {rel!r} is outside the workspace")
    return Path(norm).as_posix()


@dataclass
class CopyStats:
    """What the first copy did: files and bytes copied, what it left out and why."""

    files: int = 0
    bytes: int = 0
    skipped_big: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    skipped_secrets: int = 0  # counted, not named: the names go nowhere


def copy_tree(
    root: Path,
    work: Path,
    *,
    secrets: SecretFiles,
    max_file_bytes: int,
    mount_mode: bool,
    stop: threading.Event,
    stats: CopyStats,
) -> list[str]:
    """Copy the workspace ``root`` into ``work`` (runs in a thread); returns the pass-through
    directories (virtualenvs, node_modules) that were linked or left for the helper to mount.

    Regular files and symlinks that stay inside the workspace are copied; secret files, links
    that leave it, special files (FIFOs, sockets, devices) and files over ``max_file_bytes``
    are not.
    """
    listed = git_files(root)
    names: Iterable[str] = listed if listed is not None else walk_files(root)
    real_root = root.resolve()
    clone = [True]  # reflinks until the file system says it has none
    for rel in names:
        if stop.is_set():
            return []
        parts = rel.split("/")
        if any(p in SKIP_DIRS or p in PASSTHROUGH_NAMES for p in parts[:-1]):
            continue
        source = root / rel
        target = work / rel
        try:
            if secrets.is_secret(source, root, real_root):
                stats.skipped_secrets += 1
                continue
            info = source.lstat()
            if stat.S_ISLNK(info.st_mode):
                # Links that stay inside the workspace become relative links inside the copy;
                # links out of it are left out (as the tools hide them).
                resolved = source.resolve()
                if not resolved.is_relative_to(real_root):
                    stats.skipped_links.append(rel)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                inside = work / resolved.relative_to(real_root)
                os.symlink(os.path.relpath(inside, target.parent), target)
                continue
            if not stat.S_ISREG(info.st_mode):
                continue  # a directory (submodule), FIFO, socket or device: not copied
            if info.st_size > max_file_bytes:
                stats.skipped_big.append(rel)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (clone and _clone(source, target, clone)):
                shutil.copy2(source, target, follow_symlinks=False)
            stats.files += 1
            stats.bytes += info.st_size
        except OSError:
            continue  # vanished or unreadable: the command will see it missing
    passthrough = [rel for rel in find_passthrough(root) if not stop.is_set()]
    for rel in passthrough:
        target = work / rel
        if target.exists() or target.is_symlink():
            continue  # tracked in git (unusual): the copy has it already
        target.parent.mkdir(parents=True, exist_ok=True)
        if mount_mode:
            target.mkdir()  # the helper mounts the real directory here, read-only
        else:
            os.symlink(root / rel, target)
    return passthrough


FICLONE = 0x40049409  # ioctl: share the source's blocks (btrfs, XFS, bcachefs...)
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}


def _clone(source: Path, target: Path, clone: list[bool]) -> bool:
    """Clone ``source`` to ``target`` as a reflink (no data copied, no disk used until either
    changes); False, and ``clone[0]`` off, where the file system cannot."""
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        shutil.copystat(source, target)
        return True
    except OSError as exc:
        if exc.errno in _NO_CLONE:
            clone[0] = False  # ext4, tmpfs, across file systems: copy from now on
        with contextlib.suppress(OSError):
            target.unlink()
        return False


def copy_target(work: Path, rel: str) -> Path:
    """The copy's path for ``rel``, refusing any that a symlink would lead out of it."""
    target = work / rel
    parent = Path(os.path.realpath(target.parent))
    if not parent.is_relative_to(os.path.realpath(work)):
        raise SandboxError(f"staged path {rel!r} leads outside the sandbox")
    return target


def put_file(root: Path, work: Path, rel: str, text: str | None) -> None:
    """Write staged ``text`` at ``rel`` in the copy (None: delete it there)."""
    target = copy_target(work, rel)
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside and rename: replaces a symlink instead of writing through it.
    tmp = target.with_name(f".{target.name}.agentls-tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    with contextlib.suppress(OSError):
        os.chmod(tmp, (root / rel).stat().st_mode & 0o777)  # keep an executable bit
    os.replace(tmp, target)


def restore_file(root: Path, work: Path, rel: str, secrets: SecretFiles) -> None:
    """Put the workspace's own ``rel`` back in the copy (a staged change was dropped).

    A secret file never comes back, even if it was staged (with the model's own text) before.
    """
    target = copy_target(work, rel)
    source = root / rel
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        info = source.lstat()
    except OSError:
        return
    if stat.S_ISREG(info.st_mode) and not secrets.is_secret(source, root):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


class CopyView:
    """The scratch copy: the last resort where the overlay view is not available.

    Same interface as :class:`agentls.sandbox.overlay.OverlayView`: ``start`` makes the copy
    (in a thread), ``apply`` writes staged changes, ``command_wrapper`` is the isolation's own.
    """

    mechanism = "copy"

    def __init__(
        self, root: Path, base: Path, secrets: SecretFiles, max_file_bytes: int, mount_mode: bool
    ) -> None:
        self.root = root
        self.work = base / "work"
        self.secrets = secrets
        self.max_file_bytes = max_file_bytes
        self.mount_mode = mount_mode
        self.stats = CopyStats()
        self.passthrough: list[str] = []

    def start(self, stop: threading.Event) -> None:
        """Copy the workspace (blocking; run it in a thread)."""
        self.passthrough = copy_tree(
            self.root,
            self.work,
            secrets=self.secrets,
            max_file_bytes=self.max_file_bytes,
            mount_mode=self.mount_mode,
            stop=stop,
            stats=self.stats,
        )

    def alive(self) -> bool:
        """Always: the copy is a plain directory."""
        return True

    def refresh(self) -> None:
        """Nothing: the copy is a snapshot of the workspace taken at the first use."""

    def apply(self, changes: Iterable[Change]) -> None:
        """Write, delete or restore files in the copy."""
        for kind, rel, text in changes:
            if kind == "put":
                put_file(self.root, self.work, rel, text)
            else:
                restore_file(self.root, self.work, rel, self.secrets)

    def command_wrapper(self, isolation: Isolation) -> tuple[list[str], dict[str, object]]:
        """The isolation's own wrapper; the helper needs nothing more."""
        return list(isolation.wrapper), {}

    def usage(self) -> int:
        """Bytes of disk the copy takes."""
        total = 0
        for directory, _dirs, files in os.walk(self.work):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(directory, name)).st_blocks * 512
        return total

    def close(self) -> None:
        """Nothing: the sandbox removes its directory, copy and all."""
