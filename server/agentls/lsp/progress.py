"""A ProgressSink that reports LSP work-done progress and turns the client's Cancel into a
cancelled asyncio task; it takes the loop's events, and streams the model's text to the client
as ``agent/textDelta`` notifications on the run's progress token."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import Future
from typing import Any, Literal, TypedDict

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from agentls.agent import events as ev
from agentls.agent.progress import EventProgress
from agentls.lsp.protocol import ProgressToken

log = logging.getLogger(__name__)

# Seconds between two progress reports that do not change the percentage.
MIN_INTERVAL = 0.1
# Seconds to wait for the client to accept window/workDoneProgress/create.
CREATE_TIMEOUT = 5.0

# Server -> client notification: the model's text as it is written (docs/architecture.md).
TEXT_DELTA = "agent/textDelta"


class TextDeltaParams(TypedDict):
    """``agent/textDelta``: ``delta`` continues the text of ``kind`` for this ``turn`` of the
    run whose work-done progress is ``token``; a new ``turn`` starts a new text (what the
    model wrote before was commentary before a tool call). The request's result is still the
    whole answer: a client that ignores these loses nothing."""

    token: ProgressToken
    turn: int
    kind: Literal["answer", "thinking"]
    delta: str


def client_supports_progress(ls: LanguageServer) -> bool:
    """Whether the client accepts window/workDoneProgress/create."""
    window = ls.client_capabilities.window
    return bool(window and window.work_done_progress)


class LspProgress(EventProgress):
    """Work-done progress for one agent run (a no-op when there is no token).

    ``warn`` also goes to the log and a warning message, because a progress line vanishes
    when the run ends and warnings such as "the context is nearly full" must be seen.
    The loop's events become progress lines (``EventProgress``), and its text deltas
    ``agent/textDelta`` notifications keyed by the progress token, so several runs can stream
    at once; without a token there is nothing to key them by, and nothing streams.
    """

    def __init__(self, ls: LanguageServer, token: ProgressToken | None) -> None:
        self._ls = ls
        self.token = token
        self._percentage = 0
        self._ended = False
        # Deltas not yet written: those of one network read go out as one notification.
        self._pending: list[TextDeltaParams] = []
        self._flush_scheduled = False
        self._last_sent = 0.0

    @classmethod
    async def start(
        cls,
        ls: LanguageServer,
        title: str,
        client_token: ProgressToken | None,
        task: asyncio.Task[Any] | None,
    ) -> LspProgress:
        """Begin progress on the client's token, or on one created here when the client can.

        ``task`` is cancelled when the client sends window/workDoneProgress/cancel.
        """
        token = client_token
        if token is None and client_supports_progress(ls):
            token = f"agentls-{uuid.uuid4()}"
            try:
                # A client that never answers must not stall the run: go on without a bar.
                await asyncio.wait_for(ls.work_done_progress.create_async(token), CREATE_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a client that refuses still gets the run, no bar
                log.warning("window/workDoneProgress/create failed: %s", exc)
                token = None
        progress = cls(ls, token)
        if token is not None:
            ls.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(title=title, cancellable=True, message="Starting"),
            )
            # pygls keeps a Future per token and cancels it on window/workDoneProgress/cancel;
            # chaining it to the task is what makes the Cancel button stop the run.
            future = ls.work_done_progress.tokens.get(token)
            if future is not None and task is not None:
                future.add_done_callback(_cancel_task_when_cancelled(task))
        return progress

    def on_event(self, event: ev.Event) -> None:
        """Stream text deltas to the client; everything else becomes progress lines."""
        if isinstance(event, ev.TextDelta | ev.ThinkingDelta):
            self.send_delta(event)
            return
        if not isinstance(event, ev.Generating):
            # Deltas go before what follows them: the next turn, a tool call, the result.
            self.flush()
        if isinstance(event, ev.TurnStarted) or (isinstance(event, ev.ToolResult) and event.edits):
            # A new turn and a staged edit are worth seeing; never throttle them away.
            self._last_sent = 0.0
        super().on_event(event)

    def send_delta(self, event: ev.TextDelta | ev.ThinkingDelta) -> None:
        """Queue an ``agent/textDelta``, written as soon as the model's stream waits for the
        network again: a token that arrives alone goes out alone, at once, and the tokens of
        one network read (a fast model) share a notification instead of costing one each."""
        if self.token is None or self._ended or not event.text:
            return
        kind: Literal["answer", "thinking"] = (
            "answer" if isinstance(event, ev.TextDelta) else "thinking"
        )
        last = self._pending[-1] if self._pending else None
        if last is not None and last["turn"] == event.turn and last["kind"] == kind:
            last["delta"] += event.text
        else:
            self._pending.append(
                {"token": self.token, "turn": event.turn, "kind": kind, "delta": event.text}
            )
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop (a direct caller): write now
                self.flush()

    def flush(self) -> None:
        """Write the queued deltas."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for params in pending:
            self._ls.protocol.notify(TEXT_DELTA, params)

    def report(self, message: str, percentage: int | None = None) -> None:
        """Report a step; percentages are kept monotonic as the protocol asks.

        The loop reports on every streamed chunk; updates closer together than
        ``MIN_INTERVAL`` that do not move the percentage are dropped, so a fast model does not
        flood the editor with notifications it cannot render anyway.
        """
        if self.token is None or self._ended:
            return
        before = self._percentage
        if percentage is not None:
            self._percentage = max(self._percentage, min(100, max(0, int(percentage))))
        now = time.monotonic()
        if now - self._last_sent < MIN_INTERVAL and self._percentage == before:
            return
        self._last_sent = now
        self._ls.work_done_progress.report(
            self.token,
            types.WorkDoneProgressReport(
                message=message,
                percentage=self._percentage if percentage is not None else None,
                cancellable=True,
            ),
        )

    def warn(self, message: str) -> None:
        """Show a warning in the progress, the log and a message."""
        self._last_sent = 0.0  # a warning is never throttled away
        self.report(f"Warning: {message}")
        self._ls.window_log_message(
            types.LogMessageParams(type=types.MessageType.Warning, message=message)
        )
        self._ls.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=message)
        )

    def end(self, message: str) -> None:
        """End the progress (idempotent) and forget the token so the client may reuse it."""
        if self.token is None or self._ended:
            return
        self.flush()
        self._ended = True
        try:
            self._ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        finally:
            self._ls.work_done_progress.tokens.pop(self.token, None)


def _cancel_task_when_cancelled(task: asyncio.Task[Any]) -> Any:
    def callback(future: Future[Any]) -> None:
        if future.cancelled() and not task.done():
            log.info("work done progress cancelled by the client; cancelling the run")
            task.cancel()

    return callback
