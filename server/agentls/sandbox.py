"""Run one allowed command on a scratch copy of the workspace, with the agent's edits applied.

A leaf module (standard library and pydantic only): the ``bash`` tool and the edit verifier
both drive it. One :class:`Sandbox` belongs to one agent run:

* **Scratch copy.** The workspace is copied once (git's view of it when it is a repository:
  tracked and untracked files, ``.gitignore`` respected; ``.git``, caches and huge files
  left out), staged edits are written over it, and later :meth:`Sandbox.sync` calls rewrite
  only the files whose staged text changed. :meth:`Sandbox.aclose` removes it all.
* **Command line.** Parsed, never handed to a shell: any shell syntax that could chain,
  pipe, redirect, substitute or expand is refused with a message naming it, argv must start
  with an allowed prefix (``pytest``, ``npm test``...), and arguments may not name paths
  outside the workspace. The argv is exec'd directly in a new session.
* **Isolation.** Where the machine allows it the command runs in new user, network, mount
  and PID namespaces (``unshare``, else ``unshare(2)`` from a tiny helper): no network
  interface but a private loopback; the scratch copy mounted over the workspace path
  (so editable installs and absolute paths see the edits, not the user's files); every
  other mount read-only; an empty private ``/tmp`` and ``/run`` (no agent, tmux or docker
  sockets); its own ``/proc``. The environment is scrubbed of secrets and ``HOME`` points
  into the sandbox.
* **Limits.** A timeout kills the whole process group (and the PID namespace with it);
  output is read as it comes, only head and tail are kept, and a hard cap stops a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentls.settings import DEFAULT_ALLOWED_COMMANDS

__all__ = [
    "DEFAULT_ALLOWED_COMMANDS",
    "CommandRefused",
    "CommandResult",
    "Isolation",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "check_command",
    "detect_isolation",
    "scrubbed_env",
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

NO_NETWORK = "network isolation is unavailable"


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message is meant for the model and the user."""


class CommandRefused(SandboxError):
    """The command line is not allowed; the message names what is not allowed."""


class SandboxConfig(BaseModel):
    """What one sandbox allows; the ``bash`` tool builds it from the user's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_commands: tuple[str, ...] = DEFAULT_ALLOWED_COMMANDS
    timeout: float = Field(60.0, gt=0)
    require_network_isolation: bool = True
    kill_grace: float = Field(0.5, ge=0, description="SIGTERM to SIGKILL, seconds.")
    output_head: int = Field(8192, ge=0, description="Bytes of output kept from the start.")
    output_tail: int = Field(8192, ge=0, description="Bytes of output kept from the end.")
    max_output_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Output beyond this stops the command."
    )
    max_file_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Bigger files are not copied.")
    exclude: tuple[str, ...] = Field(
        (), description="Globs of files never copied (secret files), '!' to re-include."
    )
    max_file_size_limit: int = Field(
        2 * 1024**3, gt=0, description="RLIMIT_FSIZE: the largest file a command may write."
    )
    max_processes: int = Field(
        4096, gt=0, description="RLIMIT_NPROC (per user; not enforced by the kernel for root)."
    )

    @field_validator("allowed_commands")
    @classmethod
    def _parse_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not shlex.split(prefix):
                raise ValueError(f"empty command prefix {prefix!r}")
        return value


@dataclass(frozen=True)
class CommandResult:
    """How one command ended. ``output`` is stdout and stderr interleaved, maybe truncated."""

    exit_code: int | None  # negative: killed by that signal
    output: str
    timed_out: bool
    duration: float
    network_isolated: bool
    output_bytes: int = 0  # everything the command wrote, even what was dropped
    truncated: bool = False
    output_limit_hit: bool = False  # the command was stopped for writing too much
    filesystem_protected: bool = False  # everything outside the copy was read-only
    argv: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the model and logs: exit code, time, and why it ended if unusual."""
        if self.timed_out:
            head = (
                f"timed out after {self.duration:.1f} s; the command and its children were killed"
            )
        elif self.output_limit_hit:
            head = (
                f"stopped after {self.output_bytes:,} bytes of output "
                f"(exit code {self.exit_code}, {self.duration:.1f} s)"
            )
        else:
            head = f"exit code {self.exit_code} ({self.duration:.1f} s)"
        if not self.network_isolated:
            head += f"; {NO_NETWORK}, the command had network access"
        return head


# --------------------------------------------------------------------------------------
# Command-line checks
# --------------------------------------------------------------------------------------

_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = {
    ";": "';' (command separator)",
    "&": "'&' (background or '&&' chaining)",
    "|": "'|' (pipe or '||' chaining)",
    ">": "'>' (output redirection)",
    "<": "'<' (input redirection)",
    "(": "'(' (subshell)",
    ")": "')' (subshell)",
    "\n": "a newline (a second command)",
    "\r": "a carriage return",
}


def _shell_syntax(command: str) -> str | None:
    """The first piece of shell syntax in ``command`` a shell would act on, described.

    Quoting is honoured as a shell would: inside single quotes nothing is special; inside
    double quotes ``$`` and backticks still are. Nothing runs through a shell, but refusing
    these keeps "what the model wrote" equal to "what ran" and tells the model why.
    """
    quote: str | None = None
    i = 0
    word_start = True
    while i < len(command):
        c = command[i]
        nxt = command[i + 1] if i + 1 < len(command) else ""
        if c in "\n\r":
            return _OPERATORS[c]  # a newline ends a command even inside quotes for our purpose
        if quote == "'":
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "\\":
            i += 2
            word_start = False
            continue
        if c == "`":
            return "backticks (command substitution)"
        if c == "$":
            if nxt == "(":
                return "'$(...)' (command substitution)"
            if nxt == "{" or nxt == "_" or nxt.isalnum() or nxt in "?!@*#$-":
                return "'$' variable expansion"
        if quote == '"':
            if c == '"':
                quote = None
            i += 1
            continue
        if c in "'\"":
            quote = c
        elif c in _OPERATORS:
            return _OPERATORS[c]
        elif c == "#" and word_start:
            return "'#' (a shell comment)"
        elif c == "~" and word_start:
            return "'~' (home directory expansion)"
        word_start = c in " \t"
        i += 1
    if quote:
        return f"an unterminated {quote} quote"
    return None


def _escapes(arg: str) -> bool:
    """Whether an argument names a path outside the working directory (absolute, ~ or ..)."""
    candidates = [arg]
    if arg.startswith("-"):
        _name, eq, value = arg.partition("=")
        candidates = [value] if eq else []
        if not eq and not arg.startswith("--") and len(arg) > 2:
            candidates.append(arg[2:])  # a short option with its value glued on: -c/etc/x
    elif "=" in arg:
        candidates.append(arg.partition("=")[2])  # -o cache_dir=/x
    for value in candidates:
        path = value.split("::", 1)[0]  # pytest node ids: tests/test_a.py::test_b
        if path.startswith(("/", "~")):
            return True
        if os.path.normpath(path).split(os.sep)[0] == "..":
            return True
    return False


def check_command(command: str, allowed: Sequence[str]) -> list[str]:
    """The argv to run for ``command``, or :class:`CommandRefused` saying what is not allowed.

    The whole line is one command: argv must start with one of the ``allowed`` prefixes
    (compared word by word), and no argument may point outside the workspace.
    """
    text = command.strip()
    if not text:
        raise CommandRefused("the command is empty")
    if "\n" in text or "\r" in text:
        raise CommandRefused(
            "a newline (a second command) is not allowed: one command per bash call"
        )
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise CommandRefused("control characters are not allowed in a command")
    syntax = _shell_syntax(text)
    if syntax is not None:
        raise CommandRefused(
            f"{syntax} is not allowed: the command runs without a shell, one command per call. "
            "Run each command in its own bash call."
        )
    argv = shlex.split(text)
    if argv and _ENV_ASSIGNMENT.match(argv[0]):
        raise CommandRefused(
            f"environment assignments like '{argv[0]}' are not allowed; "
            "pass options as arguments instead"
        )
    prefixes = [shlex.split(p) for p in allowed]
    if not any(argv[: len(p)] == p for p in prefixes if p):
        shown = ", ".join(repr(p) for p in allowed) or "none (bash is turned off)"
        raise CommandRefused(
            f"'{argv[0]}' is not an allowed command here. Allowed command prefixes: {shown} "
            "(setting agent.allowedCommands)"
        )
    for arg in argv[1:]:
        if _escapes(arg):
            raise CommandRefused(
                f"argument {arg!r} points outside the workspace; use paths relative to the "
                "workspace root without '..'"
            )
    return argv


# --------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------

_KEEP_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "USER",
        "LOGNAME",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "PYENV_ROOT",
        "PYENV_VERSION",
        "NODE_PATH",
        "GOPATH",
        "GOROOT",
        "GOFLAGS",
        "GOMODCACHE",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "JAVA_HOME",
        "NO_COLOR",
        "SOURCE_DATE_EPOCH",
    }
)
_KEEP_PREFIXES = ("LC_", "PYTHON", "PYTEST_")
# Directories of toolchains that may live under the home directory (kept visible there).
_TOOLCHAIN_ENV = (
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYENV_ROOT",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "GOMODCACHE",
    "GOPATH",
    "GOROOT",
    "JAVA_HOME",
)
# PYTHONSTARTUP/PYTHONINSPECT would run or stop at the user's interactive hooks.
_DROP_ENV = frozenset({"PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONBREAKPOINT"})
_SECRET_ENV = re.compile(
    r"TOKEN|KEY|SECRET|PASS(WORD|WD)?|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT", re.I
)
_CLOUD_ENV = re.compile(
    r"^(AWS|AZURE|GCP|GCLOUD|GOOGLE|GITHUB|GH|GITLAB|OPENAI|ANTHROPIC|HF|HUGGING|DOCKER|KUBE"
    r"|NPM|PYPI|TWINE|SSH|GPG|VAULT|SENTRY|SLACK|STRIPE|DATABASE|DB)",
    re.I,
)


def _secret_name(name: str) -> bool:
    return bool(_SECRET_ENV.search(name) or _CLOUD_ENV.match(name))


def scrubbed_env(source: Mapping[str, str], home: Path, tmp: Path) -> dict[str, str]:
    """The environment a sandboxed command gets: an allowlist of ``source``, minus secrets.

    ``HOME`` and the temp directories point into the sandbox; toolchains that keep their
    downloads under the real home (Go modules, cargo, rustup) are pointed at them read-only
    and told to stay offline, so `go test` and `cargo test` can work without the network.
    """
    env: dict[str, str] = {}
    for name, value in source.items():
        keep = name in _KEEP_ENV or name.startswith(_KEEP_PREFIXES)
        if keep and name not in _DROP_ENV and not _secret_name(name):
            env[name] = value
    # Relative PATH entries would find programs in the (model-written) working directory.
    path = [p for p in source.get("PATH", os.defpath).split(os.pathsep) if os.path.isabs(p)]
    env["PATH"] = os.pathsep.join(path)
    real_home = Path(source.get("HOME") or os.path.expanduser("~"))
    toolchain_dirs = {
        "GOMODCACHE": real_home / "go" / "pkg" / "mod",
        "CARGO_HOME": real_home / ".cargo",
        "RUSTUP_HOME": real_home / ".rustup",
        "PYENV_ROOT": real_home / ".pyenv",
    }
    for name, directory in toolchain_dirs.items():
        if name not in env and directory.is_dir():
            env[name] = str(directory)
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        TMP=str(tmp),
        TEMP=str(tmp),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        TERM="dumb",
        PYTHONUNBUFFERED="1",  # what was printed before a timeout still reaches the output
        GOPROXY="off",
        GOTOOLCHAIN="local",
        CARGO_NET_OFFLINE="true",
        npm_config_offline="true",
        npm_config_update_notifier="false",
    )
    return env


# --------------------------------------------------------------------------------------
# Isolation: the helper that sets up the namespaces, and the probe that finds what works
# --------------------------------------------------------------------------------------

# Runs as `python -I -S -c HELPER <json options> <argv...>` inside the new namespaces (or
# creates them itself with unshare(2) when the `unshare` program is missing), then execs
# the command. Plain text so it starts in a few milliseconds without importing agentls.
_HELPER = r"""
import ctypes, json, os, re, socket, struct, sys
opts = json.loads(sys.argv[1]); argv = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
ST_TO_MS = {2: 2, 4: 4, 8: 8, 16: 16, 1024: 1024, 2048: 2048, 4096: 1 << 21}

def fail(msg):
    sys.stderr.write("agentls sandbox: " + msg + "\n"); sys.stderr.flush(); os._exit(126)

def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno(); raise OSError(e, what + ": " + os.strerror(e))

def mount(src, target, flags, fstype=None, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)
    check(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          "mount " + target)

def self_unshare():
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(0x10000000 | 0x40000000 | 0x20000), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", "0 %d 1" % uid),
                       ("gid_map", "0 %d 1" % gid)):
        with open("/proc/self/" + name, "w") as f:
            f.write(text)

def lo_up():
    import fcntl
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, 0x8913, req))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))

def under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")

def protect_fs(keep, work, root, passthrough, home, expose):
    # Hold the directories by fd: the tmpfs over /tmp or the home directory may hide their
    # paths before they are bound back.
    hold = lambda path: os.open(path, os.O_PATH | os.O_DIRECTORY)
    rw_binds = [(hold(keep), keep)] + ([(hold(work), root)] if root else [])
    ro_binds = [(hold(os.path.join(root, rel)), os.path.join(root, rel))
                for rel in passthrough if root]
    ro_binds += [(hold(d), d) for d in expose if os.path.isdir(d)]
    mount(None, "/", MS_REC | MS_PRIVATE)
    fresh = []
    for top in ["/tmp", "/run", "/var/tmp"] + ([home] if home else []):
        if os.path.isdir(top) and not os.path.islink(top):
            mount("tmpfs", top, MS_NOSUID | MS_NODEV, "tmpfs", "mode=1777,size=1g")
            fresh.append(top)
    for fd, target in rw_binds + ro_binds:
        os.makedirs(target, exist_ok=True)
        mount("/proc/self/fd/%d" % fd, target, MS_BIND | MS_REC)
        os.close(fd)
    writable = [t for _, t in rw_binds] + fresh + ["/proc", "/sys", "/dev"]
    readonly = [t for _, t in ro_binds]
    with open("/proc/self/mountinfo") as f:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                  for line in f]
    for point in points:
        if any(under(point, top) for top in writable) and not any(
                under(point, top) for top in readonly):
            continue
        try:
            flags = 0
            for st, ms in ST_TO_MS.items():
                if os.statvfs(point).f_flag & st:
                    flags |= ms
            mount(None, point, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
        except OSError as exc:
            # A mount hidden under another one cannot be reached, so it needs no remount;
            # any other failure would leave user files writable: fail closed.
            if exc.errno not in (2, 13):
                raise

def net_isolated():
    return all(name == "lo" for _, name in socket.if_nameindex())

def setup():
    if opts.get("self_unshare"):
        self_unshare()
    if not net_isolated():
        fail("the command is not in a private network namespace")
    try:
        lo_up()
    except OSError:
        pass  # loopback stays down: connections to 127.0.0.1 fail, which is still isolated
    fs = False
    if opts.get("fs"):
        protect_fs(opts["keep"], opts["work"], opts.get("root"), opts.get("passthrough", []),
                   opts.get("home"), opts.get("expose", []))
        fs = True
    return fs

if opts.get("probe"):
    result = {"net": False, "fs": False, "error": ""}
    try:
        result["fs"] = setup(); result["net"] = True
    except Exception as exc:
        result["error"] = str(exc)
        result["net"] = net_isolated()
    print(json.dumps(result)); sys.exit(0)
try:
    setup()
except OSError as exc:
    fail("cannot set up the sandbox: %s" % exc)
if opts.get("nproc"):
    import resource
    limits = ((resource.RLIMIT_NPROC, opts["nproc"]), (resource.RLIMIT_FSIZE, opts["fsize"]),
              (resource.RLIMIT_CORE, 0))
    for res, value in limits:
        soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass
os.chdir(opts["cwd"])
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    sys.stderr.write("agentls sandbox: cannot run %s: %s\n" % (argv[0], exc.strerror))
    os._exit(127)
"""


@dataclass(frozen=True)
class Isolation:
    """What this machine allows, found once per process by :func:`detect_isolation`."""

    wrapper: tuple[str, ...]  # argv before the helper: `unshare ...`, or () when the helper
    self_unshare: bool  # the helper calls unshare(2) itself
    network: bool
    filesystem: bool  # mount namespace: copy over the workspace path, the rest read-only
    pid_namespace: bool  # every process dies with the command (setsid cannot escape)
    reason: str = ""  # why network isolation is unavailable

    def describe(self) -> str:
        """A short account for logs and `agentls doctor`."""
        if not self.network:
            return f"{NO_NETWORK} ({self.reason})"
        parts = ["private network namespace"]
        parts.append("read-only file system outside the copy" if self.filesystem else "")
        parts.append("PID namespace" if self.pid_namespace else "")
        return ", ".join(p for p in parts if p)


_NONE = Isolation((), False, False, False, False, "not probed")
_isolation_cache: Isolation | None = None
_isolation_lock = threading.Lock()


def _helper_argv(options: Mapping[str, Any]) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", _HELPER, json.dumps(dict(options))]


def _probe(wrapper: Sequence[str], self_unshare: bool, base: Path) -> dict[str, Any]:
    keep = base / "keep"
    work = keep / "work"
    work.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"probe": True, "self_unshare": self_unshare, "fs": True}
    options |= {"keep": str(keep), "work": str(work), "root": None}
    try:
        done = subprocess.run(
            [*wrapper, *_helper_argv(options)],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", os.defpath)},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"net": False, "fs": False, "error": str(exc)}
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"net": False, "fs": False, "error": error}
    return result


def detect_isolation(refresh: bool = False) -> Isolation:
    """Find, once per process, the strongest isolation this machine allows.

    Tries, in order: the ``unshare`` program with user, network, mount and PID namespaces
    (plain ``unshare`` without a user namespace when running as root), then the helper
    calling ``unshare(2)`` itself (no PID namespace). Each candidate runs the helper in
    probe mode, which reports whether it really saw no network interface but loopback.
    Blocking (a few process starts, ~100 ms); call it from a thread in async code.
    """
    global _isolation_cache
    with _isolation_lock:
        if _isolation_cache is not None and not refresh:
            return _isolation_cache
        unshare = shutil.which("unshare")
        candidates: list[tuple[tuple[str, ...], bool, bool]] = []
        if unshare:
            full = ("--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc")
            candidates.append(((unshare, "--map-root-user", *full, "--"), False, True))
            if os.geteuid() == 0:
                candidates.append(((unshare, *full, "--"), False, True))
            candidates.append(
                ((unshare, "--map-root-user", "--net", "--mount", "--"), False, False)
            )
        candidates.append(((), True, False))
        reasons: list[str] = []
        found = _NONE
        with tempfile.TemporaryDirectory(prefix="agentls-probe-") as tmp:
            for index, (wrapper, self_unshare, pid_ns) in enumerate(candidates):
                result = _probe(wrapper, self_unshare, Path(tmp) / str(index))
                if result.get("net"):
                    found = Isolation(wrapper, self_unshare, True, bool(result.get("fs")), pid_ns)
                    break
                name = " ".join(wrapper[:2]) if wrapper else "unshare(2)"
                reasons.append(f"{name}: {result.get('error') or 'no private network'}")
        if not found.network:
            found = Isolation((), False, False, False, False, "; ".join(reasons) or "unknown")
        _isolation_cache = found
        return found


# --------------------------------------------------------------------------------------
# The scratch copy
# --------------------------------------------------------------------------------------


class _Excluder:
    """Simplified gitignore matching for the exclude globs (secret files).

    A pattern without '/' matches a file or directory name at any depth; with '/' it matches
    the relative path; a trailing '/' matches directories only; '!' re-includes; last wins.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.rules: list[tuple[bool, bool, str]] = []
        for raw in patterns:
            pattern = raw.strip()
            negate = pattern.startswith("!")
            pattern = pattern.removeprefix("!")
            dir_only = pattern.endswith("/")
            pattern = pattern.strip("/")
            if pattern:
                self.rules.append((negate, dir_only, pattern))

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        verdict = False
        for negate, dir_only, pattern in self.rules:
            hit = False
            if "/" in pattern:
                hit = any(
                    fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern)
                    for i in range(len(parts) - (1 if dir_only else 0))
                )
            else:
                names = parts[:-1] if dir_only else parts
                hit = any(fnmatch.fnmatchcase(name, pattern) for name in names)
            if hit:
                verdict = not negate
        return verdict


def _git_files(root: Path) -> list[str] | None:
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


def _walk_files(root: Path) -> Iterator[str]:
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


def _is_passthrough(path: Path) -> bool:
    return path.name in PASSTHROUGH_NAMES or (path / "pyvenv.cfg").is_file()


def _find_passthrough(root: Path) -> list[str]:
    """Virtualenvs and node_modules at the top two levels (where projects keep them)."""
    found: list[str] = []
    level = [root]
    for _depth in range(2):
        nxt: list[Path] = []
        for directory in level:
            try:
                children = sorted(directory.iterdir())
            except OSError:
                continue
            for child in children:
                if not child.is_dir() or child.is_symlink() or child.name in SKIP_DIRS:
                    continue
                if _is_passthrough(child):
                    found.append(child.relative_to(root).as_posix())
                else:
                    nxt.append(child)
        level = nxt
    return found


def _safe_rel(rel: str) -> str:
    """A normalised relative path that stays inside the copy, else :class:`SandboxError`."""
    norm = os.path.normpath(rel.replace("\\", "/"))
    if os.path.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
        raise SandboxError(f"staged path {rel!r} is outside the workspace")
    return Path(norm).as_posix()


@dataclass
class _CopyStats:
    files: int = 0
    bytes: int = 0
    skipped_big: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)


class Sandbox:
    """One agent run's scratch copy of ``root`` and the commands run on it.

    Use as ``async with Sandbox(root, config) as sandbox:``, or call :meth:`aclose` (or the
    synchronous :meth:`close`) when the run ends. The copy is made on the first
    :meth:`sync` or :meth:`run`, so a run that never runs a command costs nothing.
    """

    def __init__(
        self,
        root: Path,
        config: SandboxConfig | None = None,
        *,
        isolation: Isolation | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.config = config or SandboxConfig()
        self._isolation = isolation
        self._environ = dict(os.environ if environ is None else environ)
        self._dir: Path | None = None
        self._applied: dict[str, str | None] = {}  # rel -> text written (None: deleted)
        self._passthrough: list[str] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.files_written = 0  # staged writes and restores since the copy was made
        self.copy_stats = _CopyStats()

    # -- paths -------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The sandbox directory (``work/`` is the copy), or None before the first use."""
        return self._dir

    @property
    def work(self) -> Path:
        """The scratch copy of the workspace (created on first use)."""
        if self._dir is None:
            raise SandboxError("the sandbox has not been created yet")
        return self._dir / "work"

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill a command still running and remove the scratch copy. Safe to call twice."""
        process = self._process
        if process is not None and process.returncode is None:
            await _kill_group(process, 0)
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Remove the scratch copy (synchronously). Later calls to :meth:`run` fail."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()  # rmtree, once
        self._dir = None

    async def isolation(self) -> Isolation:
        """The isolation commands get (probed once per process, in a thread)."""
        if self._isolation is None:
            self._isolation = await asyncio.to_thread(detect_isolation)
        return self._isolation

    async def _ensure(self) -> Path:
        if self._closed:
            raise SandboxError("the sandbox was closed")
        if self._dir is not None:
            return self._dir
        isolation = await self.isolation()
        base = Path(tempfile.mkdtemp(prefix="agentls-sandbox-"))
        # Removed when closed, garbage-collected or at exit, whichever comes first.
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(base), ignore_errors=True)
        for sub in ("work", "home", "tmp"):
            (base / sub).mkdir()
        stop = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            None, self._copy_tree, base / "work", isolation.filesystem, stop
        )
        try:
            await asyncio.shield(future)
        except BaseException:
            # Cancelled (or failed) mid-copy: stop the thread and remove what it wrote
            # once it has stopped, without making the cancelled caller wait.
            stop.set()
            finalizer = self._finalizer
            future.add_done_callback(lambda _f: finalizer())  # rmtree once the thread stops
            self._closed = True
            raise
        self._dir = base
        return base

    def _copy_tree(self, work: Path, mount_mode: bool, stop: threading.Event) -> None:
        """Copy the workspace into ``work`` (runs in a thread)."""
        excluder = _Excluder(self.config.exclude)
        listed = _git_files(self.root)
        names: Iterable[str] = listed if listed is not None else _walk_files(self.root)
        real_root = self.root.resolve()
        stats = self.copy_stats
        for rel in names:
            if stop.is_set():
                return
            parts = rel.split("/")
            if any(p in SKIP_DIRS or p in PASSTHROUGH_NAMES for p in parts[:-1]):
                continue
            if excluder.excluded(rel):
                continue
            source = self.root / rel
            target = work / rel
            try:
                info = source.lstat()
                if source.is_symlink():
                    # Links that stay inside the workspace become relative links inside
                    # the copy; links out of it are left out (as the tools hide them).
                    resolved = source.resolve()
                    if not resolved.is_relative_to(real_root):
                        stats.skipped_links.append(rel)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    inside = work / resolved.relative_to(real_root)
                    os.symlink(os.path.relpath(inside, target.parent), target)
                    continue
                if source.is_dir():
                    continue  # a submodule or nested repository listed by git: not copied
                if info.st_size > self.config.max_file_bytes:
                    stats.skipped_big.append(rel)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target, follow_symlinks=False)
                stats.files += 1
                stats.bytes += info.st_size
            except OSError:
                continue  # vanished or unreadable: the command will see it missing
        self._passthrough = [rel for rel in _find_passthrough(self.root) if not stop.is_set()]
        for rel in self._passthrough:
            target = work / rel
            if target.exists() or target.is_symlink():
                continue  # tracked in git (unusual): the copy has it already
            target.parent.mkdir(parents=True, exist_ok=True)
            if mount_mode:
                target.mkdir()  # the helper mounts the real directory here, read-only
            else:
                os.symlink(self.root / rel, target)

    # -- staged edits --------------------------------------------------------------------

    async def sync(self, staged: Mapping[str, str], deleted: Iterable[str] = ()) -> int:
        """Make the copy hold ``staged`` (relative path -> text) and lack ``deleted``.

        Only files whose staged text differs from what was last written are touched; a file
        that was staged before and is no longer is restored from the workspace. Returns
        how many files were written or removed.
        """
        async with self._lock:
            await self._ensure()
            return await asyncio.to_thread(self._sync, staged, deleted)

    def _sync(self, staged: Mapping[str, str], deleted: Iterable[str]) -> int:
        desired: dict[str, str | None] = {_safe_rel(k): v for k, v in staged.items()}
        for rel in deleted:
            desired[_safe_rel(rel)] = None
        count = 0
        for rel, text in desired.items():
            if rel in self._applied and self._applied[rel] == text:
                continue
            self._put(rel, text)
            self._applied[rel] = text
            count += 1
        for rel in [r for r in self._applied if r not in desired]:
            self._restore(rel)
            del self._applied[rel]
            count += 1
        self.files_written += count
        return count

    def _target(self, rel: str) -> Path:
        """The copy's path for ``rel``, refusing any that a symlink would lead out of it."""
        work = self.work
        target = work / rel
        parent = Path(os.path.realpath(target.parent))
        if not parent.is_relative_to(os.path.realpath(work)):
            raise SandboxError(f"staged path {rel!r} leads outside the sandbox")
        return target

    def _put(self, rel: str, text: str | None) -> None:
        target = self._target(rel)
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside and rename: replaces a symlink instead of writing through it.
        tmp = target.with_name(f".{target.name}.agentls-tmp")
        tmp.write_text(text, encoding="utf-8", newline="")
        source = self.root / rel
        with contextlib.suppress(OSError):
            os.chmod(tmp, source.stat().st_mode & 0o777)  # keep an executable bit
        os.replace(tmp, target)

    def _restore(self, rel: str) -> None:
        target = self._target(rel)
        source = self.root / rel
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        excluded = _Excluder(self.config.exclude).excluded(rel)  # a secret never comes back
        if source.is_file() and not source.is_symlink() and not excluded:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)

    # -- running -------------------------------------------------------------------------

    async def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run one allowed command on the copy; raises :class:`CommandRefused` if not allowed.

        Also raises :class:`SandboxError` when network isolation is required but unavailable.
        A command that fails, times out or floods is a normal :class:`CommandResult`.
        """
        argv = check_command(command, self.config.allowed_commands)
        isolation = await self.isolation()
        if not isolation.network and self.config.require_network_isolation:
            raise SandboxError(
                f"{NO_NETWORK} on this machine ({isolation.reason}), and "
                "agent.requireNetworkIsolation is on, so the command was not run. "
                "Set agent.requireNetworkIsolation to false to run commands with network access."
            )
        async with self._lock:
            base = await self._ensure()
            return await self._run(argv, base, isolation, timeout or self.config.timeout)

    def _hidden_home(self, env: Mapping[str, str]) -> tuple[str | None, list[str]]:
        """The user's home to hide behind an empty tmpfs, and its toolchain dirs to keep.

        Keys, tokens and shell history live there (~/.ssh, ~/.aws, ~/.netrc); interpreters
        often do too (~/.pyenv, ~/.cargo, ~/.nvm, ~/.local/bin), so every PATH entry and
        toolchain directory under the home stays visible, read-only.
        """
        raw = self._environ.get("HOME") or os.path.expanduser("~")
        home = Path(os.path.abspath(raw))
        if home == Path("/") or not home.is_dir() or home.is_relative_to(self.root):
            return None, []  # a home inside the workspace is covered by the copy already
        entries = env.get("PATH", "").split(os.pathsep)
        entries += [env[name] for name in _TOOLCHAIN_ENV if env.get(name)]
        expose: set[str] = set()
        for entry in entries:
            path = Path(os.path.abspath(entry))
            if not path.is_relative_to(home) or path == home:
                continue
            first = path.relative_to(home).parts[0]
            if first == ".local":  # not all of it: ~/.local/share holds keyrings
                expose.update(str(home / ".local" / sub) for sub in ("bin", "lib"))
            else:
                expose.add(str(home / first))
        return str(home), sorted(expose)

    def _command_argv(
        self, argv: list[str], base: Path, isolation: Isolation, env: Mapping[str, str]
    ) -> list[str]:
        if not isolation.network:
            return argv
        mount_over = isolation.filesystem and not base.is_relative_to(self.root)
        home, expose = self._hidden_home(env) if isolation.filesystem else (None, [])
        options: dict[str, Any] = {
            "home": home,
            "expose": expose,
            "self_unshare": isolation.self_unshare,
            "fs": isolation.filesystem,
            "keep": str(base),
            "work": str(base / "work"),
            "root": str(self.root) if mount_over else None,
            "passthrough": self._passthrough if mount_over else [],
            "cwd": str(self.root if mount_over else base / "work"),
            "nproc": self.config.max_processes,
            "fsize": self.config.max_file_size_limit,
        }
        return [*isolation.wrapper, *_helper_argv(options), *argv]

    async def _run(
        self, argv: list[str], base: Path, isolation: Isolation, timeout: float
    ) -> CommandResult:
        env = scrubbed_env(self._environ, base / "home", base / "tmp")
        if not (isolation.network and isolation.filesystem):
            # The copy is not at the workspace path: make its packages win over an
            # editable install that points at the user's files.
            extra = [str(base / "work"), str(base / "work" / "src")]
            env["PYTHONPATH"] = os.pathsep.join([*extra, *filter(None, [env.get("PYTHONPATH")])])
        full = self._command_argv(argv, base, isolation, env)
        started = time.monotonic()
        out = _Output(self.config.output_head, self.config.output_tail)
        try:
            process = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=base / "work",
                env=env,
                start_new_session=True,  # its own process group, killed as a whole
            )
        except OSError as exc:
            raise SandboxError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        self._process = process
        assert process.stdout is not None
        flood = asyncio.Event()
        reader = asyncio.create_task(
            _drain(process.stdout, out, self.config.max_output_bytes, flood)
        )
        timed_out = False
        try:
            waiter = asyncio.ensure_future(process.wait())
            flooded = asyncio.ensure_future(flood.wait())
            done, _ = await asyncio.wait(
                {waiter, flooded}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            flooded.cancel()
            if not done:
                timed_out = True
            if process.returncode is None:
                await _kill_group(process, self.config.kill_grace)
            await waiter
            # Children that outlived the command (daemons) hold the pipe: kill them too.
            _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), 2.0)
        except BaseException:
            # Cancelled: the whole group dies before the cancellation goes on.
            await _kill_group(process, 0)
            raise
        finally:
            reader.cancel()
            self._process = None
        return CommandResult(
            exit_code=process.returncode,
            output=out.text(),
            timed_out=timed_out,
            duration=time.monotonic() - started,
            network_isolated=isolation.network,
            output_bytes=out.total,
            truncated=out.truncated,
            output_limit_hit=flood.is_set(),
            filesystem_protected=isolation.network and isolation.filesystem,
            argv=tuple(argv),
        )


class _Output:
    """Head and tail of a byte stream, and its full size; memory stays bounded."""

    def __init__(self, head: int, tail: int) -> None:
        self.head_limit = head
        self.tail_limit = tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:  # trim now and then, not per chunk
                del self.tail[: -self.tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + min(len(self.tail), self.tail_limit)

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_limit :]) if self.tail_limit else b""
        head = bytes(self.head)
        if not self.truncated:
            return (head + tail).decode("utf-8", errors="replace")
        dropped = self.total - len(head) - len(tail)
        note = (
            f"\n[... {dropped:,} bytes omitted; the output was {self.total:,} bytes in total, "
            f"showing the first {len(head):,} and the last {len(tail):,} ...]\n"
        )
        return head.decode("utf-8", errors="replace") + note + tail.decode("utf-8", "replace")


async def _drain(
    stream: asyncio.StreamReader, out: _Output, cap: int, flood: asyncio.Event
) -> None:
    """Read everything the command writes (so it never blocks on a full pipe)."""
    while chunk := await stream.read(256 * 1024):
        out.add(chunk)
        if out.total > cap and not flood.is_set():
            flood.set()  # the runner kills the group; keep reading until the pipe closes


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _kill_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap the leader.

    With a PID namespace the leader's death takes every process in it along (``unshare
    --kill-child``), including any that left the process group with setsid.
    """
    if grace > 0 and process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), 5.0)
