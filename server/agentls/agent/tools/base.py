"""One declaration per tool, and everything derived from it.

A tool is declared once, as a :class:`ToolDef`: its name, the description the model reads,
a pydantic argument model, a progress template and whether it changes the staged view.
From that one declaration come the JSON schema the model sees (:func:`schema_of`), the
validation of its arguments (the model itself), the usage text shown on bad arguments
(:func:`signature`), the progress text (:meth:`ToolDef.describe`), the ``mutates`` flag the
loop's repeat detection reads, and the path arguments context fitting protects
(:func:`call_paths`).

The schemas are part of the fixed prompt prefix that every request sends, so the derived
schema is post-processed to stay terse (no titles, defaults or model docstrings; ``X | None``
is just ``X``) and is byte-identical from run to run.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from agentls.agent.workspace import Workspace
from agentls.llm.types import ToolSpec

MAX_LINE_CHARS = 2000  # a minified line would otherwise eat the context

# Names a small model uses for a path, beside the schema's own "path".
PATH_ALIASES = ("path", "file_path", "file", "filename")


@dataclass
class ToolResult:
    """What a tool call produced."""

    output: str  # what goes back to the model
    ok: bool = True
    finished: bool = False  # finish was called; output is the summary


class Args(BaseModel):
    """Base of every tool's argument model.

    Extra fields are ignored: small models add chatter like "reason"; missing ones are named.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


# Marks a field as naming a file of the workspace (context fitting follows those).
_PATH_MARK = "agentls_path"


def path_field(default: Any = ..., *names: str) -> Any:
    """A field that names a workspace file; accepts the usual alternative names."""
    choices = names or PATH_ALIASES
    return Field(
        default, validation_alias=AliasChoices(*choices), json_schema_extra={_PATH_MARK: True}
    )


def alias_field(default: Any, *names: str, description: str | None = None) -> Any:
    """A field that also accepts alternative names (the first is the schema's)."""
    return Field(default, validation_alias=AliasChoices(*names), description=description)


A = TypeVar("A", bound=BaseModel)
Action = Callable[[Workspace, A], Awaitable[ToolResult]]


@dataclass(frozen=True)
class ToolDef(Generic[A]):
    """A tool's one declaration; schema, usage, progress text and flags derive from it.

    ``describe``: progress text as a format template over the arguments, e.g.
    ``"reading {path}"`` (a missing argument reads as its default, else as empty).
    ``action``: the body, given the run's workspace; None for tools bound another way
    (``bash`` needs its sandbox session).
    """

    name: str
    description: str
    args: type[A]
    describe_template: str
    action: Action[A] | None = None
    mutates: bool = False

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments, as the model sees it."""
        return schema_of(self.args)

    @property
    def usage(self) -> str:
        """Shown when the arguments are wrong, e.g. ``read(path, offset?, limit?)``."""
        return f"{self.name}({signature(self.parameters)})"

    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        return ToolSpec(self.name, self.description, self.parameters)

    def describe(self, arguments: Mapping[str, Any]) -> str:
        """Short human text for progress, e.g. 'reading src/a.py'."""
        return string.Formatter().vformat(
            self.describe_template, (), _DescribeValues(self.args, arguments)
        )

    def bind(self, workspace: Workspace) -> Tool[A]:
        """The tool for one run over ``workspace``."""
        action = self.action
        if action is None:
            raise ValueError(f"tool {self.name!r} has no workspace action; bind it by hand")

        async def run(args: A) -> ToolResult:
            return await action(workspace, args)

        return Tool(self, run)


@dataclass
class Tool(Generic[A]):
    """A declared tool bound to one run: the declaration and its action."""

    decl: ToolDef[A]
    run: Callable[[A], Awaitable[ToolResult]]

    @property
    def name(self) -> str:
        """The name the model calls."""
        return self.decl.name

    @property
    def description(self) -> str:
        """What the model reads about the tool."""
        return self.decl.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The derived JSON schema of the arguments."""
        return self.decl.parameters

    @property
    def args_model(self) -> type[A]:
        """The pydantic model that validates the arguments."""
        return self.decl.args

    @property
    def usage(self) -> str:
        """The call signature shown with argument errors."""
        return self.decl.usage

    @property
    def mutates(self) -> bool:
        """Whether a successful call changes the staged view."""
        return self.decl.mutates

    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        return self.decl.spec()

    def describe(self, arguments: Mapping[str, Any]) -> str:
        """Short human text for progress."""
        return self.decl.describe(arguments)


def split_display(text: str) -> list[str]:
    """Lines as `read` numbers them: split at '\\n', CR dropped, no phantom last line."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def clip(line: str, limit: int = MAX_LINE_CHARS) -> str:
    """A line cut to ``limit`` characters, saying how much was left out."""
    if len(line) <= limit:
        return line
    return f"{line[:limit]} [... {len(line) - limit} more characters]"


# -- names -------------------------------------------------------------------------------


def accepted_names(info: FieldInfo, name: str) -> tuple[str, ...]:
    """The names a field accepts in a call: its schema name first, then the alternatives."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        names = tuple(c for c in alias.choices if isinstance(c, str))
        return names or (name,)
    if isinstance(alias, str):
        return (alias,)
    return (info.alias or name,)


def schema_name(info: FieldInfo, name: str) -> str:
    """The name the schema shows for a field."""
    return accepted_names(info, name)[0]


def model_names(model: type[BaseModel]) -> set[str]:
    """Every argument name a model accepts (schema names and alternatives)."""
    return {n for name, info in model.model_fields.items() for n in accepted_names(info, name)}


def understood_names(model: type[BaseModel]) -> set[str]:
    """Names a call may use at its top level: the model's own and its nested models' (``edit``
    reads a lone change's fields written at the top level as that change)."""
    names = model_names(model)
    for nested in _submodels(model):
        names |= model_names(nested)
    return names


class _DescribeValues(dict[str, str]):
    """Argument values by schema name for a describe template; missing ones read as defaults."""

    def __init__(self, model: type[BaseModel], arguments: Mapping[str, Any]) -> None:
        super().__init__()
        for name, info in model.model_fields.items():
            value = next(
                (arguments[n] for n in accepted_names(info, name) if arguments.get(n) is not None),
                None,
            )
            if value is None:
                value = info.default if isinstance(info.default, str) else ""
            self[schema_name(info, name)] = str(value)

    def __missing__(self, key: str) -> str:
        return ""


# -- the schema --------------------------------------------------------------------------

# Keys kept in a derived schema, in this order (dict order is the bytes the model reads).
_KEPT_KEYS = ("type", "properties", "required", "items", "description")


def _resolve(node: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = defs[ref.rsplit("/", 1)[-1]]
        return resolved
    return node


def _compact(node: dict[str, Any], defs: Mapping[str, Any], top: bool = False) -> dict[str, Any]:
    """A pydantic schema node, made terse: no titles or defaults, ``X | None`` as ``X``."""
    node = _resolve(node, defs)
    variants = node.get("anyOf")
    if isinstance(variants, list):
        real = [v for v in variants if v != {"type": "null"}]
        if len(real) == 1:
            # Optional[X]: the model sees X; its description (if any) stays on the field.
            merged = {**_resolve(real[0], defs)}
            if "description" in node:
                merged["description"] = node["description"]
            node = merged
    out: dict[str, Any] = {}
    for key in _KEPT_KEYS:
        if key not in node:
            continue
        if key == "properties":
            out[key] = {k: _compact(v, defs) for k, v in node[key].items()}
        elif key == "items":
            out[key] = _compact(node[key], defs)
        elif key == "description" and node.get("type") == "object":
            continue  # a model's docstring is for the code's readers, not the model
        else:
            out[key] = node[key]
    if node.get("type") == "object" and "properties" in node and "required" not in out and top:
        # The top level always says what is required, even nothing (as the hand-written
        # schemas did: the bytes of the prefix stay as they were).
        out = {"type": "object", "properties": out["properties"], "required": []}
    return out


def _renamed(model: type[BaseModel], schema: dict[str, Any]) -> dict[str, Any]:
    """Property names as the model should write them (a field ``copy_`` is ``copy``)."""
    props = schema.get("properties", {})
    fields = model.model_fields
    schema["properties"] = {
        (schema_name(fields[k], k) if k in fields else k): v for k, v in props.items()
    }
    if "required" in schema:
        schema["required"] = [
            schema_name(fields[k], k) if k in fields else k for k in schema["required"]
        ]
    return schema


@functools.cache
def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The terse JSON schema of an argument model (cached: the same dict every time).

    Derived from pydantic's own schema, so validation and schema cannot disagree.
    """
    raw = model.model_json_schema(by_alias=False)
    defs = raw.get("$defs", {})
    for def_name, node in defs.items():
        nested = _nested_model(model, def_name)
        if nested is not None:
            _renamed(nested, node)
    return _compact(_renamed(model, raw), defs, top=True)


def _nested_model(model: type[BaseModel], def_name: str) -> type[BaseModel] | None:
    for sub in _submodels(model):
        if sub.__name__ == def_name:
            return sub
    return None


def _submodels(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """Argument models nested in ``model``'s fields (``list[Item]``, ``Item | None``)."""
    for info in model.model_fields.values():
        yield from _models_in(info.annotation)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        yield from _submodels(annotation)
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _models_in(arg)


def signature(parameters: Mapping[str, Any]) -> str:
    """Arguments as a call signature: ``path, offset?, limit?``; list items in brackets."""
    props = parameters.get("properties", {})
    required = set(parameters.get("required", []))
    parts: list[str] = []
    for name, prop in props.items():
        text = name if name in required else f"{name}?"
        items = prop.get("items") if isinstance(prop, Mapping) else None
        if isinstance(items, Mapping) and items.get("type") == "object":
            text += f": [{{{signature(items)}}}]"
        parts.append(text)
    return ", ".join(parts)


# -- paths -------------------------------------------------------------------------------


def path_fields(model: type[BaseModel]) -> list[tuple[str, ...]]:
    """The accepted names of each field of ``model`` that names a workspace file."""
    return [
        accepted_names(info, name) for name, info in model.model_fields.items() if _is_path(info)
    ]


def _is_path(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get(_PATH_MARK) is True


def call_paths(model: type[BaseModel], arguments: Mapping[str, Any]) -> list[str]:
    """Every path a call's raw arguments name, in argument order (nested lists included)."""
    found: list[str] = []
    for name, info in model.model_fields.items():
        names = accepted_names(info, name)
        if _is_path(info):
            value = next((arguments[n] for n in names if arguments.get(n) is not None), None)
            if isinstance(value, str):
                found.append(value)
            continue
        for nested in _models_in(info.annotation):
            items = next((arguments[n] for n in names if arguments.get(n) is not None), None)
            if isinstance(items, list):
                for item in items:
                    if isinstance(item, Mapping):
                        found.extend(call_paths(nested, item))
            break
    return found
