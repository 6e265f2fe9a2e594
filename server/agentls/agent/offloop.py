"""Blocking workspace work in a worker thread, stoppable when its caller is cancelled.

Walks and searches of a large tree take seconds; on the event loop they froze the language
server (no ``agent/status``, no cancel). :func:`run_off_loop` runs them in a thread instead.
``asyncio.to_thread`` cannot stop a thread, so the work polls :func:`check_stop`: when the
awaiting task is cancelled, the next poll raises :class:`Stopped` and the thread ends (killing
ripgrep on the way) instead of finishing a walk nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The current off-loop call's stop flag (threads get a copy of their caller's context).
STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "agentls_offloop_stop", default=None
)


# The longest a worker thread holds the GIL before the event loop's thread may take it. At
# CPython's default (5 ms), a loop woken for one request waits that long at every step that
# releases the GIL (each read, write and select), so during a 5 MB diff `agent/status` took up
# to 0.39 s of which 0.09 s was its own work; at 0.5 ms the build added at most 0.06 s.
LOOP_SWITCH_INTERVAL = 0.0005


def favour_the_loop() -> None:
    """Let the event loop's thread take the GIL back quickly from off-loop work (a server
    calls this once at start; the worker threads pay a few more switches, the user waits less)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), LOOP_SWITCH_INTERVAL))


class Stopped(Exception):
    """The caller was cancelled; the result would be thrown away."""


def check_stop() -> None:
    """Raise :class:`Stopped` when the current off-loop call was cancelled (no-op otherwise)."""
    stop = STOP.get()
    if stop is not None and stop.is_set():
        raise Stopped


async def run_off_loop(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, so the event loop keeps answering requests."""
    stop = threading.Event()
    token = STOP.set(stop)
    try:
        return await asyncio.to_thread(fn, *args)  # copies this context, STOP included
    except asyncio.CancelledError:
        stop.set()
        raise
    finally:
        STOP.reset(token)
