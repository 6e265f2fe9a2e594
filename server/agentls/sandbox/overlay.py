"""The overlay view: the workspace itself, read-only, under a private writable layer.

Nothing is copied. A holder process (``holder.py``) keeps new user and mount namespaces in
which an overlay shows the workspace as its lower layer, a layer of whiteouts above it for
what commands must not see (:func:`agentls.sandbox.listing.list_view`), and a private upper
layer on a tmpfs for the staged edits and whatever commands write. Commands join those
namespaces and get the merged view at the workspace path in their new root, as the copy was.

* Staged edits are written into the view by the holder, in a child chrooted into it (a link
  in the view cannot lead a write anywhere else); a file no longer staged gets the
  workspace's own content back, unless it is hidden (a secret never comes back).
* Before each command the view is checked against the live workspace (the lower layer): every
  new entry (a secret file created meanwhile, a socket, a new ignored directory) changes the
  modification time of its directory, so when any visible directory changed since the last
  listing, the workspace is listed again and the view is mounted afresh with what is new
  hidden (the upper layer carries over; a fresh mount also has no stale caches of the lower
  layer). A few thousand ``stat`` calls instead of a listing when nothing changed.
* Closing kills the holder: the namespaces, the mounts and the tmpfs with the upper layer go
  with it, and so do they if the server dies (the holder exits at EOF on its stdin).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentls.sandbox.config import SandboxError
from agentls.sandbox.copy import Change, CopyStats
from agentls.sandbox.isolation import Isolation
from agentls.sandbox.listing import Listing, ListingFailed, list_view, topmost
from agentls.secret_files import SecretFiles

__all__ = ["HOLDER_PATH", "OverlayUnavailable", "OverlayView", "overlay_possible"]

HOLDER_PATH = Path(__file__).with_name("holder.py")
REPLY_TIMEOUT = 60.0  # seconds a holder may take to answer (a remount with many whiteouts)
# A directory changed less than this before its listing began may have changed during it
# (timestamps come from a coarse clock; a network file system's clock may lag a little).
RACY_NS = 1_000_000_000


class OverlayUnavailable(SandboxError):
    """This machine or workspace cannot have the overlay view; the copy stands in."""


def overlay_possible(isolation: Isolation) -> str | None:
    """Why commands cannot join an overlay view here, or None when they can."""
    if not (isolation.network and isolation.filesystem):
        return "commands do not get a new root here"
    if not isolation.self_unshare and shutil.which("nsenter") is None:
        return "no nsenter program to join the view's namespaces"
    return None


class OverlayView:
    """One sandbox's overlay view of ``root`` (see the module docstring)."""

    mechanism = "overlay"

    def __init__(self, root: Path, base: Path, secrets: SecretFiles, size: int) -> None:
        self.root = root
        self.base = base
        self.secrets = secrets
        self.size = size
        self.stats = CopyStats()
        self.hidden: list[str] = []
        self.passthrough: list[str] = []
        self.userns = True
        self.on_tmpfs = True
        self._dirs: dict[str, int] = {}  # visible directory -> its mtime when listed
        self._racy = True  # some directory changed around the last listing: list again
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # the holder's pipe: one request at a time
        self._closed = False

    # -- where it is -------------------------------------------------------------------

    @property
    def work(self) -> Path:
        """The merged view as the server can read it (through the holder's root)."""
        process = self._process
        if process is None:
            raise SandboxError("the overlay view is not mounted")
        return Path(f"/proc/{process.pid}/root") / str(self.base / "work").lstrip("/")

    def alive(self) -> bool:
        """Whether the holder (and so the view) is still there."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        """Start the holder, list the workspace meanwhile, mount the view (blocking)."""
        (self.base / "layers").mkdir(exist_ok=True)
        options = {
            "lower": os.path.realpath(self.root),
            "mount": str(self.base / "work"),
            "layers": str(self.base / "layers"),
            "size": self.size,
        }
        with self._lock:
            if self._closed:
                return
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(HOLDER_PATH), json.dumps(options)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    cwd="/",
                    env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},
                    start_new_session=True,  # terminal signals are the server's to handle
                )
            except OSError as exc:
                raise OverlayUnavailable(f"cannot start the overlay holder: {exc}") from exc
        try:
            listing = self._list()  # while the holder starts
        except ListingFailed as exc:
            self.close()
            raise OverlayUnavailable(str(exc)) from exc
        except BaseException:
            self.close()
            raise
        if stop.is_set():
            self.close()
            return
        with self._lock:
            ready = self._reply()
        if not ready.get("ok"):
            self.close()
            raise OverlayUnavailable(f"no overlay here: {ready.get('error', 'unknown error')}")
        self.userns = bool(ready.get("userns"))
        self.on_tmpfs = bool(ready.get("tmpfs"))
        self._use(listing, remount=True)
        try:
            os.stat(self.work)
        except OSError as exc:  # /proc/PID/root refused: the server could not sync edits
            self.close()
            raise OverlayUnavailable(f"the overlay view cannot be reached: {exc}") from exc

    def close(self) -> None:
        """Kill the holder: the view, its namespaces and the tmpfs of the upper layer go."""
        self._closed = True
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        if not self.on_tmpfs:
            _remove_layers(self.base / "layers")

    # -- the holder's protocol -----------------------------------------------------------------

    def _reply(self) -> dict[str, Any]:
        process = self._process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], REPLY_TIMEOUT)
        line = process.stdout.readline() if ready else b""
        if not line:
            return {"error": "the overlay holder exited" if ready else "the holder hung"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            process = self._process
            if self._closed or process is None or process.stdin is None:
                raise SandboxError("the sandbox was closed")
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise SandboxError("the sandbox's overlay view is gone") from exc
            reply = self._reply()
        if not reply.get("ok"):
            raise SandboxError(f"the sandbox's overlay view failed: {reply.get('error')}")
        return reply

    # -- what is hidden ----------------------------------------------------------------------

    def _list(self) -> Listing:
        """List the workspace and note its visible directories' modification times."""
        began = time.time_ns()
        listing = list_view(self.root, self.secrets)
        self._dirs = self._stat_dirs(listing.dirs)
        # Changed around the listing: the listing may have missed what changed; list again
        # before the next command.
        self._racy = any(m >= began - RACY_NS for m in self._dirs.values())
        return listing

    def _stat_dirs(self, dirs: Sequence[str]) -> dict[str, int]:
        top = str(self.root)
        found: dict[str, int] = {}
        for rel in dirs:
            try:
                found[rel] = os.stat(os.path.join(top, rel) if rel else top).st_mtime_ns
            except OSError:
                found[rel] = -1
        return found

    def changed(self) -> bool:
        """Whether an entry may have appeared in the workspace since the last listing."""
        return self._racy or self._stat_dirs(list(self._dirs)) != self._dirs

    def _use(self, listing: Listing, remount: bool = False) -> None:
        hidden = topmost([*self.hidden, *listing.hidden])
        self.passthrough = listing.passthrough
        self.stats.skipped_secrets = listing.secrets
        self.stats.skipped_links = list(listing.links_out)
        if remount or hidden != self.hidden:
            # Hidden paths only ever grow: a path once hidden stays hidden for the run.
            self._request({"op": "mount", "hide": hidden})
            self.hidden = hidden

    def refresh(self) -> None:
        """Before a command: if the workspace changed, list it again and hide what is new."""
        if not self.alive():
            raise SandboxError("the sandbox's overlay view is gone (its holder exited)")
        if self.changed():
            try:
                listing = self._list()
            except ListingFailed as exc:  # the view would show what the listing missed
                raise SandboxError(f"cannot check the workspace before the command: {exc}") from exc
            # Mounted afresh even when nothing new is hidden: overlayfs leaves changes to a
            # mounted lower layer undefined (its caches may go stale), a new mount has none.
            self._use(listing, remount=True)

    def _is_hidden(self, rel: str) -> bool:
        return any(rel == h or rel.startswith(h + "/") for h in self.hidden)

    # -- staged edits ------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> None:
        """Write, delete or restore files in the view (see :class:`~.copy.Change`)."""
        ops: list[list[Any]] = []
        for kind, rel, text in changes:
            if kind == "put" and text is not None:
                ops.append(["put", rel, text, self._mode(rel)])
            elif kind == "put":
                ops.append(["delete", rel])
            else:
                ops.append(self._restore(rel))
        if not ops:
            return
        errors = self._request({"op": "sync", "ops": ops}).get("errors") or []
        if errors:
            shown = "; ".join(f"{path}: {message}" for path, message in errors[:5])
            raise SandboxError(f"cannot write the staged edits into the sandbox: {shown}")

    def _mode(self, rel: str) -> int | None:
        try:
            return (self.root / rel).stat().st_mode & 0o777  # keep an executable bit
        except OSError:
            return None

    def _restore(self, rel: str) -> list[Any]:
        """The workspace's own ``rel`` back in the view; a hidden or secret file never."""
        source = self.root / rel
        try:
            info = source.lstat()
        except OSError:
            return ["restore", rel, None]
        if (
            not stat.S_ISREG(info.st_mode)
            or self._is_hidden(rel)
            or self.secrets.is_secret(source, self.root)
        ):
            return ["restore", rel, None]
        try:
            data = source.read_bytes()
        except OSError:
            return ["restore", rel, None]
        encoded = base64.b64encode(data).decode("ascii")
        return ["restore", rel, encoded, info.st_mode & 0o777, info.st_mtime_ns]

    # -- commands ----------------------------------------------------------------------------

    def command_wrapper(self, isolation: Isolation) -> tuple[list[str], dict[str, Any]]:
        """The argv before the helper, and the helper's extra options, to join the view."""
        process = self._process
        if process is None or not self.alive():
            raise SandboxError("the sandbox's overlay view is gone (its holder exited)")
        if isolation.self_unshare:
            return [], {"join": process.pid}  # the helper calls setns(2) itself
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise SandboxError("the nsenter program is gone")
        # --preserve-credentials: no setgroups(2), which the holder's user namespace denies
        # (an unprivileged user must, to map its group); our uid is root in there anyway.
        user = ["--user", "--preserve-credentials"] if self.userns else []
        # Inside the holder's user namespace we are root already: no second mapping.
        wrapper = [w for w in isolation.wrapper if not (self.userns and w == "--map-root-user")]
        return [nsenter, f"--target={process.pid}", *user, "--mount", "--", *wrapper], {}

    def usage(self) -> int:
        """Bytes the upper layer holds (staged edits and what commands wrote)."""
        if not self.alive():
            return 0
        return int(self._request({"op": "usage"}).get("bytes", 0))


def _remove_layers(path: Path) -> None:
    """Remove layers kept on disk; the overlay's work directory is mode 000."""

    def retry(function: Any, target: str, _exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            function(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
