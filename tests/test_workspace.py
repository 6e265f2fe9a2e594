"""The staged workspace view: where text comes from, path safety, listing and search."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentls.agent.workspace import ToolError, Workspace
from agentls.tasks.base import DocumentProvider, DocumentSnapshot


def _docs(open_docs: dict[Path, DocumentSnapshot]) -> DocumentProvider:
    return lambda path: open_docs.get(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def main():\n    return 1\n")
    (tmp_path / "src" / "util.py").write_text("def helper():\n    return 'main'\n")
    (tmp_path / "README.md").write_text("# demo\n")
    return tmp_path


def test_open_buffer_beats_disk(root: Path) -> None:
    app = root / "src" / "app.py"
    ws = Workspace(root, _docs({app: DocumentSnapshot("unsaved text\n", 4)}))
    assert ws.read_text("src/app.py") == "unsaved text\n"


def test_staged_text_beats_buffer_and_disk(root: Path) -> None:
    app = root / "src" / "app.py"
    ws = Workspace(root, _docs({app: DocumentSnapshot("unsaved text\n", 4)}))
    ws.stage("src/app.py", "staged\n")
    assert ws.read_text("src/app.py") == "staged\n"
    assert app.read_text() == "def main():\n    return 1\n"  # disk untouched


def test_base_is_fixed_at_first_read(root: Path) -> None:
    app = root / "src" / "app.py"
    open_docs = {app: DocumentSnapshot("v4\n", 4)}
    ws = Workspace(root, _docs(open_docs))
    assert ws.read_text("src/app.py") == "v4\n"
    open_docs[app] = DocumentSnapshot("v5 typed by user\n", 5)
    assert ws.read_text("src/app.py") == "v4\n"
    ws.stage("src/app.py", "agent\n")
    (change,) = ws.changes()
    assert (change.old_text, change.new_text, change.version) == ("v4\n", "agent\n", 4)


def test_changes_report_new_files_and_skip_unchanged(root: Path) -> None:
    ws = Workspace(root)
    ws.stage("src/app.py", ws.read_text("src/app.py"))  # staged but identical
    ws.stage("tests/test_app.py", "def test():\n    pass\n")
    (change,) = ws.changes()
    assert change.path == root / "tests" / "test_app.py"
    assert change.old_text is None
    assert change.version is None


def test_crlf_from_disk_is_preserved(tmp_path: Path) -> None:
    (tmp_path / "win.txt").write_bytes(b"a\r\nb\r\n")
    assert Workspace(tmp_path).read_text("win.txt") == "a\r\nb\r\n"


def test_binary_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x00\x00\x01")
    with pytest.raises(ToolError, match="binary"):
        Workspace(tmp_path).read_text("logo.png")


def test_missing_file_error_suggests_next_step(root: Path) -> None:
    with pytest.raises(ToolError, match="not found"):
        Workspace(root).read_text("nope.py")


@pytest.mark.parametrize("path", ["../secret.txt", "src/../../secret.txt", "~/secret.txt", "/etc"])
def test_paths_outside_root_are_refused(root: Path, path: str) -> None:
    with pytest.raises(ToolError, match="outside the workspace"):
        Workspace(root).resolve(path)


def test_absolute_path_inside_root_is_fine(root: Path) -> None:
    ws = Workspace(root)
    assert ws.resolve(str(root / "src" / "app.py")) == root / "src" / "app.py"
    assert ws.rel(ws.resolve("src/../README.md")) == "README.md"


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    ws = Workspace(root)
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.read_text("link.txt")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.read_text("linkdir/secret.txt")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.stage("linkdir/new.txt", "x")
    assert "link.txt" not in ws.list_dir(".")
    assert ws.grep("secret").matches == []


def test_gitignore_is_respected_in_listing_find_and_grep(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("build/\n*.log\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.py").write_text("needle\n")
    (tmp_path / "debug.log").write_text("needle\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "pkg.py").write_text("needle\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / ".gitignore").write_text("generated.py\n")
    (tmp_path / "pkg" / "generated.py").write_text("needle\n")
    (tmp_path / "pkg" / "real.py").write_text("needle\n")
    ws = Workspace(tmp_path)
    assert ws.list_dir(".") == [".gitignore", "pkg/"]
    assert ws.find("*.py") == ["pkg/real.py"]
    assert [m.path for m in ws.grep("needle").matches] == ["pkg/real.py"]


def test_staged_new_files_show_up_in_ls_and_find(root: Path) -> None:
    ws = Workspace(root)
    ws.stage("tests/test_app.py", "def test_main():\n    assert True\n")
    assert "tests/" in ws.list_dir(".")
    assert ws.list_dir("tests") == ["test_app.py"]
    assert ws.find("test_*.py") == ["tests/test_app.py"]
    assert ws.exists("tests/test_app.py")


def test_find_globs(root: Path) -> None:
    ws = Workspace(root)
    assert ws.find("*.py") == ["src/app.py", "src/util.py"]
    assert ws.find("src/*.py") == ["src/app.py", "src/util.py"]
    assert ws.find("**/app.py") == ["src/app.py"]
    assert ws.find("*.md") == ["README.md"]
    assert ws.find("*.rs") == []


def test_grep_searches_unsaved_and_staged_text(root: Path) -> None:
    app = root / "src" / "app.py"
    ws = Workspace(root, _docs({app: DocumentSnapshot("def main():\n    return unsaved\n", 2)}))
    ws.stage("src/util.py", "def helper():\n    return staged\n")
    matches = ws.grep(r"return \w+").matches
    assert [(m.path, m.line, m.text.strip()) for m in matches] == [
        ("src/app.py", 2, "return unsaved"),
        ("src/util.py", 2, "return staged"),
    ]


def test_grep_invalid_regex_falls_back_to_literal(root: Path) -> None:
    result = Workspace(root).grep("main(")
    assert result.literal
    assert [(m.path, m.line) for m in result.matches] == [("src/app.py", 1)]


def test_grep_in_one_directory(root: Path) -> None:
    (root / "README.md").write_text("main\n")
    matches = Workspace(root).grep("main", "src").matches
    assert {m.path for m in matches} == {"src/app.py", "src/util.py"}
