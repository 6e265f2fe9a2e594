"""agent/explain, agent/refactor, agent/generateTests end to end: real client, real server
process, scripted model over real HTTP."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from lsp_support import (
    CALC,
    agent_client,
    apply_edits,
    call,
    document_changes,
    lsp_range,
    make_project,
    options,
    text_edits_for,
    uri,
)
from scripted_model import Reply, ScriptedModelServer

SHAPES = """\
import math


def circle_area(r):
    return math.pi * r * r


def square_area(s):
    return s * s


def describe(r):
    return f"circle of area {circle_area(r):.2f}"
"""

APP = "from shapes import circle_area, describe\n\nprint(circle_area(1), describe(2))\n"

STATS_KEYS = {
    "turns",
    "promptTokens",
    "completionTokens",
    "cachedPromptTokens",
    "timeToFirstToken",
    "tokensPerSecond",
    "contextFill",
    "contextLength",
    "wallTime",
    "model",
    "backend",
}


def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {"calc.py": CALC, "shapes.py": SHAPES, "app.py": APP})


async def test_explain_returns_markdown_and_stats(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([Reply(content="# mean\n\nDivides the **total** by the count.")])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request(
            "agent/explain", {"textDocument": {"uri": doc}, "range": lsp_range(7, 0, 9, 0)}
        )
        status = await agent.request("agent/status", {})
        await agent.wait_for(lambda: any("turns" in m for m in agent.logs(types.MessageType.Info)))
    assert result["markdown"] == "# mean\n\nDivides the **total** by the count."
    stats = result["stats"]
    assert set(stats) >= STATS_KEYS
    assert stats["turns"] == 1
    assert stats["promptTokens"] > 0 and stats["completionTokens"] > 0
    assert stats["model"] == "gemma4:12b-it-qat" and stats["backend"] == "ollama"
    assert 0 < stats["contextFill"] < 1
    assert stats["wallTime"] > 0
    assert status["lastStats"] == stats
    assert "The user selected lines 8-9." in scripted_model.requests[0]["messages"][1]["content"]


async def test_explain_reports_cancellable_progress_begin_report_end(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script([Reply(content="It averages numbers, in several chunks of text.")])
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        # A client-supplied token is used as is.
        agent.client.progress_reports["client-token"] = []
        await agent.request(
            "agent/explain", {"textDocument": {"uri": doc}, "workDoneToken": "client-token"}
        )
        await agent.wait_for(
            lambda: any(
                isinstance(v, types.WorkDoneProgressEnd)
                for v in agent.client.progress_reports["client-token"]
            )
        )
        scripted_model.script([Reply(content="Again.")])
        # Without one, the server creates its own (the client supports it).
        await agent.request("agent/explain", {"textDocument": {"uri": doc}})
        await agent.wait_for(lambda: len(agent.client.progress_reports) == 2)
        server_tokens = [t for t in agent.client.progress_reports if t != "client-token"]
        await agent.wait_for(
            lambda: any(
                isinstance(v, types.WorkDoneProgressEnd)
                for v in agent.client.progress_reports[server_tokens[0]]
            )
        )
    for token in ("client-token", server_tokens[0]):
        values = agent.client.progress_reports[token]
        assert isinstance(values[0], types.WorkDoneProgressBegin)
        assert values[0].cancellable is True
        assert values[0].title == "Agent: Explain"
        assert any(isinstance(v, types.WorkDoneProgressReport) for v in values[1:-1])
        assert isinstance(values[-1], types.WorkDoneProgressEnd)
        assert values[-1].message == "Done"


async def test_refactor_one_function_gives_a_versioned_minimal_edit(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    scripted_model.script(
        [
            call(
                "edit",
                path="calc.py",
                old_text="    t = 0\n    for i in range(len(items)):\n        t = t + items[i]\n"
                "    return t",
                new_text="    return sum(items)",
            ),
            call("finish", summary="total() now uses sum()."),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py", version=7)
        result = await agent.request(
            "agent/refactor",
            {
                "textDocument": {"uri": doc},
                "range": lsp_range(0, 0, 5, 0),
                "instruction": "use sum",
            },
        )
    assert result["summary"] == "total() now uses sum().\n\nNo tests found; not verified."
    assert result["stats"]["turns"] == 2
    changes = document_changes(result["edit"])
    assert len(changes) == 1
    change = changes[0]
    assert change["textDocument"] == {"uri": doc, "version": 7}
    # Minimal: only the body of total() is touched, mean() is not part of any edit.
    for edit in change["edits"]:
        assert edit["range"]["start"]["line"] >= 1 and edit["range"]["end"]["line"] <= 4
    new_text = apply_edits(CALC, change["edits"])
    assert new_text == CALC.replace(
        "    t = 0\n    for i in range(len(items)):\n        t = t + items[i]\n    return t",
        "    return sum(items)",
    )
    assert (root / "calc.py").read_text() == CALC  # the server never writes to disk


async def test_split_a_module_creates_the_new_module_and_updates_imports(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    circle = "import math\n\n\ndef circle_area(r):\n    return math.pi * r * r\n"
    scripted_model.script(
        [
            call("write", path="circles.py", content=circle),
            call(
                "edit",
                path="shapes.py",
                old_text="import math\n\n\ndef circle_area(r):\n    return math.pi * r * r\n",
                new_text="from circles import circle_area\n",
            ),
            call("grep", pattern="circle_area"),
            call(
                "edit",
                path="app.py",
                old_text="from shapes import circle_area, describe",
                new_text="from circles import circle_area\nfrom shapes import describe",
            ),
            call("finish", summary="Moved circle_area to circles.py."),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "shapes.py", version=2)
        result = await agent.request(
            "agent/refactor",
            {"textDocument": {"uri": doc}, "instruction": "move circle_area to circles.py"},
        )
    edit = result["edit"]
    new_uri = uri(root / "circles.py")
    creates = [c for c in document_changes(edit) if c.get("kind") == "create"]
    assert [c["uri"] for c in creates] == [new_uri]
    (created,) = text_edits_for(edit, new_uri)
    assert apply_edits("", created["edits"]) == circle
    (original,) = text_edits_for(edit, doc)
    assert original["textDocument"]["version"] == 2
    shapes_after = apply_edits(SHAPES, original["edits"])
    assert shapes_after.startswith("from circles import circle_area\n")
    assert "def circle_area" not in shapes_after and "def square_area" in shapes_after
    (app,) = text_edits_for(edit, uri(root / "app.py"))
    assert app["textDocument"]["version"] is None  # not open: the disk text
    assert apply_edits(APP, app["edits"]).startswith(
        "from circles import circle_area\nfrom shapes import describe\n"
    )
    # The CreateFile comes before the edit that fills it.
    kinds = [c.get("kind", c.get("textDocument", {}).get("uri")) for c in document_changes(edit)]
    assert kinds.index("create") < kinds.index(new_uri)


async def test_generate_tests_creates_the_test_file(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    root = project(tmp_path)
    test_text = (
        "from calc import mean, total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n\n\n"
        "def test_mean():\n    assert mean([1, 3]) == 2\n"
    )
    scripted_model.script(
        [
            call("write", path="tests/test_calc.py", content=test_text),
            call("finish", summary="Added tests for total and mean."),
        ]
    )
    async with agent_client(root, options(scripted_model.url)) as agent:
        doc = await agent.open(root / "calc.py")
        result = await agent.request("agent/generateTests", {"textDocument": {"uri": doc}})
    test_uri = uri(root / "tests" / "test_calc.py")
    assert result["testFile"] == test_uri
    assert result["summary"] == (
        "Added tests for total and mean.\n\nTests pass: `python -m pytest -q tests/test_calc.py`."
    )
    changes = document_changes(result["edit"])
    assert {"kind": "create", "uri": test_uri} == {
        k: v for k, v in changes[0].items() if k in ("kind", "uri")
    }
    (filled,) = text_edits_for(result["edit"], test_uri)
    assert apply_edits("", filled["edits"]) == test_text
    assert not (root / "tests").exists()
