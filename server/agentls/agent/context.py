"""Context management: keep every request within the model's context length.

Pure functions over :class:`~agentls.llm.types.Message` lists (no I/O). The tool loop calls
:func:`fit_to_context` before every model request and :meth:`TokenEstimator.calibrate` after
it, with the prompt token count the server reported.

What gives way when a conversation outgrows the budget, in order:

1. Old tool outputs, oldest first, are replaced by a one-line marker that says what was
   there and how to get it back. The tool message itself stays (role, ``tool_call_id``,
   ``name``) and so do the assistant's ``tool_calls``, so the wire format stays valid.
2. Long texts of older assistant messages and of user notes after the task are cut to
   their head.
3. Runs of exchanges whose results are all elided are folded into their first exchange
   (in a long session on a small context the markers alone would fill it).
4. As the last resort, the middle of the largest remaining tool output (a protected one)
   is cut, keeping head and tail.

Never changed: the system prompt (index 0) and the task (index 1). Never elided or folded:
the last messages and the latest state of edited files (see :func:`default_protected`);
only step 4 may cut the middle of one of them, when nothing else is left.

KV-cache trade-off. Servers reuse the cached prompt up to the first byte that differs from
the previous request. Eliding the *oldest* outputs first keeps the system prompt, the task
and everything before the first elided message byte-identical, but each elision step
invalidates the cache from the elided message onwards, so that one request reprocesses
most of the conversation. To make those steps rare, an elision step goes down to
``target_fill`` of the budget rather than just under it: the following turns then append
to an unchanged prefix until the budget is reached again. For the same reason the result
is deterministic and idempotent (an elided message is recognised and left alone), so the
loop can keep the fitted list as its history and send the same bytes turn after turn.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from agentls.agent.budget import TokenEstimator, message_chars
from agentls.agent.prompts import REPEATED_CALL
from agentls.agent.tools import MUTATING_TOOLS, paths_of_call
from agentls.llm.types import Message, ToolCall

__all__ = ["ELIDED_PREFIX", "default_protected", "fit_to_context"]

# Every full elision starts with this; it is how an already elided message is recognised.
ELIDED_PREFIX = "[elided to save context"
# A run of elided exchanges folded into one says how many results it stands for.
_COLLAPSED = re.compile(re.escape(ELIDED_PREFIX) + r": results of (\d+) earlier tool calls")
# The marker a middle cut leaves: "[... 12 lines (345 characters) elided to save context".
_CUT = re.compile(r"\n\[\.\.\. (\d+) lines \(\d+ characters\) elided to save context")
# The tail of a shortened assistant text or user note.
_SHORTENED_SUFFIX = "characters elided to save context]"
# Assistant texts and user notes are cut to this many characters in step 2.
SHORTEN_HEAD_CHARS = 200
# Step 3 leaves at least this much of a tool output (head and tail together).
MIN_TRUNCATED_KEEP_CHARS = 200
_MARKER_ALLOWANCE = 120  # about the length of the marker step 3 inserts
# The last messages are the model's current step: the call it just made and its result.
KEEP_LAST_MESSAGES = 2


# -- protection ----------------------------------------------------------------------------


def _norm_path(raw: object) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    path = posixpath.normpath(raw.strip().replace("\\", "/"))
    return path.removeprefix("./")


def _call_paths(call: ToolCall) -> list[str]:
    """The paths a call names, normalised; which arguments are paths (under which names,
    nested ones included) comes from the tool's declaration."""
    args = call.arguments if isinstance(call.arguments, dict) else {}
    found: list[str] = []
    for raw in paths_of_call(call.name, args):
        path = _norm_path(raw)
        if path is not None and path not in found:
            found.append(path)
    return found


def _call_path(call: ToolCall) -> str | None:
    paths = _call_paths(call)
    return paths[0] if paths else None


def _calls_of_tool_messages(messages: Sequence[Message]) -> dict[int, ToolCall]:
    """Map the index of each tool message to the call it answers.

    By ``tool_call_id`` when it names a call; otherwise by position among the tool messages
    that follow an assistant message (backends that send no call ids).
    """
    by_id: dict[str, ToolCall] = {}
    result: dict[int, ToolCall] = {}
    pending: list[ToolCall] = []
    for index, message in enumerate(messages):
        if message.role == "assistant":
            pending = list(message.tool_calls)
            for call in message.tool_calls:
                if call.id:
                    by_id[call.id] = call
        elif message.role == "tool":
            answered = by_id.get(message.tool_call_id or "")
            if answered is None and pending:
                answered = pending[0]
            if answered is not None:
                result[index] = answered
                if answered in pending:
                    pending.remove(answered)
        else:
            pending = []
    return result


def _succeeded(message: Message) -> bool:
    return not (
        message.content.startswith("Error:")
        or message.content.startswith(REPEATED_CALL)
        or _is_elided(message)
    )


def default_protected(
    messages: Sequence[Message], keep_last: int = KEEP_LAST_MESSAGES
) -> Callable[[int, Message], bool]:
    """The default protection: what :func:`fit_to_context` must not elide or shorten.

    Protected: the system prompt and the task (indices 0 and 1), the last ``keep_last``
    messages, and the latest state of edited files: for every path a mutating call
    (``edit``, ``write``) named, the newest successful ``read`` of it and the newest
    successful mutating result for it. Paths come from the assistant tool calls' arguments
    (all of them: one ``edit`` may move lines to another file).
    """
    calls = _calls_of_tool_messages(messages)
    edited = {
        path
        for message in messages
        for call in message.tool_calls
        if call.name in MUTATING_TOOLS
        for path in _call_paths(call)
    }
    newest: dict[tuple[str, str], int] = {}  # (kind, path) -> index of the newest result
    for index, call in calls.items():
        kind = "read" if call.name == "read" else "change" if call.name in MUTATING_TOOLS else ""
        if not kind or not _succeeded(messages[index]):
            continue
        for path in _call_paths(call):
            if path in edited:
                key = (kind, path)
                newest[key] = max(index, newest.get(key, -1))
    keep = set(newest.values())
    first_of_tail = len(messages) - keep_last

    def protected(index: int, message: Message) -> bool:
        return index < 2 or index >= first_of_tail or index in keep

    return protected


# -- rewriting -----------------------------------------------------------------------------


def _is_elided(message: Message) -> bool:
    return message.content.startswith(ELIDED_PREFIX)


def _count_lines(text: str) -> int:
    """Lines of a tool output; a middle cut by step 4 counts the lines it removed."""
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    for match in _CUT.finditer(text):
        lines += int(match.group(1)) - 1  # the marker's own line replaces what was cut
    return lines


def _elision_marker(message: Message, call: ToolCall | None) -> str:
    """A short, deterministic stand-in for a tool output that says how to get it back."""
    lines = _count_lines(message.content)
    name = call.name if call is not None else (message.name or "tool")
    args = call.arguments if call is not None and isinstance(call.arguments, dict) else {}
    path = _call_path(call) if call is not None else None
    if name == "read" and path:
        offset = args.get("offset")
        what = f"read of {path}" + (f" from line {offset}" if isinstance(offset, int) else "")
    elif name == "grep" and isinstance(args.get("pattern"), str):
        what = f"grep for {json.dumps(args['pattern'])[:60]}"
    elif name in ("ls", "find"):
        target = path or args.get("pattern") or "."
        what = f"{name} of {str(target)[:60]}"
    elif name in MUTATING_TOOLS and path:
        # Calling edit again would apply the change twice: point to read instead.
        return (
            f"{ELIDED_PREFIX}: result of {name} on {path}, {lines} lines; "
            "the change stays applied, read the file to see it]"
        )
    else:
        what = f"{name} output"
    return f"{ELIDED_PREFIX}: {what}, {lines} lines; call the tool again if you need it]"


def _shorten(text: str) -> str:
    cut = len(text) - SHORTEN_HEAD_CHARS
    return f"{text[:SHORTEN_HEAD_CHARS]} [... {cut} {_SHORTENED_SUFFIX}"


def _truncate_middle(text: str, remove: int) -> str:
    """Cut at least ``remove`` characters out of the middle of ``text``, at line breaks."""
    keep = max(len(text) - remove, MIN_TRUNCATED_KEEP_CHARS)
    head_end = keep // 2
    tail_start = len(text) - (keep - head_end)
    # Cut at line boundaries so the kept lines stay whole (and line numbers stay readable).
    newline = text.rfind("\n", 0, head_end)
    if newline > 0:
        head_end = newline
    newline = text.find("\n", tail_start)
    if 0 <= newline < len(text) - 1:
        tail_start = newline + 1
    if tail_start <= head_end:
        return text
    removed = text[head_end:tail_start]
    lines = max(removed.count("\n") - 1, 0)  # the cut starts and ends at a line break
    marker = (
        f"\n[... {lines} lines ({len(removed)} characters) elided to save context; "
        "read with offset/limit to see them ...]\n"
    )
    return text[:head_end] + marker + text[tail_start:]


@dataclass
class _Fitter:
    """The working state of one :func:`fit_to_context` call, indexed like the input."""

    messages: list[Message]
    sizes: list[int]
    total: int
    dropped: set[int] = field(default_factory=set)

    def set(self, index: int, content: str) -> None:
        self.messages[index] = replace(self.messages[index], content=content)
        size = message_chars(self.messages[index])
        self.total += size - self.sizes[index]
        self.sizes[index] = size

    def drop(self, index: int) -> None:
        self.dropped.add(index)
        self.total -= self.sizes[index]
        self.sizes[index] = 0

    def result(self) -> list[Message]:
        return [m for i, m in enumerate(self.messages) if i not in self.dropped]


def _collapsed_count(message: Message) -> int:
    """How many tool results a (possibly collapsed) elided tool message stands for."""
    match = _COLLAPSED.match(message.content)
    return int(match.group(1)) if match else 1


def _collapsible_runs(
    messages: Sequence[Message], is_protected: Callable[[int, Message], bool]
) -> list[list[tuple[int, int]]]:
    """Runs of two or more adjacent exchanges whose results are all elided, oldest first.

    An exchange is an assistant message with tool calls and the tool messages that answer
    it, as ``(start, end)`` indices; it qualifies when nothing in it is protected and every
    one of its calls has an elided result.
    """
    runs: list[list[tuple[int, int]]] = []
    run: list[tuple[int, int]] = []
    index = 2
    while index < len(messages):
        end = index + 1
        message = messages[index]
        if message.role == "assistant" and message.tool_calls:
            while end < len(messages) and messages[end].role == "tool":
                end += 1
        results = messages[index + 1 : end]
        ok = (
            bool(results)
            and len(results) == len(message.tool_calls)
            and all(_is_elided(m) for m in results)
            and not any(is_protected(i, messages[i]) for i in range(index, end))
        )
        if ok:
            run.append((index, end))
        else:
            if len(run) > 1:
                runs.append(run)
            run = []
        index = end
    if len(run) > 1:
        runs.append(run)
    return runs


def _collapse(fit: _Fitter, run: list[tuple[int, int]]) -> None:
    """Fold a run of elided exchanges into its first one, whose first result says how many.

    The first exchange stays whole (its assistant message keeps its tool calls and every
    call keeps a result), so the wire format and the user/assistant alternation hold.
    """
    first_start, first_end = run[0]
    count = sum(
        _collapsed_count(fit.messages[i]) for start, end in run for i in range(start + 1, end)
    )
    count -= sum(_collapsed_count(fit.messages[i]) for i in range(first_start + 2, first_end))
    fit.set(
        first_start + 1,
        f"{ELIDED_PREFIX}: results of {count} earlier tool calls, this one included; "
        "call the tools again if you need them]",
    )
    for start, end in run[1:]:
        for i in range(start, end):
            fit.drop(i)


def fit_to_context(
    messages: list[Message],
    budget_tokens: int,
    estimator: TokenEstimator,
    *,
    fixed_overhead_chars: int = 0,
    protected: Callable[[int, Message], bool] | None = None,
    target_fill: float = 0.8,
) -> tuple[list[Message], int]:
    """Return the messages to send, within ``budget_tokens``, and how many tool outputs changed.

    Under the budget the messages come back unchanged. Over it, in order:

    1. unprotected tool outputs are elided, oldest first, down to ``target_fill`` of the
       budget (so that the next turns append without another elision);
    2. older assistant texts and user notes after the task are shortened;
    3. runs of adjacent exchanges whose results are all elided are folded into one
       exchange, oldest run first, down to ``target_fill`` (in a long session the markers
       themselves would otherwise fill a small context);
    4. as the last resort, the middle of the largest remaining tool output is cut.

    ``protected`` (default: :func:`default_protected` of ``messages``) says what steps 1-3
    leave alone; indices 0 and 1 (system prompt and task) are never changed. The count is of
    tool messages elided or cut by this call; messages elided by an earlier call are not
    counted again.

    If the system prompt and task alone exceed the budget, the messages come back as they
    are. The result can still be over budget when protected non-tool content is too large,
    so the caller should check ``estimator.estimate(result, fixed_overhead_chars)``.
    The input list and its messages are not modified.
    """
    limit = budget_tokens * estimator.chars_per_token  # chars that fit; compare in chars
    sizes = [message_chars(m) for m in messages]
    total = fixed_overhead_chars + sum(sizes)
    if total <= limit:
        return list(messages), 0
    if fixed_overhead_chars + sum(sizes[:2]) > limit:
        return list(messages), 0
    is_protected = protected if protected is not None else default_protected(messages)
    calls = _calls_of_tool_messages(messages)
    fit = _Fitter(list(messages), sizes, total)
    changed: set[int] = set()
    target = limit * target_fill

    # 1. Elide unprotected tool outputs, oldest first, down to the low-water mark.
    for index in range(2, len(messages)):
        if fit.total <= target:
            break
        message = messages[index]
        if message.role != "tool" or _is_elided(message) or is_protected(index, message):
            continue
        marker = _elision_marker(message, calls.get(index))
        if len(marker) < len(message.content):
            fit.set(index, marker)
            changed.add(index)

    # 2. Shorten older assistant texts and user notes (never the task), oldest first.
    for index in range(2, len(messages)):
        if fit.total <= limit:
            break
        message = fit.messages[index]
        if (
            message.role in ("assistant", "user")
            and not is_protected(index, message)
            and not message.content.endswith(_SHORTENED_SUFFIX)
            and len(message.content) > SHORTEN_HEAD_CHARS + 50
        ):
            fit.set(index, _shorten(message.content))

    # 3. Fold runs of elided exchanges, oldest first, down to the low-water mark.
    if fit.total > limit:
        for run in _collapsible_runs(fit.messages, is_protected):
            if fit.total <= target:
                break
            _collapse(fit, run)

    # 4. Cut the middle of the largest remaining tool output until it fits.
    spent: set[int] = set()  # outputs that cannot get any shorter
    while fit.total > limit:
        candidates = [
            (len(m.content), -index)
            for index, m in enumerate(fit.messages)
            if index >= 2
            and index not in spent
            and index not in fit.dropped
            and m.role == "tool"
            and not _is_elided(m)
            and len(m.content) > MIN_TRUNCATED_KEEP_CHARS
        ]
        if not candidates:
            break
        _, neg_index = max(candidates)  # the largest; the oldest among equals
        index = -neg_index
        before = fit.messages[index].content
        # Also pay for the marker, so one cut is usually enough (no markers inside markers).
        after = _truncate_middle(before, math.ceil(fit.total - limit) + _MARKER_ALLOWANCE)
        if len(after) >= len(before):
            spent.add(index)
            continue
        fit.set(index, after)
        changed.add(index)

    return fit.result(), len(changed)
