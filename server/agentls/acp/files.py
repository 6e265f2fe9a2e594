"""Files through the client: its buffers for the staged view, and where accepted edits go.

A client with ``fs.readTextFile`` serves every file the agent reads (``fs/read_text_file``),
so unsaved buffers are what the model sees, as over LSP. A client with ``fs.writeTextFile``
receives the accepted edits (``fs/write_text_file``), so the editor's undo and review apply;
a client without it gets them written to disk, after the same consent. Either way the edit is
first carried over to the file's current text (the user may have typed meanwhile); where it
cannot be, nothing is written.

Only paths under the session root ever get here: the workspace confines the tools, the prompt
refuses mentions outside, and :meth:`ClientFiles.inside` is checked again at both ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from acp.interfaces import Client
from acp.schema import ClientCapabilities

from agentls.changes import EditConflict, FileChange, disk_text, rebase, write_changes
from agentls.tasks.base import DocumentSnapshot

log = logging.getLogger(__name__)

# Files bigger than this are read from disk: a client round trip for a generated or data file
# buys nothing, and grep skips them anyway (agent/workspace.py GREP_MAX_FILE_BYTES).
CLIENT_READ_MAX_BYTES = 2_000_000
# How long a read may wait for the client before the file is read from disk instead.
CLIENT_READ_TIMEOUT = 10.0
# How often a waiting read checks whether the run was cancelled.
_POLL_SECONDS = 0.05


class ClientFiles:
    """One session's access to files: through the client where it offers it, else the disk."""

    def __init__(
        self,
        conn: Client,
        session_id: str,
        root: Path,
        capabilities: ClientCapabilities | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.conn = conn
        self.session_id = session_id
        self.root = root
        self._real_root = root.resolve()
        fs = capabilities.fs if capabilities is not None else None
        self.can_read = bool(fs and fs.read_text_file)
        self.can_write = bool(fs and fs.write_text_file)
        self.loop = loop  # the connection's loop; requests to the client are made on it

    def inside(self, path: Path) -> bool:
        """Whether ``path`` is under the session root, also after symlinks."""
        path = Path(os.path.normpath(path))
        return path.is_relative_to(self.root) and path.resolve().is_relative_to(self._real_root)

    # -- the staged view's document provider (called off the connection's loop) ---------------

    def provider(self, buffers: Mapping[Path, str], cancelled: threading.Event) -> RunDocuments:
        """The document provider of one run (see :class:`RunDocuments`)."""
        return RunDocuments(self, buffers, cancelled)

    def worth_asking(self, path: Path) -> bool:
        """Whether the client may hold a buffer of ``path`` worth a round trip."""
        # Only files that exist: a path the model guesses costs no round trip, and a client
        # has no buffer for a file that is not there (an unsaved new buffer has no path).
        if not (self.can_read and self.inside(path)):
            return False
        try:
            return path.is_file() and path.stat().st_size <= CLIENT_READ_MAX_BYTES
        except OSError:
            return False

    def ask_client(self, path: Path, cancelled: threading.Event) -> str | None:
        """The client's text of ``path`` (blocking: call off the connection's loop), or None
        when it has none, fails, or takes too long (the disk is then the answer)."""
        with contextlib.suppress(RuntimeError):  # no loop running in this thread: good
            if asyncio.get_running_loop() is self.loop:
                # Waiting here would block the very loop that must deliver the answer.
                log.warning("buffer of %s asked on the connection's loop; reading the disk", path)
                return None
        future = asyncio.run_coroutine_threadsafe(self._read_request(path), self.loop)
        deadline = time.monotonic() + CLIENT_READ_TIMEOUT
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                if cancelled.is_set() or time.monotonic() > deadline:
                    future.cancel()
                    if not cancelled.is_set():
                        log.warning("the client did not serve %s in time; reading the disk", path)
                    return None
            except Exception as exc:  # the client refused or failed: the disk is the answer
                log.info("fs/read_text_file %s failed (%s); reading the disk", path, exc)
                return None

    async def _read_request(self, path: Path) -> str:
        response = await self.conn.read_text_file(path=str(path), session_id=self.session_id)
        return response.content

    # -- applying accepted changes (on the connection's loop) ----------------------------------

    async def current_text(self, path: Path) -> str | None:
        """The file's text now: the client's buffer where it serves them, else the disk; None
        when there is no such file."""
        if self.can_read and path.is_file():
            try:
                return await asyncio.wait_for(self._read_request(path), CLIENT_READ_TIMEOUT)
            except Exception as exc:
                log.info("fs/read_text_file %s failed (%s); reading the disk", path, exc)
        return disk_text(path)

    async def apply(self, changes: Sequence[FileChange]) -> list[Path]:
        """Write ``changes`` carried over to each file's current text; all or none.

        Every file is checked first: an edit that overlaps what the user typed since the agent
        read the file, a file the agent created that exists now, or a file that is gone raise
        :class:`EditConflict` before anything is written. Returns the paths written.
        """
        targets: list[tuple[FileChange, str | None, str]] = []
        for change in changes:
            if not self.inside(change.path):
                raise EditConflict(f"{change.path}: outside the workspace; nothing was written.")
            # Where the client takes the writes, its buffer is the text to build on; where the
            # disk does, the disk's text is.
            if self.can_write:
                current = await self.current_text(change.path)
            else:
                current = disk_text(change.path)
            if change.old_text is None:
                if current is not None and current != change.new_text:
                    raise EditConflict(
                        f"{change.path}: the file exists now but the agent meant to create it; "
                        "nothing was written."
                    )
                target = change.new_text
            elif current is None:
                raise EditConflict(f"{change.path}: the file is gone; nothing was written.")
            else:
                target = rebase(change, current, on_disk=not (self.can_read and self.can_write))
            if target != current:
                targets.append((change, current, target))
        written: list[Path] = []
        if not self.can_write:
            # As `agentls run --apply` writes: all checked again first, BOM kept, folders made.
            disk = [FileChange(change.path, current, target) for change, current, target in targets]
            await asyncio.to_thread(write_changes, disk)
            return [change.path for change in disk]
        for change, _current, target in targets:
            await self.conn.write_text_file(
                path=str(change.path), content=target, session_id=self.session_id
            )
            written.append(change.path)
        return written


class RunDocuments:
    """The staged view's document provider for one run: the texts the prompt embedded, else
    the client's buffer of each file (asked once per run), else None (the workspace reads the
    disk). Called synchronously off the connection's loop (the engine thread, or a search's
    worker thread); it blocks there on the client's answer, at most
    :data:`CLIENT_READ_TIMEOUT` or until the run is ``cancelled``.

    ``open_paths`` names the buffers known to differ from the disk (embedded, or read from the
    client and found unsaved), so a search asks the client about those and reads everything
    else from the disk: some clients open a buffer for every file they are asked about.
    """

    def __init__(
        self, files: ClientFiles, buffers: Mapping[Path, str], cancelled: threading.Event
    ) -> None:
        self.files = files
        self.cancelled = cancelled
        self._given = {Path(os.path.normpath(p)): text for p, text in buffers.items()}
        self._cache: dict[Path, DocumentSnapshot | None] = {}
        self._dirty: set[Path] = set(self._given)
        self._lock = threading.Lock()  # searches may ask from worker threads

    def __call__(self, path: Path) -> DocumentSnapshot | None:
        path = Path(os.path.normpath(path))
        with self._lock:
            if path in self._cache:
                return self._cache[path]
        text = self._given.get(path)
        if text is None and self.files.worth_asking(path):
            text = self.files.ask_client(path, self.cancelled)
            if text is not None and text != disk_text(path):
                with self._lock:
                    self._dirty.add(path)
        snapshot = DocumentSnapshot(text, None) if text is not None else None
        with self._lock:
            self._cache[path] = snapshot
        return snapshot

    def open_paths(self) -> list[Path]:
        """The buffers known to hold text the disk does not."""
        with self._lock:
            return sorted(self._dirty)
