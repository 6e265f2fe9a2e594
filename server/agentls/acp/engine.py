"""A thread with an event loop of its own, where a session's runs execute.

Why not the connection's loop: the staged workspace asks its document provider for open
buffers synchronously, in the middle of a tool call, and in ACP the buffers are with the
client (``fs/read_text_file``, a request answered on the connection). A run on its own loop
can block on that answer while the connection's loop goes on reading it. Everything a run
owns (the backend's HTTP client, the sandbox) lives on this loop; the connection's side only
awaits results, and cancelling that await cancels the run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a cancelled run gets to wind down (close its model stream, kill its sandboxed
# command) before the caller stops waiting for it.
CANCEL_GRACE_SECONDS = 15.0


class EngineThread:
    """One daemon thread running one event loop; :meth:`run` executes coroutines on it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` run on the engine loop, from another loop.

        Cancelling the caller cancels the run on the engine loop and waits (at most
        :data:`CANCEL_GRACE_SECONDS`) until it has ended, so a cancelled prompt has closed its
        model stream by the time it answers ``cancelled``.
        """
        caller = asyncio.get_running_loop()
        outcome: asyncio.Future[T] = caller.create_future()
        started: list[asyncio.Task[T]] = []

        def settle(task: asyncio.Task[T]) -> None:
            if outcome.done():
                return
            if task.cancelled():
                outcome.cancel()
            elif (error := task.exception()) is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(task.result())

        def start() -> None:
            async def body() -> T:
                return await make()

            task = self.loop.create_task(body())
            started.append(task)
            task.add_done_callback(lambda t: _call_soon(caller, settle, t))

        self.loop.call_soon_threadsafe(start)
        try:
            return await asyncio.shield(outcome)
        except asyncio.CancelledError:
            self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in started])
            with contextlib.suppress(BaseException):
                await asyncio.wait({outcome}, timeout=CANCEL_GRACE_SECONDS)
            raise

    def stop(self) -> None:
        """Cancel what still runs, stop the loop and the thread (call after the last run)."""
        if self.loop.is_closed():
            return

        def shutdown() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_soon(self.loop.stop)

        with contextlib.suppress(RuntimeError):  # already stopped
            self.loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    """``loop.call_soon_threadsafe`` that tolerates a loop already closed (process ending)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        log.debug("the connection's loop is closed; a run's outcome was dropped")
