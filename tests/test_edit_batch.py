"""``edit`` with ``edits``: several changes at once (all or none), line ranges checked by their
text, and moving or copying lines without retyping them, through the registry, the real loop
and the scripted model server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from agentls.agent.context import default_protected
from agentls.agent.tools import ToolRegistry, ToolResult, build_tools
from agentls.agent.tools.batch import guard_matches
from agentls.agent.workspace import Workspace
from agentls.llm.factory import make_backend
from agentls.llm.types import Message, ToolCall
from agentls.lsp.workspace_edit import to_workspace_edit
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.refactor import run_refactor
from scripted_model import Reply, ScriptedModelServer

SHAPES = (
    "import math\n"  # 1
    "\n"  # 2
    "\n"  # 3
    "def area(r):\n"  # 4
    "    return math.pi * r * r\n"  # 5
    "\n"  # 6
    "\n"  # 7
    "def perimeter(r):\n"  # 8
    "    return 2 * math.pi * r\n"  # 9
    "\n"  # 10
    "\n"  # 11
    "def describe(r):\n"  # 12
    "    return f'{area(r)} {perimeter(r)}'\n"  # 13
)
MODEL = "gemma4:12b-it-qat"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "shapes.py").write_text(SHAPES)
    (tmp_path / "other.py").write_text("X = 1\nY = 2\n")
    return tmp_path


@pytest.fixture
def ws(root: Path) -> Workspace:
    return Workspace(root)


@pytest.fixture
def tools(ws: Workspace) -> ToolRegistry:
    return build_tools(ws)


async def call(registry: ToolRegistry, name: str, **arguments: Any) -> ToolResult:
    return await registry.execute(ToolCall(name=name, arguments=arguments))


def staged(ws: Workspace) -> dict[str, str]:
    return {ws.rel(c.path): c.new_text for c in ws.changes()}


MOVE_PERIMETER = {
    "start_line": 8,
    "end_line": 11,
    "first_line": "def perimeter(r):",
    "last_line": "",
    "to_path": "round.py",
}


async def test_move_lines_to_a_new_file_and_later_edits_see_them(
    ws: Workspace, tools: ToolRegistry
) -> None:
    header = {"new_text": "import math\n\n\n", "to_path": "round.py"}
    result = await call(tools, "edit", path="shapes.py", edits=[header, MOVE_PERIMETER])
    assert result.ok, result.output
    assert "- edits[1]: moved shapes.py lines 8-11 to round.py (new file), now lines 4-7" in (
        result.output
    )
    assert staged(ws)["round.py"] == (
        "import math\n\n\ndef perimeter(r):\n    return 2 * math.pi * r\n\n\n"
    )
    assert "def perimeter" not in staged(ws)["shapes.py"]

    # read, grep and a later edit all see the moved text in the staged view.
    read = await call(tools, "read", path="round.py")
    assert "   4| def perimeter(r):" in read.output
    grep = await call(tools, "grep", pattern="def perimeter")
    assert grep.output == "round.py:4: def perimeter(r):"
    renamed = await call(
        tools, "edit", path="round.py", old_text="def perimeter(", new_text="def circumference("
    )
    assert renamed.ok, renamed.output
    assert staged(ws)["round.py"].count("def circumference(r):") == 1

    # One WorkspaceEdit: a CreateFile with its text, and a minimal versioned edit of shapes.py.
    edit = to_workspace_edit(ws.changes())
    kinds = [type(c).__name__ for c in edit.document_changes or []]
    assert kinds.count("CreateFile") == 1
    shapes_edit = next(
        c
        for c in edit.document_changes or []
        if isinstance(c, lsp.TextDocumentEdit) and c.text_document.uri.endswith("shapes.py")
    )
    (only,) = shapes_edit.edits
    assert isinstance(only, lsp.TextEdit)
    assert only.range.start.line == 7 and only.range.end.line == 11  # lines 8-11 removed


async def test_guard_mismatch_is_an_error_that_shows_the_lines(
    ws: Workspace, tools: ToolRegistry
) -> None:
    bad = {**MOVE_PERIMETER, "first_line": "def volume(r):"}
    result = await call(tools, "edit", path="shapes.py", edits=[bad])
    assert not result.ok
    assert "edits[0]: lines 8-11 of 'shapes.py' do not start with first_line" in result.output
    assert "   8| def perimeter(r):" in result.output  # what is really there
    assert "nothing was changed" in result.output
    assert staged(ws) == {}


async def test_missing_guards_are_asked_for_with_the_lines_text(tools: ToolRegistry) -> None:
    result = await call(
        tools, "edit", path="shapes.py", edits=[{"start_line": 4, "end_line": 5, "new_text": ""}]
    )
    assert not result.ok
    assert "give first_line and last_line" in result.output
    assert "   4| def area(r):" in result.output and "   5|     return" in result.output


async def test_stale_line_numbers_are_shifted_when_the_guards_fit_one_place(
    ws: Workspace, tools: ToolRegistry
) -> None:
    change = {
        "start_line": 6,  # really 4-5: the model's numbers are two lines off
        "end_line": 7,
        "first_line": "def area(r):",
        "last_line": "return math.pi * r * r",
        "new_text": "def area(r):\n    return math.pi * r**2\n",
    }
    result = await call(tools, "edit", path="shapes.py", edits=[change])
    assert result.ok, result.output
    assert "they are at lines 4-5 now, which were used" in result.output
    assert "    return math.pi * r**2\n" in staged(ws)["shapes.py"]


def test_guards_forgive_whitespace_prefixes_and_read_numbers() -> None:
    assert guard_matches("    return 2 * math.pi * r", "return 2 * math.pi * r")
    assert guard_matches("def perimeter(r):", "def perimeter(")
    assert guard_matches("def perimeter(r):", "   8| def perimeter(r):")
    assert guard_matches("", "")
    assert not guard_matches("def area(r):", "def perimeter(")
    assert not guard_matches("x = 1", "")


async def test_several_edits_are_atomic_and_the_failing_item_is_named(
    ws: Workspace, tools: ToolRegistry
) -> None:
    result = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[
            {"old_text": "def area(", "new_text": "def disc_area("},
            {"old_text": "{area(r)}", "new_text": "{disc_area(r)}"},
            {"old_text": "def nothing_like_this(", "new_text": "x"},
        ],
    )
    assert not result.ok
    assert result.output.startswith("Error: edit failed, nothing was changed (all or none):")
    assert "edits[2] (shapes.py): old_text was not found" in result.output
    assert staged(ws) == {}


async def test_rename_in_five_places_in_one_call(ws: Workspace, tools: ToolRegistry) -> None:
    (ws.root / "calc.py").write_text(
        "def total(xs):\n    return sum(xs)\n\n\n"
        "a = total([1])\nb = total([2])\nc = total([3])\nd = total([4])\n"
    )
    edits = [
        {"old_text": "def total(", "new_text": "def grand_total("},
        *({"old_text": f"{v} = total(", "new_text": f"{v} = grand_total("} for v in "abcd"),
    ]
    result = await call(tools, "edit", path="calc.py", edits=edits)
    assert result.ok, result.output
    assert result.output.startswith("Applied 5 changes (all or none):")
    assert staged(ws)["calc.py"].count("grand_total(") == 5
    assert "total(" not in staged(ws)["calc.py"].replace("grand_total(", "")


async def test_overlapping_changes_are_refused_naming_both(tools: ToolRegistry) -> None:
    result = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[
            {"start_line": 4, "end_line": 5, "first_line": "def area", "last_line": "return"},
            {"old_text": "return math.pi * r * r", "new_text": "return 0"},
        ],
    )
    assert not result.ok
    # The first item is incomplete: named before any overlap is considered.
    assert "edits[0]: say what happens to the range" in result.output
    overlap = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[
            {
                "start_line": 4,
                "end_line": 5,
                "first_line": "def area",
                "last_line": "return",
                "new_text": "",
            },
            {"old_text": "return math.pi * r * r", "new_text": "return 0"},
        ],
    )
    assert not overlap.ok
    assert "edits[0] and edits[1] change overlapping text of 'shapes.py'" in overlap.output


async def test_copy_keeps_the_original_and_to_line_inserts_before_a_line(
    ws: Workspace, tools: ToolRegistry
) -> None:
    result = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[
            {
                "start_line": 1,
                "end_line": 1,
                "first_line": "import math",
                "to_path": "other.py",
                "to_line": 2,
                "copy": True,
            },
            {"new_text": "# shapes of circles", "to_line": 1},
        ],
    )
    assert result.ok, result.output
    assert staged(ws)["other.py"] == "X = 1\nimport math\nY = 2\n"
    assert staged(ws)["shapes.py"] == "# shapes of circles\n" + SHAPES
    bad = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[{"new_text": "z", "to_path": "other.py", "to_line": 9}],
    )
    assert not bad.ok and "to_line 9 is outside 'other.py'" in bad.output


async def test_move_within_a_file(ws: Workspace, tools: ToolRegistry) -> None:
    # describe (12-13) goes before area (4), with the blank lines that should follow it.
    result = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[
            {
                "start_line": 12,
                "end_line": 13,
                "first_line": "def describe(r):",
                "last_line": "return f'",
                "to_line": 4,
            },
            {"new_text": "\n", "to_line": 4},
            {"start_line": 10, "end_line": 11, "first_line": "", "last_line": "", "new_text": ""},
        ],
    )
    assert result.ok, result.output
    lines = staged(ws)["shapes.py"].splitlines()
    assert lines[3] == "def describe(r):" and lines[-1] == "    return 2 * math.pi * r"


async def test_a_single_change_at_the_top_level_and_edits_as_a_string(
    ws: Workspace, tools: ToolRegistry
) -> None:
    single = await call(
        tools,
        "edit",
        path="shapes.py",
        start_line=1,
        end_line=1,
        first_line="import math",
        new_text="import math as m",
    )
    assert single.ok, single.output
    assert staged(ws)["shapes.py"].startswith("import math as m\n")
    as_text = await call(
        tools,
        "edit",
        path="other.py",
        edits=json.dumps([{"old_text": "Y = 2", "new_text": "Y = 3"}]),
    )
    assert as_text.ok, as_text.output
    assert staged(ws)["other.py"] == "X = 1\nY = 3\n"


async def test_item_shapes_that_say_nothing_are_explained(tools: ToolRegistry) -> None:
    neither = await call(tools, "edit", path="shapes.py", edits=[{"new_text": "x"}])
    assert "edits[0]: give a range" in neither.output
    empty = await call(tools, "edit", path="shapes.py", edits=[])
    assert "edits is empty" in empty.output
    missing = await call(tools, "edit", path="nope.py", edits=[{"old_text": "a", "new_text": "b"}])
    assert "file 'nope.py' not found" in missing.output
    outside = await call(
        tools, "edit", path="shapes.py", edits=[{**MOVE_PERIMETER, "to_path": "../x.py"}]
    )
    assert "outside the workspace" in outside.output


async def test_a_move_may_carry_the_header_of_the_new_file(
    ws: Workspace, tools: ToolRegistry
) -> None:
    # One item per new file: its header as new_text, then the moved lines.
    item = {**MOVE_PERIMETER, "new_text": '"""Round things."""\n\nimport math\n\n\n'}
    result = await call(tools, "edit", path="shapes.py", edits=[item])
    assert result.ok, result.output
    assert "moved shapes.py lines 8-11 to round.py (new file), now lines 6-9 (after new_text)" in (
        result.output
    )
    assert staged(ws)["round.py"] == (
        '"""Round things."""\n\nimport math\n\n\ndef perimeter(r):\n'
        "    return 2 * math.pi * r\n\n\n"
    )


async def test_moved_lines_take_the_line_endings_of_their_new_file(
    ws: Workspace, tools: ToolRegistry
) -> None:
    (ws.root / "dos.py").write_bytes(b"A = 1\r\nB = 2\r\n")
    result = await call(
        tools,
        "edit",
        path="shapes.py",
        edits=[{"start_line": 1, "end_line": 1, "first_line": "import math", "to_path": "dos.py"}],
    )
    assert result.ok, result.output
    assert staged(ws)["dos.py"] == "A = 1\r\nB = 2\r\nimport math\r\n"


def test_context_keeps_the_newest_state_of_a_move_target() -> None:
    move = ToolCall("edit", {"path": "a.py", "edits": [{"to_path": "b.py"}]}, id="2")
    messages = [
        Message("system", "s"),
        Message("user", "task"),
        Message("assistant", "", tool_calls=[ToolCall("read", {"path": "b.py"}, id="1")]),
        Message("tool", "   1| x", tool_call_id="1", name="read"),
        Message("assistant", "", tool_calls=[move]),
        Message("tool", "Applied 1 change", tool_call_id="2", name="edit"),
        Message("user", "note"),
        Message("user", "note"),
    ]
    protected = default_protected(messages)
    assert protected(3, messages[3]), "the read of the move's target is its latest state"
    assert protected(5, messages[5])


# -- through the real loop and the scripted model server ------------------------------------


def ctx_for(server: ScriptedModelServer, root: Path, backend: str, **overrides: Any) -> TaskContext:
    url = server.openai_url if backend == "openai" else server.url
    settings = Settings(backend=backend, base_url=url, model=MODEL, **overrides)
    return TaskContext(root=root, settings=settings, backend=make_backend(settings))


def tool_reply(name: str, mode: str, **arguments: Any) -> Reply:
    if mode == "constrained":
        return Reply(content=json.dumps({"tool": name, "arguments": arguments}))
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


@pytest.mark.parametrize(("backend", "mode"), [("ollama", "native"), ("openai", "constrained")])
async def test_a_move_then_an_edit_of_the_moved_text_through_the_loop(
    scripted_model: ScriptedModelServer, root: Path, backend: str, mode: str
) -> None:
    scripted_model.script(
        [
            tool_reply("read", mode, path="shapes.py"),
            tool_reply(
                "edit",
                mode,
                path="shapes.py",
                edits=[{"new_text": "import math\n\n\n", "to_path": "round.py"}, MOVE_PERIMETER],
            ),
            tool_reply("edit", mode, path="round.py", old_text="2 * math.pi", new_text="math.tau"),
            tool_reply("finish", mode, summary="Moved perimeter to round.py."),
        ]
    )
    ctx = ctx_for(scripted_model, root, backend, tool_mode=mode)
    result = await run_refactor(ctx, TaskRequest(root / "shapes.py"))
    await ctx.backend.aclose()

    changes = {c.path.name: c for c in result.changes}
    assert changes["round.py"].old_text is None
    assert changes["round.py"].new_text == (
        "import math\n\n\ndef perimeter(r):\n    return math.tau * r\n\n\n"
    )
    assert "perimeter" not in changes["shapes.py"].new_text.replace("{perimeter(r)}", "")
    third = scripted_model.requests[2]
    moved = third["messages"][-1]["content"]
    assert "moved shapes.py lines 8-11 to round.py (new file), now lines 4-7" in moved
    if mode == "constrained":
        schema = third.get("response_format", {}).get("json_schema", {}).get("schema")
        edit = next(v for v in schema["oneOf"] if v["properties"]["tool"]["const"] == "edit")
        items = edit["properties"]["arguments"]["properties"]["edits"]["items"]
        assert items["additionalProperties"] is False and "to_path" in items["properties"]
        assert "edits?: [{old_text?, start_line?" in third["messages"][0]["content"]


async def test_a_failed_batch_reaches_the_model_and_a_repeat_after_a_move_runs_again(
    scripted_model: ScriptedModelServer, root: Path
) -> None:
    failing = [
        {"old_text": "import math", "new_text": "import cmath"},
        {"old_text": "no such text", "new_text": "y"},
    ]
    scripted_model.script(
        [
            tool_reply("read", "native", path="round.py"),
            tool_reply("edit", "native", path="shapes.py", edits=failing),
            tool_reply("edit", "native", path="shapes.py", edits=[MOVE_PERIMETER]),
            tool_reply("read", "native", path="round.py"),
            tool_reply("finish", "native", summary="done"),
        ]
    )
    ctx = ctx_for(scripted_model, root, "ollama", tool_mode="native")
    result = await run_refactor(ctx, TaskRequest(root / "shapes.py"))
    await ctx.backend.aclose()

    after_failure = scripted_model.requests[2]["messages"][-1]["content"]
    assert "edits[1] (shapes.py): old_text was not found" in after_failure
    assert "nothing was changed (all or none)" in after_failure
    # The same read after a successful move is not a repeat: the file exists now.
    reread = scripted_model.requests[4]["messages"][-1]["content"]
    assert "def perimeter(r):" in reread
    assert {c.path.name for c in result.changes} == {"round.py", "shapes.py"}
    assert "import math\n" in next(c for c in result.changes if c.path.name == "shapes.py").new_text
