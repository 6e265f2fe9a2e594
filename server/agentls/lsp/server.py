"""The pygls language server: feature registration and translation to protocol types only.

The work happens in small modules named for their job: ``runner`` (one agent run),
``progress`` (work-done progress and its Cancel), ``settings``, ``documents``, ``status``,
``code_actions`` and ``explanation``, all in this package.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Generator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol.language_server import lsp_method

from agentls import __version__
from agentls.lsp import protocol
from agentls.lsp.agent_protocol import AgentProtocol
from agentls.lsp.code_actions import ALL_KINDS, code_actions
from agentls.lsp.explanation import message_text, write_explanation
from agentls.lsp.protocol import (
    CommandResultJson,
    ProgressToken,
    ProtocolError,
    StatusResultJson,
)
from agentls.lsp.runner import AgentRunner, RunFailure, RunOutcome, make_backend
from agentls.lsp.settings import (
    SettingsState,
    announce_warnings,
    client_supports_configuration,
    pull_configuration,
)
from agentls.lsp.status import backend_status
from agentls.tasks.base import ExplainResult
from agentls.tasks.registry import TASKS, TaskSpec

log = logging.getLogger(__name__)

REQUEST_FAILED = types.LSPErrorCodes.RequestFailed.value  # -32803

# The workDoneToken of the workspace/executeCommand being handled. ExecuteCommandParams carry
# one (LSP's WorkDoneProgressParams), but pygls hands a command handler its arguments only; the
# handler's task is created while this is set, so it sees its own request's token.
_COMMAND_TOKEN: ContextVar[ProgressToken | None] = ContextVar("command_token", default=None)


class CommandProtocol(AgentProtocol):
    """AgentProtocol that keeps the client's work-done token of workspace/executeCommand, so a
    client can follow (and key streamed text by) a token it made instead of one we create."""

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(
        self, params: types.ExecuteCommandParams
    ) -> Generator[Any, Any, Any]:
        _COMMAND_TOKEN.set(params.work_done_token)
        return (yield from super().lsp_workspace__execute_command(params))


class AgentLanguageServer(LanguageServer):
    """agentls over LSP: settings, the task runner and a few message helpers."""

    def __init__(self) -> None:
        # AgentProtocol: validated messages, a correct lifecycle, no leaked futures
        # (agent_protocol explains what pygls gets wrong there).
        super().__init__(
            "agentls",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=CommandProtocol,
        )
        self.settings_state = SettingsState()
        self.runner = AgentRunner(self, lambda: self.settings_state.settings)

    def show(self, kind: types.MessageType, message: str) -> None:
        """window/showMessage."""
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def log_message(self, kind: types.MessageType, message: str) -> None:
        """window/logMessage."""
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    async def refresh_settings(self, pull: bool) -> None:
        """Pull the ``agent`` section when asked and supported, merge, announce new warnings."""
        state = self.settings_state
        if pull and client_supports_configuration(self):
            state.pulled = await pull_configuration(self)
            state.pushed = None  # a fresh pull supersedes any earlier pushed payload
        announce_warnings(self, state.reload())


# ---- translation of results and failures -------------------------------------------------


def result_json(outcome: RunOutcome) -> dict[str, Any]:
    """A finished run as the result of its custom request."""
    result = outcome.result
    if isinstance(result, ExplainResult):
        return dict(protocol.explain_result(result.markdown, result.stats))
    edit = outcome.edit or types.WorkspaceEdit(document_changes=[])
    if outcome.spec.test_file:
        return dict(
            protocol.generate_tests_result(
                result.summary, edit, result.test_file, result.stats, result.verification
            )
        )
    return dict(protocol.refactor_result(result.summary, edit, result.stats, result.verification))


def request_error(failure: RunFailure) -> JsonRpcException:
    """A RunFailure as the JSON-RPC error of a custom request (RequestFailed)."""
    return JsonRpcException(
        message=str(failure),
        code=REQUEST_FAILED,
        data={"message": failure.message, "hint": failure.hint, **failure.data},
    )


def _tie_to_request(ls: AgentLanguageServer) -> None:
    """Make $/cancelRequest of workspace/executeCommand cancel the running command.

    pygls runs a command handler as its own task, separate from the request's future that
    $/cancelRequest cancels; without this link a cancelled command would keep running.
    """
    protocol = ls.protocol
    msg_id = protocol.msg_id
    task = asyncio.current_task()
    if msg_id is None or task is None or not isinstance(protocol, AgentProtocol):
        return

    def cancel() -> None:
        if not task.done():
            task.cancel()

    protocol.on_cancel(msg_id, cancel)


# ---- handlers ------------------------------------------------------------------------------


async def handle_request(ls: AgentLanguageServer, spec: TaskSpec, raw: Any) -> dict[str, Any]:
    """agent/explain, agent/refactor, agent/generateTests."""
    try:
        params = protocol.parse_params(raw)
        params.path()
    except ProtocolError as exc:
        raise JsonRpcInvalidParams(message=str(exc)) from exc
    try:
        outcome = await ls.runner.run(spec, params)
    except RunFailure as failure:
        raise request_error(failure) from failure
    return result_json(outcome)


async def handle_command(
    ls: AgentLanguageServer, spec: TaskSpec, args: tuple[Any, ...]
) -> CommandResultJson:
    """agent.* commands: run, then applyEdit or show the explanation; failures as messages."""
    _tie_to_request(ls)
    title = spec.title
    try:
        params = protocol.parse_command_args(args)
        path = params.path()
        token = _COMMAND_TOKEN.get()
        if token is not None:  # the client's own token (else LspProgress creates one)
            params = dataclasses.replace(params, work_done_token=token)
    except ProtocolError as exc:
        # Malformed arguments are the client's mistake, not a failed run: InvalidParams, as
        # for the agent/* requests (a result with ok: false would read as a run that failed).
        raise JsonRpcInvalidParams(message=f"{title}: {exc}") from exc
    try:
        outcome = await ls.runner.run(spec, params)
    except RunFailure as failure:
        hint = f" {failure.hint}" if failure.hint else ""
        ls.show(types.MessageType.Error, f"{title} failed: {failure.message}{hint}")
        return {"ok": False, "error": failure.message, "hint": failure.hint}

    stats = outcome.result.stats.to_json()
    if isinstance(outcome.result, ExplainResult):
        shown = await show_explanation(ls, path, outcome.result.markdown)
        return (
            {"ok": True, "document": shown, "stats": stats}
            if shown
            else {"ok": True, "stats": stats}
        )

    summary = outcome.result.summary
    ls.log_message(types.MessageType.Info, f"{title}: {summary}")
    if outcome.edit is None or not outcome.edit.document_changes:
        ls.show(types.MessageType.Info, f"{title}: no changes proposed. {summary}".strip())
        return {"ok": True, "applied": False, "summary": summary, "stats": stats}
    try:
        response = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=outcome.edit, label=title)
        )
    except JsonRpcException as exc:  # the client answered applyEdit with an error
        ls.show(types.MessageType.Error, f"{title}: the editor rejected the edit: {exc.message}")
        return {"ok": False, "applied": False, "summary": summary, "error": exc.message}
    result: CommandResultJson = {
        "ok": True,
        "applied": bool(response.applied),
        "summary": summary,
        "stats": stats,
        "verification": protocol.verification_json(outcome.result.verification),
    }
    if not response.applied:
        reason = response.failure_reason or "no reason given"
        result["failureReason"] = reason
        ls.show(
            types.MessageType.Warning, f"{title}: the editor did not apply the edit ({reason})."
        )
    return result


def _supports_show_document(ls: AgentLanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.show_document and window.show_document.support)


async def show_explanation(ls: AgentLanguageServer, path: Path, markdown: str) -> str | None:
    """Save the explanation and open it beside the code; else show it as a message.

    Returns the URI of the document shown, or None when the text went into a message.
    """
    try:
        saved = write_explanation(path, markdown)
    except OSError as exc:  # an unwritable cache must not lose the answer
        ls.log_message(types.MessageType.Warning, f"could not save the explanation: {exc}")
        saved = None
    if saved is not None and _supports_show_document(ls):
        uri = protocol.path_to_uri(saved)
        try:
            shown = await ls.window_show_document_async(
                types.ShowDocumentParams(uri=uri, external=False, take_focus=False)
            )
        except JsonRpcException as exc:  # fall back to a message rather than lose the text
            ls.log_message(types.MessageType.Warning, f"window/showDocument failed: {exc}")
        else:
            if shown.success:
                return uri
    ls.show(types.MessageType.Info, message_text(markdown, saved))
    return None


def create_server() -> AgentLanguageServer:
    """Build the server and register every feature."""
    server = AgentLanguageServer()

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: AgentLanguageServer, params: types.InitializeParams) -> None:
        ls.settings_state.set_init_options(params.initialization_options)

    @server.feature(types.INITIALIZED)
    async def on_initialized(ls: AgentLanguageServer, params: types.InitializedParams) -> None:
        await ls.refresh_settings(pull=True)

    # shutdown cancels the runs; exit ends the process. Either way a sandboxed test suite
    # must stop now (not when its run's cancellation gets to it) and its copy go: a suite
    # left running kept the process alive for seconds and outlived the server.
    @server.feature(types.SHUTDOWN)
    def on_shutdown(ls: AgentLanguageServer, params: None) -> None:
        from agentls.sandbox import terminate_all

        terminate_all()

    @server.feature(types.EXIT)
    def on_exit(ls: AgentLanguageServer, params: None) -> None:
        from agentls.sandbox import terminate_all

        terminate_all()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_configuration(
        ls: AgentLanguageServer, params: types.DidChangeConfigurationParams
    ) -> None:
        # Push-model clients send the section; pull-model ones send null and expect a pull.
        pushed = ls.settings_state.apply_push(params.settings)
        await ls.refresh_settings(pull=not pushed)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=list(ALL_KINDS), resolve_provider=False),
    )
    def on_code_action(
        ls: AgentLanguageServer, params: types.CodeActionParams
    ) -> list[types.CodeAction]:
        return code_actions(params)

    @server.feature(protocol.STATUS)
    async def on_status(ls: AgentLanguageServer, params: Any) -> StatusResultJson:
        root = ls.workspace.root_path
        return await backend_status(
            ls.settings_state.settings,
            ls.runner.last_stats,
            make_backend,
            workspace_root=Path(root) if root else None,
        )

    # Each task in the registry is one request and one command; nothing here names a task.
    for spec in TASKS:
        _register_request(server, spec)
        _register_command(server, spec)
    return server


def _register_request(server: AgentLanguageServer, spec: TaskSpec) -> None:
    @server.feature(spec.method)
    async def on_request(ls: AgentLanguageServer, params: Any) -> dict[str, Any]:
        return await handle_request(ls, spec, params)


def _register_command(server: AgentLanguageServer, spec: TaskSpec) -> None:
    # pygls 2 passes command arguments as separate positional parameters; *args takes
    # [uri, range?, instruction?] with the optional ones left off.
    @server.command(spec.command)
    async def on_command(ls: AgentLanguageServer, *args: Any) -> CommandResultJson:
        return await handle_command(ls, spec, args)
