"""Ending the process: signals, and the sandboxed commands that must not outlive it.

A sandboxed command runs in its own process group (so a timeout can kill it whole), which
also means the server's death does not take it along: killed by SIGTERM, a server used to leave
its test suite running under PID 1 and its scratch copy in the temp directory. So while the
server (or ``agentls run``) works, :func:`stop_on_signals` handles SIGTERM, SIGINT and SIGHUP:

1. at once, synchronously: kill every sandbox's process group and remove every scratch copy
   (:func:`agentls.sandbox.terminate_all`), so nothing survives even if what follows hangs;
2. ask the program to stop (``stop(signum)``, on its event loop): the LSP server ends its
   session, which cancels the runs (closing the model streams); ``agentls run`` cancels its
   task. The process then exits with status 128 + the signal number;
3. a second signal, or a stop that is not done within :data:`FORCE_EXIT_SECONDS`, ends the
   process right away (after step 1 again).

``atexit`` (registered by the sandbox module) is the backstop for every other way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from agentls.sandbox import terminate_all

__all__ = ["FORCE_EXIT_SECONDS", "STOP_SIGNALS", "stop_on_signals"]

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# After a stop signal, the program gets this long to end by itself before it is ended.
FORCE_EXIT_SECONDS = 10.0


def _force_exit(code: int) -> None:
    terminate_all()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def stop_on_signals(
    stop: Callable[[int], object], force_after: float = FORCE_EXIT_SECONDS
) -> Iterator[list[int]]:
    """While inside, SIGTERM/SIGINT/SIGHUP end every sandbox, then call ``stop(signum)``.

    ``stop`` runs on the event loop that is running when the signal arrives (else directly);
    it should make the program wind down and return. Yields the list of signals received, so
    the caller can exit with ``128 + signum``. Only the main thread can handle signals;
    elsewhere this does nothing. The previous handlers are restored on the way out.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        terminate_all()  # first, whatever happens next
        if received:  # a second signal: the user means it
            _force_exit(128 + received[0])
        received.append(signum)
        log.info("signal %d: stopping", signum)
        watchdog = threading.Timer(force_after, _force_exit, args=(128 + signum,))
        watchdog.daemon = True
        watchdog.start()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            stop(signum)
        else:
            loop.call_soon_threadsafe(stop, signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
