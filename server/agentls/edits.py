"""Staged changes -> minimal text edits, unified diffs and LSP WorkspaceEdits; edit matching.

A leaf module: it imports only the standard library and lsprotocol, so the CLI, the
server and the tool loop can all use it without pulling each other in.

Positions follow LSP: zero-based lines, characters counted in UTF-16 code units, lines
split at ``\\n``, ``\\r\\n`` and ``\\r`` (and nothing else, unlike ``str.splitlines``).
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lsprotocol import types as lsp


@dataclass(frozen=True)
class FileChange:
    """One file the agent changed: text it read (None for a new file), text it wants."""

    path: Path  # absolute
    old_text: str | None
    new_text: str
    version: int | None = None  # editor version of the open document the agent read


class EditMatchError(Exception):
    """An ``edit`` could not be applied; the message tells the model what to do instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EditConflict(Exception):
    """The agent's change and the file's current text disagree (the user typed, or disk changed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------
# Edit matching (the `edit` tool)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedEdit:
    """The result of matching one edit: the new text and where the replacement landed.

    ``first_line``/``last_line`` are 1-based lines of the replacement in ``text`` (for a
    pure deletion both are the line where the removed text was). ``note`` explains any
    tolerance that was needed, so the model learns to be exact next time.
    ``start``/``end`` are the offsets of the matched text in the *original* text and
    ``replacement`` what took its place, so several edits located in one text can be
    applied together (``text == original[:start] + replacement + original[end:]``).
    """

    text: str
    first_line: int
    last_line: int
    note: str = ""
    start: int = 0
    end: int = 0
    replacement: str = ""


def apply_edit(text: str, old_text: str, new_text: str) -> str:
    """Replace the one occurrence of ``old_text`` in ``text`` with ``new_text``.

    Exact matches must be unique. Failing that, lines are compared ignoring trailing
    whitespace, then ignoring a consistent indentation difference (``new_text`` is then
    re-indented by the same amount). An ambiguous match is never applied. Raises
    :class:`EditMatchError` with a message that shows the model how to proceed.
    """
    return apply_edit_detailed(text, old_text, new_text).text


def apply_edit_detailed(text: str, old_text: str, new_text: str) -> AppliedEdit:
    """Like :func:`apply_edit`, but also report where the replacement landed."""
    if old_text == "":
        raise EditMatchError(
            "old_text is empty. To create a new file or replace a whole file use write; "
            "to insert text, put a few existing neighbouring lines in old_text and repeat "
            "them in new_text together with the addition."
        )
    if old_text == new_text:
        raise EditMatchError("old_text and new_text are identical, so there is nothing to change.")

    result = _match_exact(text, old_text, new_text)
    if result is not None:
        return result

    # Small models often copy the "  12| " prefixes of `read` output into old_text.
    stripped_old = _strip_line_numbers(old_text)
    if stripped_old is not None:
        stripped_new = _strip_line_numbers(new_text)
        new_clean = stripped_new if stripped_new is not None else new_text
        try:
            applied = apply_edit_detailed(text, stripped_old, new_clean)
        except EditMatchError:
            pass
        else:
            note = "the line-number prefixes from read were removed from old_text"
            return AppliedEdit(
                applied.text,
                applied.first_line,
                applied.last_line,
                "; ".join(n for n in (note, applied.note) if n),
                applied.start,
                applied.end,
                applied.replacement,
            )

    result = _match_lines(text, old_text, new_text)
    if result is not None:
        return result
    raise EditMatchError(_not_found_message(text, old_text, new_text))


_LINE_NUMBER_PREFIX = re.compile(r"^ *\d+\| ?")


def _strip_line_numbers(text: str) -> str | None:
    """Remove ``  12| `` prefixes when every non-blank line has one; None otherwise."""
    lines = text.split("\n")
    if not any(line.strip() for line in lines):
        return None
    if not all(_LINE_NUMBER_PREFIX.match(line) for line in lines if line.strip()):
        return None
    return "\n".join(_LINE_NUMBER_PREFIX.sub("", line, count=1) for line in lines)


def _line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset (lines split at ``\\n``, as `read` shows them)."""
    return text.count("\n", 0, offset) + 1


def _occurrences(text: str, needle: str) -> list[int]:
    """Every start offset of ``needle``, overlapping ones included (they are ambiguous too)."""
    found: list[int] = []
    start = text.find(needle)
    while start != -1:
        found.append(start)
        start = text.find(needle, start + 1)
    return found


def _ambiguous(count: int, lines: Sequence[int], how: str = "") -> EditMatchError:
    shown = ", ".join(str(n) for n in lines[:20]) + (", ..." if len(lines) > 20 else "")
    return EditMatchError(
        f"old_text matches {count} times{how}, at lines {shown}; include more surrounding "
        "lines to make it unique. Nothing was changed."
    )


def _match_exact(text: str, old_text: str, new_text: str) -> AppliedEdit | None:
    positions = _occurrences(text, old_text)
    if not positions:
        return None
    if len(positions) > 1:
        raise _ambiguous(len(positions), [_line_of(text, p) for p in positions])
    pos = positions[0]
    # The model writes "\n"; keep a CRLF file CRLF instead of mixing line endings.
    if "\r\n" in text and "\r\n" not in new_text:
        new_text = new_text.replace("\n", "\r\n")
    result = text[:pos] + new_text + text[pos + len(old_text) :]
    first = _line_of(text, pos)
    last = first + _body_line_count(new_text) - 1
    return AppliedEdit(result, first, last, "", pos, pos + len(old_text), new_text)


def _body_line_count(inserted: str) -> int:
    """How many display lines an inserted string spans (at least 1, so ranges stay valid)."""
    return max(1, inserted.count("\n") + (0 if inserted.endswith("\n") else 1))


def _split_nl(text: str) -> list[str]:
    """Split at ``\\n`` keeping the terminators; no empty last element."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


@dataclass(frozen=True)
class _Indent:
    """A consistent indentation difference: ``add`` means the file is indented more."""

    delta: str
    add: bool


def _indent_offset(file_lines: Sequence[str], old_lines: Sequence[str]) -> _Indent | None:
    """The one indentation difference that turns every old line into its file line, if any."""
    found: _Indent | None = None
    for fline, oline in zip(file_lines, old_lines, strict=True):
        if not oline.strip():
            continue
        fi, oi = _leading(fline), _leading(oline)
        if fi.endswith(oi):
            candidate = _Indent(fi[: len(fi) - len(oi)], add=True)
        elif oi.endswith(fi):
            candidate = _Indent(oi[: len(oi) - len(fi)], add=False)
        else:
            return None
        if candidate.delta == "":
            candidate = _Indent("", add=True)  # no difference: one canonical form
        if found is None:
            found = candidate
        elif found != candidate:
            return None
    return found


def _reindent(text: str, indent: _Indent) -> str:
    if not indent.delta:
        return text
    out: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            out.append(line)
        elif indent.add:
            out.append(indent.delta + line)
        elif line.startswith(indent.delta):
            out.append(line[len(indent.delta) :])
        else:
            out.append(line.lstrip(" \t"))
    return "\n".join(out)


def _match_lines(text: str, old_text: str, new_text: str) -> AppliedEdit | None:
    """Whole-line matching that tolerates whitespace drift; None when nothing matches."""
    flines = _split_nl(text)
    olines = [line.rstrip("\r") for line in old_text.split("\n")]
    if old_text.endswith("\n"):
        olines.pop()
    n = len(olines)
    if n == 0 or n > len(flines):
        return None

    # Tier 1: trailing whitespace (and CR/LF differences) ignored.
    okeys = [line.rstrip() for line in olines]
    hits = [
        i
        for i in range(len(flines) - n + 1)
        if all(flines[i + k].rstrip() == okeys[k] for k in range(n))
    ]
    indent = _Indent("", add=True)
    how = " ignoring trailing whitespace"
    if not hits:
        # Tier 2: indentation differs by one consistent amount.
        skeys = [line.strip() for line in olines]
        candidates: list[tuple[int, _Indent]] = []
        for i in range(len(flines) - n + 1):
            if all(flines[i + k].strip() == skeys[k] for k in range(n)):
                found = _indent_offset(flines[i : i + n], olines)
                if found is not None:
                    candidates.append((i, found))
        if not candidates:
            return None
        hits = [i for i, _ in candidates]
        indent = candidates[0][1]
        how = " ignoring indentation"
    if len(hits) > 1:
        raise _ambiguous(len(hits), [i + 1 for i in hits], how)

    start = hits[0]
    region = flines[start : start + n]
    eol = "\r\n" if region[0].endswith("\r\n") else "\n"
    body = _reindent(new_text, indent)
    if eol == "\r\n" and "\r\n" not in body:
        body = body.replace("\n", "\r\n")
    region_has_eol = region[-1].endswith("\n")
    if body and region_has_eol and not body.endswith("\n"):
        body += eol
    elif body and not region_has_eol and old_text.endswith("\n") and body.endswith(eol):
        body = body[: -len(eol)]
    result = "".join(flines[:start]) + body + "".join(flines[start + n :])

    notes = ["old_text matched only" + how]
    if indent.delta:
        direction = "indented" if indent.add else "dedented"
        notes.append(f"new_text was {direction} by {len(indent.delta)} characters to fit")
    first = start + 1
    offset = sum(len(line) for line in flines[:start])
    span = (offset, offset + sum(len(line) for line in region))
    last = first + _body_line_count(body) - 1
    return AppliedEdit(result, first, last, "; ".join(notes), *span, body)


def number_lines(lines: Sequence[str], first: int, width: int = 4) -> str:
    """Render lines the way the `read` tool does: ``  12| text``."""
    width = max(width, len(str(first + len(lines) - 1)))
    return "\n".join(
        f"{first + k:>{width}}| {line}".rstrip(" ")
        if not line.strip()
        else f"{first + k:>{width}}| {line}"
        for k, line in enumerate(lines)
    )


def _not_found_message(text: str, old_text: str, new_text: str) -> str:
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    parts = ["old_text was not found in the file (nothing was changed)."]
    # Worth saying only when new_text is distinctive; short strings occur by chance.
    if len(new_text.strip()) >= 12 and text.count(new_text) == 1:
        parts.append(
            f"new_text is already present at line {_line_of(text, text.index(new_text))}: "
            "the edit may have been applied already."
        )
    window = _closest_window(lines, old_text)
    if window is not None:
        start, end = window
        where = f"line {end}" if end - start == 1 else f"lines {start + 1}-{end}"
        parts.append(f"The closest text is at {where}:")
        parts.append(number_lines(lines[start:end], start + 1))
    parts.append(
        "Re-read the file with read and copy old_text exactly, including indentation, "
        "or use a smaller, unique old_text."
    )
    return "\n".join(parts)


def _closest_window(lines: Sequence[str], old_text: str) -> tuple[int, int] | None:
    """The window of file lines most similar to ``old_text`` (half-open), if any is close."""
    olines = [line.rstrip("\r").strip() for line in old_text.rstrip("\n").split("\n")]
    n = max(1, min(len(olines), len(lines)))
    if not lines:
        return None
    target = "\n".join(olines)
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)  # seq2 is the one difflib caches analysis for
    best, best_ratio = -1, 0.0
    stripped = [line.strip() for line in lines]
    # Bound the work on very large files; the closest lines are a hint, not a promise.
    step = max(1, (len(lines) - n + 1) // 5000)
    for i in range(0, len(lines) - n + 1, step):
        matcher.set_seq1("\n".join(stripped[i : i + n]))
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    if best < 0 or best_ratio < 0.4:
        return None
    return best, best + n


# --------------------------------------------------------------------------------------
# Minimal text edits in LSP coordinates
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainEdit:
    """A text edit in LSP coordinates, independent of lsprotocol.

    Ranges refer to the original text (as in LSP: all edits of one document are
    relative to the same version); edits never overlap and come sorted.
    """

    start_line: int
    start_character: int
    end_line: int
    end_character: int
    new_text: str


_LSP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def split_lines(text: str) -> list[str]:
    """Split into lines at ``\\n``, ``\\r\\n`` and ``\\r`` only, keeping the terminators."""
    return _LSP_LINE.findall(text)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Positions:
    """Converts between code-point offsets and LSP positions for one text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = split_lines(text)
        self.starts: list[int] = []
        offset = 0
        for line in self.lines:
            self.starts.append(offset)
            offset += len(line)
        # A text ending in a line break has one more (empty) line; so does an empty text.
        if not self.lines or self.lines[-1].endswith(("\n", "\r")):
            self.starts.append(offset)
            self.lines.append("")

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, _utf16_len(self.text[self.starts[line] : offset])

    def offset(self, line: int, character: int) -> int:
        if line < 0:
            return 0
        if line >= len(self.lines):
            return len(self.text)
        content = self.lines[line].rstrip("\r\n")
        units = 0
        for index, char in enumerate(content):
            if units >= character:
                return self.starts[line] + index
            units += 2 if ord(char) > 0xFFFF else 1
        # LSP: a character past the end of the line means the end of the line.
        return self.starts[line] + len(content)


def text_edits(old: str, new: str) -> list[PlainEdit]:
    """Minimal edits that turn ``old`` into ``new``, sorted, relative to ``old``.

    A line diff finds the changed regions; each region is then trimmed to the characters
    that actually differ, so renaming one word yields one small edit, not a whole line.
    """
    if old == new:
        return []
    old_lines, new_lines = split_lines(old), split_lines(new)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    positions = _Positions(old)
    line_starts = positions.starts
    new_starts = [0]
    for line in new_lines:
        new_starts.append(new_starts[-1] + len(line))

    regions: list[tuple[int, int, int, int]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if regions and regions[-1][1] == i1 and regions[-1][3] == j1:
            # Adjacent changed regions: merge so two edits never share a boundary.
            regions[-1] = (regions[-1][0], i2, regions[-1][2], j2)
        else:
            regions.append((i1, i2, j1, j2))

    edits: list[PlainEdit] = []
    for i1, i2, j1, j2 in regions:
        start = line_starts[i1] if i1 < len(line_starts) else len(old)
        end = start + sum(len(line) for line in old_lines[i1:i2])
        old_seg = old[start:end]
        new_seg = new[new_starts[j1] : new_starts[j2]]
        prefix = _common_prefix(old_seg, new_seg)
        suffix = _common_suffix(old_seg[prefix:], new_seg[prefix:])
        a, b = start + prefix, end - suffix
        replacement = new_seg[prefix : len(new_seg) - suffix]
        # LSP cannot address a position between "\r" and "\n": widen the edit by one.
        if 0 < a < len(old) and old[a - 1] == "\r" and old[a] == "\n":
            a -= 1
            replacement = "\r" + replacement
        if 0 < b < len(old) and old[b - 1] == "\r" and old[b] == "\n":
            b += 1
            replacement += "\n"
        if a == b and not replacement:
            continue
        sl, sc = positions.position(a)
        el, ec = positions.position(b)
        edits.append(PlainEdit(sl, sc, el, ec, replacement))
    return edits


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[len(a) - 1 - i] == b[len(b) - 1 - i]:
        i += 1
    return i


def apply_text_edits(text: str, edits: Iterable[PlainEdit]) -> str:
    """Apply LSP-style edits (ranges relative to ``text``) the way an editor does.

    Raises ``ValueError`` for overlapping edits, which LSP forbids.
    """
    positions = _Positions(text)
    spans = sorted(
        (
            positions.offset(e.start_line, e.start_character),
            positions.offset(e.end_line, e.end_character),
            index,
            e.new_text,
        )
        for index, e in enumerate(edits)
    )
    out: list[str] = []
    cursor = 0
    for start, end, _index, new_text in spans:
        if start < cursor or end < start:
            raise ValueError("text edits overlap or have an inverted range")
        out.append(text[cursor:start])
        out.append(new_text)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


# --------------------------------------------------------------------------------------
# Rebasing the agent's change onto what the user typed meanwhile
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hunk:
    start: int  # first base line replaced (0-based)
    end: int  # one past the last base line replaced
    lines: list[str]  # replacement lines, with terminators


def _hunks(base: list[str], other: list[str]) -> list[_Hunk]:
    matcher = difflib.SequenceMatcher(None, base, other, autojunk=False)
    return [
        _Hunk(i1, i2, other[j1:j2])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def _line_span(hunk: _Hunk) -> str:
    if hunk.end - hunk.start <= 1:
        return f"line {hunk.start + 1}"
    return f"lines {hunk.start + 1}-{hunk.end}"


def rebase(change: FileChange, current_text: str, *, on_disk: bool = False) -> str:
    """Carry the agent's change over to ``current_text`` (the buffer as the user left it).

    Both the agent's change and the user's typing are diffed by line against the text
    the agent read. When no agent hunk overlaps or touches a user hunk, the agent's
    hunks are replayed at their shifted positions and the user's typing survives.
    Otherwise raises :class:`EditConflict` naming the file and lines. ``on_disk`` says
    ``current_text`` is the file on disk (the buffer the agent read was closed, or the
    file changed), which the conflict message then says.
    """
    if change.old_text is None:
        raise EditConflict(
            f"{change.path}: the agent created this file, but it exists now; nothing was changed."
        )
    if current_text == change.old_text:
        return change.new_text
    if current_text == change.new_text:
        return current_text  # the user already made the very same change
    base = split_lines(change.old_text)
    agent = _hunks(base, split_lines(change.new_text))
    user = _hunks(base, split_lines(current_text))
    for a in agent:
        for u in user:
            # Touching counts: text right next to the user's cursor is too close to call.
            if a.start <= u.end and u.start <= a.end:
                if on_disk:
                    raise EditConflict(
                        f"{change.path}: the file on disk differs at {_line_span(u)} from "
                        f"the text the agent edited at {_line_span(a)} (the editor's buffer "
                        "was closed without saving, or the file changed on disk), so the "
                        "agent's edit cannot be placed on it."
                    )
                raise EditConflict(
                    f"{change.path}: the document changed at {_line_span(u)} while the agent "
                    f"was editing {_line_span(a)}; the agent's edit was not applied. "
                    "Save or undo your typing and run the command again."
                )
    merged = sorted(agent + user, key=lambda h: (h.start, h.end))
    out: list[str] = []
    cursor = 0
    for hunk in merged:
        out.extend(base[cursor : hunk.start])
        out.extend(hunk.lines)
        cursor = hunk.end
    out.extend(base[cursor:])
    return "".join(out)


# --------------------------------------------------------------------------------------
# WorkspaceEdit, diffs and writing to disk
# --------------------------------------------------------------------------------------


class Snapshot(Protocol):
    """The shape of an open document (``agentls.tasks.base.DocumentSnapshot`` fits)."""

    @property
    def text(self) -> str: ...

    @property
    def version(self) -> int | None: ...


ANNOTATION_ID = "agentls"


def _range(edit: PlainEdit) -> lsp.Range:
    return lsp.Range(
        start=lsp.Position(line=edit.start_line, character=edit.start_character),
        end=lsp.Position(line=edit.end_line, character=edit.end_character),
    )


def _lsp_edits(
    edits: Sequence[PlainEdit], annotate: bool
) -> list[lsp.TextEdit | lsp.AnnotatedTextEdit | lsp.SnippetTextEdit]:
    if annotate:
        return [
            lsp.AnnotatedTextEdit(annotation_id=ANNOTATION_ID, range=_range(e), new_text=e.new_text)
            for e in edits
        ]
    return [lsp.TextEdit(range=_range(e), new_text=e.new_text) for e in edits]


def to_workspace_edit(
    changes: list[FileChange],
    current: Callable[[Path], Snapshot | None] | None = None,
    annotate: bool = False,
    disk: Callable[[Path], str | None] | None = None,
) -> lsp.WorkspaceEdit:
    """Turn staged changes into one ``WorkspaceEdit`` with ``document_changes``.

    ``current`` returns the open buffer of a path (or None when it is not open). When the
    buffer moved on since the agent read it, the change is rebased onto it and addressed
    to its current version, so the user's typing is kept; overlapping typing raises
    :class:`EditConflict`. Files that are not open get version None. Without ``current``
    the version the agent read is used. ``annotate`` marks every edit as needing
    confirmation, which VS Code shows as a refactor preview.

    ``disk`` returns a file's text on disk now (None when there is no such file). With it,
    an edit for a file that is not open is computed against that text, since a version-None
    edit is what the editor applies to the disk file: when the agent read an unsaved buffer
    that was closed meanwhile (or the file changed on disk), the change is rebased onto the
    disk text, or :class:`EditConflict` is raised when it does not rebase cleanly. A file
    the agent created that exists on disk now, or a file it edited that is gone, is a
    conflict too.
    """
    document_changes: list[
        lsp.TextDocumentEdit | lsp.CreateFile | lsp.RenameFile | lsp.DeleteFile
    ] = []
    annotation = ANNOTATION_ID if annotate else None
    for change in changes:
        uri = change.path.as_uri()
        snapshot = current(change.path) if current is not None else None
        if change.old_text is None:
            if snapshot is not None:
                raise EditConflict(
                    f"{change.path}: the agent created this file, but it is open in the "
                    "editor now; nothing was changed."
                )
            if disk is not None and disk(change.path) is not None:
                raise EditConflict(
                    f"{change.path}: the agent created this file, but it exists on disk now; "
                    "nothing was changed."
                )
            document_changes.append(
                lsp.CreateFile(
                    uri=uri,
                    options=lsp.CreateFileOptions(overwrite=False, ignore_if_exists=False),
                    annotation_id=annotation,
                )
            )
            edits = [PlainEdit(0, 0, 0, 0, change.new_text)] if change.new_text else []
            version = None
        else:
            if snapshot is not None:
                base, version = snapshot.text, snapshot.version
                target = rebase(change, snapshot.text)
            elif disk is not None:
                on_disk = disk(change.path)
                if on_disk is None:
                    raise EditConflict(
                        f"{change.path}: the file is gone from disk; the agent's edit of it "
                        "was not applied."
                    )
                # Version None means "the file on disk": the edit must be computed against
                # that text, not against a closed buffer's, or its positions land on the
                # wrong characters (def add(a, b) became def add(2, b)).
                base, version, target = on_disk, None, rebase(change, on_disk, on_disk=True)
            elif current is not None:
                base, version, target = change.old_text, None, change.new_text
            else:
                base, version, target = change.old_text, change.version, change.new_text
            edits = text_edits(base, target)
            if not edits:
                continue
        if edits:
            document_changes.append(
                lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                        uri=uri, version=version
                    ),
                    edits=_lsp_edits(edits, annotate),
                )
            )
    annotations = None
    if annotate and document_changes:
        annotations = {
            ANNOTATION_ID: lsp.ChangeAnnotation(
                label="agentls",
                needs_confirmation=True,
                description="Changes proposed by the agent",
            )
        }
    return lsp.WorkspaceEdit(document_changes=document_changes, change_annotations=annotations)


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def unified_diff(changes: Iterable[FileChange], root: Path, context: int = 3) -> str:
    """A git-style unified diff of the changes, paths relative to ``root``."""
    out: list[str] = []
    for change in changes:
        if change.old_text == change.new_text:
            continue
        rel = _display_path(change.path, root)
        out.append(f"diff --git a/{rel} b/{rel}\n")
        if change.old_text is None:
            out.append("new file mode 100644\n")
        old_lines = split_lines(change.old_text or "")
        new_lines = split_lines(change.new_text)
        fromfile = "/dev/null" if change.old_text is None else f"a/{rel}"
        lines = list(difflib.unified_diff(old_lines, new_lines, fromfile, f"b/{rel}", n=context))
        if not lines:
            continue
        for line in lines:
            if line.endswith("\n"):
                out.append(line)
            else:
                # As git and patch expect for a last line without a line break.
                out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


_BOM = b"\xef\xbb\xbf"


def read_disk_text(path: Path) -> str:
    """A file's text as the editor shows it: UTF-8, BOM dropped, line endings kept."""
    return path.read_bytes().decode("utf-8-sig", errors="replace")


def disk_text(path: Path) -> str | None:
    """A file's text on disk now (as :func:`read_disk_text`), or None when it is not a file."""
    try:
        return read_disk_text(path)
    except OSError:  # missing, a directory now, unreadable: no text to apply an edit to
        return None


def write_changes(changes: Iterable[FileChange]) -> None:
    """Write the changes to disk (the CLI's ``--apply``).

    Every file is checked before any is written: a new file must not exist yet and an
    existing one must still hold ``old_text``; otherwise :class:`EditConflict` is raised
    and nothing is written. Parent directories of new files are created.
    """
    pending = list(changes)
    for change in pending:
        if change.old_text is None:
            if change.path.exists():
                raise EditConflict(
                    f"{change.path}: the file exists now but the agent meant to create it; "
                    "nothing was written."
                )
        elif not change.path.is_file():
            raise EditConflict(f"{change.path}: the file is gone; nothing was written.")
        elif read_disk_text(change.path) != change.old_text:
            raise EditConflict(
                f"{change.path}: the file changed on disk since the agent read it; "
                "nothing was written."
            )
    for change in pending:
        data = change.new_text.encode("utf-8")
        if change.old_text is None:
            change.path.parent.mkdir(parents=True, exist_ok=True)
        elif change.path.read_bytes().startswith(_BOM):
            data = _BOM + data  # keep the file's byte-order mark
        change.path.write_bytes(data)
