"""The tools the model sees: read, ls, find, grep, edit, write, finish.

Names and arguments follow pi's, so skills written for pi carry over. Schemas are written
by hand and kept terse: they are part of the fixed prompt prefix that every request sends,
so every character costs prompt processing (and must stay byte-identical for KV-cache
reuse). Argument parsing is forgiving (extra fields are ignored, a few common alternative
names are accepted) but errors name the exact field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from agentls.agent.workspace import ToolError, Workspace
from agentls.edits import EditMatchError, apply_edit_detailed, number_lines
from agentls.llm.types import ToolCall, ToolSpec

__all__ = [
    "Tool",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "build_tools",
]

GREP_MAX_MATCHES = 100
FIND_MAX_FILES = 200
LS_MAX_ENTRIES = 500
MAX_LINE_CHARS = 2000  # a minified line would otherwise eat the context
# One read returns at most this much text (as much as goes inline into the first message),
# so 400 long lines cannot fill the context in one call; the hint says where to go on.
READ_MAX_CHARS = 24_000
GREP_LINE_CHARS = 300
EDIT_CONTEXT_LINES = 2
EDIT_SHOW_MAX_LINES = 40


@dataclass
class ToolResult:
    """What a tool call produced."""

    output: str  # what goes back to the model
    ok: bool = True
    finished: bool = False  # finish was called; output is the summary


A = TypeVar("A", bound=BaseModel)


@dataclass
class Tool(Generic[A]):
    """One tool: its schema for the model, its argument model and its async action.

    A later ``bash`` tool is just another ``Tool`` whose ``run`` awaits a sandbox.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    args_model: type[A]
    run: Callable[[A], Awaitable[ToolResult]]
    describe: Callable[[dict[str, Any]], str]
    usage: str  # shown when the arguments are wrong, e.g. "read(path, offset?, limit?)"

    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        return ToolSpec(self.name, self.description, self.parameters)


def _schema(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}


class _Args(BaseModel):
    # Ignore extra fields: small models add chatter like "reason"; missing ones are named.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _path_field(default: Any = ...) -> Any:
    return Field(default, validation_alias=AliasChoices("path", "file_path", "file", "filename"))


class ReadArgs(_Args):
    """Arguments of ``read``."""

    path: str = _path_field()
    offset: int | None = None
    limit: int | None = None


class LsArgs(_Args):
    """Arguments of ``ls``."""

    path: str | None = _path_field(None)


class FindArgs(_Args):
    """Arguments of ``find``."""

    pattern: str = Field(validation_alias=AliasChoices("pattern", "glob"))


class GrepArgs(_Args):
    """Arguments of ``grep``."""

    pattern: str = Field(validation_alias=AliasChoices("pattern", "regex", "query"))
    path: str | None = _path_field(None)


class EditArgs(_Args):
    """Arguments of ``edit``."""

    path: str = _path_field()
    old_text: str = Field(validation_alias=AliasChoices("old_text", "old_string", "oldText"))
    new_text: str = Field(validation_alias=AliasChoices("new_text", "new_string", "newText"))


class WriteArgs(_Args):
    """Arguments of ``write``."""

    path: str = _path_field()
    content: str = Field(validation_alias=AliasChoices("content", "contents", "text"))


class FinishArgs(_Args):
    """Arguments of ``finish``."""

    summary: str = Field(validation_alias=AliasChoices("summary", "message", "result"))


def _arg(args: dict[str, Any], *names: str, default: str = "") -> str:
    for name in names:
        value = args.get(name)
        if value is not None:
            return str(value)
    return default


def _split_display(text: str) -> list[str]:
    """Lines as `read` numbers them: split at '\\n', CR dropped, no phantom last line."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _clip(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    return f"{line[:limit]} [... {len(line) - limit} more characters]"


class _Actions:
    """The tool bodies, bound to one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace

    async def read(self, args: ReadArgs) -> ToolResult:
        full = self.ws.resolve(args.path)
        lines = _split_display(self.ws.read_text(full))
        rel = self.ws.rel(full)
        total = len(lines)
        if total == 0:
            return ToolResult(f"({rel} is empty)")
        start = max(1, args.offset or 1)
        if start > total:
            raise ToolError(f"offset {start} is past the end of '{rel}' ({total} lines)")
        limit = self.ws.max_read_lines if not args.limit else max(1, args.limit)
        limit = min(limit, self.ws.max_read_lines)
        end = min(total, start + limit - 1)
        shown: list[str] = []
        size = 0
        for line in lines[start - 1 : end]:
            clipped = _clip(line, MAX_LINE_CHARS)
            size += len(clipped) + 7  # the line number, separator and line break
            if shown and size > READ_MAX_CHARS:
                break
            shown.append(clipped)
        end = start + len(shown) - 1
        out = number_lines(shown, start)
        if end < total:
            out += f"\n[lines {start}-{end} of {total}; read with offset={end + 1} to continue]"
        elif start > 1:
            out += f"\n[lines {start}-{end} of {total}]"
        return ToolResult(out)

    async def ls(self, args: LsArgs) -> ToolResult:
        full = self.ws.resolve(args.path or ".")
        entries = self.ws.list_dir(full)
        if not entries:
            return ToolResult(f"({self.ws.rel(full)} is empty)")
        out = "\n".join(entries[:LS_MAX_ENTRIES])
        if len(entries) > LS_MAX_ENTRIES:
            out += f"\n[{LS_MAX_ENTRIES} of {len(entries)} entries shown]"
        return ToolResult(out)

    async def find(self, args: FindArgs) -> ToolResult:
        files = self.ws.find(args.pattern)
        if not files:
            return ToolResult(f"No files match '{args.pattern}'.")
        out = "\n".join(files[:FIND_MAX_FILES])
        if len(files) > FIND_MAX_FILES:
            out += f"\n[{FIND_MAX_FILES} of {len(files)} files shown; use a narrower pattern]"
        return ToolResult(out)

    async def grep(self, args: GrepArgs) -> ToolResult:
        result = self.ws.grep(args.pattern, args.path)
        total = len(result.matches)
        lines: list[str] = []
        if result.literal:
            lines.append("(not a valid regular expression; searched for the literal text)")
        if total == 0:
            lines.append(f"No matches for '{args.pattern}'.")
            return ToolResult("\n".join(lines))
        lines.extend(
            f"{m.path}:{m.line}: {_clip(m.text.strip(), GREP_LINE_CHARS)}"
            for m in result.matches[:GREP_MAX_MATCHES]
        )
        if total > GREP_MAX_MATCHES:
            lines.append(
                f"[{GREP_MAX_MATCHES} of {total} matches shown; "
                "use a narrower pattern or pass path]"
            )
        return ToolResult("\n".join(lines))

    async def edit(self, args: EditArgs) -> ToolResult:
        full = self.ws.resolve(args.path)
        rel = self.ws.rel(full)
        if not self.ws.exists(full):
            raise ToolError(f"file '{rel}' not found; use write to create a new file")
        text = self.ws.read_text(full)
        try:
            applied = apply_edit_detailed(text, args.old_text, args.new_text)
        except EditMatchError as exc:
            raise ToolError(f"edit of '{rel}' failed: {exc.message}") from exc
        self.ws.stage(full, applied.text)
        lines = _split_display(applied.text)
        first = max(1, applied.first_line - EDIT_CONTEXT_LINES)
        last = min(len(lines), applied.last_line + EDIT_CONTEXT_LINES)
        clipped = last - first + 1 > EDIT_SHOW_MAX_LINES
        if clipped:
            last = first + EDIT_SHOW_MAX_LINES - 1
        note = f" ({applied.note})" if applied.note else ""
        out = f"Edited {rel}{note}. Lines {first}-{last} now:\n"
        out += number_lines(
            [_clip(line, MAX_LINE_CHARS) for line in lines[first - 1 : last]], first
        )
        if clipped:
            out += f"\n[... read with offset={last + 1} to see the rest of the change]"
        return ToolResult(out)

    async def write(self, args: WriteArgs) -> ToolResult:
        full = self.ws.resolve(args.path)
        existed = self.ws.exists(full)
        self.ws.stage(full, args.content)
        count = len(_split_display(args.content))
        verb = "Replaced" if existed else "Created"
        return ToolResult(f"{verb} {self.ws.rel(full)} ({count} lines).")

    async def finish(self, args: FinishArgs) -> ToolResult:
        return ToolResult(args.summary.strip() or "(no summary)", finished=True)


def _builtin_tools(workspace: Workspace) -> list[Tool[Any]]:
    act = _Actions(workspace)
    return [
        Tool(
            "read",
            "Read a file as numbered lines (unsaved and staged changes included).",
            _schema(
                ["path"],
                path=_STR,
                offset={**_INT, "description": "first line, 1-based"},
                limit=_INT,
            ),
            ReadArgs,
            act.read,
            lambda a: f"reading {_arg(a, 'path', 'file_path')}",
            "read(path, offset?, limit?)",
        ),
        Tool(
            "ls",
            "List a directory (default: workspace root).",
            _schema([], path=_STR),
            LsArgs,
            act.ls,
            lambda a: f"listing {_arg(a, 'path', default='.')}",
            "ls(path?)",
        ),
        Tool(
            "find",
            "Find files by glob, e.g. '*.py' or 'src/**/test_*.py'.",
            _schema(["pattern"], pattern=_STR),
            FindArgs,
            act.find,
            lambda a: f"finding {_arg(a, 'pattern')}",
            "find(pattern)",
        ),
        Tool(
            "grep",
            "Search file contents by regex; prints file:line: text.",
            _schema(["pattern"], pattern=_STR, path=_STR),
            GrepArgs,
            act.grep,
            lambda a: f"searching for {_arg(a, 'pattern')!r}",
            "grep(pattern, path?)",
        ),
        Tool(
            "edit",
            "Replace old_text, which must occur exactly once in the file, with new_text.",
            _schema(["path", "old_text", "new_text"], path=_STR, old_text=_STR, new_text=_STR),
            EditArgs,
            act.edit,
            lambda a: f"editing {_arg(a, 'path', 'file_path')}",
            "edit(path, old_text, new_text)",
        ),
        Tool(
            "write",
            "Create a file, or replace its whole content.",
            _schema(["path", "content"], path=_STR, content=_STR),
            WriteArgs,
            act.write,
            lambda a: f"writing {_arg(a, 'path', 'file_path')}",
            "write(path, content)",
        ),
        Tool(
            "finish",
            "End the task with a short summary of what you did.",
            _schema(["summary"], summary=_STR),
            FinishArgs,
            act.finish,
            lambda _a: "finishing",
            "finish(summary)",
        ),
    ]


def _accepted_names(model: type[BaseModel]) -> set[str]:
    """Field names plus the alternative names they accept."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if isinstance(info.validation_alias, AliasChoices):
            names.update(c for c in info.validation_alias.choices if isinstance(c, str))
    return names


def _format_validation(tool: Tool[Any], exc: ValidationError, arguments: dict[str, Any]) -> str:
    problems: list[str] = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "missing":
            problems.append(f"missing required argument '{field}'")
        else:
            got = repr(error.get("input"))
            got = got if len(got) <= 60 else got[:57] + "..."
            problems.append(f"argument '{field}': {error['msg']} (got {got})")
    known = _accepted_names(tool.args_model)
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

    ``extra`` tools (such as a future ``bash``) go before ``finish``. Unknown names raise
    ``ValueError`` so a typo in a task shows up at once, not as a missing tool mid-run.
    """
    tools = _builtin_tools(workspace)
    *body, finish = tools
    tools = [*body, *extra, finish]
    if names is None:
        return ToolRegistry(tools)
    wanted = list(names)
    available = {tool.name for tool in tools}
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ValueError(f"unknown tool names: {', '.join(unknown)}")
    return ToolRegistry(tool for tool in tools if tool.name in wanted)
