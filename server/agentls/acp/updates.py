"""One prompt's ``session/update`` stream: the loop's events turned into ACP notifications.

The loop emits typed events (:mod:`agentls.agent.events`) on the engine thread; each is handed
to the connection's loop and mapped there, in order:

- the model's visible text -> ``agent_message_chunk``; its thinking -> ``agent_thought_chunk``;
- a tool call -> ``tool_call`` (kind read/search/edit/execute, the files it names as
  locations), its result -> ``tool_call_update`` (completed or failed, the output, the staged
  edit's line counts). ``finish`` is no tool call for the user: its summary is the answer;
- the numbers after each model call -> ``usage_update`` (tokens in the context, its size);
- warnings are kept for the end of the answer, where they cannot split it.

The final answer is the run's cleaned result, not the raw stream: :meth:`SessionUpdates.answer`
sends only what the stream did not already show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acp import (
    start_tool_call,
    text_block,
    tool_content,
    tool_diff_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_tool_call,
)
from acp.interfaces import Client
from acp.schema import (
    AgentMessageChunk,
    AgentThoughtChunk,
    AvailableCommandsUpdate,
    ConfigOptionUpdate,
    ToolCallLocation,
    ToolCallProgress,
    ToolCallStart,
    ToolKind,
    UsageUpdate,
)

from agentls.agent import events as ev
from agentls.agent.tools import paths_of_call

log = logging.getLogger(__name__)

Update = (
    AgentMessageChunk
    | AgentThoughtChunk
    | ToolCallStart
    | ToolCallProgress
    | UsageUpdate
    | AvailableCommandsUpdate
    | ConfigOptionUpdate
)

# The ACP tool kind of each tool (the client picks icons and grouping by it).
TOOL_KINDS: dict[str, ToolKind] = {
    "read": "read",
    "ls": "search",
    "find": "search",
    "grep": "search",
    "edit": "edit",
    "write": "edit",
    "bash": "execute",
}
# Characters of a tool's output shown in its card; the model saw all of it.
OUTPUT_CHARS = 2000


class SessionUpdates:
    """Sends one prompt's updates in order; ``on_event``/``report``/``warn`` may be called from
    the engine thread (it is the run's progress sink)."""

    def __init__(
        self,
        conn: Client,
        session_id: str,
        root: Path,
        loop: asyncio.AbstractEventLoop,
        *,
        call_prefix: str,
        context_length: int,
    ) -> None:
        self.conn = conn
        self.session_id = session_id
        self.root = root
        self.loop = loop
        self.call_prefix = call_prefix  # tool call ids are per session: prefixed per prompt
        self.context_length = context_length
        self.warnings: list[str] = []
        self._turn_text = ""  # visible text of the newest model call (the answer, if prose)
        self._text_turn = 0  # the model call that text came from
        self._sent_text = False
        self._open: dict[str, str] = {}  # loop call id -> ACP tool call id, not yet finished
        self._finish_ids: set[str] = set()
        self._calls = 0
        self._queue: asyncio.Queue[Update | asyncio.Future[None]] = asyncio.Queue()
        self._pump = loop.create_task(self._drain(), name=f"acp-updates-{session_id}")

    # -- the progress sink (any thread) ------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """The loop's event, mapped on the connection's loop."""
        self._soon(self._handle, event)

    def report(self, message: str, percentage: int | None = None) -> None:
        """Progress lines are for LSP and the CLI; the events say the same here."""

    def warn(self, message: str) -> None:
        """A warning from the task flow (skills, verification): shown with the answer."""
        self._soon(self._warning, message)

    def _soon(self, callback: Any, *args: Any) -> None:
        # A closed loop means the process is ending: the update has nowhere to go.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    # -- on the connection's loop --------------------------------------------------------------

    def send(self, update: Update) -> None:
        """Queue one update (sent in order, after those queued before)."""
        self._queue.put_nowait(update)

    def message(self, text: str) -> None:
        """Queue agent message text."""
        if text:
            self._sent_text = True
            self.send(update_agent_message_text(text))

    async def flush(self) -> None:
        """Wait until everything queued so far has been sent."""
        done: asyncio.Future[None] = self.loop.create_future()
        self._queue.put_nowait(done)
        await done

    async def close(self) -> None:
        """Send what is queued, then stop."""
        await self.flush()
        self._pump.cancel()

    def answer(self, text: str, warnings: Sequence[str] = ()) -> None:
        """Queue the run's answer: the part the stream has not shown yet, then the warnings
        the answer does not already quote."""
        text = text.strip()
        streamed = self._turn_text.strip()
        if streamed and text.startswith(streamed):
            rest = text[len(streamed) :]  # the stream showed the answer; add what followed it
        else:
            rest = ("\n\n" if self._sent_text else "") + text
        notes = [w for w in dict.fromkeys([*self.warnings, *warnings]) if w not in text]
        rest += "".join(f"\n\n> **agentls:** {w}" for w in notes)
        self.message(rest)

    def fail_open_calls(self, why: str) -> None:
        """Mark the tool calls still running as failed (the prompt was cancelled)."""
        for acp_id in self._open.values():
            self.send(update_tool_call(acp_id, status="failed", content=[_text(why)]))
        self._open.clear()

    def _warning(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _handle(self, event: ev.Event) -> None:
        if isinstance(event, ev.TurnStarted):
            self._turn_text = ""
        elif isinstance(event, ev.TextDelta):
            text = event.text
            if event.turn != self._text_turn:
                # A new model call's text: what came before was commentary before a tool call.
                self._text_turn, self._turn_text = event.turn, ""
                if self._sent_text:
                    text = "\n\n" + text.lstrip()
            self._turn_text += event.text
            self.message(text)
        elif isinstance(event, ev.ThinkingDelta):
            self.send(update_agent_thought_text(event.text))
        elif isinstance(event, ev.ToolCallStarted):
            self._tool_started(event)
        elif isinstance(event, ev.ToolResult):
            self._tool_result(event)
        elif isinstance(event, ev.Stats):
            self._usage(event)
        elif isinstance(event, ev.Warning):
            self._warning(event.message)

    def _tool_started(self, event: ev.ToolCallStarted) -> None:
        if event.name == "finish":
            self._finish_ids.add(event.call_id)
            return
        # Numbered here: the model's own call ids repeat across turns (many servers number
        # the calls of each reply from 0).
        self._calls += 1
        acp_id = f"{self.call_prefix}-{self._calls}-{event.name}"
        self._open[event.call_id] = acp_id
        title = event.description[:1].upper() + event.description[1:]
        self.send(
            start_tool_call(
                acp_id,
                title or event.name,
                kind=TOOL_KINDS.get(event.name, "other"),
                status="in_progress",
                locations=self._locations(event.name, event.arguments),
                raw_input=dict(event.arguments),
            )
        )

    def _tool_result(self, event: ev.ToolResult) -> None:
        if event.call_id in self._finish_ids:
            self._finish_ids.discard(event.call_id)  # ids repeat: a later call may reuse it
            return
        acp_id = self._open.pop(event.call_id, None)
        if acp_id is None:
            return
        output = event.output
        if len(output) > OUTPUT_CHARS:
            output = output[:OUTPUT_CHARS] + f"\n… ({len(event.output)} characters in all)"
        content = [_text(output)]
        locations = None
        if event.edits:
            staged = ", ".join(edit.describe() for edit in event.edits)
            # Each edit's diff on its card; the consent request at the end shows them all again.
            diffs = [
                tool_diff_content(
                    str(self.root / e.path), e.new_text, None if e.created else e.old_text
                )
                for e in event.edits
            ]
            content = [_text(f"Staged (not written yet): {staged}"), *diffs, *content]
            locations = [ToolCallLocation(path=str(self.root / edit.path)) for edit in event.edits]
        self.send(
            update_tool_call(
                acp_id,
                status="completed" if event.ok else "failed",
                content=content,
                locations=locations,
            )
        )

    def _locations(self, name: str, arguments: dict[str, object]) -> list[ToolCallLocation]:
        # As the model wrote them; the workspace refuses (and the card need not show) others.
        found: list[ToolCallLocation] = []
        for raw in paths_of_call(name, arguments):
            path = Path(os.path.normpath(self.root / raw))
            if path.is_relative_to(self.root):
                found.append(ToolCallLocation(path=str(path)))
        return found

    def _usage(self, event: ev.Stats) -> None:
        size = self.context_length
        if event.context_fill > 0:
            size = round(event.prompt_tokens / event.context_fill)
        used = event.prompt_tokens + event.completion_tokens
        self.send(UsageUpdate(session_update="usage_update", used=used, size=max(size, used)))

    async def _drain(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, asyncio.Future):
                if not item.done():
                    item.set_result(None)
                continue
            try:
                await self.conn.session_update(session_id=self.session_id, update=item)
            except Exception as exc:  # a client gone or refusing must not stop the run
                log.info("session/update failed: %s", exc)


def _text(text: str) -> Any:
    return tool_content(text_block(text))
