"""Every task, declared once: its names in each front end, its text, and how it runs.

A task's identity used to be spread over the protocol constants, the code actions, the
server's registrations, the runner's if-chain, the CLI's dict and a guess from the first words
of the prompt text. Now each ``TaskSpec`` below says it all, and everything else reads it: the
LSP server registers one request and one command per spec, the code actions and progress use
its titles, ``agentls run`` takes its CLI word, skill selection gets its skills task, and the
verifier its verify kind. The editor clients spell the same names (tests/test_registry.py
checks them against this file).

``TASKS`` are the tasks every front end offers by name: the LSP requests, commands and code
actions, ``agentls run``'s words and the ACP agent's slash commands (``/explain``,
``/refactor``, ``/tests``, the CLI words). ``ASK`` is the general request of a chat panel (ACP):
plain text, every tool, the model decides whether to answer or edit. It has no LSP names (its
``method``, ``command`` and kinds are empty) and is not in ``TASKS``, so the LSP contract of
DESIGN.md stays exactly as it was.

This module is imported when the language server starts, so it stays light: the task flows
(which pull in the agent loop) are imported only when a task runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from agentls.tasks.base import EditResult, ExplainResult, TaskContext, TaskRequest

# The task's name in the LSP contract (agent/<name>, agent.<name>); "ask" is ACP's general request.
TaskName = Literal["explain", "refactor", "generateTests", "ask"]
# The task names skill files are written for (``tasks: [...]``; skills/loader.py TASKS).
SkillsTask = Literal["explain", "refactor", "tests"]
# What the verifier checks: a refactor keeps the tests passing, generated tests must pass.
VerifyKind = Literal["refactor", "tests"]

# A task's flow; it gets its own spec, so one flow can serve several tasks.
TaskRun = Callable[
    ["TaskSpec", "TaskContext", "TaskRequest"], Awaitable["ExplainResult | EditResult"]
]


@dataclass(frozen=True)
class TaskSpec:
    """One task as every front end and flow knows it."""

    name: TaskName
    cli_word: str  # `agentls run <word>`, also the ACP slash command; "" for none
    method: str  # the LSP request; "" for a task LSP does not offer
    command: str  # the workspace/executeCommand command (also the code action's command)
    title: str  # the code action title
    progress_title: str  # work-done progress title; the clients route progress by it
    selection_kind: str  # code action kind on a selection (refactor.* goes in the light bulb)
    file_kind: str  # code action kind on a bare cursor: the whole file (source.*)
    read_only: bool  # no edit/write (refused by the loop), an answer in prose is welcome
    skills_task: SkillsTask
    verify_kind: VerifyKind | None  # None: nothing to verify (explain changes nothing)
    task_text: str  # the first message's task line; ``{test_path}`` where test_file is set
    run: TaskRun  # the flow: run(spec, ctx, req)
    done_summary: str = ""  # the summary when a finished edit run's model wrote none
    default_instruction: str | None = None  # used when the user gave no instruction
    test_file: bool = False  # writes a test file: the text names it, the result carries it
    # Why a file worked on alone (no workspace folder) will not do; None: it will.
    needs_folder: str | None = None
    activity: str = ""  # "Generating tests", for messages that refuse the task
    # The first reply may be prose even in constrained mode, though the task may edit: the
    # general request answers questions as often as it changes code.
    prose_answer: bool = False
    description: str = ""  # one line for a chat panel's command list (ACP)

    async def execute(self, ctx: TaskContext, req: TaskRequest) -> ExplainResult | EditResult:
        """Run this task on ``req``."""
        return await self.run(self, ctx, req)


async def _run_explain(
    spec: TaskSpec, ctx: TaskContext, req: TaskRequest
) -> ExplainResult | EditResult:
    # Imported per call: the flows pull in the agent loop, and a language server that starts
    # fast is one the editor does not time out on.
    from agentls.tasks.explain import explain

    return await explain(spec, ctx, req)


async def _run_edit(
    spec: TaskSpec, ctx: TaskContext, req: TaskRequest
) -> ExplainResult | EditResult:
    from agentls.tasks.edit import run_edit_task

    return await run_edit_task(spec, ctx, req)


async def _run_ask(
    spec: TaskSpec, ctx: TaskContext, req: TaskRequest
) -> ExplainResult | EditResult:
    from agentls.tasks.ask import run_ask

    return await run_ask(spec, ctx, req)


EXPLAIN_TASK = (
    "Task: explain the code below (the selected lines if there is a selection) to a developer. "
    "Say what it does, how, and anything surprising or risky. Answer in Markdown, as plain "
    "text or as the summary of finish; read other files only if you need them. Change nothing."
)

REFACTOR_TASK = (
    "Task: refactor the code below as the user asks (the selected lines if there is a "
    "selection), without changing its behaviour unless asked. Use edit for changes to existing "
    "files and write for new files; when you move code to a new module, update the imports "
    "that use it. Then call finish."
)

TESTS_TASK = (
    "Task: write unit tests for the code below (the selected lines if there is a selection). "
    "Create the test file {test_path} with write (or extend it with edit if it exists), "
    "importing the code under test from its module. Cover normal cases and edge cases; no "
    "network. Then call finish."
)

ASK_TASK = (
    "Task: do what the user asks, in this workspace. To answer a question, answer in Markdown "
    "(as plain text or as the summary of finish), reading only the files you need. To change "
    "code, use edit for existing files and write for new files (when you move code to a new "
    "module, update the imports that use it), then call finish with a short summary."
)

EXPLAIN = TaskSpec(
    name="explain",
    cli_word="explain",
    method="agent/explain",
    command="agent.explain",
    title="Agent: Explain",
    progress_title="Agent: Explain",
    selection_kind="refactor.agent.explain",
    file_kind="source.agent.explain",
    read_only=True,
    skills_task="explain",
    verify_kind=None,
    task_text=EXPLAIN_TASK,
    run=_run_explain,
    activity="Explaining",
    description="Explain a file or selection",
)

REFACTOR = TaskSpec(
    name="refactor",
    cli_word="refactor",
    method="agent/refactor",
    command="agent.refactor",
    title="Agent: Refactor",
    progress_title="Agent: Refactor",
    selection_kind="refactor.rewrite",  # the standard kind, so editors group it with theirs
    file_kind="source.agent.refactor",
    read_only=False,
    skills_task="refactor",
    verify_kind="refactor",
    task_text=REFACTOR_TASK,
    run=_run_edit,
    done_summary="Refactor finished.",
    default_instruction="Improve readability and structure; keep the behaviour identical.",
    activity="Refactoring",
    description="Refactor a file or selection as you ask, keeping its behaviour",
)

GENERATE_TESTS = TaskSpec(
    name="generateTests",
    cli_word="tests",
    method="agent/generateTests",
    command="agent.generateTests",
    title="Agent: Generate tests",
    progress_title="Agent: Generate tests",
    selection_kind="refactor.agent.generateTests",
    file_kind="source.agent.generateTests",
    read_only=False,
    skills_task="tests",
    verify_kind="tests",
    task_text=TESTS_TASK,
    run=_run_edit,
    done_summary="Tests generated.",
    test_file=True,
    needs_folder="a file worked on alone cannot get a test file next to it",
    activity="Generating tests",
    description="Write unit tests for a file or selection",
)

# The general request of a chat panel (ACP's plain-text prompt). Every tool; the model
# answers or edits. Edits are verified as a refactor's are (the project's tests must still
# pass). Skills for "refactor" apply: they teach the edit tool, which this task may use.
ASK = TaskSpec(
    name="ask",
    cli_word="",
    method="",
    command="",
    title="Agent: Ask",
    progress_title="Agent: Ask",
    selection_kind="",
    file_kind="",
    read_only=False,
    skills_task="refactor",
    verify_kind="refactor",
    task_text=ASK_TASK,
    run=_run_ask,
    done_summary="Done.",
    activity="Working",
    prose_answer=True,
    description="Ask anything or ask for a change; the agent answers or edits",
)

# The tasks offered by name everywhere (LSP, CLI, ACP slash commands), in the order the code
# actions and the CLI list them. The LSP server and code actions iterate exactly these.
TASKS: tuple[TaskSpec, ...] = (EXPLAIN, REFACTOR, GENERATE_TESTS)
# Every task, the ACP-only general request included.
ALL_TASKS: tuple[TaskSpec, ...] = (*TASKS, ASK)


def _index(
    key: Callable[[TaskSpec], str], specs: tuple[TaskSpec, ...] = TASKS
) -> dict[str, TaskSpec]:
    index = {key(spec): spec for spec in specs}
    assert len(index) == len(specs), "two tasks share a name"
    return index


_BY_NAME = _index(lambda s: s.name, ALL_TASKS)
_BY_METHOD = _index(lambda s: s.method)
_BY_COMMAND = _index(lambda s: s.command)
_BY_CLI_WORD = _index(lambda s: s.cli_word)


def by_name(name: str) -> TaskSpec:
    """The task called ``name`` (explain, refactor, generateTests, ask); KeyError if none."""
    return _BY_NAME[name]


def by_method(method: str) -> TaskSpec:
    """The task behind an LSP request such as ``agent/refactor``; KeyError if none."""
    return _BY_METHOD[method]


def by_command(command: str) -> TaskSpec:
    """The task behind a command such as ``agent.generateTests``; KeyError if none."""
    return _BY_COMMAND[command]


def by_cli_word(word: str) -> TaskSpec:
    """The task behind ``agentls run <word>`` (explain, refactor, tests); KeyError if none."""
    return _BY_CLI_WORD[word]


def cli_words() -> list[str]:
    """The words ``agentls run`` accepts, in registry order."""
    return [spec.cli_word for spec in TASKS]
