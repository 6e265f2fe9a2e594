"""The sandbox at scale (issue 13): what the first ``bash`` call costs on a large repository.

Generates synthetic git repositories of 1,000 / 10,000 / 50,000 visible files (committed;
Python, TypeScript, Markdown and JSON in nested packages) plus ignored folders listed in
``.gitignore``: a ``node_modules/`` dependency folder (a fifth of the visible count, shown
read-only to commands) and a ``build/`` folder (hidden), and a few secret files (``.env``,
``config/.env.local``, ``keys/deploy.pem``). Repositories are cached under the temp directory.

For each size it times, with a fresh :class:`~agentls.sandbox.Sandbox` each repetition (the
isolation probe, once per process, is done beforehand and not counted):

- the first ``bash`` call: ``sync`` of one staged edit, then an allowed no-op command
  (``true``) in the sandbox, which is what the first call of the bash tool does;
- a later call (one more staged edit, the same command): the per-command cost;
- a later call after a file was added to the workspace (the overlay lists it again);
- ``close``: removing the sandbox;
- the disk (or tmpfs) the sandbox used: the copy, or the overlay's upper layer;
- baseline: ``git ls-files -co --exclude-standard``.

Times are medians of ``--repeat`` runs on a warm page cache.

Usage: python bench/scale_sandbox.py [--sizes 1000,10000,50000] [--repeat 3] [--label after]
       [--mechanism auto|copy]
Writes bench/results/scale-sandbox-<date>.md: one section per label, kept across invocations
via scale-sandbox-<date>.json. ``bench/scale.py`` calls :func:`main` when this module exists.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from agentls.sandbox import Sandbox, SandboxConfig, detect_isolation
from agentls.settings import Settings

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = Path(tempfile.gettempdir()) / "agentls-bench-sandbox"
LAYOUT_VERSION = 1  # bump when generate() changes, so cached repositories are rebuilt
TARGET = "pkg000/sub00/mod_00000.py"
SECRETS = {
    ".env": "API_TOKEN=bench-s3cr3t\n",
    "config/.env.local": "DB_PASSWORD=bench-s3cr3t\n",
    "keys/deploy.pem": "-----BEGIN PRIVATE KEY----- bench-s3cr3t\n",
}

MODULE = '''"""Module {i}: synthetic code for the sandbox benchmark."""

import math


def compute_{i}(values):
    """Sum of square roots of the values."""
    return sum(math.sqrt(abs(v)) for v in values)
'''


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _visible(i: int) -> tuple[str, str]:
    """The i-th visible file: 70% Python, 15% TypeScript, 10% Markdown, 5% JSON."""
    folder = f"pkg{i // 500:03d}/sub{(i // 25) % 20:02d}"
    kind = i % 20
    if kind < 14:
        return f"{folder}/mod_{i:05d}.py", MODULE.format(i=i)
    if kind < 17:
        return f"{folder}/web_{i:05d}.ts", f"export const v{i} = {i};\n"
    if kind < 19:
        return f"{folder}/notes_{i:05d}.md", f"# Notes {i}\n\nSome prose.\n"
    return f"{folder}/data_{i:05d}.json", f'{{"id": {i}}}\n'


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "-C",
            str(root),
            *args,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def generate(size: int) -> Path:
    """The repository with ``size`` visible files (built once, then reused from the cache)."""
    root = CACHE / f"v{LAYOUT_VERSION}-{size}"
    if (root / ".bench-complete").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    for i in range(size):
        rel, text = _visible(i)
        _write(root / rel, text)
    for i in range(size // 5):
        _write(root / f"node_modules/dep{i // 200:03d}/lib/f{i:05d}.js", f"// dep {i}\n")
    for i in range(size // 20):
        _write(root / f"build/out{i // 100:03d}/gen_{i:05d}.py", f"# generated {i}\n")
    for rel, text in SECRETS.items():
        _write(root / rel, text)
    _write(root / ".gitignore", "node_modules/\nbuild/\n*.log\n.env\n")
    _write(root / "README.md", "# Synthetic repository\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "synthetic")
    (root / ".bench-complete").write_text("")
    return root


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (not following links)."""
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            total += info.st_blocks * 512
    return total


def _used(sandbox: Sandbox) -> int:
    """What the sandbox holds on disk or in its tmpfs: the copy, or the upper layer."""
    usage = getattr(sandbox, "usage", None)
    if callable(usage):
        return int(usage())
    return _tree_bytes(sandbox.path) if sandbox.path is not None else 0


def _mechanism(sandbox: Sandbox) -> str:
    return str(getattr(sandbox, "mechanism", "copy"))


def _sandbox(root: Path, mechanism: str) -> Sandbox:
    config = SandboxConfig(
        allowed_commands=("true",),
        exclude=Settings().secret_files,
        timeout=60,
    )
    params = inspect.signature(Sandbox).parameters
    if "mechanism" in params:
        return Sandbox(root, config, mechanism=mechanism)
    if mechanism != "auto":
        raise SystemExit("this Sandbox has no mechanism choice (before the overlay)")
    return Sandbox(root, config)


async def _one(root: Path, mechanism: str) -> dict[str, Any]:
    original = (root / TARGET).read_text()
    sandbox = _sandbox(root, mechanism)
    try:
        started = time.perf_counter()
        await sandbox.sync({TARGET: original + "\n# staged 1\n"})
        first = await sandbox.run("true")
        first_time = time.perf_counter() - started
        if first.exit_code != 0:
            raise SystemExit(f"the command failed in the sandbox: {first.output}")
        started = time.perf_counter()
        await sandbox.sync({TARGET: original + "\n# staged 2\n", "pkg000/new.py": "x = 1\n"})
        await sandbox.run("true")
        later_time = time.perf_counter() - started
        added = root / "pkg000" / "added_meanwhile.py"
        added.write_text("y = 2\n")
        try:
            started = time.perf_counter()
            await sandbox.run("true")
            changed_time = time.perf_counter() - started
        finally:
            added.unlink()
        used = _used(sandbox)
        mechanism_used = _mechanism(sandbox)
    finally:
        started = time.perf_counter()
        await sandbox.aclose()
        close_time = time.perf_counter() - started
    return {
        "first": first_time,
        "later": later_time,
        "changed": changed_time,
        "close": close_time,
        "bytes": used,
        "mechanism": mechanism_used,
    }


def measure(size: int, repeat: int, mechanism: str) -> dict[str, Any]:
    """Medians for one repository size."""
    root = generate(size)
    ls = [
        "git",
        "-C",
        str(root),
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]
    git_times = [_timed(lambda: subprocess.run(ls, capture_output=True)) for _ in range(repeat)]
    runs = []
    for _ in range(repeat):
        # Let the last run's added file age: a directory changed within a second of a
        # listing counts as changed again (the overlay's guard against coarse timestamps).
        time.sleep(1.5)
        runs.append(asyncio.run(_one(root, mechanism)))
    row: dict[str, Any] = {
        "git_ls_files": _median(git_times),
        "first": _median([r["first"] for r in runs]),
        "first_runs": [r["first"] for r in runs],
        "later": _median([r["later"] for r in runs]),
        "changed": _median([r["changed"] for r in runs]),
        "close": _median([r["close"] for r in runs]),
        "bytes": max(r["bytes"] for r in runs),
        "mechanism": runs[-1]["mechanism"],
    }
    row["ratio"] = row["first"] / row["git_ls_files"] if row["git_ls_files"] else None
    return row


def _fmt_time(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _fmt_bytes(value: int) -> str:
    if value >= 1 << 20:
        return f"{value / (1 << 20):.1f} MiB"
    return f"{value / 1024:.0f} KiB"


def render(label: str, data: dict[str, Any]) -> str:
    """One Markdown section: a row per measure, a column per size."""
    sizes = list(data["sizes"])
    rows = data["sizes"]
    head = ["| work | " + " | ".join(f"{int(s):,} files" for s in sizes) + " |"]
    head.append("| --- | " + " | ".join("---:" for _ in sizes) + " |")

    def line(name: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {name} | " + " | ".join(cell(rows[s]) for s in sizes) + " |"

    def spread(r: dict[str, Any]) -> str:
        runs = r["first_runs"]
        return f"{_fmt_time(r['first'])} ({_fmt_time(min(runs))}-{_fmt_time(max(runs))})"

    table = [
        line("first `bash` call (sync + `true`)", spread),
        line("later call (sync + `true`)", lambda r: _fmt_time(r["later"])),
        line(
            "later call, a file added to the workspace",
            lambda r: _fmt_time(r["changed"]) if "changed" in r else "-",
        ),
        line("close (remove the sandbox)", lambda r: _fmt_time(r["close"])),
        line("disk/tmpfs used", lambda r: _fmt_bytes(r["bytes"])),
        line("baseline: `git ls-files -co`", lambda r: _fmt_time(r["git_ls_files"])),
        line("first call / `git ls-files`", lambda r: f"{r['ratio']:.1f}x"),
        line("mechanism", lambda r: str(r["mechanism"])),
    ]
    return "\n".join([f"## {label}", "", data.get("note", ""), "", *head, *table, ""])


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and write bench/results/scale-sandbox-<date>.md."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--label", default="after", help="section name, e.g. before or after")
    parser.add_argument("--note", default="", help="a line under the section's heading")
    parser.add_argument("--mechanism", default="auto", help="auto (overlay where possible) or copy")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    isolation = detect_isolation()  # once per process; not part of any call's time
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    note = args.note or (
        f"commit {commit}, medians of {args.repeat} runs, {os.cpu_count()} cores, "
        f"load {load:.1f} at the start; isolation: {isolation.describe()}"
    )
    data: dict[str, Any] = {
        "note": note,
        "sizes": {str(s): measure(s, args.repeat, args.mechanism) for s in sizes},
    }
    stamp = subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()
    stamp = stamp or date.today().isoformat()
    store = RESULTS / f"scale-sandbox-{stamp}.json"
    saved: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    saved[args.label] = data
    RESULTS.mkdir(exist_ok=True)
    store.write_text(json.dumps(saved, indent=2) + "\n")
    text = "# Scale: the sandbox's first `bash` call (bench/scale_sandbox.py)\n\n" + "\n".join(
        render(label, saved[label]) for label in saved
    )
    (RESULTS / f"scale-sandbox-{stamp}.md").write_text(text)
    print(render(args.label, data))


if __name__ == "__main__":
    main()
