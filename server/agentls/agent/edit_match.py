"""Edit matching for the ``edit`` tool: exact first, then tolerating trailing whitespace and
indentation drift, never an ambiguous match; and the numbered lines ``read`` shows.

Agent-side only: the text diff (:mod:`agentls.textdiff`), minimal text edits
(:mod:`agentls.textedits`), ``FileChange`` and rebasing (:mod:`agentls.changes`) and the LSP
``WorkspaceEdit`` (:mod:`agentls.lsp.workspace_edit`) each have their own module.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AppliedEdit", "EditMatchError", "apply_edit", "apply_edit_detailed", "number_lines"]


class EditMatchError(Exception):
    """An ``edit`` could not be applied; the message tells the model what to do instead."""

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
    # The model writes "\n"; keep a CRLF file CRLF instead of mixing line endings. (The
    # whole-file scan comes last: it takes longer than finding old_text did.)
    if "\n" in new_text and "\r\n" not in new_text and "\r\n" in text:
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
