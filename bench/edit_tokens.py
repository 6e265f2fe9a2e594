"""Tokens a model must generate, and model calls, for the same edits the old way and the new way.

The old way is the tool set before batch edits: one ``edit`` (old_text/new_text) per call and
``write`` for new files, so moved code is typed out in full. The new way uses ``edit`` with
``edits``: line ranges checked by their first and last line, moves to other files, several
changes per call. Each task runs twice through the real tool loop (``run_refactor``) against
an instant model server (``bench/instant_model.py``, real HTTP on 127.0.0.1), with a
transcript that uses its tool set correctly; the staged results of the two ways must be
byte-identical.

Tasks: splitting a 300-line module into three (the old module re-exports them), moving one
function to another module, renaming a symbol in 5 places of one file. Generated tokens:
each call as JSON (as a constrained reply is written), characters / 4 and, with
``--tokenizer URL`` or ``--demo`` (starts the demo llama-server), Gemma's tokenizer
(``/tokenize``). Prints a table and writes bench/results/edit-tokens-<date>.md.

Usage: python bench/edit_tokens.py [--demo | --tokenizer http://127.0.0.1:8080]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agentls.llm.factory import make_backend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from instant_model import InstantModel

HERE = Path(__file__).resolve().parent

MODEL = "gemma4:12b-it-qat"
Call = tuple[str, dict[str, Any]]

# -- the module to split ------------------------------------------------------------------

HEADER = '''"""Billing for the shop: invoices, taxes and reports."""

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
'''
REGIONS = [
    "north",
    "south",
    "east",
    "west",
    "alps",
    "coast",
    "islands",
    "lakes",
    "plains",
    "valley",
    "highlands",
]
REPORTS = [
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
    "by_customer",
    "by_region",
]


def _invoices() -> str:
    parts = [
        'CENT = Decimal("0.01")\n\n\n'
        "@dataclass(frozen=True)\nclass LineItem:\n"
        '    """One line of an invoice: what was sold, how many, at what price."""\n\n'
        "    sku: str\n    quantity: int\n    unit_price: Decimal\n\n"
        "    def amount(self) -> Decimal:\n"
        '        """The line\'s amount, rounded to cents."""\n'
        "        return (self.unit_price * self.quantity).quantize(CENT, ROUND_HALF_UP)\n\n\n"
        "@dataclass\nclass Invoice:\n"
        '    """An invoice: its number, customer, region, date and lines."""\n\n'
        "    number: str\n    customer: str\n    region: str\n    issued: date\n"
        "    lines: list[LineItem] = field(default_factory=list)\n\n"
        "    def add(self, sku: str, quantity: int, unit_price: Decimal) -> None:\n"
        '        """Add a line; quantities must be positive."""\n'
        "        if quantity <= 0:\n"
        '            raise ValueError(f"quantity must be positive, got {quantity}")\n'
        "        self.lines.append(LineItem(sku, quantity, unit_price))\n\n"
        "    def subtotal(self) -> Decimal:\n"
        '        """The sum of the lines before tax."""\n'
        '        return sum((line.amount() for line in self.lines), Decimal("0"))\n'
    ]
    for name, test in [
        ("is_empty", "not invoice.lines"),
        ("is_large", 'invoice.subtotal() > Decimal("1000")'),
        ("has_sku", "any(line.sku == sku for line in invoice.lines)"),
        ("is_recent", "(today - invoice.issued).days <= 30"),
    ]:
        args = "invoice: Invoice"
        args += ", sku: str" if "sku ==" in test else ""
        args += ", today: date" if "today" in test else ""
        parts.append(
            f"\n\ndef invoice_{name}({args}) -> bool:\n"
            f'    """Whether the invoice {name.replace("_", " ")}."""\n'
            f"    return {test}\n"
        )
    parts.append(
        '\n\ndef format_money(amount: Decimal, currency: str = "EUR") -> str:\n'
        '    """An amount as text with two decimals and thousands separators."""\n'
        '    sign = "-" if amount < 0 else ""\n'
        '    whole, _, cents = f"{abs(amount):.2f}".partition(".")\n'
        "    groups = []\n"
        "    while len(whole) > 3:\n"
        "        groups.insert(0, whole[-3:])\n"
        "        whole = whole[:-3]\n"
        "    groups.insert(0, whole)\n"
        "    return f\"{sign}{','.join(groups)}.{cents} {currency}\"\n"
    )
    return "".join(parts)


def _tax() -> str:
    parts = ["RATES = {\n"]
    parts += [f'    "{r}": Decimal("0.{10 + 2 * k:02d}"),\n' for k, r in enumerate(REGIONS)]
    parts.append("}\n")
    for k, region in enumerate(REGIONS):
        parts.append(
            f"\n\ndef _tax_for_{region}(invoice: Invoice) -> Decimal:\n"
            f'    """Tax for an invoice in the {region} region."""\n'
            f'    rate = RATES["{region}"]\n'
            f'    if invoice.subtotal() < Decimal("{10 * (k + 1)}"):\n'
            "        rate = rate / 2  # small orders pay half\n"
            "    return (invoice.subtotal() * rate).quantize(CENT, ROUND_HALF_UP)\n"
        )
    parts.append(
        "\n\ndef tax_for(invoice: Invoice) -> Decimal:\n"
        '    """Tax for an invoice, by its region."""\n'
        "    rules = {\n" + "".join(f'        "{r}": _tax_for_{r},\n' for r in REGIONS) + "    }\n"
        "    if invoice.region not in rules:\n"
        '        raise KeyError(f"no tax rule for region {invoice.region!r}")\n'
        "    return rules[invoice.region](invoice)\n"
        "\n\ndef compute_total(invoice: Invoice) -> Decimal:\n"
        '    """Subtotal plus tax, rounded to cents."""\n'
        "    total = invoice.subtotal() + tax_for(invoice)\n"
        "    return total.quantize(CENT, ROUND_HALF_UP)\n"
    )
    return "".join(parts)


def _report() -> str:
    parts = []
    for k, kind in enumerate(REPORTS):
        # The first four reports total with tax, the others without.
        total = "compute_total(invoice)" if k < 4 else "invoice.subtotal()"
        key = "invoice.issued.isoformat()"
        if kind.startswith("by_"):
            key = f"invoice.{kind.removeprefix('by_')}"
        parts.append(
            ("" if k == 0 else "\n\n") + f"def report_{kind}(invoices: list[Invoice]) -> str:\n"
            f'    """The {kind.replace("_", " ")} report as JSON."""\n'
            "    rows = []\n"
            "    for invoice in invoices:\n"
            "        rows.append(\n"
            "            {\n"
            '                "number": invoice.number,\n'
            f'                "key": {key},\n'
            f'                "total": format_money({total}),\n'
            "            }\n"
            "        )\n"
            f'    return json.dumps({{"report": "{kind}", "rows": rows}}, indent=2)\n'
        )
    return "".join(parts)


SECTIONS = {"invoices": _invoices(), "tax": _tax(), "report": _report()}
MODULE = HEADER + "".join("\n\n" + body for body in SECTIONS.values())
NAMES = {
    "invoices": ["CENT", "Invoice", "LineItem", "format_money"]
    + [f"invoice_{n}" for n in ("has_sku", "is_empty", "is_large", "is_recent")],
    "tax": ["RATES", "compute_total", "tax_for"],
    "report": [f"report_{k}" for k in REPORTS],
}
HEADERS = {
    "invoices": '"""Invoices and their lines."""\n\n'
    "from dataclasses import dataclass, field\nfrom datetime import date\n"
    "from decimal import ROUND_HALF_UP, Decimal\n",
    "tax": '"""Taxes by region."""\n\n'
    "from decimal import ROUND_HALF_UP, Decimal\n\nfrom shop.invoices import CENT, Invoice\n",
    "report": '"""Reports of invoices as JSON."""\n\n'
    "import json\n\nfrom shop.invoices import Invoice, format_money\n"
    "from shop.tax import compute_total\n",
}
# billing.py keeps working for its callers: it imports every public name it had.
FACADE = "".join(
    f"from shop.{mod} import {', '.join(sorted(names))}\n" for mod, names in NAMES.items()
)
UTIL = '"""Small helpers shared by the shop."""\n\n\ndef slug(text: str) -> str:\n'
UTIL += '    """Lower-case words joined by dashes."""\n    return "-".join(text.lower().split())\n'


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def line_no(text: str, line: str, start: int = 1) -> int:
    """1-based number of the first line equal to ``line`` at or after ``start``."""
    return lines_of(text).index(line, start - 1) + 1


def block(text: str, first: int, last: int) -> str:
    return "".join(text.splitlines(keepends=True)[first - 1 : last])


GUARD_CHARS = 16


def lines_item(text: str, first: int, last: int, **what: Any) -> dict[str, Any]:
    """A range as a model writes it from read's numbers: the numbers and both ends' text."""
    rows = lines_of(text)
    # The start of a line is enough for its guard; a frugal model writes no more.
    guard = {
        "first_line": rows[first - 1].strip()[:GUARD_CHARS],
        "last_line": rows[last - 1].strip()[:GUARD_CHARS],
    }
    return {"start_line": first, "end_line": last, **guard, **what}


# -- the tasks: one transcript per way ------------------------------------------------------


BILLING = "shop/billing.py"


def call(name: str, **arguments: Any) -> Call:
    """One tool call of a transcript."""
    return (name, arguments)


@dataclass
class Task:
    name: str
    files: dict[str, str]
    instruction: str
    old: list[Call]
    new: list[Call]


def split_task() -> Task:
    m = MODULE
    total = len(lines_of(m))
    # Each section starts after the two blank lines before it; those lines go along with it,
    # so every new module reads header, two blank lines, code.
    starts = [line_no(m, 'CENT = Decimal("0.01")'), line_no(m, "RATES = {"), 0]
    starts[2] = line_no(m, "def report_daily(invoices: list[Invoice]) -> str:")
    ranges = [(s - 2, (starts[i + 1] - 3) if i < 2 else total) for i, s in enumerate(starts)]
    new_items: list[dict[str, Any]] = []
    old: list[Call] = []
    for (first, last), mod in zip(ranges, SECTIONS, strict=True):
        path = f"shop/{mod}.py"
        # One item per new file: the moved lines, after its header.
        new_items.append(lines_item(m, first, last, to_path=path, new_text=HEADERS[mod]))
        old.append(call("write", path=path, content=HEADERS[mod] + block(m, first, last)))
    header_end = ranges[0][0] - 1
    new_items.append(lines_item(m, 3, header_end, new_text=FACADE))
    old.append(call("write", path=BILLING, content=block(m, 1, 2) + FACADE))
    summary = "Split shop/billing.py into invoices, tax and report; billing re-exports them."
    return Task(
        "split a 300-line module into three",
        {"shop/__init__.py": "", BILLING: m},
        "Split this module into shop/invoices.py, shop/tax.py and shop/report.py.",
        [*old, call("finish", summary=summary)],
        [
            call("read", path=BILLING),
            call("edit", path=BILLING, edits=new_items),
            call("finish", summary=summary),
        ],
    )


def move_task() -> Task:
    m = MODULE
    first = line_no(m, 'def format_money(amount: Decimal, currency: str = "EUR") -> str:') - 2
    last = line_no(m, "RATES = {") - 3
    func = block(m, first, last)  # two blank lines, then the function
    anchor = "from decimal import ROUND_HALF_UP, Decimal\n"
    imported = anchor + "\nfrom shop.util import format_money\n"
    end = lines_of(UTIL)[-1] + "\n"
    summary = "Moved format_money to shop/util.py and imported it in billing."
    moved = lines_item(m, first, last, to_path="shop/util.py")
    return Task(
        "move one function to another module",
        {"shop/__init__.py": "", BILLING: m, "shop/util.py": UTIL},
        "Move format_money to shop/util.py.",
        [
            call("edit", path=BILLING, old_text=func, new_text=""),
            call("edit", path="shop/util.py", old_text=end, new_text=end + func),
            call("edit", path=BILLING, old_text=anchor, new_text=imported),
            call("finish", summary=summary),
        ],
        [
            call("read", path=BILLING),
            call("edit", path=BILLING, edits=[moved, {"old_text": anchor, "new_text": imported}]),
            call("finish", summary=summary),
        ],
    )


def rename_task() -> Task:
    # compute_total occurs in exactly 5 places; each old_text is the shortest unique snippet.
    assert MODULE.count("compute_total(") == 5
    places = [("def compute_total(", "def invoice_total(")]
    for kind in REPORTS[:4]:
        # The report lines are alike: old_text runs on to the report's name to be unique.
        old = (
            '"total": format_money(compute_total(invoice)),\n            }\n        )\n'
            f'    return json.dumps({{"report": "{kind}"'
        )
        places.append((old, old.replace("compute_total(", "invoice_total(")))
    assert all(MODULE.count(old) == 1 for old, _ in places)
    summary = "Renamed compute_total to invoice_total."
    edits = [{"old_text": o, "new_text": n} for o, n in places]
    return Task(
        "rename a symbol in 5 places of one file",
        {"shop/__init__.py": "", BILLING: MODULE},
        "Rename compute_total to invoice_total.",
        [*(call("edit", path=BILLING, **e) for e in edits), call("finish", summary=summary)],
        [call("edit", path=BILLING, edits=edits), call("finish", summary=summary)],
    )


TASKS: list[Callable[[], Task]] = [split_task, move_task, rename_task]

HOW = """How each way works (transcripts in bench/edit_tokens.py; the same summary ends both):
- split, old: `write` each new module and the re-exporting module, typed out. New: `read`, one
  `edit` moving each section after its new module's header and replacing the old imports.
- move, old: `edit` deleting the function (typed as old_text), `edit` appending it to the other
  module, `edit` adding the import. New: `read`, one `edit` (a `to_path` move and the import).
- rename, old: five `edit` calls with the shortest unique snippets. New: one `edit`, five items.
"""

# -- running a transcript through the real loop ---------------------------------------------


@dataclass
class Run:
    calls: int  # model calls the loop made
    generated: list[str]  # what the model wrote, one text per call
    files: dict[str, str]  # the staged result: path -> text
    ok: bool  # every tool call succeeded


def written(name: str, arguments: dict[str, Any]) -> str:
    """A tool call as the model writes it (a constrained reply's exact text)."""
    return json.dumps({"tool": name, "arguments": arguments}, ensure_ascii=False)


@contextlib.contextmanager
def workspace(task: Task) -> Iterator[Path]:
    """A temporary workspace holding the task's files; removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, text in task.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        yield root


async def run_transcript(task: Task, calls: list[Call]) -> Run:
    """The task's calls as scripted replies, through run_refactor; the staged files back."""
    script = [{"name": n, "arguments": a} for n, a in calls]
    model = InstantModel(script, record=True, count_prompt=True)
    with workspace(task) as root, model as server:
        settings = Settings(base_url=server.url, model=MODEL, tool_mode="native", max_turns=12)
        ctx = TaskContext(root=root, settings=settings, backend=make_backend(settings))
        try:
            result = await run_refactor(
                ctx, TaskRequest(root / BILLING, instruction=task.instruction)
            )
        finally:
            await ctx.backend.aclose()
        results = [m["content"] for r in server.requests[1:] for m in r["messages"][-1:]]
        ok = not any(text.startswith("Error") for text in results)
        files = {c.path.relative_to(root).as_posix(): c.new_text for c in result.changes}
        return Run(len(server.requests), [written(n, a) for n, a in calls], files, ok)


# -- counting tokens -----------------------------------------------------------------------


def proxy_tokens(texts: list[str]) -> int:
    """The simple proxy: characters / 4, per call, rounded up."""
    return sum(-(-len(text) // 4) for text in texts)


Counter = Callable[[list[str]], int]


def gemma_counter(url: str) -> Counter:
    """Counts tokens with the Gemma tokenizer of a running llama-server (``POST /tokenize``)."""
    client = httpx.Client(timeout=60)

    def count(texts: list[str]) -> int:
        replies = [client.post(f"{url.rstrip('/')}/tokenize", json={"content": t}) for t in texts]
        return sum(len(r.raise_for_status().json()["tokens"]) for r in replies)

    return count


@contextlib.contextmanager
def demo_tokenizer() -> Iterator[str]:
    """Start the demo llama-server (Gemma 3 270M) for its tokenizer; yields its URL."""
    from agentls.demo import DemoModelServer

    with DemoModelServer(context_length=2048) as server:
        yield server.url


# -- the table ----------------------------------------------------------------------------


async def measure(gemma: Counter | None) -> tuple[list[list[Any]], list[str]]:
    """One row per task and way: task, way, calls, chars, chars/4 [, Gemma], share, same."""
    rows: list[list[Any]] = []
    problems: list[str] = []
    for make in TASKS:
        task = make()
        old, new = await run_transcript(task, task.old), await run_transcript(task, task.new)
        same = old.files == new.files and old.ok and new.ok
        if not same:
            problems.append(f"{task.name}: the two ways differ (ok: {old.ok}, {new.ok})")
        counted = gemma or proxy_tokens
        base = counted(old.generated)
        for way, run in (("old", old), ("new", new)):
            size = sum(len(t) for t in run.generated)
            row = [task.name, way, run.calls, size, proxy_tokens(run.generated)]
            row += [gemma(run.generated)] if gemma else []
            share = counted(run.generated) / base
            rows.append([*row, f"{100 * share:.1f}%", "yes" if same else "NO"])
    return rows, problems


def table(rows: list[list[Any]], gemma: bool) -> str:
    head = ["task", "way", "model calls", "generated chars", "tokens (chars/4)"]
    head += ["tokens (Gemma)"] if gemma else []
    head += ["share of old tokens", "same result"]
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def main() -> None:
    """Run the tasks both ways, print the table and write it to bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", help="a llama-server URL whose /tokenize to use")
    parser.add_argument("--demo", action="store_true", help="start the demo llama-server")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.tokenizer
        if args.demo and not url:
            url = stack.enter_context(demo_tokenizer())
        rows, problems = asyncio.run(measure(gemma_counter(url) if url else None))
    text = table(rows, url is not None)
    split_old, split_new = rows[0], rows[1]  # tokens: Gemma's if counted, else chars/4
    old_tokens, new_tokens = split_old[5 if url else 4], split_new[5 if url else 4]
    goal = (
        f"Split: {new_tokens} of {old_tokens} generated tokens "
        f"({100 * new_tokens / old_tokens:.1f}%, goal < 15%), "
        f"{split_new[2]} model calls (goal <= 4)."
    )
    print(text)
    print(goal)
    for problem in problems:
        print("PROBLEM:", problem)
    date = subprocess.run(["date", "+%F"], capture_output=True, text=True, check=True)
    out = HERE / "results" / f"edit-tokens-{date.stdout.strip()}.md"
    tokenizer_note = (
        "Gemma tokens: the demo llama-server's /tokenize, Gemma 3's vocabulary"
        if args.demo and not args.tokenizer
        else f"Gemma tokens: {url}/tokenize"
        if url
        else "no tokenizer server: chars/4 only"
    )
    out.write_text(
        f"# Generated tokens and model calls: old tools vs batch edits\n\n"
        f"`python bench/edit_tokens.py{' --demo' if args.demo else ''}` "
        f"({tokenizer_note}). Scripted transcripts through the real loop; the module has "
        f"{len(lines_of(MODULE))} lines.\n\n{text}\n\n{goal}\n\n{HOW}"
        + "".join(f"\nPROBLEM: {p}\n" for p in problems)
    )
    print(f"written to {out.relative_to(HERE.parent)}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
