"""One declaration per tool: schema, validation, usage, progress text and flags derive from it,
the prompt prefix stays byte-stable, and the prompt and skills agree with the schemas."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.bash_tool import BASH, make_bash_tool
from agentls.agent.context import default_protected
from agentls.agent.prompts import SYSTEM_PROMPT
from agentls.agent.toolmode import response_schema, tools_prompt
from agentls.agent.tools import BUILTIN, MUTATING_TOOLS, ToolRegistry, build_tools, paths_of_call
from agentls.agent.tools.base import schema_of, signature
from agentls.agent.workspace import Workspace
from agentls.llm.types import Message, ToolCall
from agentls.settings import Settings
from agentls.skills import BUILTIN_DIR

GOLDEN = Path(__file__).parent / "golden" / "prompt_prefix.json"


def registries(root: Path) -> dict[str, ToolRegistry]:
    ws = Workspace(root)
    return {
        "untrusted": build_tools(ws),
        "trusted": build_tools(ws, extra=[make_bash_tool(ws, Settings())]),
    }


def prefix_snapshot(root: Path) -> dict[str, Any]:
    """Everything of the fixed prefix that the model server sees, in both tool modes."""
    out: dict[str, Any] = {"system": SYSTEM_PROMPT}
    for key, registry in registries(root).items():
        specs = registry.specs()
        out[key] = {
            "tools": [
                {"name": s.name, "description": s.description, "parameters": s.parameters}
                for s in specs
            ],
            "constrained_prompt": tools_prompt(specs),
            "response_schema": response_schema(specs),
        }
    return out


def test_prefix_is_byte_identical_to_the_golden_copy(tmp_path: Path) -> None:
    """A change to the cached prefix is deliberate: update the golden copy with
    AGENTLS_UPDATE_GOLDEN=1 and say why in the commit (it costs every user's KV cache)."""
    now = json.dumps(prefix_snapshot(tmp_path), indent=1, ensure_ascii=False) + "\n"
    if os.environ.get("AGENTLS_UPDATE_GOLDEN"):
        GOLDEN.write_text(now)
    assert now == GOLDEN.read_text()


def test_every_tool_is_declared_once_and_derives_the_rest() -> None:
    for decl in (*BUILTIN, BASH):
        assert decl.parameters is schema_of(decl.args)  # one cached derivation
        assert decl.usage == f"{decl.name}({signature(decl.parameters)})"
        assert decl.spec().parameters == decl.parameters
        # Terse: no pydantic titles, defaults or nulls reach the prefix.
        text = json.dumps(decl.parameters)
        for noise in ('"title"', '"default"', '"null"', '"anyOf"', "$ref", "$defs"):
            assert noise not in text, (decl.name, noise)
    assert {"edit", "write"} == MUTATING_TOOLS
    registry = registries(Path("."))["trusted"]
    assert [n for n in registry.names() if registry.mutates(n)] == ["edit", "write"]
    assert not registry.mutates("bash") and not registry.mutates("nope")


def test_usage_and_describe_come_from_the_declaration() -> None:
    tools = registries(Path("."))["trusted"]
    usages = {name: tools.get(name).usage for name in tools.names()}  # type: ignore[union-attr]
    assert usages["read"] == "read(path, offset?, limit?)"
    assert usages["ls"] == "ls(path?)"
    assert usages["bash"] == "bash(command)"
    assert tools.describe(ToolCall("ls", {})) == "listing ."
    assert tools.describe(ToolCall("read", {"file": "a.py"})) == "reading a.py"
    assert tools.describe(ToolCall("bash", {"cmd": "x" * 80})) == "running " + "x" * 60


def test_context_follows_the_declared_path_arguments() -> None:
    assert paths_of_call("read", {"filename": "a.py"}) == ["a.py"]
    assert paths_of_call("grep", {"pattern": "x"}) == []
    assert paths_of_call("bash", {"command": "pytest"}) == []
    # An edit that names its file under an alternative name is still the file's newest state.
    messages = [
        Message("system", "s"),
        Message("user", "task"),
        Message("assistant", "", tool_calls=[ToolCall("read", {"path": "a.py"}, id="1")]),
        Message("tool", "   1| x", tool_call_id="1", name="read"),
        Message("assistant", "", tool_calls=[ToolCall("edit", {"file_path": "./a.py"}, id="2")]),
        Message("tool", "Edited a.py", tool_call_id="2", name="edit"),
        Message("user", "note"),
        Message("user", "note"),
        Message("user", "note"),
    ]
    protected = default_protected(messages)
    assert protected(3, messages[3]) and protected(5, messages[5])


# -- the prompt agrees with the schemas ---------------------------------------------------


def _mentions(tool: str) -> str:
    """The system prompt's lines that name ``tool``."""
    lines = [line for line in SYSTEM_PROMPT.splitlines() if re.search(rf"\b{tool}\b", line)]
    return " ".join(lines).lower()


def _schema_words(parameters: dict[str, Any]) -> set[str]:
    words = set(parameters.get("properties", {}))
    for prop in parameters.get("properties", {}).values():
        if isinstance(prop.get("items"), dict):
            words |= _schema_words(prop["items"])
    return words


ALL_ARGUMENTS = set().union(*(_schema_words(d.parameters) for d in (*BUILTIN, BASH)))
TOOL_NAMES = {d.name for d in (*BUILTIN, BASH)}
# What the system prompt claims about a tool, which its description must say too: each
# claim is a tuple of ways to say it; the prompt and the description each use one of them.
CLAIMS: dict[str, list[tuple[str, ...]]] = {
    "edit": [("old_text",), ("to_path",), ("move",), ("line",)],
    "write": [("create",), ("whole content",)],
    "finish": [("summary",)],
}


def test_every_tool_named_in_the_prompt_exists_and_its_rules_match_its_description() -> None:
    rule_names = set(re.findall(r"^- (\w+)(?: with \w+)?:", SYSTEM_PROMPT, re.M))
    assert rule_names <= TOOL_NAMES, rule_names - TOOL_NAMES
    descriptions = {d.name: d.description.lower() for d in (*BUILTIN, BASH)}
    for tool, claims in CLAIMS.items():
        said = _mentions(tool)
        assert said, tool
        for ways in claims:
            assert any(way in descriptions[tool] for way in ways), (tool, ways)
            assert any(way in said for way in ways), (tool, ways)
    # The old contradiction: the prompt may not restrict write to new files while the tool
    # replaces whole contents.
    assert "only for new files" not in SYSTEM_PROMPT


def _identifiers(text: str) -> set[str]:
    """snake_case words (argument names look like this) outside code spans of other code."""
    return set(re.findall(r"(?<![\w.`])([a-z]+(?:_[a-z]+)+)(?![\w(])", text))


def test_argument_names_in_the_prompt_exist_in_the_schemas() -> None:
    assert _identifiers(SYSTEM_PROMPT) <= ALL_ARGUMENTS, _identifiers(SYSTEM_PROMPT) - ALL_ARGUMENTS


# The shipped skills that tell the model how to call tools; a missing one fails, not skips.
TOOL_SKILLS = ["edit-tool-for-small-models.md", "split-module-into-package.md"]


@pytest.mark.parametrize("name", TOOL_SKILLS)
def test_tool_and_argument_names_in_skills_exist(name: str) -> None:
    text = (BUILTIN_DIR / name).read_text().split("---", 2)[2]
    assert _identifiers(text) <= ALL_ARGUMENTS, _identifiers(text) - ALL_ARGUMENTS
    # `tool(` and `tool` with an argument list name real tools.
    for called in re.findall(r"`(\w+)\(", text):
        assert called in TOOL_NAMES, called
    for word in re.findall(r"\b(?:with|use|call|then) `([a-z]\w*)`", text):
        assert word in TOOL_NAMES or word in ALL_ARGUMENTS, (name, word)
