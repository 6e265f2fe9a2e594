"""The harness's own cost, with a scripted model that answers at once.

Measures, in one run so the numbers compare:
  - per model turn: the whole turn, the HTTP round trip to the zero-latency model, and the rest
    (tool execution, message bookkeeping, parsing), median and p95 over >= 200 turns;
  - per LSP request: `agent/explain` through the real server over stdio, against the same task
    run in-process, median and p95 over >= 200 requests;
  - peak memory (VmHWM) of the language server process.

Prints a table and writes it to bench/results/overhead-<date>.md (plus .json).
Usage: python bench/overhead.py [--turns 250] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from recording import RecordingBackend

HERE = Path(__file__).resolve().parent
MODEL = "gemma4:12b-it-qat"
MODULE = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(12))


@dataclass
class Series:
    """A named list of samples in milliseconds."""

    name: str
    samples: list[float]

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return {
            "what": self.name,
            "n": len(ordered),
            "median_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(p95, 3),
        }


class ScriptedProcess:
    """The scripted model server in a child process, so its CPU time is not counted as ours."""

    def __init__(self, mode: str, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "scripted_proc.py"), mode, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

        # What it received, read when it closes: "<requests> <sha256 of the bodies>" (the
        # workspace path replaced), so a refactoring can show the server gets the same bytes.
        self.digest = ""

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.digest = self.proc.stdout.readline().strip()
        self.proc.wait(timeout=10)


async def bench_turns(root: Path, turns: int, server: ScriptedProcess) -> list[Series]:
    """Runs of 10 turns each (reads of a file) against ``server``, timing every turn."""
    settings = Settings(base_url=server.url, model=MODEL, max_turns=10)
    totals: list[float] = []
    model: list[float] = []
    harness: list[float] = []
    while len(totals) < turns:
        backend = RecordingBackend(make_backend(settings))
        ctx = TaskContext(root=root, settings=settings, backend=backend)
        await run_refactor(ctx, TaskRequest(root / "mod.py"))
        end = time.perf_counter()
        await backend.aclose()
        starts = [c.start for c in backend.calls] + [end]
        for i, (s, d) in enumerate((c.start, c.duration) for c in backend.calls):
            wall = starts[i + 1] - s
            totals.append(wall * 1000)
            model.append(d * 1000)
            harness.append((wall - d) * 1000)
    return [
        Series("turn: total", totals),
        Series("turn: model HTTP round trip (zero latency)", model),
        Series("turn: harness outside the model call", harness),
    ]


def _vm_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


async def bench_requests(
    root: Path, requests: int, server: ScriptedProcess
) -> tuple[list[Series], dict[str, int]]:
    """agent/explain through the real server over stdio, and the same task in-process, both
    against ``server``."""
    settings = Settings(base_url=server.url, model=MODEL)
    uri = (root / "mod.py").as_uri()
    direct: list[float] = []
    lsp: list[float] = []
    baseline: list[float] = []
    memory: dict[str, int] = {}
    for _ in range(requests):
        backend = make_backend(settings)
        ctx = TaskContext(root=root, settings=settings, backend=backend)
        start = time.perf_counter()
        await run_explain(ctx, TaskRequest(root / "mod.py"))
        direct.append((time.perf_counter() - start) * 1000)
        await backend.aclose()

    client = LanguageClient("agentls-bench", "0")

    @client.feature(types.WINDOW_LOG_MESSAGE)  # type: ignore[untyped-decorator]
    def _log(_params: types.LogMessageParams) -> None:
        pass  # the server logs each run's stats; the benchmark does not need them

    await client.start_io(sys.executable, "-m", "agentls")
    pid = client._server.pid if client._server else 0
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="bench")],
            initialization_options={"baseUrl": server.url, "model": MODEL},
        )
    )
    client.initialized(types.InitializedParams())
    memory["server_rss_after_start_kb"] = _vm_kb(pid, "VmRSS")
    params = {"textDocument": {"uri": uri}}
    for _ in range(requests):
        start = time.perf_counter()
        await client.protocol.send_request_async("agent/explain", params)
        lsp.append((time.perf_counter() - start) * 1000)
    action_params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(types.Position(0, 0), types.Position(2, 0)),
        context=types.CodeActionContext(diagnostics=[]),
    )
    for _ in range(requests):
        start = time.perf_counter()
        await client.protocol.send_request_async("textDocument/codeAction", action_params)
        baseline.append((time.perf_counter() - start) * 1000)
    memory["server_peak_rss_kb"] = _vm_kb(pid, "VmHWM")
    memory["server_rss_at_end_kb"] = _vm_kb(pid, "VmRSS")
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()  # type: ignore[no-untyped-call]
    lsp_over = [a - b for a, b in zip(sorted(lsp), sorted(direct), strict=False)]
    return [
        Series("explain request, in-process task", direct),
        Series("explain request, over LSP (stdio)", lsp),
        Series("LSP cost (quantile difference)", lsp_over),
        Series("codeAction request over LSP (transport baseline)", baseline),
    ], memory


def render(rows: list[dict[str, Any]], memory: dict[str, int]) -> str:
    """A Markdown table of the series and the memory figures."""
    lines = ["| what | n | median ms | p95 ms |", "| --- | ---: | ---: | ---: |"]
    lines += [
        f"| {r['what']} | {r['n']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} |" for r in rows
    ]
    lines += ["", "| server memory | MiB |", "| --- | ---: |"]
    lines += [f"| {k.removesuffix('_kb')} | {v / 1024:.1f} |" for k, v in memory.items()]
    return "\n".join(lines)


async def main_async(turns: int, requests: int) -> None:
    """Run both benchmarks in one process and report."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mod.py").write_text(MODULE)
        turns_server = ScriptedProcess("reads", root)
        try:
            series = await bench_turns(root, turns, turns_server)
        finally:
            turns_server.close()
        explain_server = ScriptedProcess("explain", root)
        try:
            req_series, memory = await bench_requests(root, requests, explain_server)
        finally:
            explain_server.close()
    digests = [turns_server.digest, explain_server.digest]
    rows = [s.row() for s in series + req_series]
    table = render(rows, memory)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    header = (
        f"# Harness overhead, {stamp}\n\nScripted model at zero latency on 127.0.0.1 "
        f"(own process); {turns} turns in runs of 10; {requests} explain requests.\n"
        f"Python {sys.version.split()[0]}.\n\n"
        f"Requests the model server received (count, SHA-256 of the bodies as sent): "
        f"turns {digests[0]}; explain {digests[1]}.\n\n"
    )
    print(header + table)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"overhead-{stamp}.md").write_text(header + table + "\n")
    (out / f"overhead-{stamp}.json").write_text(
        json.dumps({"rows": rows, "memory": memory, "requests": digests}, indent=2) + "\n"
    )


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=250)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main_async(args.turns, args.requests))


if __name__ == "__main__":
    main()
