"""KV-cache reuse against a real llama-server (the demo model server, Gemma 3 270M).

Runs, on one server and in this order: a multi-turn refactor of examples/inventory.py in
constrained mode, then two consecutive explain requests on the same file. For every model call it
records llama-server's own ``timings`` (``prompt_n``: tokens processed, ``cache_n``: tokens served
from the KV cache) straight from the HTTP stream, next to what the agent's stats recorded, and
reports the share served from cache, ``cache_n / (cache_n + prompt_n)``.

Target (issue 3): at least 90% on every call after the first of the run. The first call of a
request can reuse only what an earlier request left in the slot; the table says which rows the
target covers.

Prints a Markdown table and writes bench/results/cache-<date>.md (plus .json).
Usage: python bench/cache.py [--refactor-turns 6] [--explain-turns 4] [--max-output-tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agentls.demo import DemoModelServer
from agentls.llm._http import make_timeout
from agentls.llm.openai import OpenAIBackend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import run_refactor
from recording import RecordingBackend

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "inventory.py"
TARGET = 0.90


@dataclass
class Exchange:
    """One /chat/completions call as it went over the wire."""

    messages: list[dict[str, Any]]
    timings: dict[str, Any] = field(default_factory=dict)


class _TappedStream(httpx.AsyncByteStream):
    """Passes the SSE body through unchanged and keeps the last ``timings`` object in it."""

    def __init__(self, inner: httpx.AsyncByteStream, exchange: Exchange) -> None:
        self.inner = inner
        self.exchange = exchange
        self.buffer = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                self._scan(line)
            yield chunk
        self._scan(self.buffer)

    def _scan(self, line: bytes) -> None:
        if not line.startswith(b"data:") or b'"timings"' not in line:
            return
        try:
            event = json.loads(line[5:])
        except ValueError:
            return
        if isinstance(event, dict) and isinstance(event.get("timings"), dict):
            self.exchange.timings = event["timings"]

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimingsTap(httpx.AsyncBaseTransport):
    """An HTTP transport that records each chat request's messages and the server's timings."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/chat/completions"):
            body = json.loads(request.content)
            exchange = Exchange(messages=body["messages"])
            self.exchanges.append(exchange)
            assert isinstance(response.stream, httpx.AsyncByteStream)
            response.stream = _TappedStream(response.stream, exchange)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Row:
    """One model call in the report."""

    request: str
    turn: int
    prompt_n: int
    cache_n: int
    usage_prompt_tokens: int  # what the agent's stats recorded
    usage_cached_tokens: int | None
    first_changed_message: int | None  # vs the previous call; None: only appended messages
    covered: bool  # does the >= 90% target apply to this row
    # This call's reply: tokens the server generated, and tokens the same text has when the next
    # prompt is tokenized. When they differ, the reply's KV cannot be matched next turn.
    reply_generated_n: int = 0
    reply_retokenized_n: int = 0

    # cache_n against all the previous call left in the slot (its prompt plus its reply as
    # tokenized text): 100% means nothing reusable was re-processed; the rest of prompt_n is new.
    reuse_of_previous: float | None = None
    # Did the next call send this reply back as the model wrote it? (None: no next call.)
    reply_sent_verbatim: bool | None = None

    @property
    def share(self) -> float:
        total = self.prompt_n + self.cache_n
        return self.cache_n / total if total else 0.0


def first_change(
    previous: list[dict[str, Any]] | None, current: list[dict[str, Any]]
) -> int | None:
    """Index of the first message of ``previous`` that ``current`` does not repeat verbatim."""
    if previous is None:
        return None
    for index, message in enumerate(previous):
        if index >= len(current) or current[index] != message:
            return index
    return None


async def tokenize(server_url: str, text: str) -> list[int]:
    """The server's own tokenization of ``text``, as it tokenizes it inside a prompt."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(server_url + "/tokenize", json={"content": text})
    tokens: list[int] = resp.json()["tokens"]
    return tokens


async def run_bench(
    refactor_turns: int, explain_turns: int, max_output: int, server_args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the three requests on one demo server and collect one row per model call."""
    rows: list[Row] = []
    server_info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(EXAMPLE, root / "inventory.py")
        async with DemoModelServer(extra_args=server_args) as demo:
            async with httpx.AsyncClient(timeout=5) as client:
                props = (await client.get(demo.url + "/props")).json()
            server_info = {
                "build_info": props.get("build_info"),
                "n_ctx": props.get("default_generation_settings", {}).get("n_ctx"),
                "total_slots": props.get("total_slots"),
            }
            plan = [
                ("refactor", refactor_turns),
                ("explain #1", explain_turns),
                ("explain #2", explain_turns),
            ]
            previous: list[dict[str, Any]] | None = None
            left_in_slot = 0  # tokens of the previous call's prompt and reply
            first_of_run = True
            for name, turns in plan:
                settings = Settings(
                    backend="openai",
                    base_url=demo.openai_url,
                    model=demo.model,
                    tool_mode="constrained",
                    max_turns=turns,
                    context_length=demo.context_length,
                    max_output_tokens=max_output,
                )
                tap = TimingsTap()
                http = httpx.AsyncClient(transport=tap, timeout=make_timeout(settings))
                backend = RecordingBackend(OpenAIBackend(settings, client=http))
                ctx = TaskContext(root=root, settings=settings, backend=backend)
                req = TaskRequest(root / "inventory.py")
                try:
                    if name == "refactor":
                        instruction = "use sum() in total_value and dict.get in restock"
                        req = TaskRequest(root / "inventory.py", None, instruction)
                        await run_refactor(ctx, req)
                    else:
                        await run_explain(ctx, req)
                finally:
                    await http.aclose()
                for turn, (exchange, response) in enumerate(
                    zip(tap.exchanges, [c.response for c in backend.calls], strict=True), start=1
                ):
                    timings = exchange.timings
                    verbatim: bool | None = None
                    if turn < len(tap.exchanges):
                        sent = tap.exchanges[turn].messages[len(exchange.messages)]
                        verbatim = sent.get("content") == response.content
                    retokenized = await tokenize(demo.url, response.content)
                    cache_n = int(timings.get("cache_n", 0))
                    prompt_n = int(timings.get("prompt_n", 0))
                    rows.append(
                        Row(
                            request=name,
                            turn=turn,
                            prompt_n=prompt_n,
                            cache_n=cache_n,
                            usage_prompt_tokens=response.usage.prompt_tokens,
                            usage_cached_tokens=response.usage.cached_prompt_tokens,
                            first_changed_message=first_change(previous, exchange.messages),
                            # The run's very first call finds an empty cache, and the first call
                            # of a new request on a new task shares only the fixed prefix.
                            covered=not first_of_run and (turn > 1 or name == "explain #2"),
                            reply_generated_n=int(timings.get("predicted_n", 0)),
                            reply_retokenized_n=len(retokenized),
                            reply_sent_verbatim=verbatim,
                            reuse_of_previous=(
                                min(1.0, cache_n / left_in_slot) if left_in_slot else None
                            ),
                        )
                    )
                    left_in_slot = cache_n + prompt_n + len(retokenized)
                    previous = exchange.messages
                    first_of_run = False
    return {"server": server_info, "rows": rows}


def render(rows: list[Row]) -> str:
    """The Markdown table; rows the target covers are marked pass/MISS."""
    lines = [
        "| request | turn | prompt_n | cache_n | cached | target | stats prompt / cached "
        "| first changed msg | reply gen / retok | reply sent back verbatim "
        "| reused of prev prompt+reply |",
        "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | :---: | ---: |",
    ]
    for r in rows:
        verdict = ("pass" if r.share >= TARGET else "MISS") if r.covered else "-"
        changed = "-" if r.first_changed_message is None else str(r.first_changed_message)
        reuse = "-" if r.reuse_of_previous is None else f"{r.reuse_of_previous:.1%}"
        verbatim = {None: "-", True: "yes", False: "no"}[r.reply_sent_verbatim]
        lines.append(
            f"| {r.request} | {r.turn} | {r.prompt_n} | {r.cache_n} | {r.share:.1%} | {verdict} "
            f"| {r.usage_prompt_tokens} / {r.usage_cached_tokens} | {changed} "
            f"| {r.reply_generated_n} / {r.reply_retokenized_n} | {verbatim} | {reuse} |"
        )
    covered = [r for r in rows if r.covered]
    worst = min((r.share for r in covered), default=0.0)
    met = all(r.share >= TARGET for r in covered)
    lines += [
        "",
        f"Calls covered by the target: {len(covered)} of {len(rows)}; lowest share "
        f"{worst:.1%}; target {TARGET:.0%} {'met' if met else 'MISSED'}.",
    ]
    return "\n".join(lines)


async def main_async(
    refactor_turns: int, explain_turns: int, max_output: int, server_args: tuple[str, ...] = ()
) -> None:
    """Run the benchmark and write the report."""
    result = await run_bench(refactor_turns, explain_turns, max_output, server_args)
    rows: list[Row] = result["rows"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    header = (
        f"# KV-cache reuse, {stamp}\n\n"
        f"llama-server ({result['server'].get('build_info')}, "
        f"{result['server'].get('total_slots')} slot, n_ctx {result['server'].get('n_ctx')}) "
        f"with Gemma 3 270M Q4_K_M via `DemoModelServer`"
        f"{' plus ' + ' '.join(server_args) if server_args else ''}; constrained tool calls; "
        f"max {max_output} output tokens per call. In order on one server: refactor of "
        f"examples/inventory.py (max {refactor_turns} turns), then explain twice (max "
        f"{explain_turns} turns each). `prompt_n`/`cache_n` are llama-server's `timings`; "
        f'cached = cache_n / (cache_n + prompt_n). "first changed msg": index of the first '
        f"message of the previous call not repeated verbatim (- when the new prompt only "
        f'appends). "reply gen / retok": tokens of this call\'s reply as generated '
        f"(`predicted_n`, with the end token and any whitespace after the JSON) and as the "
        f'reply text tokenizes. "sent back verbatim": the next call\'s assistant message is the '
        f"reply text exactly as generated. "
        f'"reused of prev prompt+reply": cache_n / (previous call\'s '
        f"prompt + reply tokens), i.e. how much of what the slot held was reused. "
        f"Python {sys.version.split()[0]}.\n\n"
    )
    report = header + render(rows)
    print(report)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"cache-{stamp}.md").write_text(report + "\n")
    payload = {
        "server": result["server"],
        "target": TARGET,
        "settings": {
            "refactor_turns": refactor_turns,
            "explain_turns": explain_turns,
            "max_output_tokens": max_output,
            "server_args": list(server_args),
        },
        "rows": [asdict(r) | {"share": round(r.share, 4)} for r in rows],
    }
    (out / f"cache-{stamp}.json").write_text(json.dumps(payload, indent=2) + "\n")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--refactor-turns", type=int, default=6)
    parser.add_argument("--explain-turns", type=int, default=4)
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra llama-server argument, e.g. --server-arg=--cache-reuse --server-arg=8",
    )
    args = parser.parse_args()
    asyncio.run(
        main_async(
            args.refactor_turns,
            args.explain_turns,
            args.max_output_tokens,
            tuple(args.server_arg),
        )
    )


if __name__ == "__main__":
    main()
