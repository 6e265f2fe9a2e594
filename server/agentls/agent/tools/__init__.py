"""The tools the model sees: read, ls, find, grep, edit, write, finish (``bash`` is in
``agentls.agent.bash_tool``).

Names and arguments follow pi's, so skills written for pi carry over. Each tool is one
module holding one declaration (:class:`~agentls.agent.tools.base.ToolDef`): the schema the
model sees, validation, the usage text, the progress text and the ``mutates`` flag all
derive from it. The schemas are part of the fixed prompt prefix that every request sends,
so they are kept terse and byte-identical. Argument parsing is forgiving (extra fields are
ignored, a few common alternative names are accepted) but errors name the exact field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from agentls.agent.edit_match import EditMatchError
from agentls.agent.tools import edit, find, finish, grep, ls, read, write
from agentls.agent.tools.base import (
    Tool,
    ToolDef,
    ToolResult,
    call_paths,
    understood_names,
)
from agentls.agent.tools.read import READ_MAX_CHARS
from agentls.agent.workspace import ToolError, Workspace
from agentls.llm.types import ToolCall, ToolSpec

__all__ = [
    "BUILTIN",
    "MUTATING_TOOLS",
    "READ_MAX_CHARS",
    "Tool",
    "ToolDef",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "build_tools",
    "paths_of_call",
]

# The built-in declarations in the order the model sees them (``finish`` last; extra tools
# such as ``bash`` go before it).
BUILTIN: tuple[ToolDef[Any], ...] = (
    read.TOOL,
    ls.TOOL,
    find.TOOL,
    grep.TOOL,
    edit.TOOL,
    write.TOOL,
    finish.TOOL,
)
_BY_NAME: dict[str, ToolDef[Any]] = {decl.name: decl for decl in BUILTIN}

# Built-in tools whose success changes the staged view (context fitting reads this; the loop
# asks the run's registry, which knows the extra tools too).
MUTATING_TOOLS = frozenset(decl.name for decl in BUILTIN if decl.mutates)


def paths_of_call(name: str, arguments: Mapping[str, Any]) -> list[str]:
    """The workspace paths a call of a built-in tool names, as written (nested ones too)."""
    decl = _BY_NAME.get(name)
    if decl is None or not isinstance(arguments, Mapping):
        return []
    return call_paths(decl.args, arguments)


def _format_validation(tool: Tool[Any], exc: ValidationError, arguments: dict[str, Any]) -> str:
    problems: list[str] = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "missing":
            problems.append(f"missing required argument '{field}'")
        elif error["type"] == "value_error":
            problems.append(str(error.get("ctx", {}).get("error", error["msg"])))
        else:
            got = repr(error.get("input"))
            got = got if len(got) <= 60 else got[:57] + "..."
            problems.append(f"argument '{field}': {error['msg']} (got {got})")
    known = understood_names(tool.args_model)
    unexpected = sorted(set(arguments) - known)
    if unexpected:
        problems.append("unexpected " + ", ".join(f"'{name}'" for name in unexpected))
    return f"invalid arguments for {tool.name}: {'; '.join(problems)}. Usage: {tool.usage}"


class ToolRegistry:
    """The tools of one run, in a fixed order, and the one place tool calls are executed."""

    def __init__(self, tools: Iterable[Tool[Any]]) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"duplicate tool name {tool.name!r}")
            self._tools[tool.name] = tool

    def specs(self) -> list[ToolSpec]:
        """Tool specs in registration order; identical across calls and runs."""
        return [tool.spec() for tool in self._tools.values()]

    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._tools)

    def get(self, name: str) -> Tool[Any] | None:
        """The tool called ``name``, if registered."""
        return self._tools.get(name)

    def mutates(self, name: str) -> bool:
        """Whether a successful call of ``name`` changes the staged view."""
        tool = self._tools.get(name)
        return tool is not None and tool.mutates

    async def execute(self, call: ToolCall) -> ToolResult:
        """Run one tool call. Bad input never raises: it becomes ``ok=False`` with the reason."""
        tool = self._tools.get(call.name) or self._tools.get(call.name.strip().lower())
        if tool is None:
            return _error(f"unknown tool '{call.name}'. Available tools: {', '.join(self._tools)}")
        arguments = call.arguments
        if not isinstance(arguments, dict):
            return _error(f"arguments of {tool.name} must be a JSON object. Usage: {tool.usage}")
        try:
            parsed = tool.args_model.model_validate(arguments)
        except ValidationError as exc:
            message = _format_validation(tool, exc, arguments)
            raw = call.raw_arguments.strip()
            if not arguments and raw not in ("", "{}"):
                message += f". The arguments were not valid JSON: {raw[:200]}"
            return _error(message)
        try:
            return await tool.run(parsed)
        except ToolError as exc:
            return _error(str(exc))
        except EditMatchError as exc:
            return _error(exc.message)
        except Exception as exc:  # a tool bug must not kill the run; the model can go on
            return _error(f"{tool.name} failed: {type(exc).__name__}: {exc}")

    def describe(self, call: ToolCall) -> str:
        """Short human text for progress, e.g. 'editing src/a.py'."""
        tool = self._tools.get(call.name)
        if tool is None:
            return f"calling unknown tool {call.name}"
        try:
            return tool.describe(call.arguments if isinstance(call.arguments, dict) else {})
        except Exception:
            return f"running {tool.name}"


def _error(message: str) -> ToolResult:
    return ToolResult(f"Error: {message}", ok=False)


def build_tools(
    workspace: Workspace,
    names: Iterable[str] | None = None,
    extra: Iterable[Tool[Any]] = (),
) -> ToolRegistry:
    """The registry for a run: all built-in tools, or only ``names`` (kept in canonical order).

    ``extra`` tools (such as ``bash``) go before ``finish``. Unknown names raise
    ``ValueError`` so a typo in a task shows up at once, not as a missing tool mid-run.
    """
    *body, last = (decl.bind(workspace) for decl in BUILTIN)
    tools = [*body, *extra, last]
    if names is None:
        return ToolRegistry(tools)
    wanted = list(names)
    available = {tool.name for tool in tools}
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ValueError(f"unknown tool names: {', '.join(unknown)}")
    return ToolRegistry(tool for tool in tools if tool.name in wanted)
