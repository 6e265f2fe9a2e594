"""Edit matching, minimal LSP edits, rebasing, WorkspaceEdits and diffs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from unidiff import PatchSet

from agentls.agent.edit_match import EditMatchError, apply_edit, apply_edit_detailed
from agentls.changes import EditConflict, FileChange, rebase, unified_diff, write_changes
from agentls.lsp.workspace_edit import to_workspace_edit
from agentls.tasks.base import DocumentSnapshot
from agentls.textedits import PlainEdit, apply_text_edits, text_edits

SOURCE = """\
def area(w, h):
    return w * h


def perimeter(w, h):
    total = w + h
    return 2 * total
"""


# -- apply_edit ------------------------------------------------------------------------


def test_exact_unique_match_is_replaced() -> None:
    result = apply_edit(SOURCE, "return w * h", "return w * h  # m2")
    assert "return w * h  # m2\n" in result
    assert result.count("\n") == SOURCE.count("\n")


def test_trailing_whitespace_drift_still_matches() -> None:
    text = "a = 1   \nb = 2\t\nc = 3\n"
    result = apply_edit(text, "a = 1\nb = 2\n", "a = 10\nb = 20\n")
    assert result == "a = 10\nb = 20\nc = 3\n"


def test_indentation_drift_reindents_new_text() -> None:
    # The model dropped the 4-space indent of a method body; its replacement too.
    text = "class A:\n    def f(self):\n        if x:\n            return 1\n        return 2\n"
    applied = apply_edit_detailed(text, "if x:\n    return 1\n", "if x:\n    log()\n    return 1\n")
    assert applied.text == (
        "class A:\n    def f(self):\n        if x:\n            log()\n"
        "            return 1\n        return 2\n"
    )
    assert "indent" in applied.note
    assert (applied.first_line, applied.last_line) == (3, 5)


def test_over_indented_old_text_is_dedented() -> None:
    text = "x = 1\ny = 2\n"
    assert apply_edit(text, "    y = 2\n", "    y = 3\n") == "x = 1\ny = 3\n"


def test_crlf_file_stays_crlf() -> None:
    text = "one\r\ntwo\r\nthree\r\n"
    assert apply_edit(text, "one\ntwo\n", "one\n2\n") == "one\r\n2\r\nthree\r\n"


def test_line_number_prefixes_copied_from_read_are_tolerated() -> None:
    result = apply_edit(SOURCE, "   2|     return w * h", "   2|     return w * h * 1")
    assert "    return w * h * 1\n" in result


def test_ambiguous_match_is_refused_with_line_numbers() -> None:
    text = "x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n"
    with pytest.raises(EditMatchError) as info:
        apply_edit(text, "x = 1", "x = 9")
    message = info.value.message
    assert "matches 3 times" in message
    assert "lines 1, 3, 5" in message
    assert "more surrounding lines" in message


def test_ambiguous_fuzzy_match_is_refused() -> None:
    text = "if a:\n    go()\nif b:\n    go()\n"
    with pytest.raises(EditMatchError, match=r"matches 2 times.*lines 2, 4"):
        apply_edit(text, "        go()\n", "        stop()\n")


def test_not_found_shows_closest_lines_and_advice() -> None:
    with pytest.raises(EditMatchError) as info:
        apply_edit(SOURCE, "def perimeter(w, h):\n    totl = w + h\n", "x")
    message = info.value.message
    assert "not found" in message
    assert "   5| def perimeter(w, h):" in message
    assert "   6|     total = w + h" in message
    assert "Re-read the file" in message


def test_empty_old_text_points_to_write() -> None:
    with pytest.raises(EditMatchError, match="write"):
        apply_edit(SOURCE, "", "new")


def test_identical_texts_are_refused() -> None:
    with pytest.raises(EditMatchError, match="identical"):
        apply_edit(SOURCE, "area", "area")


# -- text_edits ------------------------------------------------------------------------


def test_text_edits_are_minimal_within_a_line() -> None:
    old = "alpha\nhello world\nomega\n"
    new = "alpha\nhello big world\nomega\n"
    assert text_edits(old, new) == [PlainEdit(1, 6, 1, 6, "big ")]


def test_text_edits_count_utf16_code_units() -> None:
    # The emoji is two UTF-16 code units; an editor places the edit after it.
    edits = text_edits("x = '😀'; y = 1\n", "x = '😀'; y = 2\n")
    assert edits == [PlainEdit(0, 14, 0, 15, "2")]


def test_no_edits_for_equal_texts() -> None:
    assert text_edits("same\n", "same\n") == []


def test_apply_text_edits_uses_original_coordinates() -> None:
    text = "ab\ncd\n"
    edits = [PlainEdit(1, 0, 1, 1, "C"), PlainEdit(0, 0, 0, 1, "A")]
    assert apply_text_edits(text, edits) == "Ab\nCd\n"


def test_apply_text_edits_rejects_overlaps() -> None:
    with pytest.raises(ValueError):
        apply_text_edits("abcdef", [PlainEdit(0, 0, 0, 3, "x"), PlainEdit(0, 2, 0, 4, "y")])


def _mutate(rnd: random.Random, text: str, alphabet: list[str]) -> str:
    chars = list(text)
    for _ in range(rnd.randint(0, 5)):
        pos = rnd.randint(0, len(chars))
        roll = rnd.random()
        if roll < 0.4 or not chars:
            chars.insert(pos, rnd.choice(alphabet))
        elif roll < 0.7:
            del chars[min(pos, len(chars) - 1)]
        else:
            chars[min(pos, len(chars) - 1)] = rnd.choice(alphabet)
    return "".join(chars)


def test_text_edits_round_trip_random() -> None:
    alphabet = ["a", "b", " ", "\n", "\r\n", "\r", "😀", "é", "𝄞x", "def f():\n", "\u2028"]
    rnd = random.Random(20260601)
    for _ in range(3000):
        old = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 20)))
        if rnd.random() < 0.85:
            new = _mutate(rnd, old, alphabet)
        else:
            new = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 20)))
        edits = text_edits(old, new)
        assert apply_text_edits(old, edits) == new, (old, new, edits)
        starts = [(e.start_line, e.start_character) for e in edits]
        assert starts == sorted(starts)


# -- rebase ----------------------------------------------------------------------------

BASE = "".join(f"line {n}\n" for n in range(1, 11))


def test_rebase_keeps_user_typing_away_from_agent_hunks() -> None:
    agent = BASE.replace("line 2\n", "line two\n")
    user = BASE.replace("line 8\n", "line 8 typed by user\n")
    merged = rebase(FileChange(Path("/w/a.txt"), BASE, agent, 1), user)
    assert "line two\n" in merged
    assert "line 8 typed by user\n" in merged
    assert merged.count("\n") == 10


def test_rebase_shifts_agent_hunks_after_user_inserted_lines() -> None:
    agent = BASE.replace("line 9\n", "line nine\n")
    user = "new first line\nanother\n" + BASE
    merged = rebase(FileChange(Path("/w/a.txt"), BASE, agent, 1), user)
    assert merged == "new first line\nanother\n" + agent


def test_rebase_overlap_raises_conflict_naming_file_and_lines() -> None:
    agent = BASE.replace("line 5\n", "line five\n")
    user = BASE.replace("line 5\n", "line 5!\n")
    with pytest.raises(EditConflict) as info:
        rebase(FileChange(Path("/w/a.txt"), BASE, agent, 1), user)
    assert "/w/a.txt" in info.value.message
    assert "line 5" in info.value.message


def test_rebase_touching_hunks_conflict() -> None:
    agent = BASE.replace("line 5\n", "line five\n")
    user = BASE.replace("line 6\n", "line 6!\n")
    with pytest.raises(EditConflict):
        rebase(FileChange(Path("/w/a.txt"), BASE, agent, 1), user)


def test_rebase_unchanged_document_returns_agent_text() -> None:
    agent = BASE.replace("line 5\n", "line five\n")
    assert rebase(FileChange(Path("/w/a.txt"), BASE, agent, 1), BASE) == agent


# -- to_workspace_edit -----------------------------------------------------------------


def test_workspace_edit_for_open_document_is_versioned_and_minimal(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    change = FileChange(path, SOURCE, SOURCE.replace("w * h", "w*h"), version=7)
    edit = to_workspace_edit([change], lambda p: DocumentSnapshot(SOURCE, 7))
    assert edit.document_changes is not None
    (doc_edit,) = edit.document_changes
    assert isinstance(doc_edit, lsp.TextDocumentEdit)
    assert doc_edit.text_document.uri == path.as_uri()
    assert doc_edit.text_document.version == 7
    (text_edit,) = doc_edit.edits
    # Only the changed characters of line 2 are touched: " * " becomes "*".
    assert text_edit.range == lsp.Range(lsp.Position(1, 12), lsp.Position(1, 15))
    assert text_edit.new_text == "*"


def test_workspace_edit_rebases_onto_typing_and_uses_current_version(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    agent = BASE.replace("line 2\n", "line two\n")
    typed = BASE.replace("line 9\n", "line 9 (typing)\n")
    change = FileChange(path, BASE, agent, version=3)
    edit = to_workspace_edit([change], lambda p: DocumentSnapshot(typed, 5))
    assert edit.document_changes is not None
    (doc_edit,) = edit.document_changes
    assert isinstance(doc_edit, lsp.TextDocumentEdit)
    assert doc_edit.text_document.version == 5
    plain = [
        PlainEdit(
            e.range.start.line,
            e.range.start.character,
            e.range.end.line,
            e.range.end.character,
            e.new_text,
        )
        for e in doc_edit.edits
    ]
    result = apply_text_edits(typed, plain)
    assert "line two\n" in result and "line 9 (typing)\n" in result


def test_workspace_edit_conflict_propagates(tmp_path: Path) -> None:
    change = FileChange(tmp_path / "a.txt", BASE, BASE.replace("line 3", "x"), version=1)
    typed = BASE.replace("line 3", "y")
    with pytest.raises(EditConflict):
        to_workspace_edit([change], lambda p: DocumentSnapshot(typed, 2))


def test_workspace_edit_for_unopened_file_has_no_version(tmp_path: Path) -> None:
    change = FileChange(tmp_path / "a.txt", BASE, BASE + "more\n", version=4)
    edit = to_workspace_edit([change], lambda p: None)
    assert edit.document_changes is not None
    (doc_edit,) = edit.document_changes
    assert isinstance(doc_edit, lsp.TextDocumentEdit)
    assert doc_edit.text_document.version is None


def test_workspace_edit_new_file_is_create_then_insert(tmp_path: Path) -> None:
    path = tmp_path / "tests" / "test_new.py"
    edit = to_workspace_edit([FileChange(path, None, "def test_x():\n    pass\n")])
    assert edit.document_changes is not None
    create, insert = edit.document_changes
    assert isinstance(create, lsp.CreateFile)
    assert create.uri == path.as_uri()
    assert create.options == lsp.CreateFileOptions(overwrite=False, ignore_if_exists=False)
    assert isinstance(insert, lsp.TextDocumentEdit)
    assert insert.text_document.version is None
    (text_edit,) = insert.edits
    assert text_edit.range == lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
    assert text_edit.new_text == "def test_x():\n    pass\n"


def test_workspace_edit_annotations_need_confirmation(tmp_path: Path) -> None:
    changes = [
        FileChange(tmp_path / "a.txt", BASE, BASE.replace("line 1\n", "")),
        FileChange(tmp_path / "b.txt", None, "hi\n"),
    ]
    edit = to_workspace_edit(changes, annotate=True)
    assert edit.change_annotations is not None
    ((annotation_id, annotation),) = edit.change_annotations.items()
    assert annotation.needs_confirmation is True
    assert annotation.label == "agentls"
    assert edit.document_changes is not None
    for item in edit.document_changes:
        if isinstance(item, lsp.TextDocumentEdit):
            for text_edit in item.edits:
                assert isinstance(text_edit, lsp.AnnotatedTextEdit)
                assert text_edit.annotation_id == annotation_id
        elif isinstance(item, lsp.CreateFile):
            assert item.annotation_id == annotation_id


# -- unified_diff and write_changes ----------------------------------------------------


def test_unified_diff_is_git_style_and_parses(tmp_path: Path) -> None:
    changes = [
        FileChange(tmp_path / "src" / "a.py", SOURCE, SOURCE.replace("w * h", "h * w")),
        FileChange(tmp_path / "tests" / "test_a.py", None, "def test():\n    pass"),
    ]
    diff = unified_diff(changes, tmp_path)
    assert "--- a/src/a.py\n+++ b/src/a.py\n" in diff
    assert "--- /dev/null\n+++ b/tests/test_a.py\n" in diff
    assert "-    return w * h\n+    return h * w\n" in diff
    assert "\\ No newline at end of file" in diff
    patch = PatchSet(diff)
    assert [f.path for f in patch] == ["src/a.py", "tests/test_a.py"]
    assert patch[1].is_added_file


def test_write_changes_creates_and_updates(tmp_path: Path) -> None:
    existing = tmp_path / "a.py"
    existing.write_bytes(b"x = 1\r\n")
    write_changes(
        [
            FileChange(existing, "x = 1\r\n", "x = 2\r\n"),
            FileChange(tmp_path / "new" / "dir" / "b.py", None, "y = 1\n"),
        ]
    )
    assert existing.read_bytes() == b"x = 2\r\n"
    assert (tmp_path / "new" / "dir" / "b.py").read_text() == "y = 1\n"


def test_write_changes_refuses_when_disk_changed(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text("changed on disk\n")
    other = tmp_path / "b.py"
    with pytest.raises(EditConflict, match="changed on disk"):
        write_changes([FileChange(other, None, "b\n"), FileChange(path, "original\n", "new\n")])
    assert path.read_text() == "changed on disk\n"
    assert not other.exists()  # nothing is written when any file conflicts
