"""Plain request, context and result types shared by every task, the server and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Re-exported: the server and the CLI know these as parts of the task contract.
from agentls.agent.progress import NullProgress as NullProgress
from agentls.agent.progress import ProgressSink as ProgressSink
from agentls.agent.stats import Stats
from agentls.changes import FileChange
from agentls.documents import DocumentProvider as DocumentProvider
from agentls.documents import DocumentSnapshot as DocumentSnapshot
from agentls.documents import no_documents as no_documents
from agentls.errors import TaskError as TaskError
from agentls.llm.types import ChatBackend, Message
from agentls.settings import Settings


@dataclass(frozen=True)
class TextRange:
    """A range in LSP terms: zero-based lines and UTF-16 characters, end exclusive."""

    start_line: int
    start_character: int
    end_line: int
    end_character: int


@dataclass(frozen=True)
class TaskRequest:
    """What the user asked for: a file, optionally a range in it, optionally an instruction.

    ``files``: more files the user attached (a chat panel's @-mentions), sent in the first
    message after the main one. The general request (``ask``) may have no main file: its
    ``path`` is then the workspace root.
    """

    path: Path
    range: TextRange | None = None
    instruction: str | None = None
    files: tuple[Path, ...] = ()


@dataclass
class TaskContext:
    """What a task runs with; built by the server per request, or by the CLI.

    ``single_file`` means the request's file is worked on alone (the editor opened no folder,
    or the CLI's file is outside the current directory): ``root`` is then just the file's
    folder, and the tools see the file and nothing else, with no bash and no workspace skills.

    ``history``: the conversation so far (an earlier result's ``messages``), for a follow-up
    in a chat session (ACP); empty for a request of its own (LSP, CLI).
    """

    root: Path
    settings: Settings
    backend: ChatBackend
    documents: DocumentProvider = no_documents
    progress: ProgressSink = field(default_factory=NullProgress)
    log: Callable[[str], None] = lambda _msg: None
    single_file: bool = False
    history: list[Message] = field(default_factory=list)


@dataclass
class ExplainResult:
    """The explanation as Markdown, with the run's stats.

    ``messages``: the conversation as it ended, so a chat session can continue it;
    ``stop_reason``: the loop's ("finished", "turn_cap", "looping").
    """

    markdown: str
    stats: Stats
    messages: list[Message] = field(default_factory=list)
    stop_reason: str = "finished"


@dataclass
class Verification:
    """What the harness ran to check an edit, and whether it passed.

    ``passed`` is None when nothing could be verified (no tests found, verification off, an
    untrusted workspace, the sandbox unavailable); ``note`` then says why.
    """

    command: str | None
    passed: bool | None
    exit_code: int | None = None
    output: str = ""  # the tail of the last run's output
    attempts: int = 0  # runs of the command, the first check plus repair rounds
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The protocol shape: ``{command, passed, exitCode, output, attempts, note}``."""
        return {
            "command": self.command,
            "passed": self.passed,
            "exitCode": self.exit_code,
            "output": self.output,
            "attempts": self.attempts,
            "note": self.note,
        }

    def headline(self) -> str:
        """One plain sentence for the summary, e.g. "Tests FAIL: `pytest` exited 1."."""
        if self.passed:
            return f"Tests pass: `{self.command}`."
        if self.passed is None:
            note = self.note or "nothing ran"
            return f"{note[0].upper()}{note[1:]}; not verified."
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        how = "timed out" if self.exit_code is None else f"exited {self.exit_code}"
        return (
            f"Tests FAIL: `{self.command}` {how}{tries}. The edit is returned anyway; "
            "review it before you keep it."
        )


@dataclass
class EditResult:
    """A refactor or generated tests: a summary, the staged file changes, the stats."""

    summary: str
    changes: list[FileChange]
    stats: Stats
    test_file: Path | None = None
    warnings: list[str] = field(default_factory=list)
    verification: Verification | None = None
    messages: list[Message] = field(default_factory=list)  # as ExplainResult's
    stop_reason: str = "finished"
