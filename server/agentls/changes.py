"""Staged file changes: rebasing onto what the user typed, unified diffs, writing to disk.

A leaf beside :mod:`agentls.textdiff` (standard library only). The diffs here are linear
in the file's size for a few changes, so a megabyte file costs milliseconds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agentls.textdiff import Hunk, hunks, split_lines


@dataclass(frozen=True)
class FileChange:
    """One file the agent changed: text it read (None for a new file), text it wants."""

    path: Path  # absolute
    old_text: str | None
    new_text: str
    version: int | None = None  # editor version of the open document the agent read


class EditConflict(Exception):
    """The agent's change and the file's current text disagree (the user typed, or disk changed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------
# Rebasing the agent's change onto what the user typed meanwhile
# --------------------------------------------------------------------------------------


def _line_span(hunk: Hunk) -> str:
    if hunk.end - hunk.start <= 1:
        return f"line {hunk.start + 1}"
    return f"lines {hunk.start + 1}-{hunk.end}"


def _first_conflict(agent: list[Hunk], user: list[Hunk]) -> tuple[Hunk, Hunk] | None:
    """The first agent hunk (in order) that overlaps or touches a user hunk, with that hunk.

    Hunks of one diff are sorted and separated by equal lines, so their ends increase: the
    only user hunk that can meet an agent hunk first is the first one ending at or after
    its start. One bisection per agent hunk instead of comparing every pair.
    """
    ends = [u.end for u in user]
    for a in agent:
        index = bisect.bisect_left(ends, a.start)
        # Touching counts: text right next to the user's cursor is too close to call.
        if index < len(user) and user[index].start <= a.end:
            return a, user[index]
    return None


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
    base = change.old_text
    agent = hunks(base, change.new_text)
    user = hunks(base, current_text)
    conflict = _first_conflict(agent, user)
    if conflict is not None:
        a, u = conflict
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
    replayed = [(h, change.new_text) for h in agent] + [(h, current_text) for h in user]
    replayed.sort(key=lambda pair: (pair[0].start, pair[0].end))
    out: list[str] = []
    cursor = 0
    for hunk, text in replayed:
        out.append(base[cursor : hunk.old_from])
        out.append(text[hunk.new_from : hunk.new_to])
        cursor = hunk.old_to
    out.append(base[cursor:])
    return "".join(out)


# --------------------------------------------------------------------------------------
# Diffs and writing to disk
# --------------------------------------------------------------------------------------


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def unified_diff(changes: Iterable[FileChange], root: Path, context: int = 3) -> str:
    """A git-style unified diff of the changes, paths relative to ``root``.

    The format is ``difflib.unified_diff``'s; the hunks come from the linear diff, so a
    megabyte file costs milliseconds, not seconds.
    """
    out: list[str] = []
    for change in changes:
        if change.old_text == change.new_text:
            continue
        rel = _display_path(change.path, root)
        out.append(f"diff --git a/{rel} b/{rel}\n")
        if change.old_text is None:
            out.append("new file mode 100644\n")
        old_text = change.old_text or ""
        fromfile = "/dev/null" if change.old_text is None else f"a/{rel}"
        lines = _unified_lines(old_text, change.new_text, fromfile, f"b/{rel}", context)
        for line in lines:
            if line.endswith("\n"):
                out.append(line)
            else:
                # As git and patch expect for a last line without a line break.
                out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


Opcode = tuple[str, int, int, int, int]


def _opcodes(old: str, new: str, old_count: int, new_count: int) -> list[Opcode]:
    """difflib-style opcodes (equal, replace, delete, insert) from the linear diff's hunks."""
    codes: list[Opcode] = []
    i = j = 0
    for h in hunks(old, new):
        if i < h.start:
            codes.append(("equal", i, h.start, j, h.new_start))
        if h.start < h.end and h.new_start < h.new_end:
            tag = "replace"
        else:
            tag = "delete" if h.start < h.end else "insert"
        codes.append((tag, h.start, h.end, h.new_start, h.new_end))
        i, j = h.end, h.new_end
    if i < old_count or not codes:
        codes.append(("equal", i, old_count, j, new_count))
    return codes


def _grouped(codes: list[Opcode], n: int) -> list[list[Opcode]]:
    """Changes with up to ``n`` lines of context, as ``SequenceMatcher.get_grouped_opcodes``."""
    codes = list(codes)
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        # A long unchanged stretch ends one group and starts the next.
        if tag == "equal" and i2 - i1 > 2 * n:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _range(start: int, stop: int) -> str:
    """A unified diff's line range, as difflib writes it."""
    beginning, length = start + 1, stop - start
    if length == 1:
        return str(beginning)
    if not length:
        beginning -= 1  # an empty range names the line before it
    return f"{beginning},{length}"


def _unified_lines(old: str, new: str, fromfile: str, tofile: str, n: int) -> list[str]:
    """The lines ``difflib.unified_diff`` gives for these texts' lines, from our hunks."""
    a, b = split_lines(old), split_lines(new)
    out: list[str] = []
    for group in _grouped(_opcodes(old, new, len(a), len(b)), n):
        if not out:
            out += [f"--- {fromfile}\n", f"+++ {tofile}\n"]
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + line for line in a[i1:i2]]
                continue
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
    return out


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
