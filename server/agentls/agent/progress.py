"""Where the agent reports what it is doing, and how a run that cannot go on says why.

These live in ``agent`` (not ``tasks``) so the loop depends only on layers below it; ``tasks.base``
re-exports them for the server and the CLI.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    """Where a task reports what it is doing (an LSP progress bar, or stderr in the CLI)."""

    def report(self, message: str, percentage: int | None = None) -> None: ...

    def warn(self, message: str) -> None: ...


class NullProgress:
    """A progress sink that drops everything."""

    def report(self, message: str, percentage: int | None = None) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class TaskError(Exception):
    """A task could not run (bad request, backend failure already explained)."""
