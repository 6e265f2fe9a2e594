"""The namespace helper: ``python -I -S helper.py OPTIONS_JSON ARGV...``, run as a script.

Standard library only, and never imported by agentls at run time (the sandbox only needs its
path), so it starts in a few milliseconds. It runs inside new user, network and mount (and,
with the ``unshare`` program, PID) namespaces, or makes them itself with ``unshare(2)`` (after
joining the overlay holder's namespaces with ``setns(2)`` when told to), then:

1. checks that the network namespace holds nothing but loopback, and brings loopback up;
2. with ``fs`` on, builds a **new root** on an empty tmpfs, bubblewrap-style: read-only binds
   of an allowlist (``/usr``, ``/bin``, ``/lib*``, the few ``/etc`` entries programs need, the
   toolchains it is told to expose), the workspace view (overlay or copy) read-write at the
   workspace path, the sandbox's own directory (its home and temp), private ``/tmp`` and
   ``/var/tmp``, a minimal ``/dev``, ``/proc``, and a generated ``/etc/passwd``; then
   ``pivot_root``s into it and detaches the old root, so nothing else on the disk (``/etc``,
   other projects, the home directory) exists for the command;
3. drops every capability (the command is uid 0 of its user namespace and could otherwise
   unmount or remount what hides the disk), sets resource limits and execs the command.

In probe mode (``{"probe": true}``) it does 1 and 2 and prints what worked as JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
MNT_DETACH = 2
# statvfs flags -> mount flags: a remount in a user namespace must keep the locked ones.
ST_TO_MS = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 16: 16, 1024: 1024, 2048: 2048, 4096: 1 << 21}
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x10000000, 0x40000000
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
SYS_PIVOT_ROOT = {"x86_64": 155, "amd64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41}

# Shown read-only when present (symlinks, as in merged-/usr systems, are recreated as links).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The /etc entries programs need: the dynamic loader, locale and time zone, TLS roots (the
# certificates, never ssl/private), name service configuration (no passwd: a generated one
# stands in), Debian's alternatives and Python's configuration. Not there: shadow, ssh,
# pip/npm configuration (tokens), /etc/environment (proxy passwords), everything else.
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "localtime",
    "timezone",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/tls/cert.pem",
    "pki/tls/openssl.cnf",
    "pki/ca-trust",
    "crypto-policies",
    "alternatives",
    "nsswitch.conf",
    "host.conf",
    "hosts",
    "gai.conf",
    "protocols",
    "services",
    "mime.types",
    "os-release",
    "python3",
)
# Character devices a command may use; bound from the host's /dev (a user namespace cannot
# create device nodes).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

libc = ctypes.CDLL(None, use_errno=True)


def fail(message: str) -> None:
    """Report on stderr and exit 126 (the command did not run)."""
    sys.stderr.write("agentls sandbox: " + message + "\n")
    sys.stderr.flush()
    os._exit(126)


def check(rc: int, what: str) -> None:
    """Raise OSError with errno for a failed libc call."""
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, what + ": " + os.strerror(errno))


def _enc(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    src: str | None, target: str, flags: int, fstype: str | None = None, data: str | None = None
) -> None:
    """mount(2)."""
    rc = libc.mount(_enc(src), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data))
    check(rc, "mount " + target)


def join(pid: int) -> None:
    """Enter the overlay holder's user namespace (when it has its own) and mount namespace,
    where the workspace's view is mounted (``holder.py``)."""
    for kind, flag in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS)):
        path = f"/proc/{pid}/ns/{kind}"
        if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            check(libc.setns(fd, flag), "setns " + kind)
        finally:
            os.close(fd)


def self_unshare(joined: bool = False) -> None:
    """New user, network and mount namespaces, mapping our uid and gid to root inside; after
    :func:`join`, only network and mount (we are root in the holder's user namespace)."""
    if joined:
        check(libc.unshare(CLONE_NEWNET | CLONE_NEWNS), "unshare")
        return
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open("/proc/self/" + name, "w") as f:
            f.write(text)


def net_isolated() -> bool:
    """Whether loopback is the only network interface in sight."""
    return all(name == "lo" for _, name in socket.if_nameindex())


def lo_up() -> None:
    """Bring loopback up (SIOCGIFFLAGS, SIOCSIFFLAGS), so 127.0.0.1 works inside."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, 0x8913, request))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))


def under(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or below it."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, in mount order (octal escapes decoded)."""
    with open("/proc/self/mountinfo") as f:
        return [
            re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            for line in f
        ]


def remount_readonly(point: str) -> None:
    """Make one mount read-only, keeping the flags the kernel locks in a user namespace."""
    flags = 0
    stat_flags = os.statvfs(point).f_flag
    for st, ms in ST_TO_MS.items():
        if stat_flags & st:
            flags |= ms
    mount(None, point, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


class NewRoot:
    """The tree the command will see, built under ``top`` (a fresh tmpfs) before pivot_root.

    Entries are only ever created on the new root's own tmpfs, the private temp directories or
    the sandbox's writable directories, never inside a bind of a host directory (that would
    create them on the host), and never through a symlink (which could lead out of the tree).
    """

    def __init__(self, top: str) -> None:
        self.top = top.rstrip("/")
        self.creatable: list[str] = ["/"]  # mounts (as seen inside) where entries may be made
        self.writable: list[str] = ["/proc"]  # mounts that stay read-write
        self.bound: list[str] = []  # binds of host paths: read-only, nothing created inside

    def inside(self, path: str) -> str:
        """Where ``path`` (absolute, as the command will see it) is in the tree being built."""
        return self.top + path if path != "/" else self.top

    def _creatable(self, path: str) -> bool:
        # The deepest mount at or above ``path`` decides.
        best, allowed = "", False
        for tops, verdict in ((self.creatable, True), (self.bound, False)):
            for top in tops:
                if under(path, top) and len(top) >= len(best):
                    best, allowed = top, verdict
        return allowed

    def make(self, path: str, is_dir: bool) -> bool:
        """Create ``path`` and its parents as a mount point; False when it cannot be made."""
        parts = [p for p in path.split("/") if p]
        current = ""
        for index, part in enumerate(parts):
            current += "/" + part
            target = self.inside(current)
            last = index == len(parts) - 1
            if os.path.islink(target):
                return False
            if os.path.lexists(target):
                if not last and not os.path.isdir(target):
                    return False
                continue
            if not self._creatable(current):
                return False
            if last and not is_dir:
                with open(target, "w"):
                    pass
            else:
                os.mkdir(target, 0o755)
        return os.path.isdir(self.inside(path)) == is_dir

    def tmpfs(self, path: str, mode: str = "1777", size: str = "1g") -> None:
        """A fresh, private, writable tmpfs at ``path``."""
        if not self.make(path, True):
            raise OSError(2, f"cannot make a mount point for {path}")
        target = self.inside(path)
        mount("tmpfs", target, MS_NOSUID | MS_NODEV, "tmpfs", f"mode={mode},size={size}")
        self.creatable.append(path)
        self.writable.append(path)

    def bind(self, source: str | int, path: str, *, writable: bool = False) -> bool:
        """Bind ``source`` (a host path, or an ``O_PATH`` fd) at ``path``.

        Host paths are bound with their submounts and made read-only by :meth:`seal`; the
        sandbox's own directories (fds) are bound alone, read-write. False when ``path``
        cannot be made (a symlink in the way, or inside another read-only bind).
        """
        src = f"/proc/self/fd/{source}" if isinstance(source, int) else source
        if not self.make(path, os.path.isdir(src)):
            return False
        mount(src, self.inside(path), MS_BIND | (0 if writable else MS_REC))
        if writable:
            self.writable.append(path)
            self.creatable.append(path)
        else:
            self.bound.append(path)
        return True

    def show(self, path: str) -> None:
        """Show the host's ``path`` as it is: a symlink is recreated, anything else bound."""
        if os.path.islink(path):
            target = self.inside(path)
            made = self.make(os.path.dirname(path), True) and self._creatable(path)
            if made and not os.path.lexists(target):
                os.symlink(os.readlink(path), target)
        elif os.path.exists(path):
            self.bind(path, path)

    def write(self, path: str, text: str) -> None:
        """A generated file (read-only once the root is sealed)."""
        if self.make(path, False):
            with open(self.inside(path), "w") as f:
                f.write(text)

    def seal(self) -> None:
        """Remount every bind of a host path read-only (with its submounts)."""
        rules = [(top, True) for top in self.writable] + [(top, False) for top in self.bound]
        for point in mount_points():
            if not under(point, self.top) or point == self.top:
                continue
            path = point[len(self.top) :]
            owners = [rule for rule in rules if under(path, rule[0])]
            if owners and max(owners, key=lambda rule: len(rule[0]))[1]:
                continue
            try:
                remount_readonly(point)
            except OSError as exc:
                # A mount hidden under another cannot be reached and needs no remount; any
                # other failure would leave a host directory writable: fail closed.
                if exc.errno not in (2, 13):
                    raise


def passwd_files(home: str) -> dict[str, str]:
    """/etc/passwd and /etc/group naming only the command's own user and nobody."""
    uid, gid = os.getuid(), os.getgid()
    name = "root" if uid == 0 else "agentls"
    group = "root" if gid == 0 else "agentls"
    passwd = f"{name}:x:{uid}:{gid}:{name}:{home}:/bin/sh\n"
    passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    groups = f"{group}:x:{gid}:\nnogroup:x:65534:\n"
    return {"/etc/passwd": passwd, "/etc/group": groups}


def build_root(opts: dict[str, Any]) -> NewRoot:
    """Everything the command sees, under ``opts["newroot"]``, sealed read-only."""

    # Hold the sandbox's directories by fd: their paths may be under /tmp, which the new root
    # replaces with a private tmpfs before they are bound back.
    def hold(path: str) -> int:
        return os.open(path, os.O_PATH | os.O_DIRECTORY)

    root = opts.get("root")
    own: list[tuple[str, int, bool]] = [(opts["keep"], hold(opts["keep"]), True)]
    if root:
        own.append((root, hold(opts["work"]), True))
        own += [
            (os.path.join(root, rel), hold(os.path.join(root, rel)), False)
            for rel in opts.get("passthrough", [])
        ]
    mount(None, "/", MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    new = NewRoot(opts["newroot"])
    mount("tmpfs", new.top, MS_NOSUID | MS_NODEV, "tmpfs", "mode=755,size=16m")
    for path in SYSTEM_PATHS:
        new.show(path)
    for entry in ETC_ENTRIES:
        new.show("/etc/" + entry)
    new.tmpfs("/tmp")
    new.tmpfs("/var/tmp")
    # Toolchains and the sandbox's own directories, parents before children so that a deeper
    # bind is not hidden by a later one above it.
    binds: list[tuple[str, str | int, bool]] = [
        (path, os.path.realpath(path), False)
        for path in opts.get("expose", [])
        if os.path.exists(path)
    ]
    binds += [(path, fd, writable) for path, fd, writable in own]
    for path, source, writable in sorted(binds, key=lambda b: (b[0].count("/"), b[0])):
        if not new.bind(source, path, writable=writable) and isinstance(source, int):
            raise OSError(2, f"cannot show {path} in the sandbox")
    # Credential files inside the toolchains read as empty (/dev/null bound over them).
    for path in opts.get("mask", []):
        target = new.inside(path)
        if os.path.isfile(target) and not os.path.islink(target):
            mount("/dev/null", target, MS_BIND)
    for _path, fd, _writable in own:
        os.close(fd)
    new.tmpfs("/dev", mode="755", size="1m")
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            new.bind("/dev/" + name, "/dev/" + name, writable=True)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, new.inside("/dev/" + name))
    new.tmpfs("/dev/shm")
    # This mount namespace's /proc: the PID namespace's own when unshare made one.
    if new.make("/proc", True):
        mount("/proc", new.inside("/proc"), MS_BIND | MS_REC)
    for path, text in passwd_files(opts.get("home") or opts["keep"]).items():
        new.write(path, text)
    new.seal()
    return new


def pivot(new: NewRoot) -> None:
    """Make ``new`` the root and detach the old one entirely."""
    os.chdir(new.top)
    number = SYS_PIVOT_ROOT.get(platform.machine().lower())
    if number is not None:
        check(libc.syscall(ctypes.c_long(number), b".", b"."), "pivot_root")
        # The old root is now stacked on the new one at '/': detach it.
        check(libc.umount2(b".", MNT_DETACH), "umount old root")
    else:  # an architecture without a known syscall number: move the tree over '/'
        mount(".", "/", MS_MOVE)
        os.chroot(".")
    os.chdir("/")
    remount_readonly("/")


def drop_capabilities() -> None:
    """No capabilities now or after exec: the command cannot unmount, remount or mount."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: twice 32 bits, all 0
    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")


def setup(opts: dict[str, Any]) -> bool:
    """Namespaces, network check, file system; returns whether the new root is in place."""
    if opts.get("join"):
        join(int(opts["join"]))
    if opts.get("self_unshare"):
        self_unshare(joined=bool(opts.get("join")))
    if not net_isolated():
        fail("the command is not in a private network namespace")
    # If loopback stays down, connections to 127.0.0.1 fail, which is still isolated.
    with contextlib.suppress(OSError):
        lo_up()
    if not opts.get("fs"):
        return False
    pivot(build_root(opts))
    return True


def set_limits(opts: dict[str, Any]) -> None:
    """Process count, file size and core dump limits (never above the current hard limit)."""
    import resource

    limits = (
        (resource.RLIMIT_NPROC, opts["nproc"]),
        (resource.RLIMIT_FSIZE, opts["fsize"]),
        (resource.RLIMIT_CORE, 0),
    )
    for res, value in limits:
        _soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(res, (value, value))


def probe(opts: dict[str, Any], report: Callable[[str], object] = print) -> None:
    """Try the setup and report ``{"net": ..., "fs": ..., "error": ...}`` as JSON."""
    result: dict[str, Any] = {"net": False, "fs": False, "error": ""}
    try:
        result["fs"] = setup(opts)
        drop_capabilities()  # as before every command: a machine where it fails is found now
        result["net"] = True
    except Exception as exc:
        result["error"] = str(exc)
        result["net"] = net_isolated()
    report(json.dumps(result))


def main(args: Sequence[str]) -> None:
    """Set up the sandbox described by ``args[0]`` (JSON) and exec ``args[1:]``."""
    opts: dict[str, Any] = json.loads(args[0])
    argv = list(args[1:])
    if opts.get("probe"):
        probe(opts)
        sys.stdout.flush()
        os._exit(0)
    try:
        setup(opts)
        if opts.get("nproc"):
            set_limits(opts)
        os.chdir(opts["cwd"])
        drop_capabilities()
    except OSError as exc:
        fail(f"cannot set up the sandbox: {exc}")
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"agentls sandbox: cannot run {argv[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
