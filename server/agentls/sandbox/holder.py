"""The overlay holder: ``python -I -S holder.py OPTIONS_JSON``, one process per sandbox.

Standard library only and run by path, like ``helper.py``. It makes new user and mount
namespaces (mount only, as real root where user namespaces are off) and keeps them alive for
the sandbox's life. In them, on a private tmpfs (``layers``), it keeps the overlay's layers:

* ``hideN``: a lower layer of whiteouts, one per path the command must not see (secret files,
  ignored and cache directories, special files...), above the workspace itself;
* ``upper``: the writable layer: the staged edits and whatever commands write;
* ``work``: the overlay's work directory.

The merged view is mounted at ``mount`` (the sandbox's ``work`` directory, which outside
these namespaces stays empty). Commands join these namespaces (``nsenter``, or the helper's
``setns``) and see it there; the server reads it through ``/proc/PID/root``.

Requests are JSON lines on stdin, each answered by one JSON line on stdout:

* ``{"op": "mount", "hide": [...]}``: (re)mount the view with these paths hidden;
* ``{"op": "sync", "ops": [...]}``: write (``put``, ``restore``) or remove (``delete``)
  files in the view, in a child chrooted into it, so no symlink can lead a write out;
* ``{"op": "usage"}``: bytes the layers hold.

At EOF on stdin (the sandbox was closed, or the server died) it exits, and its mounts go with
its namespaces; the tmpfs frees its memory. If the layers cannot live on a tmpfs (an old
kernel's tmpfs without user extended attributes), they go on disk in ``layers``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import stat
import sys
from typing import Any

MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUSER = 0x20000, 0x10000000

libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _enc(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2)."""
    rc = libc.mount(_enc(src), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data))
    _check(rc, f"mount {fstype or ''} on {target}")


def umount(target: str) -> None:
    """umount2(2), detached."""
    _check(libc.umount2(_enc(target), MNT_DETACH), f"umount {target}")


def namespaces() -> bool:
    """New user and mount namespaces (our uid is root inside); mount only as real root
    where user namespaces are not allowed. Returns whether a user namespace was made."""
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open("/proc/self/" + name, "w") as f:
                f.write(text)
        userns = True
    else:
        _check(libc.unshare(CLONE_NEWNS) if uid == 0 else -1, "unshare")
        userns = False
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)  # nothing propagates to the host
    return userns


def safe(rel: str) -> str:
    """A relative path that stays inside the tree it is joined to."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise OSError(22, f"bad path {rel!r}")
    return rel


class Holder:
    """The layers and the mounted view of one sandbox."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.lower: str = opts["lower"]
        self.target: str = opts["mount"]
        self.layers: str = opts["layers"]
        self.size = int(opts["size"])
        self.userns = False
        self.on_tmpfs = False
        self.generation = 0
        self.mounted = False

    def start(self) -> None:
        """Namespaces, then the layers' tmpfs (checked by a first, empty mount)."""
        self.userns = namespaces()
        try:
            mount("tmpfs", self.layers, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=700,size={self.size}")
            self.on_tmpfs = True
            self._prepare()
            self.mount_view([])
        except OSError:
            if self.on_tmpfs:
                self._unmount_all()
                umount(self.layers)
                self.on_tmpfs = False
            self._prepare()  # on disk, in the sandbox's own directory
            self.mount_view([])

    def _prepare(self) -> None:
        for name in ("upper", "work"):
            os.makedirs(os.path.join(self.layers, name), exist_ok=True)

    def _unmount_all(self) -> None:
        if self.mounted:
            umount(self.target)
            self.mounted = False

    def mount_view(self, hide: list[str]) -> None:
        """Mount the view afresh with ``hide`` whited out (the upper layer carries over)."""
        self.generation += 1
        hide_dir = os.path.join(self.layers, f"hide{self.generation}")
        os.mkdir(hide_dir, 0o755)
        for rel in hide:
            path = os.path.join(hide_dir, safe(rel))
            os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
        # Layers by file descriptor: no path of ours needs escaping for the option string.
        fds = [
            os.open(p, os.O_PATH | os.O_DIRECTORY)
            for p in (hide_dir, self.lower, os.path.join(self.layers, "upper"))
        ]
        fds.append(os.open(os.path.join(self.layers, "work"), os.O_PATH | os.O_DIRECTORY))
        hide_fd, lower_fd, upper_fd, work_fd = (f"/proc/self/fd/{fd}" for fd in fds)
        data = f"lowerdir={hide_fd}:{lower_fd},upperdir={upper_fd},workdir={work_fd}"
        try:
            self._unmount_all()
            try:
                mount(
                    "overlay",
                    self.target,
                    "overlay",
                    MS_NOSUID | MS_NODEV,
                    data + (",userxattr" if self.userns else ""),
                )
            except OSError:
                if not self.userns:
                    raise
                mount("overlay", self.target, "overlay", MS_NOSUID | MS_NODEV, data)
            self.mounted = True
        finally:
            for fd in fds:
                os.close(fd)
        for name in os.listdir(self.layers):
            if name.startswith("hide") and name != f"hide{self.generation}":
                shutil.rmtree(os.path.join(self.layers, name), ignore_errors=True)

    def sync(self, ops: list[list[Any]]) -> list[list[str]]:
        """Apply ``ops`` in a child chrooted into the view; returns [path, error] pairs."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read)
            errors: list[list[str]] = []
            try:
                os.chroot(self.target)
                os.chdir("/")
                for op in ops:
                    try:
                        apply(op)
                    except OSError as exc:
                        errors.append([str(op[1]), exc.strerror or str(exc)])
            except Exception as exc:
                errors.append(["", str(exc)])
            with os.fdopen(write, "w") as f:
                f.write(json.dumps(errors))
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            text = f.read()
        os.waitpid(pid, 0)
        result: list[list[str]] = json.loads(text) if text else [["", "the sync child died"]]
        return result

    def usage(self) -> int:
        """Bytes the layers hold (the upper layer: staged edits and what commands wrote)."""
        if self.on_tmpfs:
            info = os.statvfs(self.layers)
            return (info.f_blocks - info.f_bfree) * info.f_frsize
        total = 0
        for directory, _dirs, files in os.walk(os.path.join(self.layers, "upper")):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(directory, name)).st_blocks * 512
        return total


def apply(op: list[Any]) -> None:
    """One change inside the chrooted view: ``put`` text, ``restore`` bytes, ``delete``."""
    kind, rel = op[0], "/" + safe(op[1])
    if kind == "delete" or (kind == "restore" and op[2] is None):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rel)
        return
    if kind == "put":
        data, mode, mtime = op[2].encode("utf-8"), op[3], None
    elif kind == "restore":
        data, mode, mtime = base64.b64decode(op[2]), op[3], op[4]
    else:
        raise OSError(22, f"unknown change {kind!r}")
    parent, name = os.path.split(rel)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        if _link_on_the_way(parent):
            raise OSError(exc.errno, "a link on its way leads outside the sandbox") from exc
        raise
    # Write beside and rename: replaces a link instead of writing through it.
    tmp = os.path.join(parent, f".{name}.agentls-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    if mtime is not None:
        os.utime(tmp, ns=(mtime, mtime))
    os.replace(tmp, rel)


def _link_on_the_way(path: str) -> bool:
    """Whether a component of ``path`` (absolute, in the view) is a symbolic link."""
    current = ""
    for part in path.strip("/").split("/"):
        current += "/" + part
        if os.path.islink(current):
            return True
    return False


def serve(holder: Holder) -> None:
    """Answer requests until EOF on stdin."""
    out = sys.stdout
    for line in sys.stdin:
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "mount":
                holder.mount_view(list(request["hide"]))
                reply: dict[str, Any] = {"ok": True}
            elif op == "sync":
                reply = {"ok": True, "errors": holder.sync(request["ops"])}
            elif op == "usage":
                reply = {"ok": True, "bytes": holder.usage()}
            else:
                reply = {"error": f"unknown request {op!r}"}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reply = {"error": str(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main(args: list[str]) -> None:
    """Set up the namespaces and layers, report, then serve until EOF."""
    holder = Holder(json.loads(args[0]))
    try:
        holder.start()
    except OSError as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        sys.stdout.flush()
        os._exit(1)
    ready = {"ok": True, "userns": holder.userns, "tmpfs": holder.on_tmpfs}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    serve(holder)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
