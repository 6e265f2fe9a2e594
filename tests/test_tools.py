"""The model's tools as the model experiences them: outputs, errors, schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentls.agent.tools import READ_MAX_CHARS, ToolRegistry, ToolResult, build_tools
from agentls.agent.workspace import Workspace
from agentls.llm.types import ToolCall


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    )
    return tmp_path


@pytest.fixture
def tools(root: Path) -> ToolRegistry:
    return build_tools(Workspace(root, max_read_lines=400))


async def call(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    return await registry.execute(ToolCall(name=name, arguments=arguments))


def test_tool_names_and_order() -> None:
    registry = build_tools(Workspace(Path.cwd()))
    assert registry.names() == ["read", "ls", "find", "grep", "edit", "write", "finish"]
    assert build_tools(Workspace(Path.cwd()), ["finish", "read"]).names() == ["read", "finish"]
    with pytest.raises(ValueError, match="nope"):
        build_tools(Workspace(Path.cwd()), ["read", "nope"])


def test_specs_are_small_and_byte_identical(tmp_path: Path) -> None:
    def dump(registry: ToolRegistry) -> str:
        return json.dumps(
            [
                {"name": s.name, "description": s.description, "parameters": s.parameters}
                for s in registry.specs()
            ]
        )

    first = dump(build_tools(Workspace(tmp_path)))
    assert first == dump(build_tools(Workspace(tmp_path / "elsewhere")))
    # The batch edit (line ranges, moves) costs about 500 characters of the prefix.
    assert len(first) < 2200
    edit = next(s for s in build_tools(Workspace(tmp_path)).specs() if s.name == "edit")
    assert edit.parameters["required"] == ["path"]
    assert list(edit.parameters["properties"]) == ["path", "old_text", "new_text", "edits"]


async def test_read_of_long_lines_stops_at_a_character_cap(tmp_path: Path) -> None:
    (tmp_path / "wide.txt").write_text("".join(f"{k:04d}" + "x" * 996 + "\n" for k in range(100)))
    registry = build_tools(Workspace(tmp_path, max_read_lines=400))
    result = await call(registry, "read", path="wide.txt")
    assert result.ok
    assert len(result.output) <= READ_MAX_CHARS + 100
    shown = result.output.count("\n")
    assert 10 < shown < 100
    assert result.output.endswith(
        f"[lines 1-{shown} of 100; read with offset={shown + 1} to continue]"
    )


async def test_read_numbers_lines(tools: ToolRegistry) -> None:
    result = await call(tools, "read", path="src/calc.py")
    assert result.ok
    assert result.output.splitlines()[:2] == ["   1| def add(a, b):", "   2|     return a + b"]
    assert "[lines" not in result.output  # the whole file fits: no hint


async def test_read_truncation_hint(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"row {n}\n" for n in range(1, 1235)))
    registry = build_tools(Workspace(tmp_path, max_read_lines=400))
    first = await call(registry, "read", path="big.txt")
    assert first.output.splitlines()[-1] == (
        "[lines 1-400 of 1234; read with offset=401 to continue]"
    )
    following = await call(registry, "read", path="big.txt", offset=401, limit=10)
    assert following.output.splitlines()[0] == " 401| row 401"
    assert following.output.splitlines()[-1] == (
        "[lines 401-410 of 1234; read with offset=411 to continue]"
    )
    past = await call(registry, "read", path="big.txt", offset=5000)
    assert not past.ok and "past the end" in past.output


async def test_read_accepts_numbers_as_strings(tools: ToolRegistry) -> None:
    result = await call(tools, "read", path="src/calc.py", offset="5", limit="1")
    assert result.ok
    assert result.output.startswith("   5| def sub(a, b):")


async def test_edit_stages_and_shows_result(root: Path) -> None:
    workspace = Workspace(root)
    registry = build_tools(workspace)
    result = await call(
        registry, "edit", path="src/calc.py", old_text="return a - b", new_text="return a - b  # ok"
    )
    assert result.ok, result.output
    assert result.output.startswith("Edited src/calc.py")
    assert "   6|     return a - b  # ok" in result.output
    assert (root / "src" / "calc.py").read_text().endswith("return a - b\n")  # disk untouched
    reread = await call(registry, "read", path="src/calc.py", offset=6)
    assert "return a - b  # ok" in reread.output
    (change,) = workspace.changes()
    assert change.new_text.endswith("return a - b  # ok\n")


async def test_edit_ambiguous_is_an_error_with_lines(tools: ToolRegistry) -> None:
    result = await call(tools, "edit", path="src/calc.py", old_text="(a, b)", new_text="(x, y)")
    assert not result.ok
    assert result.output.startswith("Error: edit of 'src/calc.py' failed")
    assert "at lines 1, 5" in result.output


async def test_edit_missing_file_points_to_write(tools: ToolRegistry) -> None:
    result = await call(tools, "edit", path="src/none.py", old_text="a", new_text="b")
    assert not result.ok and "write" in result.output


async def test_write_creates_file_in_staged_view(root: Path) -> None:
    workspace = Workspace(root)
    registry = build_tools(workspace)
    result = await call(registry, "write", path="tests/test_calc.py", content="x = 1\ny = 2\n")
    assert result.output == "Created tests/test_calc.py (2 lines)."
    assert not (root / "tests").exists()
    listing = await call(registry, "ls", path="tests")
    assert listing.output == "test_calc.py"
    (change,) = workspace.changes()
    assert change.old_text is None


async def test_ls_find_grep_outputs(root: Path, tools: ToolRegistry) -> None:
    assert (await call(tools, "ls")).output == "src/"
    assert (await call(tools, "find", pattern="*.py")).output == "src/calc.py"
    grep = await call(tools, "grep", pattern=r"return a [+-] b")
    assert grep.output == "src/calc.py:2: return a + b\nsrc/calc.py:6: return a - b"
    assert (await call(tools, "grep", pattern="zzz")).output == "No matches for 'zzz'."


async def test_grep_is_capped_with_total(tmp_path: Path) -> None:
    (tmp_path / "many.txt").write_text("hit\n" * 250)
    result = await call(build_tools(Workspace(tmp_path)), "grep", pattern="hit")
    lines = result.output.splitlines()
    assert len(lines) == 101
    assert lines[0] == "many.txt:1: hit"
    assert lines[-1].startswith("[100 of 250 matches shown")


async def test_path_outside_root_is_an_error(tools: ToolRegistry) -> None:
    for path in ["../x.py", "/etc/passwd", "~/.bashrc"]:
        result = await call(tools, "read", path=path)
        assert not result.ok
        assert "outside the workspace" in result.output


async def test_invalid_arguments_name_the_field(tools: ToolRegistry) -> None:
    result = await call(tools, "edit", path="src/calc.py", old_text="x")
    assert not result.ok
    assert "missing required argument 'new_text'" in result.output
    assert "Usage: edit(path, old_text?, new_text?, edits?: [{old_text?, start_line?" in (
        result.output
    )
    nothing = await call(tools, "edit", path="src/calc.py")
    assert "give old_text and new_text, or edits" in nothing.output

    wrong_type = await call(tools, "read", path="src/calc.py", offset="ten")
    assert "argument 'offset'" in wrong_type.output


async def test_common_alternative_argument_names_are_accepted(tools: ToolRegistry) -> None:
    result = await call(
        tools, "edit", file_path="src/calc.py", old_string="a + b", new_string="b + a"
    )
    assert result.ok, result.output
    extra = await call(tools, "read", path="src/calc.py", reason="look")
    assert extra.ok


async def test_unknown_tool_lists_available_ones(tools: ToolRegistry) -> None:
    result = await call(tools, "delete", path="x")
    assert not result.ok
    assert result.output.startswith("Error: unknown tool 'delete'")
    assert "read, ls, find, grep, edit, write, finish" in result.output


async def test_unparsable_arguments_are_shown(tools: ToolRegistry) -> None:
    bad = ToolCall(name="read", arguments={}, raw_arguments='{"path": src/calc.py')
    result = await tools.execute(bad)
    assert not result.ok and "not valid JSON" in result.output


async def test_finish_ends_the_run(tools: ToolRegistry) -> None:
    result = await call(tools, "finish", summary="Renamed add to plus.")
    assert result.finished and result.ok
    assert result.output == "Renamed add to plus."


def test_describe_for_progress(tools: ToolRegistry) -> None:
    assert tools.describe(ToolCall("edit", {"path": "src/a.py"})) == "editing src/a.py"
    assert tools.describe(ToolCall("read", {"path": "b.py"})) == "reading b.py"
    assert tools.describe(ToolCall("grep", {"pattern": "foo"})) == "searching for 'foo'"
    assert tools.describe(ToolCall("what", {})) == "calling unknown tool what"
