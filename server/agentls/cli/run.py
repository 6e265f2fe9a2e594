"""`agentls run`: the same task functions as the server, without an editor.

Prints the explanation, or a unified diff of the staged changes; ``--apply`` writes them.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from agentls.agent.progress import EventProgress
from agentls.changes import EditConflict, unified_diff, write_changes
from agentls.llm.factory import make_backend
from agentls.llm.types import BackendError
from agentls.settings import Settings
from agentls.tasks.base import (
    EditResult,
    ExplainResult,
    TaskContext,
    TaskError,
    TaskRequest,
    TextRange,
)
from agentls.tasks.registry import by_cli_word, cli_words

# Exit code when the edit was produced but the project's tests fail with it.
TESTS_FAIL = 5


class StderrProgress(EventProgress):
    """Progress for a terminal: one updating line on a TTY, throttled lines otherwise. It
    takes the loop's events (``on_event``), which become these lines."""

    def __init__(self, stream: TextIO = sys.stderr, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self._last = 0.0
        self._last_msg = ""

    def report(self, message: str, percentage: int | None = None) -> None:
        """Show what the agent is doing."""
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + message[:120])
            self.stream.flush()
        elif now - self._last >= 1.0 and message != self._last_msg:
            self.stream.write(message + "\n")
            self._last, self._last_msg = now, message

    def warn(self, message: str) -> None:
        """Warnings are always shown."""
        self.stream.write(("\r\033[K" if self.tty else "") + f"warning: {message}\n")

    def done(self) -> None:
        """Clear the progress line."""
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
            self.stream.flush()


def parse_range(text: str | None) -> TextRange | None:
    """`10-40` (1-based, inclusive lines) or `12` -> an LSP-style range covering those lines."""
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        a, b = int(first), int(last or first)
    except ValueError:
        raise TaskError(f"--range must look like 10-40, got {text!r}") from None
    if a < 1 or b < a:
        raise TaskError(f"--range must be 1-based and ascending, got {text!r}")
    return TextRange(a - 1, 0, b, 0)


def find_root(path: Path) -> Path:
    """The workspace root: the nearest parent with a project marker, else the file's folder."""
    for parent in [path.parent, *path.parent.parents]:
        if any((parent / marker).exists() for marker in (".git", "pyproject.toml", "package.json")):
            return parent
    return path.parent


def choose_scope(path: Path, root: Path | None, cwd: Path) -> tuple[Path, bool]:
    """The workspace root for ``path`` (absolute) and whether the file is worked on alone.

    ``--root`` must hold the file. Otherwise a file under the current directory belongs to
    its project (``find_root``); a file outside it is worked on alone: the user named that one
    file, not the folder around it (which may be ``/etc`` or a downloads folder).
    """
    if root is not None:
        root = root.resolve()
        if not path.is_relative_to(root):
            raise TaskError(f"{path} is outside --root {root}")
        return root, False
    if path.is_relative_to(cwd.resolve()):
        return find_root(path).resolve(), False
    return path.parent, True


@dataclass
class RunOptions:
    """Parsed `agentls run` arguments."""

    task: str  # the task's CLI word (explain, refactor, tests)
    file: Path
    range: str | None = None
    instruction: str | None = None
    apply: bool = False
    as_json: bool = False
    root: Path | None = None


async def run_cli_task(opts: RunOptions, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run one task and print its result; returns the process exit code."""
    progress = StderrProgress(quiet=opts.as_json)
    path = opts.file.resolve()
    if not path.is_file():
        print(f"error: no such file: {opts.file}", file=sys.stderr)
        return 2
    try:
        spec = by_cli_word(opts.task)
    except KeyError:
        print(f"error: unknown task {opts.task!r} (use {', '.join(cli_words())})", file=sys.stderr)
        return 2
    try:
        root, single_file = choose_scope(path, opts.root, Path.cwd())
        if single_file and spec.needs_folder:
            raise TaskError(
                f"{spec.activity.lower()} needs the file's project: {opts.file} is outside the "
                "current directory; run agentls from the project (or pass --root)"
            )
    except TaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if single_file and not opts.as_json:
        print(
            f"note: {opts.file} is outside the current directory; the agent sees this file "
            "alone (run from its project, or pass --root, to let it see the project)",
            file=sys.stderr,
        )
    backend = make_backend(settings)
    try:
        req = TaskRequest(path, parse_range(opts.range), opts.instruction)
        ctx = TaskContext(
            root=root,
            settings=settings,
            backend=backend,
            progress=progress,
            single_file=single_file,
        )
        result = await spec.execute(ctx, req)
    except BackendError as exc:
        progress.done()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 3
    except TaskError as exc:
        progress.done()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await backend.aclose()
    progress.done()
    return _print_result(result, opts, root, out)


def _print_result(
    result: ExplainResult | EditResult, opts: RunOptions, root: Path, out: TextIO
) -> int:
    if isinstance(result, ExplainResult):
        if opts.as_json:
            json.dump({"markdown": result.markdown, "stats": result.stats.to_json()}, out, indent=2)
            out.write("\n")
        else:
            out.write(result.markdown.rstrip() + "\n")
            print(result.stats.summary_line(), file=sys.stderr)
        return 0
    diff = unified_diff(result.changes, root)
    applied = False
    if opts.apply and result.changes:
        try:
            write_changes(result.changes)
            applied = True
        except EditConflict as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 4
    if opts.as_json:
        payload: dict[str, Any] = {
            "summary": result.summary,
            "diff": diff,
            "files": [str(c.path.relative_to(root)) for c in result.changes],
            "applied": applied,
            "testFile": str(result.test_file) if result.test_file else None,
            "warnings": result.warnings,
            "stats": result.stats.to_json(),
            "verification": result.verification.to_json() if result.verification else None,
        }
        json.dump(payload, out, indent=2)
        out.write("\n")
    else:
        out.write(diff)
        print(result.summary, file=sys.stderr)
        if result.verification is not None and result.verification.passed is False:
            tail = result.verification.output.strip()
            if tail:
                print(f"test output (tail):\n{tail}", file=sys.stderr)
        if applied:
            print(f"applied changes to {len(result.changes)} file(s)", file=sys.stderr)
        elif result.changes:
            print("not applied: run again with --apply to write these changes", file=sys.stderr)
        print(result.stats.summary_line(), file=sys.stderr)
    if result.verification is not None and result.verification.passed is False:
        return TESTS_FAIL  # the diff is printed (and applied if asked), but say it fails
    return 0
