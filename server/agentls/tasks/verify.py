"""Verified edits: run the project's tests on the staged result and tell the model what failed.

A ``Verifier`` is the loop's ``verify`` hook for refactor and generate-tests. Each time the model
finishes it runs the test command in the sandbox (a scratch copy with the staged edits applied,
never the user's files); failing output goes back to the model, and the last run is what the
result reports. Generated tests must also import the code under test: tests of a pasted copy
would pass and prove nothing.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from agentls.agent.bash_tool import BashSession, BashTool, sandbox_config
from agentls.agent.offloop import run_off_loop
from agentls.agent.workspace import ToolError, Workspace
from agentls.languages import JS_LANGUAGES, language_of
from agentls.sandbox import CommandRefused, CommandResult, check_command
from agentls.settings import Settings
from agentls.tasks.base import ProgressSink, TaskContext, Verification
from agentls.tasks.registry import VerifyKind

# What of a failing run goes back to the model: the end, where runners put their summary.
FEEDBACK_TAIL_CHARS = 3000
# What the result keeps for the user.
RESULT_TAIL_CHARS = 4000
# Verification runs the whole suite, which may take longer than one bash call is allowed.
MIN_VERIFY_TIMEOUT = 120.0
# `npm init` writes this test script; it is no test suite.
NPM_PLACEHOLDER = "no test specified"
PYTEST_NO_TESTS = 5  # pytest's exit code when it collected nothing


class RunResult(Protocol):
    """What the sandbox reports about one command (``agentls.sandbox.CommandResult``)."""

    @property
    def exit_code(self) -> int | None: ...

    @property
    def output(self) -> str: ...

    @property
    def timed_out(self) -> bool: ...


class CommandRunner(Protocol):
    """Runs one command on the scratch copy of the workspace (``agentls.sandbox.Sandbox``)."""

    async def run(self, command: str, timeout: float) -> RunResult: ...


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    if 0 <= newline < 200:  # start at a line boundary when one is near
        cut = cut[newline + 1 :]
    return f"[... {len(text) - len(cut)} characters cut]\n{cut}"


def _read(ws: Workspace, rel: str) -> str | None:
    try:
        return ws.read_text(rel) if ws.exists(rel) and not ws.is_dir(rel) else None
    except ToolError:
        return None


def _has_python_tests(ws: Workspace) -> bool:
    if ws.exists("pytest.ini") or ws.is_dir("tests") or ws.is_dir("test"):
        return True
    for name, marker in (
        ("pyproject.toml", "[tool.pytest"),
        ("setup.cfg", "[tool:pytest]"),
        ("tox.ini", "[pytest]"),
    ):
        text = _read(ws, name)
        if text is not None and marker in text:
            return True
    # The workspace lists the tree once per run (ripgrep), so these are filters, not walks.
    return bool(ws.find("test_*.py") or ws.find("*_test.py"))


def _npm_test_script(ws: Workspace) -> bool:
    text = _read(ws, "package.json")
    if text is None:
        return False
    try:
        data = json.loads(text)
    except ValueError:
        return False
    scripts = data.get("scripts") if isinstance(data, dict) else None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return isinstance(test, str) and bool(test.strip()) and NPM_PLACEHOLDER not in test


PYTEST = "python -m pytest -q"  # `python -m` puts the root on sys.path, as imports expect

_DETECTORS: dict[str, Callable[[Workspace], str | None]] = {
    "python": lambda ws: PYTEST if _has_python_tests(ws) else None,
    "node": lambda ws: "npm test" if _npm_test_script(ws) else None,
    "go": lambda ws: "go test ./..." if ws.exists("go.mod") else None,
    "rust": lambda ws: "cargo test" if ws.exists("Cargo.toml") else None,
}
# The toolchain (a key of _DETECTORS) whose tests cover a file of each language.
_TOOLCHAIN_OF = {
    "python": "python",
    "javascript": "node",
    "typescript": "node",
    "go": "go",
    "rust": "rust",
}


def detect_test_command(ws: Workspace, rel_path: str) -> str | None:
    """The project's test command, preferring the language of ``rel_path``; None if no tests.

    Looks at the staged view, so a test file the model just wrote counts.
    """
    first = _TOOLCHAIN_OF.get(language_of(rel_path) or "")
    order = [first] if first else []
    order += [lang for lang in _DETECTORS if lang != first]
    for language in order:
        command = _DETECTORS[language](ws)
        if command:
            return command
    return None


def module_names(rel_path: str) -> set[str]:
    """Dotted names a test could import ``rel_path`` by: src/pkg/mod.py -> pkg.mod, mod, ..."""
    parts = list(PurePosixPath(rel_path).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return {".".join(parts[i:]) for i in range(len(parts))}


def python_imports(source: str) -> set[str] | None:
    """Every dotted name a module imports (``from a import b`` gives a and a.b); None when the
    text does not parse (then the test run reports the syntax error)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)  # importlib.import_module("pkg.mod")
    return names


_JS_SPECIFIER = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']([^"']+)["']""")


def imports_code_under_test(test_text: str, test_rel: str, source_rel: str) -> bool | None:
    """Whether the test file imports the module at ``source_rel``; None when it cannot tell
    (a language where tests live in the module's own package, such as Go)."""
    language = language_of(test_rel)
    if language == "python":
        found = python_imports(test_text)
        if found is None:
            return None
        return bool(found & module_names(source_rel))
    if language in JS_LANGUAGES:
        stem = PurePosixPath(source_rel).stem
        for spec in _JS_SPECIFIER.findall(test_text):
            last = PurePosixPath(spec).name
            if last == stem or PurePosixPath(last).stem == stem:
                return True
        return False
    return None


@dataclass
class _Check:
    """One run of the command, keyed by the staged state it ran on."""

    state: tuple[tuple[str, str], ...]
    verification: Verification
    feedback: str | None


class Verifier:
    """The ``verify`` hook of one refactor or generate-tests run.

    ``runner`` is None when tests may not run (untrusted workspace); then every check says why
    and never sends feedback. ``test_file`` tells a generate-tests run which file the model
    wrote (it may only be known after the model finishes).
    """

    def __init__(
        self,
        workspace: Workspace,
        source_rel: str,
        kind: VerifyKind,
        *,
        command_setting: str,
        runner: CommandRunner | None,
        timeout: float,
        repair_turns: int,
        progress: ProgressSink,
        unavailable: str = "",
        test_file: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.ws = workspace
        self.source_rel = source_rel
        self.kind = kind
        self.command_setting = command_setting.strip()
        self.runner = runner
        self.timeout = max(timeout, MIN_VERIFY_TIMEOUT)
        self.repair_turns = repair_turns
        self.progress = progress
        self.unavailable = unavailable
        self.test_file = test_file
        self.attempts = 0
        self._last: _Check | None = None

    @property
    def result(self) -> Verification | None:
        """The last check, or None if none ran."""
        return self._last.verification if self._last else None

    def _state(self) -> tuple[tuple[str, str], ...]:
        return tuple((self.ws.rel(c.path), c.new_text) for c in self.ws.changes())

    async def __call__(self) -> str | None:
        """The loop hook: None when the staged result is good (or cannot be checked)."""
        return (await self._check()).feedback

    async def final(self) -> Verification | None:
        """The verification of the staged result as it is now (checked again only if it
        changed since the last check, for example when the run hit its turn cap)."""
        if not self.ws.changes():
            return None
        return (await self._check()).verification

    def _command(self) -> str | None:
        if self.command_setting != "auto":
            return self.command_setting
        command = detect_test_command(self.ws, self.source_rel)
        test_file = self.test_file()
        if command == PYTEST and self.kind == "tests" and test_file and test_file.endswith(".py"):
            command = f"{PYTEST} {shlex.quote(test_file)}"  # the new tests, not the whole suite
        return command

    async def _check(self) -> _Check:
        state = self._state()
        if self._last is not None and self._last.state == state:
            return self._last
        self._last = check = await self._run(state)
        return check

    def _skip(self, state: tuple[tuple[str, str], ...], note: str) -> _Check:
        return _Check(state, Verification(None, None, note=note, attempts=self.attempts), None)

    async def _run(self, state: tuple[tuple[str, str], ...]) -> _Check:
        if not state:
            return self._skip(state, "nothing changed")
        if self.kind == "tests":
            problem = self._test_file_problem()
            if problem is not None:
                self.attempts += 1
                verification = Verification(
                    None, False, note=problem, attempts=self.attempts, output=""
                )
                return _Check(state, verification, self._feedback_text(problem))
        if not self.command_setting:
            return self._skip(state, "verification is off (agent.testCommand is empty)")
        if self.runner is None:
            return self._skip(state, self.unavailable or "tests cannot run here")
        # Detection may list the whole tree (once per run): a worker thread's job, so the
        # server keeps answering meanwhile.
        command = await run_off_loop(self._command)
        if command is None:
            return self._skip(state, "no tests found")
        self.attempts += 1
        self.progress.report(f"running tests: {command}")
        try:
            outcome = await self.runner.run(command, self.timeout)
        except Exception as exc:  # the sandbox refused or broke: report it, the model can't fix it
            note = f"the tests could not run: {exc}"
            return _Check(
                state, Verification(command, None, note=note, attempts=self.attempts), None
            )
        output = outcome.output
        code = None if outcome.timed_out else outcome.exit_code
        passed = code == 0
        note = ""
        if code == PYTEST_NO_TESTS and "pytest" in command:
            if self.kind == "refactor":
                verification = Verification(
                    command,
                    None,
                    code,
                    _tail(output, RESULT_TAIL_CHARS),
                    self.attempts,
                    "no tests found",
                )
                return _Check(state, verification, None)
            note = "pytest collected no tests from the generated file"
        if outcome.timed_out:
            note = f"timed out after {self.timeout:.0f} s"
        verification = Verification(
            command, passed, code, _tail(output, RESULT_TAIL_CHARS), self.attempts, note
        )
        feedback = None if passed else self._failure_feedback(command, code, note, output)
        return _Check(state, verification, feedback)

    def _test_file_problem(self) -> str | None:
        test_rel = self.test_file()
        if test_rel is None:
            return "no test file was written"
        text = _read(self.ws, test_rel)
        if text is None:
            return f"the test file {test_rel} cannot be read"
        verdict = imports_code_under_test(text, test_rel, self.source_rel)
        if verdict is False:
            names = " or ".join(sorted(module_names(self.source_rel), key=len)[:2])
            return (
                f"{test_rel} does not import the code under test ({self.source_rel}); "
                f"import it (as {names}) and test the real code, not a copy"
            )
        return None

    def _round(self) -> str:
        return f"(Repair round {self.attempts} of {self.repair_turns}.)"

    def _feedback_text(self, problem: str) -> str:
        return (
            f"The harness checked your staged changes: {problem}. "
            f"Fix it, then call finish. {self._round()}"
        )

    def _failure_feedback(self, command: str, code: int | None, note: str, output: str) -> str:
        how = note if code is None else f"exit code {code}" + (f"; {note}" if note else "")
        if self.kind == "tests":
            advice = (
                "Fix the tests you wrote so they pass against the real code (if the code is "
                "wrong, say so in finish rather than testing a copy)"
            )
        else:
            advice = (
                "Fix your changes so the existing tests pass again; keep the tests' "
                "expectations unless the user asked for a change of behaviour"
            )
        return (
            f"The harness ran `{command}` on your staged changes and it failed ({how}). "
            f"Output:\n```\n{_tail(output, FEEDBACK_TAIL_CHARS).strip()}\n```\n"
            f"{advice}, then call finish. {self._round()}"
        )


class SandboxTests:
    """Runs the test command in the run's sandbox.

    A command the model may run too (``agent.allowedCommands``) runs in the bash tool's copy,
    which already holds the staged edits; any other (a custom ``agent.testCommand``, or a
    detected one the user took off the list) gets a copy of its own that allows exactly that
    command, so configuring the tests never widens what the model itself may run.
    """

    def __init__(self, bash: BashTool, workspace: Workspace, settings: Settings) -> None:
        self.bash = bash
        self.workspace = workspace
        self.settings = settings
        self._own: BashSession | None = None

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run ``command`` on the staged result; CommandRefused/SandboxError if it cannot."""
        try:
            check_command(command, self.settings.allowed_commands)
        except CommandRefused:
            if self._own is None:
                config = sandbox_config(self.settings, allowed_commands=(command,))
                self._own = BashSession(self.workspace, config)
            return await self._own.run_command(command, timeout)
        return await self.bash.run_command(command, timeout)

    async def aclose(self) -> None:
        """Remove the extra copy, if one was made (the bash tool closes its own)."""
        if self._own is not None:
            await self._own.aclose()


def make_verifier(
    ctx: TaskContext,
    workspace: Workspace,
    source_rel: str,
    kind: VerifyKind,
    bash: BashTool | None,
    test_file: Callable[[], str | None] = lambda: None,
) -> tuple[Verifier, SandboxTests | None]:
    """The verifier of one run and the runner to close when the run ends (None if untrusted).

    In an untrusted workspace nothing runs: the project's tests are the project's code.
    """
    settings = ctx.settings
    runner = SandboxTests(bash, workspace, settings) if bash is not None else None
    # Why nothing runs without a bash tool: workspace_tools leaves it out in these two cases
    # only (any other caller gets the Verifier's plain "tests cannot run here").
    unavailable = ""
    if ctx.single_file:
        unavailable = "the file is worked on alone (no workspace folder), so no tests were run"
    elif not settings.trusted_workspace:
        unavailable = (
            "the workspace is not trusted, so its tests were not run (agent.trustedWorkspace)"
        )
    verifier = Verifier(
        workspace,
        source_rel,
        kind,
        command_setting=settings.test_command,
        runner=runner,
        timeout=settings.command_timeout,
        repair_turns=settings.repair_turns,
        progress=ctx.progress,
        unavailable=unavailable,
        test_file=test_file,
    )
    return verifier, runner


def verdict(
    ctx: TaskContext, summary: str, verification: Verification | None, warnings: list[str]
) -> str:
    """The summary with the verification's headline; a failure is also a warning the user sees.

    A failing edit is still returned, not withheld: the editor shows it for review and it can
    be undone, and a sandbox failure (a dependency that needs the network, say) is not always
    the edit's fault. What must not happen is a failing edit that looks like a good one.
    """
    if verification is None:
        return summary
    headline = verification.headline()
    if verification.passed is False:
        warnings.append(headline)
        ctx.progress.warn(headline)
    return f"{summary}\n\n{headline}"
