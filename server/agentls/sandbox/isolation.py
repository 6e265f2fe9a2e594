"""Isolation: which namespaces this machine allows, and the argv that runs the helper in them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentls.sandbox.config import NO_NETWORK

__all__ = ["HELPER_PATH", "Isolation", "detect_isolation", "helper_argv", "probe"]

# Run by path, never imported here: it starts without importing agentls (see helper.py).
HELPER_PATH = Path(__file__).with_name("helper.py")


@dataclass(frozen=True)
class Isolation:
    """What this machine allows, found once per process by :func:`detect_isolation`."""

    wrapper: tuple[str, ...]  # argv before the helper: `unshare ...`, or () when the helper
    self_unshare: bool  # the helper calls unshare(2) itself
    network: bool
    filesystem: bool  # a new root: the view at the workspace path, toolchains, nothing else
    pid_namespace: bool  # every process dies with the command (setsid cannot escape)
    reason: str = ""  # why network isolation is unavailable

    def describe(self) -> str:
        """A short account for logs and `agentls doctor`."""
        if not self.network:
            return f"{NO_NETWORK} ({self.reason})"
        parts = ["private network namespace"]
        parts.append(
            "a new root: the workspace view, system directories, toolchains"
            if self.filesystem
            else ""
        )
        parts.append("PID namespace" if self.pid_namespace else "")
        return ", ".join(p for p in parts if p)


_NONE = Isolation((), False, False, False, False, "not probed")
_isolation_cache: Isolation | None = None
_isolation_lock = threading.Lock()


def helper_argv(options: Mapping[str, Any]) -> list[str]:
    """The argv that runs the helper with ``options`` (the command's argv goes after it)."""
    return [sys.executable, "-I", "-S", str(HELPER_PATH), json.dumps(dict(options))]


def probe(wrapper: Sequence[str], self_unshare: bool, base: Path) -> dict[str, Any]:
    """Run the helper in probe mode under ``wrapper``: ``{"net", "fs", "error"}``."""
    keep = base / "keep"
    for sub in ("work", "home", "root"):
        (keep / sub).mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"probe": True, "self_unshare": self_unshare, "fs": True}
    options |= {"keep": str(keep), "work": str(keep / "work"), "root": None}
    options |= {"newroot": str(keep / "root"), "home": str(keep / "home")}
    try:
        done = subprocess.run(
            [*wrapper, *helper_argv(options)],
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
    probe mode, which reports whether it really saw no network interface but loopback, and
    whether it could build the new root and drop capabilities.
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
                result = probe(wrapper, self_unshare, Path(tmp) / str(index))
                if result.get("net"):
                    found = Isolation(wrapper, self_unshare, True, bool(result.get("fs")), pid_ns)
                    break
                name = " ".join(wrapper[:2]) if wrapper else "unshare(2)"
                reasons.append(f"{name}: {result.get('error') or 'no private network'}")
        if not found.network:
            found = Isolation((), False, False, False, False, "; ".join(reasons) or "unknown")
        _isolation_cache = found
        return found
