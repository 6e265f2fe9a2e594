"""The public LSP contract of agentls: params and results (the task methods and commands are
named in tasks/registry.py).

Params arrive from pygls as nested namedtuples (custom methods) or raw JSON values (command
arguments); both are normalised to plain JSON first and then parsed into ``AgentParams``.
Results are built as JSON-ready dicts so that what goes on the wire is exactly what the
TypedDicts here say, whatever the pygls converter would do with richer objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.uris import from_fs_path, to_fs_path

from agentls.agent.stats import Stats
from agentls.tasks.base import TextRange, Verification

# The task requests and commands (agent/explain, agent.explain, ...) are declared with their
# tasks in tasks/registry.py. agent/status is no task.
STATUS = "agent/status"

ProgressToken = int | str


class ProtocolError(ValueError):
    """Params that do not follow the contract; the server answers InvalidParams."""


@dataclass(frozen=True)
class AgentParams:
    """Parsed params of agent/explain, agent/refactor, agent/generateTests (or a command)."""

    uri: str
    range: TextRange | None = None
    instruction: str | None = None
    work_done_token: ProgressToken | None = None

    def path(self) -> Path:
        """The document's file system path; only ``file:`` URIs are supported."""
        fs_path = to_fs_path(self.uri)
        if not fs_path or not self.uri.startswith("file:"):
            raise ProtocolError(f"only file: URIs are supported, got {self.uri!r}")
        return Path(fs_path)


def to_plain(value: Any) -> Any:
    """Turn pygls' namedtuple params (and lists of them) back into plain JSON values."""
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        fields: dict[str, Any] = cast(Any, value)._asdict()
        return {key: to_plain(item) for key, item in fields.items()}
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return value


def _position(raw: Any, what: str) -> tuple[int, int]:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{what} must be a position object with line and character")
    line, character = raw.get("line"), raw.get("character")
    if not isinstance(line, int) or not isinstance(character, int) or line < 0 or character < 0:
        raise ProtocolError(f"{what} needs non-negative integer line and character")
    return line, character


def range_from_json(raw: Any) -> TextRange | None:
    """An LSP Range as JSON -> TextRange; None (whole file) for a missing or empty range."""
    raw = to_plain(raw)
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProtocolError("range must be an object with start and end")
    start = _position(raw.get("start"), "range.start")
    end = _position(raw.get("end"), "range.end")
    if end < start:
        start, end = end, start  # a backwards selection is still the same text
    if start == end:
        return None  # a bare cursor means "the whole file", as code actions do
    return TextRange(start[0], start[1], end[0], end[1])


def range_from_lsp(rng: types.Range) -> TextRange | None:
    """An lsprotocol Range -> TextRange; None when empty (the whole file)."""
    return range_from_json(
        {
            "start": {"line": rng.start.line, "character": rng.start.character},
            "end": {"line": rng.end.line, "character": rng.end.character},
        }
    )


def range_to_json(rng: TextRange) -> dict[str, Any]:
    """TextRange -> LSP Range JSON (as sent in command arguments)."""
    return {
        "start": {"line": rng.start_line, "character": rng.start_character},
        "end": {"line": rng.end_line, "character": rng.end_character},
    }


def _instruction(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ProtocolError("instruction must be a string")
    return raw.strip() or None


def parse_params(raw: Any) -> AgentParams:
    """Parse ``{textDocument:{uri}, range?, instruction?, workDoneToken?}``."""
    data = to_plain(raw)
    if not isinstance(data, Mapping):
        raise ProtocolError("params must be an object with textDocument.uri")
    document = data.get("textDocument")
    uri = document.get("uri") if isinstance(document, Mapping) else None
    if not isinstance(uri, str) or not uri:
        raise ProtocolError("params.textDocument.uri is required")
    token = data.get("workDoneToken")
    if token is not None and not isinstance(token, int | str):
        raise ProtocolError("workDoneToken must be a string or an integer")
    return AgentParams(
        uri=uri,
        range=range_from_json(data.get("range")),
        instruction=_instruction(data.get("instruction")),
        work_done_token=token,
    )


def parse_command_args(args: Sequence[Any]) -> AgentParams:
    """Parse command arguments ``[uri, range?, instruction?]`` (range may be null)."""
    values = to_plain(list(args))
    if not values or not isinstance(values[0], str) or not values[0]:
        raise ProtocolError("command arguments must be [uri, range?, instruction?]")
    if len(values) > 3:
        raise ProtocolError(f"expected at most 3 command arguments, got {len(values)}")
    return AgentParams(
        uri=values[0],
        range=range_from_json(values[1]) if len(values) > 1 else None,
        instruction=_instruction(values[2]) if len(values) > 2 else None,
    )


def command_arguments(
    uri: str, rng: TextRange | None = None, instruction: str | None = None
) -> list[Any]:
    """Build ``[uri, range?, instruction?]`` for a Command; trailing absent values are left off."""
    args: list[Any] = [uri, range_to_json(rng) if rng else None, instruction]
    while args and args[-1] is None:
        args.pop()
    return args


def path_to_uri(path: Path) -> str:
    """A file path -> ``file:`` URI as pygls spells it."""
    uri = from_fs_path(str(path))
    if uri is None:  # pragma: no cover - from_fs_path only fails on odd platforms
        raise ProtocolError(f"cannot make a URI of {path}")
    return str(uri)


# ---- results -------------------------------------------------------------------------------


class ExplainResultJson(TypedDict):
    """Result of agent/explain."""

    markdown: str
    stats: dict[str, Any]


class VerificationJson(TypedDict):
    """What ran to check an edit: ``passed`` is null when nothing could be verified (``note``
    says why); ``output`` is the tail of the last run; ``attempts`` counts the runs."""

    command: str | None
    passed: bool | None
    exitCode: int | None
    output: str
    attempts: int
    note: str


class RefactorResultJson(TypedDict):
    """Result of agent/refactor: a WorkspaceEdit the client applies."""

    summary: str
    edit: dict[str, Any]
    stats: dict[str, Any]
    verification: VerificationJson | None


class GenerateTestsResultJson(TypedDict):
    """Result of agent/generateTests; ``testFile`` is the URI of the test module written."""

    summary: str
    edit: dict[str, Any]
    testFile: str | None
    stats: dict[str, Any]
    verification: VerificationJson | None


class SkillJson(TypedDict):
    """One loaded skill in agent/status: where it came from (builtin, user, workspace)."""

    name: str
    source: str
    path: str
    tokens: int


class StatusResultJson(TypedDict):
    """Result of agent/status; never an error, ``reachable`` says whether the server answered."""

    backend: str
    baseUrl: str
    model: str | None
    reachable: bool
    contextLength: int
    toolMode: str
    lastStats: dict[str, Any] | None
    skills: list[SkillJson]  # the effective skills, after user/workspace overrides
    skillWarnings: list[str]  # skill files that could not be used, and why
    modelContextLength: NotRequired[int | None]
    # The window the server actually loaded (LM Studio, llama-server, vLLM, Ollama /v1); requests
    # are fitted to the smaller of it and contextLength.
    loadedContextLength: NotRequired[int | None]
    supportsTools: NotRequired[bool | None]
    error: NotRequired[str]


class CommandResultJson(TypedDict):
    """What agent.* commands answer with, after applying or showing the result."""

    ok: bool
    summary: NotRequired[str]
    applied: NotRequired[bool]
    failureReason: NotRequired[str]
    document: NotRequired[str]
    stats: NotRequired[dict[str, Any]]
    error: NotRequired[str]
    hint: NotRequired[str]
    verification: NotRequired[VerificationJson | None]


_converter = get_converter()


def workspace_edit_to_json(edit: types.WorkspaceEdit) -> dict[str, Any]:
    """Serialise a WorkspaceEdit the way lsprotocol does (camelCase, no nulls)."""
    data = _converter.unstructure(edit, types.WorkspaceEdit)
    assert isinstance(data, dict)
    return data


def explain_result(markdown: str, stats: Stats) -> ExplainResultJson:
    """Build the agent/explain result."""
    return {"markdown": markdown, "stats": stats.to_json()}


def verification_json(verification: Verification | None) -> VerificationJson | None:
    """A Verification as JSON (None stays None: nothing was changed, so nothing to check)."""
    if verification is None:
        return None
    return cast(VerificationJson, verification.to_json())


def refactor_result(
    summary: str,
    edit: types.WorkspaceEdit,
    stats: Stats,
    verification: Verification | None = None,
) -> RefactorResultJson:
    """Build the agent/refactor result."""
    return {
        "summary": summary,
        "edit": workspace_edit_to_json(edit),
        "stats": stats.to_json(),
        "verification": verification_json(verification),
    }


def generate_tests_result(
    summary: str,
    edit: types.WorkspaceEdit,
    test_file: Path | None,
    stats: Stats,
    verification: Verification | None = None,
) -> GenerateTestsResultJson:
    """Build the agent/generateTests result."""
    return {
        "summary": summary,
        "edit": workspace_edit_to_json(edit),
        "testFile": path_to_uri(test_file) if test_file else None,
        "stats": stats.to_json(),
        "verification": verification_json(verification),
    }
