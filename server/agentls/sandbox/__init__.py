"""Run one allowed command on a private view of the workspace, with the agent's edits applied.

The ``bash`` tool and the edit verifier both drive it; one :class:`Sandbox` belongs to one
agent run. One module per mechanism:

* ``command``: the command line is parsed, never handed to a shell. Any shell syntax that
  could chain, pipe, redirect, substitute or expand is refused with a message naming it, argv
  must start with an allowed prefix (``pytest``, ``npm test``...), and arguments may not name
  paths outside the workspace.
* ``overlay`` and ``holder``: the view commands get, where the kernel allows it: an overlay
  with the workspace itself as its read-only lower layer, a layer of whiteouts for what must
  not be seen, and a private tmpfs on top for the staged edits and what commands write, kept
  by a holder process in its own user and mount namespaces. Nothing is copied.
* ``listing`` and ``secret_scan``: what the view hides (what the copy left out: ignored
  files, ``.git``, caches, secret files, links out or to secrets, sockets...), found with
  ``git ls-files`` and ``find``, secret names found fast and judged by the one matcher.
* ``copy``: the fallback view: the workspace is copied once (git's view of it when it is a
  repository; ``.git``, caches, huge files and secret files left out), staged edits are
  written over it, and later syncs rewrite only what changed.
* ``environment``: the environment is scrubbed of secrets, ``HOME`` points into the sandbox,
  and the toolchain directories the allowed commands need are found.
* ``isolation`` and ``helper``: where the machine allows it the command runs in new user,
  network, mount and PID namespaces, in a **new root** that holds only the view (at the
  workspace path), the system directories, the toolchains and private temp directories, all
  read-only but the view and the temp directories; no network but a private loopback; no
  capabilities.
* ``process``: a timeout kills the whole process group (and the PID namespace with it);
  output is read as it comes, only head and tail are kept, and a hard cap stops a flood.
* ``core``: :class:`Sandbox` ties them together, and a registry of live sandboxes lets the
  server kill every command and remove every view when it is stopped (:func:`terminate_all`).
"""

from __future__ import annotations

from agentls.sandbox.command import check_command
from agentls.sandbox.config import (
    NO_NETWORK,
    CommandRefused,
    CommandResult,
    SandboxConfig,
    SandboxError,
)
from agentls.sandbox.core import Sandbox, live_sandboxes, terminate_all
from agentls.sandbox.environment import scrubbed_env
from agentls.sandbox.isolation import Isolation, detect_isolation
from agentls.settings import DEFAULT_ALLOWED_COMMANDS

__all__ = [
    "DEFAULT_ALLOWED_COMMANDS",
    "NO_NETWORK",
    "CommandRefused",
    "CommandResult",
    "Isolation",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "check_command",
    "detect_isolation",
    "live_sandboxes",
    "scrubbed_env",
    "terminate_all",
]
