"""One agent run's sandbox: a view of the workspace, the staged edits over it, the commands.

The view is an overlay where the machine allows it (``overlay``: the workspace itself,
read-only, under a private writable layer; nothing is copied) and else the scratch copy
(``copy``). Every sandbox that has made its view is in a process-wide registry (a weak set),
so the server can end them all when it is told to stop: :func:`terminate_all` kills every
running command's process group and removes every view (the overlay's holder, the copy),
synchronously (fit for a signal handler), and runs at interpreter exit too (``atexit``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agentls.sandbox.command import check_command
from agentls.sandbox.config import (
    NO_NETWORK,
    CommandResult,
    SandboxConfig,
    SandboxError,
)
from agentls.sandbox.copy import Change, CopyStats, CopyView, safe_rel
from agentls.sandbox.environment import credential_files, scrubbed_env, toolchain_paths
from agentls.sandbox.isolation import Isolation, detect_isolation, helper_argv
from agentls.sandbox.overlay import OverlayUnavailable, OverlayView, overlay_possible
from agentls.sandbox.process import Output, drain, kill_group, signal_group
from agentls.secret_files import SecretFiles

__all__ = ["Sandbox", "live_sandboxes", "terminate_all"]

_live: weakref.WeakSet[Sandbox] = weakref.WeakSet()
_live_lock = threading.Lock()


# util-linux's setpriv sets the parent-death signal for the process it execs.
_SETPRIV = shutil.which("setpriv")
PDEATHSIG: tuple[str, ...] = (_SETPRIV, "--pdeathsig", "KILL", "--") if _SETPRIV else ()


def live_sandboxes() -> list[Sandbox]:
    """The sandboxes whose copy exists right now."""
    with _live_lock:
        return [s for s in _live if s.path is not None]


def terminate_all() -> int:
    """Kill every sandbox's running command (its whole process group) and remove every view.

    Synchronous and quick, so a signal handler or ``atexit`` can call it; the sandboxes are
    closed (later commands fail). Returns how many there were.
    """
    with _live_lock:
        sandboxes = list(_live)
    for sandbox in sandboxes:
        sandbox.kill()
    for sandbox in sandboxes:
        sandbox.close()
    return len(sandboxes)


atexit.register(terminate_all)


def _remove(path: str) -> None:
    """rmtree that survives a dying command still writing into the tree (retries a little)."""
    for _attempt in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05)


View = OverlayView | CopyView
MECHANISMS = ("auto", "overlay", "copy")


class _Resources:
    """What a sandbox must release: its view and its directory (kept apart from the Sandbox
    so that the finalizer does not keep it alive)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.view: View | None = None

    def release(self) -> None:
        view = self.view
        if view is not None:
            view.close()  # the overlay's holder first: its namespaces, mounts and tmpfs go
        _remove(str(self.base))


class Sandbox:
    """One agent run's view of ``root`` (overlay, else a scratch copy) and its commands.

    Use as ``async with Sandbox(root, config) as sandbox:``, or call :meth:`aclose` (or the
    synchronous :meth:`close`) when the run ends. The view is made on the first
    :meth:`sync` or :meth:`run`, so a run that never runs a command costs nothing.
    ``mechanism`` is ``auto`` (the overlay where the machine allows it), ``overlay`` (that
    or :class:`SandboxError`) or ``copy``.
    """

    def __init__(
        self,
        root: Path,
        config: SandboxConfig | None = None,
        *,
        isolation: Isolation | None = None,
        environ: Mapping[str, str] | None = None,
        mechanism: str = "auto",
    ) -> None:
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, not {mechanism!r}")
        self.root = Path(os.path.abspath(root))
        self._want = mechanism
        self._view: View | None = None
        self.overlay_note = ""  # why the overlay view was not used, when it was not
        self.config = config or SandboxConfig()
        self.secrets = SecretFiles(self.config.exclude)
        self._isolation = isolation
        self._environ = dict(os.environ if environ is None else environ)
        self._dir: Path | None = None
        self._applied: dict[str, str | None] = {}  # rel -> text written (None: deleted)
        self._lock = asyncio.Lock()
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stop_copy = threading.Event()  # set by close(): a view in the making stops
        self.files_written = 0  # staged writes and restores since the view was made

    # -- paths -------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The sandbox directory (home, temp, the copy), or None before the first use."""
        return self._dir

    @property
    def work(self) -> Path:
        """The workspace as commands see it, staged edits applied (made on first use).

        For the overlay this path reads the merged view through its holder's root
        (``/proc/PID/root/...``); read it, never write to it.
        """
        if self._dir is None or self._view is None:
            raise SandboxError("the sandbox has not been created yet")
        return self._view.work

    @property
    def mechanism(self) -> str | None:
        """``overlay`` or ``copy`` once the view is made, else None."""
        return self._view.mechanism if self._view is not None else None

    @property
    def copy_stats(self) -> CopyStats:
        """What the view left out (secret files, links out; for the copy also files and
        bytes copied and files too big)."""
        return self._view.stats if self._view is not None else CopyStats()

    def usage(self) -> int:
        """Bytes the view takes: the copy on disk, or the overlay's upper layer."""
        view = self._view
        return view.usage() if view is not None and self._dir is not None else 0

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill a command still running and remove the scratch copy. Safe to call twice."""
        process = self._process
        if process is not None and process.returncode is None:
            await kill_group(process, 0)
        await asyncio.to_thread(self.close)

    def kill(self) -> None:
        """SIGKILL the running command's process group, if any (synchronous, never blocks).

        With a PID namespace, the namespace's first process dies with the group and the
        kernel kills everything else in it, also processes that left the group with setsid.
        """
        process = self._process
        if process is not None and process.returncode is None:
            signal_group(process.pid, signal.SIGKILL)

    def close(self) -> None:
        """Remove the view (synchronously). Later calls to :meth:`run` fail.

        A view still being made stops, and its thread removes what it made after this.
        """
        self._closed = True
        self._stop_copy.set()
        if self._finalizer is not None:
            self._finalizer()  # rmtree, once
        self._dir = None
        with _live_lock:
            _live.discard(self)

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
        resources = _Resources(base)
        # Released when closed, garbage-collected or at exit, whichever comes first.
        self._finalizer = weakref.finalize(self, resources.release)
        with _live_lock:
            _live.add(self)
        for sub in ("work", "home", "tmp", "root"):
            (base / sub).mkdir()
        future = asyncio.get_running_loop().run_in_executor(
            None, self._make_view, base, isolation, resources
        )
        try:
            view = await asyncio.shield(future)
        except BaseException:
            # Cancelled (or failed) mid-way: the thread stops and removes what it made,
            # without making the cancelled caller wait.
            self.close()
            raise
        if self._closed:  # closed (terminate_all) while the view was being made
            raise SandboxError("the sandbox was closed")
        self._view = view
        self._dir = base
        return base

    def _make_view(self, base: Path, isolation: Isolation, resources: _Resources) -> View:
        """Make the view (in a thread); if the sandbox is closed meanwhile, remove it all."""
        view: View | None = None
        try:
            reason = overlay_possible(isolation) if self._want != "copy" else "asked for"
            if reason is None:
                view = resources.view = OverlayView(
                    self.root, base, self.secrets, self.config.max_written_bytes
                )
                try:
                    view.start(self._stop_copy)
                    return view
                except OverlayUnavailable as exc:
                    view.close()
                    reason = str(exc)
            if self._stop_copy.is_set():
                raise SandboxError("the sandbox was closed")
            if self._want == "overlay":
                raise SandboxError(f"the overlay view is not available: {reason}")
            self.overlay_note = reason
            view = resources.view = CopyView(
                self.root, base, self.secrets, self.config.max_file_bytes, isolation.filesystem
            )
            view.start(self._stop_copy)
            return view
        finally:
            # close() may have released the view while this thread was still making it.
            if self._stop_copy.is_set():
                resources.release()

    # -- staged edits --------------------------------------------------------------------

    async def sync(self, staged: Mapping[str, str], deleted: Iterable[str] = ()) -> int:
        """Make the copy hold ``staged`` (relative path -> text) and lack ``deleted``.

        Only files whose staged text differs from what was last written are touched; a file
        that was staged before and is no longer is restored from the workspace (unless it is a
        secret file). Returns how many files were written or removed.
        """
        async with self._lock:
            await self._ensure()
            return await asyncio.to_thread(self._sync, staged, deleted)

    def _sync(self, staged: Mapping[str, str], deleted: Iterable[str]) -> int:
        desired: dict[str, str | None] = {safe_rel(k): v for k, v in staged.items()}
        for rel in deleted:
            desired[safe_rel(rel)] = None
        changes: list[Change] = [
            ("put", rel, text)
            for rel, text in desired.items()
            if not (rel in self._applied and self._applied[rel] == text)
        ]
        changes += [("restore", rel, None) for rel in self._applied if rel not in desired]
        if changes:
            assert self._view is not None
            self._view.apply(changes)
        for kind, rel, text in changes:
            if kind == "put":
                self._applied[rel] = text
            else:
                del self._applied[rel]
        self.files_written += len(changes)
        return len(changes)

    # -- running -------------------------------------------------------------------------

    async def run(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run one allowed command on the view; raises :class:`CommandRefused` if not allowed.

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

    def _toolchains(self, env: Mapping[str, str]) -> list[str]:
        raw_home = self._environ.get("HOME") or os.path.expanduser("~")
        interpreter = (
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)),
        )
        return toolchain_paths(
            env,
            self.config.allowed_commands,
            workspace=self.root,
            home=Path(os.path.abspath(raw_home)),
            interpreter=interpreter,
        )

    def _command_argv(
        self,
        argv: list[str],
        base: Path,
        isolation: Isolation,
        env: Mapping[str, str],
        view: View,
    ) -> list[str]:
        # The server may die by SIGKILL, which it cannot handle: the kernel then kills the
        # command's first process (PR_SET_PDEATHSIG, kept across exec), and unshare's
        # --kill-child takes the PID namespace, and so every process in it, down with it.
        guard = list(PDEATHSIG)
        if not isolation.network:
            return [*guard, *argv]
        wrapper, extra = view.command_wrapper(isolation)
        mount_over = isolation.filesystem and not base.is_relative_to(self.root)
        expose = self._toolchains(env) if isolation.filesystem else []
        options: dict[str, Any] = {
            "self_unshare": isolation.self_unshare,
            "fs": isolation.filesystem,
            "keep": str(base),
            "work": str(base / "work"),
            "newroot": str(base / "root"),
            "home": str(base / "home"),
            "expose": expose,
            "mask": credential_files(expose),
            "root": str(self.root) if mount_over else None,
            "passthrough": view.passthrough if mount_over else [],
            "cwd": str(self.root if mount_over else base / "work"),
            "nproc": self.config.max_processes,
            "fsize": self.config.max_file_size_limit,
        }
        options.update(extra)
        return [*guard, *wrapper, *helper_argv(options), *argv]

    async def _run(
        self, argv: list[str], base: Path, isolation: Isolation, timeout: float
    ) -> CommandResult:
        view = self._view
        assert view is not None
        # The overlay lists the workspace again (a secret file made since is hidden too).
        await asyncio.to_thread(view.refresh)
        env = scrubbed_env(self._environ, base / "home", base / "tmp")
        if not (isolation.network and isolation.filesystem):
            # The copy is not at the workspace path: make its packages win over an
            # editable install that points at the user's files.
            extra = [str(base / "work"), str(base / "work" / "src")]
            env["PYTHONPATH"] = os.pathsep.join([*extra, *filter(None, [env.get("PYTHONPATH")])])
        full = self._command_argv(argv, base, isolation, env, view)
        started = time.monotonic()
        out = Output(self.config.output_head, self.config.output_tail)
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
        if self._closed:  # terminate_all ran while the process was being started
            signal_group(process.pid, signal.SIGKILL)
        assert process.stdout is not None
        flood = asyncio.Event()
        reader = asyncio.create_task(
            drain(process.stdout, out, self.config.max_output_bytes, flood)
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
                await kill_group(process, self.config.kill_grace)
            await waiter
            # Children that outlived the command (daemons) hold the pipe: kill them too.
            signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), 2.0)
        except BaseException:
            # Cancelled: the whole group dies before the cancellation goes on.
            await kill_group(process, 0)
            raise
        finally:
            reader.cancel()
            self._process = None
            # Close the pipes now: a transport left for the garbage collector after the loop
            # closed (the server exiting mid-command) printed "Event loop is closed" tracebacks.
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
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
