"""Edits at scale: minimal text edits, rebase and WorkspaceEdit for 10 KB to 5 MB files.

Issue 13's file-size table. For each file it times, in a forked child with a time limit:

- minimal text edits for one change (``text_edits``, one line changed halfway down), and
  for 100 changes spread over the file (90 lines changed, 10 inserted);
- the rebase over the user's typing (``rebase``: the user inserted a line a quarter of the
  way down, the agent changed a line three quarters of the way down);
- the WorkspaceEdit for an open buffer that moved on (``to_workspace_edit`` with the buffer
  of the rebase case, so it rebases and then computes the edits);
- two baselines: trimming the common prefix and suffix lines, and difflib's line diff
  with autojunk on (what ``difflib.unified_diff`` uses).

Files: synthetic Python-like text with many repeated lines (10 KB, 100 KB, 1 MB, 5 MB by
default) and lsprotocol's installed ``types.py`` as a real file. Each result is checked
(the edits applied to the old text give the new text) outside the timing. Times are
medians of up to 3 runs; a run over the limit shows as ``> N s``.

Usage: python bench/scale_edits.py [--sizes 10000,100000] [--timeout 120] [--works edits,...]
[--write NAME]
``--write before`` writes ``bench/results/scale-edits-<date>-before.md``; ``--write after``
writes ``...-after.md``.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import multiprocessing
import multiprocessing.connection
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lsprotocol.types

from agentls.changes import FileChange, rebase
from agentls.lsp.workspace_edit import to_workspace_edit
from agentls.textedits import PlainEdit, apply_text_edits, text_edits

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 5_000_000)
REAL_FILE = Path(lsprotocol.types.__file__)
PATH = Path("/bench/big.py")

WORKS = (
    ("edits", "minimal text edits for one change"),
    ("scattered", "minimal text edits for 100 scattered changes"),
    ("rebase", "rebase over the user's typing"),
    ("workspace", "WorkspaceEdit for an open buffer that moved on"),
    ("trim", "baseline: prefix/suffix line trim"),
    ("autojunk", "baseline: difflib line diff with autojunk"),
)


@dataclass(frozen=True)
class Row:
    """One measurement: which file, which work, its median time (None: over the limit)."""

    file: str
    size: int
    work: str
    seconds: float | None
    limit: float


@dataclass(frozen=True)
class Snap:
    """An open buffer as ``to_workspace_edit`` reads it."""

    text: str
    version: int | None


def synthetic(size: int) -> str:
    """Python-like text of about ``size`` bytes in which most lines repeat many times."""
    parts: list[str] = ['"""Generated module."""\n\nimport os\nimport sys\n\n\n']
    total = len(parts[0])
    n = 0
    while total < size:
        block = (
            f"def handler_{n}(request, context):\n"
            '    """Handle one request."""\n'
            "    if request is None:\n"
            "        return None\n"
            "    result = {}\n"
            "    for key, value in request.items():\n"
            "        result[key] = value\n"
            f"    result['id'] = {n % 97}\n"
            "    return result\n"
            "\n"
            "\n"
        )
        parts.append(block)
        total += len(block)
        n += 1
    return "".join(parts)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _change_line(text: str, fraction: float, mark: str) -> str:
    """Change one non-blank line near ``fraction`` of the text (a word inside it)."""
    lines = _LINE.findall(text)
    index = int(len(lines) * fraction)
    while not lines[index].strip():
        index += 1
    line = lines[index]
    body = line.rstrip("\r\n")
    cut = len(body) // 2
    lines[index] = body[:cut] + mark + body[cut:] + line[len(body) :]
    return "".join(lines)


def _scattered(text: str) -> str:
    """100 changes spread over the text: lines changed, and every tenth one inserted."""
    for k in range(100):
        fraction = (k + 0.5) / 100
        if k % 10 == 0:
            text = _insert_line(text, fraction, f"# inserted line {k}\n")
        else:
            text = _change_line(text, fraction, f"_{k}")
    return text


def _insert_line(text: str, fraction: float, inserted: str) -> str:
    lines = _LINE.findall(text)
    index = int(len(lines) * fraction)
    lines.insert(index, inserted)
    return "".join(lines)


def _trim_lines(old: str, new: str) -> tuple[int, int]:
    """The baseline: split into lines, count the equal leading and trailing lines."""
    a, b = _LINE.findall(old), _LINE.findall(new)
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    return head, tail


def _autojunk(old: str, new: str) -> int:
    matcher = difflib.SequenceMatcher(None, _LINE.findall(old), _LINE.findall(new))
    return len(matcher.get_opcodes())


def _works(text: str) -> dict[str, Callable[[], object]]:
    """The timed callables for one file, each checked once here for a correct result."""
    one_change = _change_line(text, 0.5, "_changed")
    many_changes = _scattered(text)
    agent = _change_line(text, 0.75, "_agent")
    user = _insert_line(text, 0.25, "# typed by the user meanwhile\n")
    change = FileChange(PATH, text, agent, version=1)

    def edits() -> list[PlainEdit]:
        return text_edits(text, one_change)

    def scattered() -> list[PlainEdit]:
        return text_edits(text, many_changes)

    def rebased() -> str:
        return rebase(change, user)

    def workspace() -> object:
        return to_workspace_edit([change], current=lambda _p: Snap(user, 2))

    return {
        "edits": edits,
        "scattered": scattered,
        "rebase": rebased,
        "workspace": workspace,
        "trim": lambda: _trim_lines(text, one_change),
        "autojunk": lambda: _autojunk(text, one_change),
    }


def _check(text: str, work: str, result: object) -> None:
    """The result is exact: edits rebuild the new text, the rebase keeps both changes."""
    user_line = "# typed by the user meanwhile\n"
    merged = _insert_line(_change_line(text, 0.75, "_agent"), 0.25, user_line)
    if work == "edits":
        assert isinstance(result, list)
        assert apply_text_edits(text, result) == _change_line(text, 0.5, "_changed")
    elif work == "scattered":
        assert isinstance(result, list)
        assert apply_text_edits(text, result) == _scattered(text)
    elif work == "rebase":
        assert result == merged
    elif work == "workspace":
        assert isinstance(result, lsprotocol.types.WorkspaceEdit)
        (document,) = result.document_changes or []
        assert isinstance(document, lsprotocol.types.TextDocumentEdit)
        plain = [
            PlainEdit(
                e.range.start.line,
                e.range.start.character,
                e.range.end.line,
                e.range.end.character,
                e.new_text,
            )
            for e in document.edits
            if isinstance(e, lsprotocol.types.TextEdit)  # AnnotatedTextEdit is one too
        ]
        assert apply_text_edits(_insert_line(text, 0.25, user_line), plain) == merged


def _child(text: str, work: str, conn: multiprocessing.connection.Connection) -> None:
    """Run ``work`` up to three times (once when slow), sending each run's seconds."""
    call = _works(text)[work]
    total = 0.0
    for attempt in range(3):
        started = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - started
        if attempt == 0:
            _check(text, work, result)
        conn.send(seconds)
        total += seconds
        if total > 2.0:  # slow ones are measured once or twice, not three times
            break
    conn.close()


def _measure(text: str, work: str, limit: float) -> float | None:
    """Median seconds of ``work`` on ``text`` in a forked child; None past ``limit``."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(text, work, send))
    child.start()
    send.close()
    times: list[float] = []
    try:
        while True:
            # The slack covers the result check, which runs once after the first run.
            if not receive.poll(limit + 30):
                return None
            try:
                times.append(receive.recv())
            except EOFError:
                break
    finally:
        child.join(timeout=30)  # a finished child exits by itself; a timed-out one is killed
        if child.is_alive():
            child.kill()
            child.join()
    if child.exitcode != 0 or not times:
        raise RuntimeError(f"{work} failed in the child (exit {child.exitcode})")
    seconds = statistics.median(times)
    return None if seconds > limit else seconds


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    limit: float = 120.0,
    real: bool = True,
    works: Sequence[str] | None = None,
) -> list[Row]:
    """Time each work (all by default) on every file: synthetic ones of ``sizes`` bytes,
    then the real one."""
    files: list[tuple[str, str]] = [(_size_label(size), synthetic(size)) for size in sizes]
    if real:
        files.append((f"`{REAL_FILE.name}`", REAL_FILE.read_text(encoding="utf-8")))
    rows: list[Row] = []
    for label, text in files:
        for work, _title in WORKS:
            if works is not None and work not in works:
                continue
            seconds = _measure(text, work, limit)
            rows.append(Row(label, len(text.encode("utf-8")), work, seconds, limit))
    return rows


def _size_label(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:g} MB"
    return f"{size / 1_000:g} KB"


def _seconds(row: Row) -> str:
    if row.seconds is None:
        return f"**> {row.limit:g} s**"
    if row.seconds < 1:
        return f"{row.seconds * 1000:.3g} ms"
    return f"{row.seconds:.3g} s"


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table: one line per work, one column per file."""
    files: list[tuple[str, int]] = []
    for row in rows:
        if (row.file, row.size) not in files:
            files.append((row.file, row.size))
    header = ["work"] + [
        f"{name} ({size / 1000:.0f} KB)" if name.startswith("`") else name for name, size in files
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * len(files),
    ]
    for work, title in WORKS:
        if not any(r.work == work for r in rows):
            continue
        cells = [title]
        for name, _size in files:
            found = [r for r in rows if r.file == name and r.work == work]
            cells.append(_seconds(found[0]) if found else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the table; with ``--write`` also save it under bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--no-real", action="store_true", help="skip lsprotocol's types.py")
    names = ", ".join(work for work, _ in WORKS)
    parser.add_argument("--works", help=f"comma-separated, default all: {names}")
    parser.add_argument("--write", metavar="NAME", help="write scale-edits-<date>-NAME.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    works = args.works.split(",") if args.works else None
    rows = run(sizes, args.timeout, real=not args.no_real, works=works)
    text = table(rows)
    print(text)
    if args.write:
        name = f"scale-edits-{datetime.date.today().isoformat()}-{args.write}.md"
        out = RESULTS / name
        out.write_text(
            f"# Edits at scale ({args.write})\n\n`python bench/scale_edits.py`, "
            f"2 cores shared with other work; medians of up to 3 runs, limit "
            f"{args.timeout:g} s per run.\n\n{text}"
        )
        print(f"written to {out}")


if __name__ == "__main__":
    main()
