"""One ACP session: its workspace root, settings and backend, its conversation, and the prompt
that runs in it (at most one), with cancel.

A prompt is read (:mod:`agentls.acp.prompt`), run as a task of the registry (a slash command's,
or the general request) on the session's engine thread, streamed as it runs
(:mod:`agentls.acp.updates`), answered, and its staged changes offered for consent
(:mod:`agentls.acp.permissions`) before they are written (:mod:`agentls.acp.files`). Every
failure ends the prompt with a message that says what to do; none ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from acp import RequestError, text_block, tool_content, update_tool_call
from acp.interfaces import Client
from acp.schema import ClientCapabilities, PromptResponse, SessionConfigOptionSelect, StopReason

from agentls.acp.config import OptionError, apply_option, config_options
from agentls.acp.engine import CANCEL_GRACE_SECONDS, EngineThread
from agentls.acp.files import ClientFiles
from agentls.acp.permissions import Decision, ask, edit_call
from agentls.acp.prompt import ContentBlock, PromptRequest, parse_prompt
from agentls.acp.updates import SessionUpdates
from agentls.changes import EditConflict, FileChange
from agentls.errors import message_and_hint
from agentls.llm.factory import make_backend
from agentls.llm.types import BackendError, ChatBackend, Message
from agentls.settings import Settings
from agentls.tasks.base import EditResult, ExplainResult, TaskContext, TaskError, TaskRequest
from agentls.tasks.registry import ASK, TaskSpec

log = logging.getLogger(__name__)

# How long a new session waits for the model list before offering just the configured model.
MODELS_TIMEOUT = 3.0

OUTCOME_NOTES = {
    "applied": "The user applied your changes from the previous request.",
    "rejected": "The user rejected your changes from the previous request; nothing was written.",
    "conflict": "Your changes from the previous request could not be applied (the files "
    "changed meanwhile); nothing was written.",
}


def failure_text(exc: BaseException) -> str:
    """What went wrong and the fix, for the user (the agent's message that ends the prompt)."""
    described = message_and_hint(exc)
    if described is not None:
        message, hint = described
    else:
        message = f"Internal error: {type(exc).__name__}: {exc}"
        hint = "See agentls's log (stderr, in the editor's ACP log)."
    text = f"**agentls could not finish:** {message}"
    return text + (f"\n\n**Fix:** {hint}" if hint else "")


class Session:
    """A conversation in one workspace root (the client's ``cwd``)."""

    def __init__(
        self,
        session_id: str,
        root: Path,
        settings: Settings,
        conn: Client,
        capabilities: ClientCapabilities | None,
    ) -> None:
        self.id = session_id
        self.root = root
        self.settings = settings
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.files = ClientFiles(conn, session_id, root, capabilities, self.loop)
        self.engine = EngineThread(f"agentls-session-{session_id[:8]}")
        self.backend: ChatBackend = make_backend(settings)
        self.models: list[str] = []
        self.history: list[Message] = []  # the last run's messages (the cached conversation)
        self.note = ""  # what became of the last run's edits, told with the next request
        self.auto_apply = False  # the user chose "Always apply in this session"
        self.prompts = 0
        self._retired: list[ChatBackend] = []  # replaced while a prompt used them
        self._work: asyncio.Task[PromptResponse] | None = None
        self._cancel_requested = False
        self._committing = False  # writing consented edits: not interrupted by a cancel
        self._cancelled = threading.Event()  # seen by the engine thread's blocking reads

    # -- configuration ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the server's models for the model selector (bounded; a backend that is down
        only means the selector shows the configured model)."""
        backend = self.backend

        async def learn() -> list[str]:
            # HTTP backends list their models; any other ChatBackend says what model_info knows.
            lister = getattr(backend, "list_models", None)
            models = list(await lister()) if lister else (await backend.model_info()).available
            with contextlib.suppress(BackendError):  # a missing model is the prompt's to report
                await backend.resolve_model()
            return models

        try:
            self.models = await self.engine.run(lambda: asyncio.wait_for(learn(), MODELS_TIMEOUT))
        except Exception as exc:  # down, slow: the prompt will say so, with the fix
            log.info("model list unavailable: %s", exc)

    def config_options(self) -> list[SessionConfigOptionSelect]:
        """The selectors the client shows for this session."""
        return config_options(self.settings, self.backend.model, self.models)

    async def set_option(
        self, config_id: str, value: str | bool
    ) -> list[SessionConfigOptionSelect]:
        """Change the model or tool mode for the next prompts; the options as they are now."""
        try:
            settings = apply_option(self.settings, config_id, value, self.models)
        except OptionError as exc:
            raise RequestError.invalid_params({"details": str(exc)}) from exc
        self.settings = settings
        self._retired.append(self.backend)
        self.backend = make_backend(settings)
        if not self.busy:
            await self._close_retired()
        return self.config_options()

    @property
    def busy(self) -> bool:
        """Whether a prompt is running."""
        return self._work is not None and not self._work.done()

    # -- prompts ---------------------------------------------------------------------------------

    async def prompt(self, blocks: Sequence[ContentBlock]) -> PromptResponse:
        """Run one prompt to its end: ``end_turn``, ``max_turn_requests`` or ``cancelled``."""
        if self.busy:
            raise RequestError.invalid_request(
                {"details": "a prompt is already running in this session; cancel it first"}
            )
        self.prompts += 1
        self._cancel_requested = False
        self._cancelled.clear()
        updates = SessionUpdates(
            self.conn,
            self.id,
            self.root,
            self.loop,
            call_prefix=f"p{self.prompts}",
            context_length=self.settings.context_length,
        )
        work = asyncio.ensure_future(self._run(blocks, updates))
        self._work = work
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if not self._cancel_requested:  # the connection is going away
                work.cancel()
                raise
            with contextlib.suppress(BaseException):
                await asyncio.wait({work}, timeout=CANCEL_GRACE_SECONDS + 5)
            updates.fail_open_calls("Cancelled.")
            return PromptResponse(stop_reason="cancelled")
        finally:
            await updates.close()
            await self._close_retired()

    def cancel(self) -> None:
        """``session/cancel``: stop the running prompt (its model stream closes, its sandboxed
        command is killed, pending questions are dropped); it answers ``cancelled``."""
        if not self.busy or self._work is None:
            return
        self._cancel_requested = True
        self._cancelled.set()
        if not self._committing:  # consented writes finish; everything before them stops
            self._work.cancel()

    async def _run(self, blocks: Sequence[ContentBlock], updates: SessionUpdates) -> PromptResponse:
        try:
            return await self._answer(blocks, updates)
        except (BackendError, TaskError) as exc:
            updates.message(failure_text(exc))
        except Exception as exc:  # a bug must end the prompt, not the agent
            log.exception("the prompt failed")
            updates.message(failure_text(exc))
        return PromptResponse(stop_reason="end_turn")

    async def _answer(
        self, blocks: Sequence[ContentBlock], updates: SessionUpdates
    ) -> PromptResponse:
        request = parse_prompt(blocks, self.root)
        if request.refused:
            updates.message("Left out: " + "; ".join(request.refused) + ".\n\n")
        planned = self._plan(request)
        if isinstance(planned, str):
            updates.message(planned)
            return PromptResponse(stop_reason="end_turn")
        spec, req = planned
        ctx = TaskContext(
            root=self.root,
            settings=self.settings,
            backend=self.backend,
            documents=self.files.provider(request.buffers(), self._cancelled),
            progress=updates,
            log=log.info,
            history=list(self.history),
        )
        result = await self.engine.run(lambda: spec.execute(ctx, req))
        if isinstance(result, ExplainResult):
            updates.answer(result.markdown)
            outcome = ""
        else:
            updates.answer(result.summary, result.warnings)
            outcome = await self._review(result.changes, updates) if result.changes else ""
        self._remember(result, outcome)
        stop: StopReason = "max_turn_requests" if result.stop_reason == "turn_cap" else "end_turn"
        return PromptResponse(stop_reason=stop)

    def _plan(self, request: PromptRequest) -> tuple[TaskSpec, TaskRequest] | str:
        """The task and its request, or why there is none (said to the user)."""
        mentions = request.mentions
        instruction = request.text if request.asked else None
        if request.command is not None:
            spec = request.command
            if not mentions:
                return (
                    f"/{spec.cli_word} works on a file: mention one, for example "
                    f"`/{spec.cli_word} @src/app.py`."
                )
            main, *rest = mentions
            req = TaskRequest(
                main.path,
                main.range(),
                self._with_context(instruction),
                tuple(m.path for m in rest),
            )
            return spec, req
        if instruction is None and not mentions:
            return (
                "Nothing to do yet: type a request, or use /explain, /refactor or /tests on a "
                "mentioned file."
            )
        main_path = mentions[0].path if mentions else self.root
        req = TaskRequest(
            main_path,
            mentions[0].range() if mentions else None,
            self._with_context(instruction),
            tuple(m.path for m in mentions[1:]),
        )
        return ASK, req

    def _with_context(self, instruction: str | None) -> str | None:
        """The instruction, after what became of the previous request's edits (the model saw
        itself make them; whether they landed it cannot know)."""
        if not self.note:
            return instruction
        return f"{self.note}\n\n{instruction}" if instruction else self.note

    def _remember(self, result: ExplainResult | EditResult, outcome: str) -> None:
        """Keep the conversation for the next prompt: its messages (the next run continues
        them, so the server's cached prefix holds), and what became of its edits."""
        self.history = list(result.messages)
        self.note = OUTCOME_NOTES.get(outcome, "")

    async def _review(self, changes: Sequence[FileChange], updates: SessionUpdates) -> str:
        """Show the changes as diffs, ask for consent, write them; what became of them."""
        call = edit_call(f"p{self.prompts}-edits", changes, self.root)
        updates.send(call)
        decision: Decision = "apply"
        if not self.auto_apply:
            await updates.flush()  # the client knows the tool call before it is asked about it
            decision = await ask(self.conn, self.id, call)
        if decision == "always":
            self.auto_apply = True
        if decision in ("reject", "cancelled"):
            self._finish_call(updates, call.tool_call_id, False, "Rejected: nothing was written.")
            updates.message("\n\nNot applied: nothing was written.")
            return "rejected"
        self._committing = True
        try:
            written = await self.files.apply(changes)
        except EditConflict as exc:
            self._finish_call(updates, call.tool_call_id, False, f"Not applied: {exc}")
            updates.message(f"\n\nNot applied: {exc}")
            return "conflict"
        except Exception as exc:  # the client failed a write: say which, keep going
            log.exception("writing the changes failed")
            self._finish_call(updates, call.tool_call_id, False, f"Writing failed: {exc}")
            updates.message(f"\n\nWriting the changes failed: {exc}")
            return "conflict"
        finally:
            self._committing = False
        names = ", ".join(p.relative_to(self.root).as_posix() for p in written) or "no file"
        self._finish_call(updates, call.tool_call_id, True, f"Applied: {names}.")
        how = "through the editor" if self.files.can_write else "to disk"
        updates.message(f"\n\nApplied {how}: {names}.")
        return "applied"

    @staticmethod
    def _finish_call(updates: SessionUpdates, call_id: str, ok: bool, text: str) -> None:
        updates.send(
            update_tool_call(
                call_id,
                status="completed" if ok else "failed",
                content=[tool_content(text_block(text))],
            )
        )

    # -- the end ---------------------------------------------------------------------------------

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for backend in retired:
            with contextlib.suppress(Exception):
                await self.engine.run(backend.aclose)

    async def close(self) -> None:
        """Stop the running prompt, close the backends and the engine thread."""
        self.cancel()
        if self._work is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait({self._work}, timeout=CANCEL_GRACE_SECONDS + 5)
        self._retired.append(self.backend)
        await self._close_retired()
        self.engine.stop()
