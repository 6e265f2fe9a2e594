"""Several changes in one ``edit`` call, applied together: all or none.

Each change (an item of ``edits``) takes a range of a file and says what happens to it:

- a range is ``old_text`` (found as the single ``edit`` finds it, forgiving whitespace but
  never ambiguous) or the lines ``start_line``-``end_line`` as ``read`` numbered them,
  checked by ``first_line``/``last_line`` (the text of those two lines, or its start);
- ``new_text`` replaces the range in place (``""`` deletes it);
- ``to_path``/``to_line`` move the range there (before ``to_line``; default: the end of the
  file, which is created if missing), after ``new_text`` if one is given (a new file's
  header); ``copy`` keeps the original;
- ``new_text`` with ``to_path``/``to_line`` and no range inserts it there.

Every line number and every ``old_text`` of one call refers to the files as they were
before the call (as in an LSP WorkspaceEdit), so a model can plan several changes from one
``read``. Moved text is taken from the staged view, never retyped, which is the point: a
slow local model writes a few numbers instead of the code. Any failing item fails the
whole call with a message naming it and nothing is staged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentls.agent.edit_match import EditMatchError, apply_edit_detailed, number_lines
from agentls.agent.tools.base import Args, alias_field, clip, path_field, split_display
from agentls.agent.workspace import ToolError, Workspace

# Lines of the changed regions shown after a batch (the model checks its work and learns
# the new line numbers); more would cost prompt tokens on every later turn.
SHOW_MAX_LINES = 40
SHOW_CONTEXT_LINES = 1


class EditItem(Args):
    """One change of an ``edit`` call's ``edits``; the fields' order is the order a grammar
    makes a constrained model write them in: where, then what."""

    old_text: str | None = alias_field(None, "old_text", "old_string", "oldText")
    start_line: int | None = None
    end_line: int | None = None
    first_line: str | None = None
    last_line: str | None = None
    new_text: str | None = alias_field(None, "new_text", "new_string", "newText")
    to_path: str | None = path_field(None, "to_path", "to_file", "destination")
    to_line: int | None = None
    copy_: bool = alias_field(False, "copy")


# Item fields that only make sense in a batch; found at the top level of a call, they make
# the call's own fields one item (a model that skips the list is understood).
ITEM_ONLY = ("start_line", "end_line", "first_line", "last_line", "to_path", "to_line", "copy")


class BatchError(ToolError):
    """One item cannot be applied; nothing was changed."""


@dataclass
class _Op:
    """One piece of a file's new text, in the file's coordinates before the call."""

    start: int
    end: int
    text: str
    item: int
    lead: int = 0  # characters of ``text`` before the item's own text (a line break added)
    out_start: int = -1  # where ``text`` landed in the new file (set when assembling)


@dataclass
class _File:
    path: Path
    rel: str
    text: str | None  # None: the file does not exist yet
    ops: list[_Op] = field(default_factory=list)

    @property
    def body(self) -> str:
        return self.text or ""

    @property
    def eol(self) -> str:
        return "\r\n" if "\r\n" in self.body else "\n"


@dataclass
class _Outcome:
    """What one item did, for the report (filled in after assembling)."""

    verb: str
    source: str = ""
    target_op: _Op | None = None
    target: _File | None = None
    note: str = ""
    created: bool = False


def _line_starts(text: str) -> list[int]:
    """Offsets where each line (as ``read`` numbers them) starts."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    if starts and starts[-1] == len(text) and len(starts) > 1:
        starts.pop()  # the break ending the last line starts no line of its own
    if text == "":
        return []
    return starts


_NUMBER_PREFIX = re.compile(r"^\s*\d+\|\s?")


def _norm(text: str) -> str:
    text = _NUMBER_PREFIX.sub("", text, count=1)
    text = text.strip().removesuffix("...").removesuffix("\u2026")
    return " ".join(text.split())


def guard_matches(line: str, guard: str) -> bool:
    """Whether ``guard`` names ``line``: the same text ignoring whitespace runs and a copied
    ``12|`` prefix, or the start of it (a model may write just ``def total(``)."""
    want = _norm(guard)
    have = " ".join(line.split())
    if not want:
        return not have
    return have == want or have.startswith(want)


class Batch:
    """Plans and applies the items of one ``edit`` call against the staged view."""

    def __init__(
        self,
        ws: Workspace,
        default_path: str,
        items: Sequence[EditItem],
        labels: Sequence[str] | None = None,
    ) -> None:
        self.ws = ws
        self.default_path = default_path
        self.items = list(items)
        self.labels = list(labels) if labels is not None else []
        self.files: dict[Path, _File] = {}
        self.outcomes: list[_Outcome] = []

    def label(self, index: int) -> str:
        """How errors and the report name an item: ``edits[2]`` unless told otherwise."""
        return self.labels[index] if index < len(self.labels) else f"edits[{index}]"

    def _file(self, raw: str, index: int, *, must_exist: bool) -> _File:
        full = self.ws.resolve(raw)
        known = self.files.get(full)
        if known is None:
            text = self.ws.read_text(full) if self.ws.exists(full) else None
            known = self.files[full] = _File(full, self.ws.rel(full), text)
        if must_exist and known.text is None:
            raise BatchError(
                f"{self.label(index)}: file '{known.rel}' not found; "
                "its lines cannot be changed or moved (to create it, give it as to_path)"
            )
        return known

    def apply(self) -> str:
        """Stage every item's change, all or none; returns the report for the model."""
        if not self.items:
            raise BatchError("edits is empty: give at least one change")
        for index, item in enumerate(self.items):
            self.outcomes.append(self._plan(index, item))
        new_texts = {f.path: self._assemble(f) for f in self.files.values() if f.ops}
        self.ws.stage_all(new_texts)
        return self._report(new_texts)

    # -- planning --------------------------------------------------------------------------

    def _plan(self, index: int, item: EditItem) -> _Outcome:
        label = self.label(index)
        has_range = item.old_text is not None or item.start_line is not None
        has_range = has_range or item.end_line is not None
        has_dest = item.to_path is not None or item.to_line is not None
        if item.old_text is not None and (item.start_line is not None or item.end_line):
            raise BatchError(f"{label}: give old_text or start_line/end_line, not both")
        if has_range and not has_dest and item.new_text is None:
            raise BatchError(
                f'{label}: say what happens to the range: new_text replaces it ("" deletes '
                "it), to_path/to_line moves it"
            )
        if not has_range and not (has_dest and item.new_text is not None):
            raise BatchError(
                f"{label}: give a range (old_text, or start_line and end_line) with new_text "
                "or to_path, or new_text with to_path/to_line to insert it"
            )
        if has_range:
            source = self._file(self.default_path, index, must_exist=True)
            start, end, replacement, note, where = self._locate(index, item, source)
            if not has_dest:
                op = _Op(start, end, replacement or "", index)
                source.ops.append(op)
                verb = "deleted" if not replacement else "replaced"
                return _Outcome(verb, f"{source.rel} {where}", op, source, note)
            moved = source.body[start:end]
            if not item.copy_:
                source.ops.append(_Op(start, end, "", index))
            target = self._file(item.to_path or self.default_path, index, must_exist=False)
            op = self._insert(
                index, item, target, moved, (source, start, end, item.copy_), item.new_text or ""
            )
            verb = "copied" if item.copy_ else "moved"
            if item.new_text:
                note = "; ".join(n for n in ("after new_text", note) if n)
            return _Outcome(verb, f"{source.rel} {where}", op, target, note, target.text is None)
        target = self._file(item.to_path or self.default_path, index, must_exist=False)
        op = self._insert(index, item, target, item.new_text or "", None)
        return _Outcome("inserted", "", op, target, "", target.text is None)

    def _locate(self, index: int, item: EditItem, file: _File) -> tuple[int, int, str, str, str]:
        """The range's offsets, its replacement, a tolerance note and how to name it."""
        label = self.label(index)
        if item.old_text is not None:
            placeholder = item.new_text if item.new_text is not None else ""
            try:
                found = apply_edit_detailed(file.body, item.old_text, placeholder)
            except EditMatchError as exc:
                if item.new_text is None and item.old_text == "":
                    raise BatchError(f"{label}: old_text is empty") from exc
                raise BatchError(f"{label} ({file.rel}): {exc.message}") from exc
            replacement = found.replacement if item.new_text is not None else ""
            first = file.body.count("\n", 0, found.start) + 1
            last = max(first, file.body.count("\n", 0, max(found.start, found.end - 1)) + 1)
            return found.start, found.end, replacement, found.note, _lines(first, last)
        lines = split_display(file.body)
        first, last, note = self._checked_range(index, item, file, lines)
        starts = _line_starts(file.body)
        start = starts[first - 1]
        end = starts[last] if last < len(starts) else len(file.body)
        replacement = item.new_text or ""
        region_ends_line = file.body[start:end].endswith("\n")
        replacement = _with_eol(replacement, file.eol, add_final=region_ends_line)
        return start, end, replacement, note, _lines(first, last)

    def _checked_range(
        self, index: int, item: EditItem, file: _File, lines: list[str]
    ) -> tuple[int, int, str]:
        """``start_line``-``end_line``, checked against the guards (shifted when the guards
        fit exactly one other place at the same distance: the numbers were stale)."""
        label = self.label(index)
        total = len(lines)
        first = item.start_line if item.start_line is not None else item.end_line
        last = item.end_line if item.end_line is not None else item.start_line
        assert first is not None and last is not None  # a range was given
        if first < 1 or last < first or last > total:
            raise BatchError(
                f"{label}: lines {first}-{last} are not a range of '{file.rel}' "
                f"({total} lines; start_line <= end_line, both from read)"
            )
        first_guard = item.first_line
        last_guard = item.last_line if item.last_line is not None else None
        if last_guard is None and first == last:
            last_guard = first_guard
        if first_guard is None or last_guard is None:
            raise BatchError(
                f"{label}: give first_line and last_line, the text of lines {first} and "
                f"{last}, so the range is checked. {file.rel} has there:\n"
                + _show(lines, first, last)
            )

        def fits(a: int, b: int) -> bool:
            return guard_matches(lines[a - 1], first_guard) and guard_matches(
                lines[b - 1], last_guard
            )

        if fits(first, last):
            return first, last, ""
        shifts = [
            d for d in range(1 - first, total - last + 1) if d != 0 and fits(first + d, last + d)
        ]
        if len(shifts) == 1:
            d = shifts[0]
            note = (
                f"lines {first}-{last} did not match first_line/last_line; "
                f"they are at lines {first + d}-{last + d} now, which were used"
            )
            return first + d, last + d, note
        where = (
            f" (they fit {len(shifts)} other places at that distance, so none was chosen)"
            if shifts
            else ""
        )
        raise BatchError(
            f"{label}: lines {first}-{last} of '{file.rel}' do not start with first_line "
            f"{first_guard!r} and end with last_line {last_guard!r}{where}. "
            f"Those lines are now:\n{_show(lines, first, last)}\n"
            "Use line numbers from your latest read of the file."
        )

    def _insert(
        self,
        index: int,
        item: EditItem,
        target: _File,
        text: str,
        source: tuple[_File, int, int, bool] | None,
        before: str = "",
    ) -> _Op:
        """Put ``text`` into ``target`` before ``to_line`` (default: at the end), preceded by
        ``before`` (a moved block's new_text: the header of the file it goes to)."""
        label = self.label(index)
        body = target.body
        starts = _line_starts(body)
        total = len(starts)
        if item.to_line is None or item.to_line == total + 1:
            at = len(body)
        elif 1 <= item.to_line <= total:
            at = starts[item.to_line - 1]
        else:
            raise BatchError(
                f"{label}: to_line {item.to_line} is outside '{target.rel}' ({total} lines; "
                f"1-{total + 1}, or leave it out to add at the end)"
            )
        if source is not None:
            src, start, end, copy = source
            if src is target and not copy and start < at < end:
                raise BatchError(f"{label}: to_line is inside the lines being moved")
        block = _with_eol(text, target.eol, add_final=True) if text else ""
        header = _with_eol(before, target.eol, add_final=True) if before else ""
        lead = target.eol if at == len(body) and body and not body.endswith("\n") else ""
        op = _Op(at, at, lead + header + block, index, len(lead) + len(header))
        target.ops.append(op)
        return op

    # -- applying --------------------------------------------------------------------------

    def _assemble(self, file: _File) -> str:
        """The file's new text from its pieces; overlapping pieces are an error."""
        ops = sorted(file.ops, key=lambda op: (op.start, op.end != op.start, op.item))
        body = file.body
        out: list[str] = []
        pos = 0
        size = 0
        previous: _Op | None = None
        for op in ops:
            if op.start < pos:
                assert previous is not None
                raise BatchError(
                    f"{self.label(previous.item)} and {self.label(op.item)} change overlapping "
                    f"text of '{file.rel}' ({_span_lines(body, previous)} and "
                    f"{_span_lines(body, op)}); give each line to one change"
                )
            out.append(body[pos : op.start])
            size += op.start - pos
            op.out_start = size
            out.append(op.text)
            size += len(op.text)
            pos = max(pos, op.end)
            if op.end > op.start:
                previous = op  # the range an insertion inside it would collide with
        out.append(body[pos:])
        return "".join(out)

    def _report(self, new_texts: dict[Path, str]) -> str:
        count = len(self.items)
        lines = [f"Applied {count} change{'s' if count != 1 else ''} (all or none):"]
        shown: dict[Path, list[tuple[int, int]]] = {}
        for index, outcome in enumerate(self.outcomes):
            op, target = outcome.target_op, outcome.target
            assert op is not None and target is not None
            text = new_texts[target.path]
            first = text.count("\n", 0, op.out_start + op.lead) + 1
            own = len(split_display(op.text[op.lead :])) if op.text else 0
            now = f"now {_lines(first, first + own - 1)}" if own else f"at line {first}"
            created = " (new file)" if outcome.created else ""
            if outcome.verb in ("moved", "copied"):
                what = f"{outcome.verb} {outcome.source} to {target.rel}{created}, {now}"
            elif outcome.verb == "inserted":
                what = f"inserted {own} line(s) into {target.rel}{created}, {now}"
            elif outcome.verb == "deleted":
                what = f"deleted {outcome.source}"
            else:
                what = f"replaced {outcome.source}, {now}"
                shown.setdefault(target.path, []).append((first, first + max(own, 1) - 1))
            note = f" ({outcome.note})" if outcome.note else ""
            lines.append(f"- {self.label(index)}: {what}{note}")
        sizes = ", ".join(
            f"{self.files[p].rel} {len(split_display(t))} lines" for p, t in new_texts.items()
        )
        lines.append(f"Files now: {sizes}.")
        lines.extend(self._snippets(shown, new_texts))
        return "\n".join(lines)

    def _snippets(
        self, shown: dict[Path, list[tuple[int, int]]], new_texts: dict[Path, str]
    ) -> list[str]:
        """The replaced lines with a line of context, per file, within SHOW_MAX_LINES."""
        out: list[str] = []
        budget = SHOW_MAX_LINES
        for path, spans in shown.items():
            lines = split_display(new_texts[path])
            wanted: list[int] = []
            for a, b in spans:
                lo = max(1, a - SHOW_CONTEXT_LINES)
                hi = min(len(lines), b + SHOW_CONTEXT_LINES)
                wanted.extend(n for n in range(lo, hi + 1) if n not in wanted)
            wanted.sort()
            if not wanted or budget <= 0:
                continue
            cut = len(wanted) > budget
            wanted = wanted[:budget]
            budget -= len(wanted)
            out.append(f"{self.files[path].rel} now:")
            run: list[int] = []
            for n in [*wanted, -1]:
                if run and n != run[-1] + 1:
                    out.append(number_lines([clip(lines[k - 1]) for k in run], run[0]))
                    if n != -1:
                        out.append("   ...")
                    run = []
                run.append(n)
            if cut:
                out.append("[... read the file to see the rest]")
        return out


def _with_eol(text: str, eol: str, *, add_final: bool) -> str:
    """``text`` with the file's line breaks, ending in one when ``add_final``."""
    text = text.replace("\r\n", "\n")
    if add_final and text and not text.endswith("\n"):
        text += "\n"
    return text.replace("\n", eol) if eol != "\n" else text


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _span_lines(body: str, op: _Op) -> str:
    first = body.count("\n", 0, op.start) + 1
    last = body.count("\n", 0, max(op.start, op.end - 1)) + 1
    return _lines(first, last)


def _show(lines: list[str], first: int, last: int) -> str:
    """The lines around a range's two ends, numbered as read shows them."""
    near = sorted(
        {n for end in (first, last) for n in range(end - 1, end + 2) if 1 <= n <= len(lines)}
    )
    parts: list[str] = []
    run: list[int] = []
    for n in [*near, -1]:
        if run and n != run[-1] + 1:
            parts.append(number_lines([clip(lines[k - 1]) for k in run], run[0]))
            run = []
        run.append(n)
    return "\n   ...\n".join(parts)
