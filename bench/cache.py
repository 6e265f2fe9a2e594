"""KV-cache reuse against a real llama-server (the demo model server, Gemma 3 270M).

Two parts, each on a fresh server:

``long`` (issue 10): a refactor of a realistic file, bench/fixtures/billing.py (400 lines), run
through the real refactor task (the same first message, tools and loop as ``agent/refactor``)
for ``--turns`` (default 10) model calls, then the loop's own final call that asks for the
answer. The model is a tiny *base* model in constrained mode: every reply is a real,
grammar-forced tool call that the real tools execute, but it does not do the refactor. It either
calls ``finish`` early or, from its second reply on, copies its previous call verbatim. So that
the run still lasts as long as real work would, two things differ from ``agent/refactor``:
- a check stands in for the project's tests (verified edits' ``verify`` hook): when the model
  finishes, it counts the money roundings still written out in the staged file and, while any
  remain, tells the model which lines (a user message, as a failing test's output would be);
  ``repair_turns`` is raised so the loop goes on;
- the loop's stop for a model that repeats itself (``MAX_REPEAT_TURNS``) is lifted for the run;
  repeated calls are still answered the loop's way ("nothing has changed since" + the result).
No tool call is scripted and no tool result is made up: what runs is whatever the model wrote,
through the real loop, so the prompts are exactly what the agent sends. Target: at least 90% of
the prompt tokens served from the KV cache on every call from the second on.

``short`` (issue 3): a multi-turn refactor of examples/inventory.py, then two consecutive explain
requests on the same file, on one server. Its prompts are small (600-1300 tokens), so one tool
result can be more than a tenth of a prompt; the "reused of prev" column shows whether anything
that could have been reused was not.

For every model call it records llama-server's own ``timings`` (``prompt_n``: tokens processed,
``cache_n``: tokens served from the KV cache, ``prompt_ms``) straight from the HTTP stream, next to
what the agent's stats recorded (prompt tokens, cached tokens, time to first token), and reports
cached = ``cache_n / (cache_n + prompt_n)``.

What turn 2 cannot reuse, and why (issue 10): the server's slot holds the first reply as
*generated*, the next prompt holds its text tokenized afresh, and the two differ. llama-server's
structured output (its Jinja path) accepts the JSON bare or inside a ```json fence and leaves
the fence out of ``content``; the tiny model opens its first reply with one (it has no earlier
reply to copy), so the match ends at the reply's first token. And where the grammar forces a
literal the model did not intend, it splits a word otherwise than the tokenizer ("edit" "s"
for "edits"); the match could never go past that either (the "reply tokens as generated"
column). From turn 3 on the model copies its earlier replies as they were tokenized, and
everything is reused. Not the cause: the echo (replies go back verbatim), a changed prefix,
or Gemma 3's sliding-window cache (the whole first prompt is reused, with or without
``--swa-full`` on this build). Tried and not kept, see results/cache-2026-12-01-*.md:
``--cache-reuse 16`` (wins back at most the reply's tokens before the first split, but its KV
shift cost the next task its fixed prefix) and sending cut replies back as written (longer
prompts, nothing reused). The loss is at most one reply (``maxOutputTokens``) once per run.

Prints Markdown tables and writes bench/results/cache-<date>.md (plus .json).
Usage: python bench/cache.py [--part all|long|short] [--turns 10] [--cache-reuse N]
       [--refactor-turns 6] [--explain-turns 4] [--max-output-tokens 256] [--seed 7]
``--cache-reuse N`` adds llama-server's KV shifting (the demo runs without it; see
results/cache-2026-12-01-cache-reuse-16.md and DemoModelServer.command for why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from agentls.agent import loop as agent_loop
from agentls.agent.workspace import Workspace
from agentls.demo import DemoModelServer
from agentls.demo.tap import TimingsTap
from agentls.llm._http import make_timeout
from agentls.llm.openai import OpenAIBackend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task
from agentls.tasks.explain import run_explain
from agentls.tasks.refactor import REFACTOR_TASK, run_refactor
from recording import RecordingBackend

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "inventory.py"
FIXTURE = HERE / "fixtures" / "billing.py"
TARGET = 0.90

# The long run's context: the 400-line file is about 4,000 tokens, and ten turns of replies and
# tool results must fit without context fitting eliding anything (that would change the prefix).
LONG_CONTEXT = 16384
LONG_INSTRUCTION = (
    "Add a helper money(value) that rounds a Decimal to cents "
    '(quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)) and use it for every such rounding in '
    "the file, one edit per function; then use sum() for the totals in Invoice.subtotal and "
    "build_invoice."
)
ROUNDING = "rounding=ROUND_HALF_UP"


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
    tool: str = ""  # the tool the reply called
    time_to_first_token: float | None = None  # seconds, the agent's own clock
    prompt_ms: float | None = None  # llama-server's prompt-processing time
    # This call's reply: tokens the server generated, and tokens the same text has when the next
    # prompt is tokenized. When they differ, the reply's KV cannot be matched next turn.
    reply_generated_n: int = 0
    reply_retokenized_n: int = 0
    # Did the server generate a ```json fence before the JSON (left out of `content`)? And how
    # many of the reply's tokens, from its start, were generated as the text tokenizes.
    reply_fenced: bool = False
    reply_same_n: int = 0

    # cache_n against all the previous call left in the slot (its prompt plus its reply as
    # tokenized text): 100% means nothing reusable was re-processed; the rest of prompt_n is new.
    reuse_of_previous: float | None = None
    # Did the next call send this reply back as the model wrote it? (None: no next call.)
    reply_sent_verbatim: bool | None = None
    reply: str = ""  # the reply's content (first 300 characters), to see what the model did

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


def tool_of(content: str) -> str:
    """The tool a constrained reply calls, for the table ("?" when none can be read)."""
    match = re.search(r'"tool"\s*:\s*"([^"]*)"', content)
    return match.group(1) if match else "?"


async def tokenize(server_url: str, text: str) -> list[str]:
    """The server's own tokenization of ``text`` (as text pieces), as inside a prompt."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(
            server_url + "/tokenize", json={"content": text, "with_pieces": True}
        )
    return [str(token["piece"]) for token in resp.json()["tokens"]]


def same_tokens(generated: list[str], pieces: list[str]) -> tuple[bool, int]:
    """Whether the generated tokens start with a fence, and how many of the reply text's
    tokens (from its start) the server generated as such."""
    start = next(
        (i for i in range(len(generated)) if generated[i : i + 2] == pieces[:2]), len(generated)
    )
    same = 0
    while same < len(pieces) and start + same < len(generated):
        if generated[start + same] != pieces[same]:
            break
        same += 1
    return bool(generated) and generated[0].startswith("```"), same


async def server_info(demo: DemoModelServer) -> dict[str, Any]:
    """Build, context and slots as the server reports them."""
    async with httpx.AsyncClient(timeout=5) as client:
        props = (await client.get(demo.url + "/props")).json()
    return {
        "build_info": props.get("build_info"),
        "n_ctx": props.get("default_generation_settings", {}).get("n_ctx"),
        "total_slots": props.get("total_slots"),
    }


@dataclass
class _Slot:
    """What the bench knows about the server's one slot between calls."""

    previous: list[dict[str, Any]] | None = None  # the previous call's messages
    left: int = 0  # tokens of the previous call's prompt and reply
    first_of_run: bool = True


async def collect_rows(
    name: str, tap: TimingsTap, backend: RecordingBackend, url: str, slot: _Slot, long: bool
) -> list[Row]:
    """One row per model call of a request, in order."""
    rows = []
    responses = [c.response for c in backend.calls]
    for turn, (call, response) in enumerate(zip(tap.calls, responses, strict=True), start=1):
        timings = call.timings
        verbatim: bool | None = None
        if turn < len(tap.calls):
            sent = tap.calls[turn].messages[len(call.messages)]
            verbatim = sent.get("content") == response.content
        retokenized = await tokenize(url, response.content)
        fenced, same = same_tokens(call.generated, retokenized)
        cache_n = int(timings.get("cache_n", 0))
        prompt_n = int(timings.get("prompt_n", 0))
        # The long run: every call after its first. The short run: its very first call finds
        # an empty cache, and the first call of a new request on a new task shares only the
        # fixed prefix.
        short_covered = not slot.first_of_run and (turn > 1 or name == "explain #2")
        covered = turn > 1 if long else short_covered
        prompt_ms = timings.get("prompt_ms")
        rows.append(
            Row(
                request=name,
                turn=turn,
                prompt_n=prompt_n,
                cache_n=cache_n,
                usage_prompt_tokens=response.usage.prompt_tokens,
                usage_cached_tokens=response.usage.cached_prompt_tokens,
                first_changed_message=first_change(slot.previous, call.messages),
                covered=covered,
                tool=tool_of(response.content),
                time_to_first_token=response.usage.time_to_first_token,
                prompt_ms=float(prompt_ms) if isinstance(prompt_ms, int | float) else None,
                reply_generated_n=int(timings.get("predicted_n", 0)),
                reply_retokenized_n=len(retokenized),
                reply_fenced=fenced,
                reply_same_n=same,
                reply_sent_verbatim=verbatim,
                reply=response.content[:300],
                reuse_of_previous=min(1.0, cache_n / slot.left) if slot.left else None,
            )
        )
        slot.left = cache_n + prompt_n + len(retokenized)
        slot.previous = call.messages
        slot.first_of_run = False
    return rows


def settings_for(demo: DemoModelServer, **extra: Any) -> Settings:
    """Constrained tool calls against the demo server."""
    return Settings(
        backend="openai",
        base_url=demo.openai_url,
        model=demo.model,
        tool_mode="constrained",
        context_length=demo.context_length,
        **extra,
    )


def server_args_for(seed: int | None, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The bench's extra llama-server arguments: a fixed sampling seed (so that runs with and
    without a flag see the same first reply), then the user's."""
    return (("--seed", str(seed)) if seed is not None else ()) + extra


class RoundingCheck:
    """The long run's stand-in for the project's tests: passes once no money rounding is
    written out in the staged file any more, else says which lines still have one."""

    def __init__(self, workspace: Workspace, rel_path: str) -> None:
        self.workspace = workspace
        self.rel_path = rel_path
        self.failures = 0

    async def __call__(self) -> str | None:
        text = self.workspace.read_text(self.rel_path)
        lines = [n for n, line in enumerate(text.splitlines(), 1) if ROUNDING in line]
        if not lines:
            return None
        self.failures += 1
        return (
            f"Check failed: {len(lines)} roundings in {self.rel_path} are still written out "
            f"(lines {', '.join(map(str, lines))}). Define money() once and use it there, one "
            "edit at a time, then call finish."
        )


@contextmanager
def repeats_allowed(turns: int) -> Iterator[None]:
    """Lift the loop's stop for a model that repeats itself (``MAX_REPEAT_TURNS`` turns in a
    row of nothing but repeated calls) for the duration: the tiny model copies its previous
    call verbatim, and the loop would end the run after its third call. Repeats are still
    answered the loop's way (the earlier result, "nothing has changed since")."""
    name = "MAX_REPEAT_TURNS"
    # Fail loudly if the loop renames it, rather than measure a three-call run.
    assert hasattr(agent_loop, name), f"agent.loop has no {name} any more: update the bench"
    saved = getattr(agent_loop, name)
    setattr(agent_loop, name, turns + 1)
    try:
        yield
    finally:
        setattr(agent_loop, name, saved)


async def run_long(
    turns: int,
    max_output: int,
    server_args: tuple[str, ...],
    temperature: float | None,
) -> dict[str, Any]:
    """The long refactor of bench/fixtures/billing.py on a fresh server; one row per call."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(FIXTURE, root / FIXTURE.name)
        demo_server = DemoModelServer(context_length=LONG_CONTEXT, extra_args=server_args)
        async with demo_server as demo:
            info = await server_info(demo)
            settings = settings_for(
                demo,
                max_turns=turns,
                max_output_tokens=max_output,
                repair_turns=10,
                **({} if temperature is None else {"temperature": temperature}),
            )
            tap = TimingsTap()
            http = httpx.AsyncClient(transport=tap, timeout=make_timeout(settings))
            backend = RecordingBackend(OpenAIBackend(settings, client=http))
            ctx = TaskContext(root=root, settings=settings, backend=backend)
            req = TaskRequest(root / FIXTURE.name, None, LONG_INSTRUCTION)
            prepared = prepare(ctx, req)
            check = RoundingCheck(prepared.workspace, prepared.rel_path)
            try:
                with repeats_allowed(turns):
                    result = await run_task(ctx, req, prepared, REFACTOR_TASK, verify=check)
            finally:
                await prepared.aclose()
                await http.aclose()
            rows = await collect_rows("long refactor", tap, backend, demo.url, _Slot(), True)
    return {
        "server": info,
        "rows": rows,
        "fixture_lines": len(FIXTURE.read_text().splitlines()),
        "temperature": settings.temperature,
        "finished": result.finished,
        "stop_reason": getattr(result, "stop_reason", None),
        "check_failures": check.failures,
        "staged_files": len(prepared.workspace.changes()),
    }


async def run_short(
    refactor_turns: int,
    explain_turns: int,
    max_output: int,
    server_args: tuple[str, ...],
) -> dict[str, Any]:
    """The three short requests on one demo server; one row per model call."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(EXAMPLE, root / "inventory.py")
        async with DemoModelServer(extra_args=server_args) as demo:
            info = await server_info(demo)
            plan = [
                ("refactor", refactor_turns),
                ("explain #1", explain_turns),
                ("explain #2", explain_turns),
            ]
            slot = _Slot()
            for name, turns in plan:
                settings = settings_for(demo, max_turns=turns, max_output_tokens=max_output)
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
                rows += await collect_rows(name, tap, backend, demo.url, slot, False)
    return {"server": info, "rows": rows}


def _summary(rows: list[Row]) -> str:
    covered = [r for r in rows if r.covered]
    worst = min((r.share for r in covered), default=0.0)
    met = all(r.share >= TARGET for r in covered)
    return (
        f"Calls covered by the target: {len(covered)} of {len(rows)}; lowest share "
        f"{worst:.1%}; target {TARGET:.0%} {'met' if met else 'MISSED'}."
    )


def _verdict(row: Row) -> str:
    return ("pass" if row.share >= TARGET else "MISS") if row.covered else "-"


def _fence(row: Row) -> str:
    return "yes" if row.reply_fenced else "no"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_long(rows: list[Row]) -> str:
    """The long run's table: one row per turn."""
    lines = [
        "| turn | tool called | prompt tokens | cached tokens | cached | target "
        "| time to first token (s) | prompt processing (s) | reused of prev prompt+reply "
        "| reply gen / retok | fence | reply tokens as generated |",
        "| ---: | --- | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: | :---: | ---: |",
    ]
    for r in rows:
        reuse = "-" if r.reuse_of_previous is None else f"{r.reuse_of_previous:.1%}"
        prompt_s = None if r.prompt_ms is None else r.prompt_ms / 1000
        lines.append(
            f"| {r.turn} | {r.tool} | {r.prompt_n + r.cache_n} | {r.cache_n} | {r.share:.1%} "
            f"| {_verdict(r)} | {_seconds(r.time_to_first_token)} | {_seconds(prompt_s)} "
            f"| {reuse} | {r.reply_generated_n} / {r.reply_retokenized_n} | {_fence(r)} "
            f"| {r.reply_same_n} |"
        )
    return "\n".join([*lines, "", _summary(rows)])


def render(rows: list[Row]) -> str:
    """The short run's table; rows the target covers are marked pass/MISS."""
    lines = [
        "| request | turn | prompt_n | cache_n | cached | target | stats prompt / cached "
        "| first changed msg | reply gen / retok | fence | reply tokens as generated "
        "| reply sent back verbatim | reused of prev prompt+reply |",
        "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | :---: | ---: | :---: "
        "| ---: |",
    ]
    for r in rows:
        changed = "-" if r.first_changed_message is None else str(r.first_changed_message)
        reuse = "-" if r.reuse_of_previous is None else f"{r.reuse_of_previous:.1%}"
        verbatim = {None: "-", True: "yes", False: "no"}[r.reply_sent_verbatim]
        lines.append(
            f"| {r.request} | {r.turn} | {r.prompt_n} | {r.cache_n} | {r.share:.1%} "
            f"| {_verdict(r)} | {r.usage_prompt_tokens} / {r.usage_cached_tokens} | {changed} "
            f"| {r.reply_generated_n} / {r.reply_retokenized_n} | {_fence(r)} "
            f"| {r.reply_same_n} | {verbatim} | {reuse} |"
        )
    return "\n".join([*lines, "", _summary(rows)])


COLUMNS = (
    "cached = cache_n / (cache_n + prompt_n), llama-server's `timings`; prompt tokens = "
    "cache_n + prompt_n (the agent's stats record the same). Time to first token is the "
    "agent's clock; prompt processing is the server's `prompt_ms`. \"reused of prev "
    "prompt+reply\": cache_n / (previous call's prompt + its reply as tokenized text), i.e. how "
    "much of what the slot held was reused (100%: nothing reusable was processed again). "
    '"reply gen / retok": tokens of the reply as generated (`predicted_n`, with the end token '
    "and anything the server kept out of `content`, such as a ```json fence) and as its "
    'content tokenizes. "fence": the server generated a ```json fence before the JSON (its '
    'structured output allows one; `content` leaves it out). "reply tokens as generated": how '
    "many of the reply text's tokens, from its start, the server generated as such: the next "
    "call can reuse the reply's KV only that far (a grammar-forced literal can make the model "
    'split a word otherwise than the tokenizer, e.g. "edit" "s" for "edits").'
)


def _server_line(info: dict[str, Any], server_args: tuple[str, ...]) -> str:
    extra = f" {' '.join(server_args)}" if server_args else ""
    return (
        f"llama-server ({info.get('build_info')}, {info.get('total_slots')} slot, "
        f"n_ctx {info.get('n_ctx')}) with Gemma 3 270M Q4_K_M via `DemoModelServer` "
        f"(`--swa-full`{extra})"
    )


async def main_async(args: argparse.Namespace) -> None:
    """Run the chosen parts and write the report."""
    extra = tuple(args.server_arg)
    if args.cache_reuse:
        extra = ("--cache-reuse", str(args.cache_reuse), *extra)
    server_args = server_args_for(args.seed, extra)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    sections = [f"# KV-cache reuse, {stamp}\n", f"Python {sys.version.split()[0]}. {COLUMNS}\n"]
    payload: dict[str, Any] = {
        "target": TARGET,
        "settings": {
            "server_args": list(server_args),
            "max_output_tokens": args.max_output_tokens,
        },
    }
    if args.part in ("all", "long"):
        long = await run_long(args.turns, args.max_output_tokens, server_args, args.temperature)
        sections += [
            "## Long refactor (bench/fixtures/billing.py)\n",
            f"{_server_line(long['server'], server_args)}; constrained tool "
            f"calls, temperature {long['temperature']}, max {args.max_output_tokens} output "
            f"tokens per call, max {args.turns} turns "
            f"(more after a failed check). The {long['fixture_lines']}-line file is in the "
            f"first message; the instruction: {LONG_INSTRUCTION} The check (stand-in for the "
            f"tests) failed {long['check_failures']} time(s); finished: {long['finished']}; "
            f"stop reason: {long['stop_reason']}; files staged: {long['staged_files']}. The "
            f"loop's stop for a model repeating itself is lifted (see repeats_allowed); after "
            f"the turn cap the loop asks for the answer without the grammar (the last row).\n",
            render_long(long["rows"]) + "\n",
        ]
        payload["long"] = {
            "turns": args.turns,
            "server": long["server"],
            "finished": long["finished"],
            "stop_reason": long["stop_reason"],
            "check_failures": long["check_failures"],
            "rows": [asdict(r) | {"share": round(r.share, 4)} for r in long["rows"]],
        }
    if args.part in ("all", "short"):
        short = await run_short(
            args.refactor_turns,
            args.explain_turns,
            args.max_output_tokens,
            server_args,
        )
        sections += [
            "## Short requests (examples/inventory.py)\n",
            f"{_server_line(short['server'], server_args)}; in order on one "
            f"server: refactor (max {args.refactor_turns} turns), then explain twice (max "
            f'{args.explain_turns} turns each). "first changed msg": index of the first '
            "message of the previous call not repeated verbatim (- when the new prompt only "
            'appends). "sent back verbatim": the next call\'s assistant message is the reply '
            "text exactly as received.\n",
            render(short["rows"]) + "\n",
        ]
        payload["short"] = {
            "refactor_turns": args.refactor_turns,
            "explain_turns": args.explain_turns,
            "server": short["server"],
            "rows": [asdict(r) | {"share": round(r.share, 4)} for r in short["rows"]],
        }
    report = "\n".join(sections)
    print(report)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    name = f"cache-{stamp}{args.suffix}"
    (out / f"{name}.md").write_text(report)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=("all", "long", "short"), default="all")
    parser.add_argument("--turns", type=int, default=10, help="the long refactor's max_turns")
    parser.add_argument(
        "--temperature", type=float, default=None, help="the long refactor's (default: agentls's)"
    )
    parser.add_argument("--refactor-turns", type=int, default=6)
    parser.add_argument("--explain-turns", type=int, default=4)
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument(
        "--cache-reuse",
        type=int,
        default=0,
        help="add llama-server's --cache-reuse N (KV shifting; the demo runs without)",
    )
    parser.add_argument("--seed", type=int, default=7, help="llama-server's sampling seed")
    parser.add_argument("--suffix", default="", help="added to the result file names, e.g. -before")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra llama-server argument, e.g. --server-arg=--verbose",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
