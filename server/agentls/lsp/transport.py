"""Serving LSP on stdio or TCP: our own reader loop around :class:`AgentProtocol`.

pygls' ``start_io``/``start_tcp`` would die on a huge frame or go deaf on a bad one; this loop
feeds :class:`agentls.lsp.framing.FrameDecoder` and hands each body to the protocol. The
stdio reader is a thread (a blocking read that never stalls the event loop), bounded by a
small queue; the process exits with the status the protocol decided (0 after ``shutdown``,
else 1), and a watchdog ends it if threads outlive ``exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from agentls.lsp.agent_protocol import AgentProtocol
from agentls.lsp.framing import FrameDecoder, FrameError, FrameWriter

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)

# Bytes read from the input per system call.
READ_CHUNK = 64 * 1024
# Chunks buffered between the reader thread and the event loop: bounds memory when the client
# writes faster than the server handles (the thread then blocks, and so does the client).
READ_QUEUE_CHUNKS = 4
# After exit, running handlers get this long to finish their cleanup (close model streams,
# remove sandbox copies) before the process ends regardless.
EXIT_GRACE_SECONDS = 5.0


class _StreamWriterAdapter:
    """pygls' writer interface over an asyncio StreamWriter (TCP)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed or self._writer.is_closing():
            return
        self._writer.write(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()


async def _read_loop(protocol: AgentProtocol, read: Callable[[], Awaitable[bytes]]) -> None:
    """Feed input through the decoder to the protocol until EOF or a stop."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        # Thread-safe: a stop may come from a signal handler or a writer on another thread,
        # also after the loop has closed.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stopped.set)

    protocol.on_stop(stop)
    stop_wait = asyncio.ensure_future(stopped.wait())
    decoder = FrameDecoder()
    try:
        while protocol.exit_code is None:
            read_task = asyncio.ensure_future(read())
            await asyncio.wait({read_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not read_task.done():
                read_task.cancel()
                break
            chunk = read_task.result()
            if not chunk:
                log.info("end of input")
                # vscode-languageserver: the input closing ends the server, 0 after shutdown.
                protocol.finish(0 if protocol.shutdown_received else 1)
                break
            decoder.feed(chunk)
            for event in decoder.events():
                if isinstance(event, FrameError):
                    protocol.handle_frame_error(event)
                else:
                    protocol.handle_frame(event)
                if protocol.exit_code is not None:
                    break
                # Let started handlers run between messages of a burst.
                await asyncio.sleep(0)
    finally:
        stop_wait.cancel()


def _start_reader_thread(fd: int, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes]:
    """Read ``fd`` on a daemon thread into a bounded queue; b"" marks the end.

    A daemon thread, not the loop's executor: a read blocked on an idle client must not keep
    the process alive after exit (pygls' executor thread did, until stdin closed).
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=READ_QUEUE_CHUNKS)

    def pump() -> None:
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError as exc:
                log.warning("reading the client's messages failed: %s", exc)
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            except Exception:  # the loop is gone: the server is exiting
                return
            if not chunk:
                return

    threading.Thread(target=pump, name="agentls-stdin", daemon=True).start()
    return queue


def _protect_stdout() -> BinaryIO:
    """Take fd 1 for the LSP stream and point everything else that writes to stdout at stderr.

    A stray ``print`` (ours, a library's, a child process inheriting fd 1) would corrupt the
    client's stream; vscode-languageserver likewise routes console output away from it.
    """
    sys.stdout.flush()
    lsp_fd = os.dup(1)
    try:
        os.dup2(2, 1)
    except OSError:  # no usable stderr: keep fd 1 as it is rather than fail to start
        pass
    else:
        sys.stdout = sys.stderr
    return os.fdopen(lsp_fd, "wb")


async def _cancel_remaining(grace: float) -> None:
    """Cancel every other task and give them ``grace`` seconds to clean up."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            log.warning("%d task(s) did not stop within %.0f s of exit", len(pending), grace)


def _run_session(
    server: LanguageServer, session: Callable[[AgentProtocol], Awaitable[None]]
) -> int:
    protocol = server.protocol
    if not isinstance(protocol, AgentProtocol):
        raise TypeError("the server must be built with protocol_cls=AgentProtocol")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(session(protocol))
        loop.run_until_complete(_cancel_remaining(EXIT_GRACE_SECONDS))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        pool = getattr(server, "_thread_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        asyncio.set_event_loop(None)
        loop.close()
    code = protocol.exit_code if protocol.exit_code is not None else 1
    _exit_watchdog(code)
    return code


def _exit_watchdog(code: int) -> None:
    """If a non-daemon thread (a stuck worker) would keep the process alive after exit, end
    it after a grace period anyway: an editor waits for its server to go."""
    others = [
        t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon
    ]
    if not others:
        return

    def force() -> None:
        threading.Event().wait(EXIT_GRACE_SECONDS)
        log.warning(
            "threads still running %.0f s after exit; ending the process", EXIT_GRACE_SECONDS
        )
        os._exit(code)

    threading.Thread(target=force, name="agentls-exit", daemon=True).start()


def serve_stdio(server: LanguageServer) -> int:
    """Serve LSP on stdin/stdout until exit or end of input; returns the exit status."""
    out = _protect_stdout()

    async def session(protocol: AgentProtocol) -> None:
        loop = asyncio.get_running_loop()

        def lost() -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(protocol.finish, 0 if protocol.shutdown_received else 1)

        writer = FrameWriter(out, on_lost=lost)
        protocol.set_writer(writer)
        queue = _start_reader_thread(sys.stdin.fileno(), loop)
        try:
            await _read_loop(protocol, queue.get)
        finally:
            writer.close()

    return _run_session(server, session)


def serve_tcp(server: LanguageServer, host: str, port: int) -> int:
    """Serve LSP to one TCP client (as pygls does) until exit or disconnect."""

    async def session(protocol: AgentProtocol) -> None:
        done = asyncio.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if done.is_set():
                writer.close()
                return
            adapter = _StreamWriterAdapter(writer)
            protocol.set_writer(adapter)
            try:
                await _read_loop(protocol, partial(reader.read, READ_CHUNK))
            finally:
                adapter.close()
                done.set()

        tcp = await asyncio.start_server(connection, host, port)
        log.info("serving LSP on %s:%s", host, port)
        async with tcp:
            await done.wait()

    return _run_session(server, session)
