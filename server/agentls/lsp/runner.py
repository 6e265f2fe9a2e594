"""One agent run for the language server: context, progress, the task, the WorkspaceEdit.

Everything that can go wrong ends here as a ``RunFailure`` (message + hint) or a propagating
``asyncio.CancelledError``; ``server.py`` turns those into JSON-RPC errors or messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from agentls.agent.stats import Stats
from agentls.changes import EditConflict, disk_text, unified_diff
from agentls.errors import AgentlsError, message_and_hint
from agentls.llm.types import ChatBackend
from agentls.lsp.documents import (
    DocumentScope,
    OutsideWorkspace,
    document_scope,
    open_documents,
)
from agentls.lsp.progress import LspProgress
from agentls.lsp.protocol import AgentParams
from agentls.lsp.workspace_edit import to_workspace_edit
from agentls.settings import Settings
from agentls.tasks.base import (
    DocumentProvider,
    EditResult,
    ExplainResult,
    TaskContext,
    TaskRequest,
)
from agentls.tasks.registry import TaskSpec

log = logging.getLogger(__name__)


class RunFailure(AgentlsError):
    """A run that failed for a reason the user can act on, as the LSP front end reports it."""

    def __init__(self, message: str, hint: str = "", data: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint)
        # Extra fields for the JSON-RPC error's data (e.g. the staged diff nobody applied).
        self.data: dict[str, Any] = data or {}


@dataclass
class RunOutcome:
    """A finished run: the task's result and, for edit tasks, the edit to hand the client."""

    spec: TaskSpec
    result: ExplainResult | EditResult
    edit: types.WorkspaceEdit | None


_shared_client: Any = None


def make_backend(settings: Settings) -> ChatBackend:
    """Build the chat backend for these settings, on the server's one shared HTTP client.

    Sharing matters: a new httpx client builds an SSL context (about 20 ms, most of the
    server's own cost per request) and opens a new connection; a shared one keeps the
    connection to the model server alive between requests. Backends never close a client
    they were given. (Imported late: httpx is not needed to start the server.)
    """
    global _shared_client
    import httpx

    from agentls.llm.factory import make_backend as factory

    if _shared_client is None or _shared_client.is_closed:
        _shared_client = httpx.AsyncClient()
    return factory(settings, _shared_client)


def describe_failure(exc: BaseException) -> RunFailure:
    """Message and hint for any failure, looking through wrapped backend errors."""
    if isinstance(exc, RunFailure):
        return exc
    described = message_and_hint(exc)
    if described is not None:
        return RunFailure(*described)
    if isinstance(exc, EditConflict):
        return RunFailure(
            f"The document changed where the agent wanted to edit it; nothing was applied. {exc}",
            "Run the request again on the current text.",
        )
    return RunFailure(f"Internal error: {type(exc).__name__}: {exc}", "See the agentls log.")


def client_supports_annotations(ls: LanguageServer) -> bool:
    """Whether the client understands change annotations (workspaceEdit.changeAnnotationSupport).

    Only such clients get annotated edits: to the others an ``AnnotatedTextEdit`` is an edit
    pointing at an annotation they never heard of, which some refuse.
    """
    workspace = ls.client_capabilities.workspace
    workspace_edit = workspace.workspace_edit if workspace else None
    return bool(workspace_edit and workspace_edit.change_annotation_support is not None)


class AgentRunner:
    """Runs tasks for the server and remembers the last run's stats for agent/status."""

    def __init__(self, ls: LanguageServer, settings: Callable[[], Settings]) -> None:
        self._ls = ls
        self._settings = settings
        self.last_stats: Stats | None = None

    def _log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        self._ls.window_log_message(types.LogMessageParams(type=kind, message=message))

    def scope(self, spec: TaskSpec, path: Path) -> DocumentScope:
        """Where the request may work; RunFailure for a file outside the open folders.

        Checked before progress starts or any model is called: a refused file's text must
        never reach the model.
        """
        try:
            scope = document_scope(self._ls.workspace, path)
        except OutsideWorkspace as exc:
            raise RunFailure(exc.message, exc.hint) from exc
        if scope.single_file and spec.needs_folder:
            raise RunFailure(
                f"{spec.activity} needs a workspace folder: {path} is open on its own, and "
                f"{spec.needs_folder}.",
                "Open the folder that holds the file and try again.",
            )
        return scope

    async def _edit(
        self, spec: TaskSpec, result: EditResult, documents: DocumentProvider, root: Path
    ) -> types.WorkspaceEdit:
        """The WorkspaceEdit of a finished edit run, against the text it will be applied to.

        Open documents get the edit rebased onto what the user typed meanwhile; the others
        (including a buffer the agent read and the user then closed unsaved) get it rebased
        onto the disk text, which is what a version-null edit is applied to. When that is
        not clean the run fails, but the staged change is not lost: the error carries the
        summary and the diff, and the diff goes to the log.
        """
        # The buffers are read here, on the loop that applies didChange, so each one's text
        # and version belong together; the diffing then runs in a thread (a multi-megabyte
        # file takes a moment), and agent/status, cancel and typing are answered meanwhile.
        buffers = {change.path: documents(change.path) for change in result.changes}
        try:
            # Annotated edits need confirmation: VS Code shows its refactor preview.
            return await asyncio.to_thread(
                to_workspace_edit,
                result.changes,
                current=buffers.get,
                annotate=client_supports_annotations(self._ls),
                disk=disk_text,
            )
        except EditConflict as exc:
            diff = await asyncio.to_thread(unified_diff, result.changes, root)
            self._log(
                f"{spec.title}: the staged change that was not applied:\n{diff}",
                types.MessageType.Warning,
            )
            staged = " ".join(result.summary.split())  # one line: it ends a message
            raise RunFailure(
                "The document changed where the agent wanted to edit it; nothing was applied. "
                f"{exc.message} What the agent staged: {staged}",
                "The staged change is in the agentls log as a diff; run the request again "
                "on the current text.",
                data={"summary": result.summary, "diff": diff},
            ) from exc

    async def run(self, spec: TaskSpec, params: AgentParams) -> RunOutcome:
        """Run one task with progress; raise RunFailure, or CancelledError when cancelled."""
        path = params.path()
        try:
            scope = self.scope(spec, path)
        except RunFailure as refusal:
            self._log(f"{spec.title} refused: {refusal}", types.MessageType.Error)
            raise
        if scope.single_file:
            self._log(
                f"{path}: no workspace folder is open, so the agent works on this file alone",
                types.MessageType.Info,
            )
        settings = self._settings()
        progress = await LspProgress.start(
            self._ls, spec.progress_title, params.work_done_token, asyncio.current_task()
        )
        end_message = "Failed"
        backend: ChatBackend | None = None
        try:
            backend = make_backend(settings)
            # One live provider serves both the agent's reads and the rebase after the run.
            documents = open_documents(self._ls.workspace)
            ctx = TaskContext(
                root=scope.root,
                settings=settings,
                backend=backend,
                documents=documents,
                progress=progress,
                log=self._log,
                single_file=scope.single_file,
            )
            request = TaskRequest(path=path, range=params.range, instruction=params.instruction)
            result = await spec.execute(ctx, request)
            self.last_stats = result.stats
            self._log(result.stats.summary_line(), types.MessageType.Info)
            edit = None
            if isinstance(result, EditResult):
                # result.warnings were already shown: the loop sends them through the sink.
                edit = await self._edit(spec, result, documents, scope.root)
            end_message = "Done"
            if edit is not None and edit.document_changes:
                # The last report stays on screen while the editor shows its preview; the
                # model is done by now, so say what the user is waiting for.
                end_message = "Done: review the proposed changes"
                progress.report(end_message, 100)
            return RunOutcome(spec=spec, result=result, edit=edit)
        except asyncio.CancelledError:
            end_message = "Cancelled"
            self._log(f"{spec.title}: cancelled", types.MessageType.Info)
            raise  # so the model's HTTP stream closes and the request answers RequestCancelled
        except Exception as exc:
            failure = describe_failure(exc)
            if not isinstance(exc, AgentlsError | EditConflict):  # else a bug: its traceback
                log.exception("%s failed", spec.name)
            self._log(f"{spec.title} failed: {failure}", types.MessageType.Error)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            progress.end(end_message)
            if backend is not None:
                try:
                    await backend.aclose()
                except Exception as exc:  # closing must never mask the run's own outcome
                    log.warning("closing the backend failed: %s", exc)
