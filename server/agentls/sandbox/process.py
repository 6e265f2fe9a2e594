"""A sandboxed command's output: head and tail kept, the size counted; killing process groups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

__all__ = ["Output", "drain", "kill_group", "signal_group"]


class Output:
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


async def drain(stream: asyncio.StreamReader, out: Output, cap: int, flood: asyncio.Event) -> None:
    """Read everything the command writes (so it never blocks on a full pipe)."""
    while chunk := await stream.read(256 * 1024):
        out.add(chunk)
        if out.total > cap and not flood.is_set():
            flood.set()  # the runner kills the group; keep reading until the pipe closes


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap the leader.

    With a PID namespace the leader's death takes every process in it along (``unshare
    --kill-child``), including any that left the process group with setsid.
    """
    if grace > 0 and process.returncode is None:
        signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(process.wait()), 5.0)
