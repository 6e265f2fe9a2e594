"""Properties of the linear diff: exact edits over texts full of repeated lines, UTF-16
positions for characters beyond the BMP, CRLF and lone CR files, the rebase, the bounded
fallbacks, and megabyte files (correctness only; timings are in bench/scale_edits.py)."""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentls import textdiff
from agentls.changes import EditConflict, FileChange, rebase, unified_diff
from agentls.textdiff import Hunk, common_prefix, common_suffix, diff_regions, hunks, split_lines
from agentls.textedits import PlainEdit, apply_text_edits, text_edits

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Few distinct lines, so most lines repeat (what made difflib quadratic), with every line
# ending LSP knows, characters beyond the BMP and separators str.splitlines would split at.
LINE_BODIES = ["", "x = 1", "    return x", "def f():", "😀 = '𝄞'", "é\u2028", "a\x85b", "}"]
ENDINGS = ["\n", "\r\n", "\r"]


@st.composite
def texts(draw: st.DrawFn, max_lines: int = 40) -> str:
    """A text of repeated lines with mixed line endings (sometimes no final one)."""
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from(LINE_BODIES), st.sampled_from(ENDINGS)),
            max_size=max_lines,
        )
    )
    text = "".join(body + end for body, end in lines)
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text


@st.composite
def edited(draw: st.DrawFn) -> tuple[str, str]:
    """A text and a version of it with a few line or character edits."""
    old = draw(texts())
    new = old
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(new)))
        end = draw(st.integers(pos, min(len(new), pos + 12)))
        piece = (
            draw(texts(max_lines=3))
            if draw(st.booleans())
            else draw(st.sampled_from(["", "y", "😀", "\r", "\n", "\r\n", "z\r\n"]))
        )
        new = new[:pos] + piece + new[end:]
    return old, new


def reference_offset(text: str, line: int, character: int) -> int:
    """An LSP position -> offset, written independently: UTF-16 code units of the line.

    Decoding strictly fails if the position splits a surrogate pair (the middle of 😀).
    """
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+", text)
    if line >= len(lines):
        assert line == len(lines) and character == 0, (line, character)
        return len(text)
    start = sum(len(x) for x in lines[:line])
    content = lines[line].rstrip("\r\n")
    units = content.encode("utf-16-le")
    assert 2 * character <= len(units), "a position past the end of its line"
    return start + len(units[: 2 * character].decode("utf-16-le", errors="strict"))


def apply_by_reference(text: str, edits: list[PlainEdit]) -> str:
    out, cursor = [], 0
    for e in edits:
        start = reference_offset(text, e.start_line, e.start_character)
        end = reference_offset(text, e.end_line, e.end_character)
        # Never between "\r" and "\n": LSP has no such position.
        for offset in (start, end):
            assert not (0 < offset < len(text) and text[offset - 1 : offset + 1] == "\r\n")
        assert cursor <= start <= end, "edits overlap or are out of order"
        out += [text[cursor:start], e.new_text]
        cursor = end
    return "".join(out) + text[cursor:]


# -- text_edits ------------------------------------------------------------------------


@PROPERTY
@given(edited())
def test_edits_rebuild_the_new_text_exactly(pair: tuple[str, str]) -> None:
    old, new = pair
    edits = text_edits(old, new)
    assert apply_text_edits(old, edits) == new
    # Positions checked with an independent UTF-16 conversion, not the one under test.
    assert apply_by_reference(old, edits) == new
    if old == new:
        assert edits == []


@PROPERTY
@given(texts(), texts(), texts())
def test_inserted_lines_become_insertions_only(head: str, middle: str, tail: str) -> None:
    # Whole lines inserted at a line start: the edits remove nothing of the old text but
    # the "\r" or "\n" an edit must take along so as not to split a "\r\n".
    middle = middle if middle.endswith("\n") else middle + "\n"
    old = head + "\n" + tail
    new = head + "\n" + middle + tail
    edits = text_edits(old, new)
    assert apply_by_reference(old, edits) == new
    removed = sum(
        reference_offset(old, e.end_line, e.end_character)
        - reference_offset(old, e.start_line, e.start_character)
        for e in edits
    )
    assert removed <= 2 * len(edits)
    assert sum(len(e.new_text) for e in edits) == len(middle) + removed


def test_utf16_positions_after_astral_characters() -> None:
    old = "𝄞😀 = 1\r\n😀😀 = 2\r\n"
    new = "𝄞😀 = 1\r\n😀😀 = 3\r\n"
    assert text_edits(old, new) == [PlainEdit(1, 7, 1, 8, "3")]


def test_crlf_is_never_split() -> None:
    # Changing "\r\n" to "\n" cannot end between the two characters: the edit takes both.
    edits = text_edits("a\r\nb\r\n", "a\nb\r\n")
    assert edits == [PlainEdit(0, 1, 1, 0, "\n")]
    assert apply_text_edits("a\r\nb\r\n", edits) == "a\nb\r\n"


def test_a_lone_cr_followed_by_lf_on_one_side_only() -> None:
    old, new = "ab\r\nX", "ab\rY"
    assert apply_by_reference(old, text_edits(old, new)) == new


def test_other_unicode_separators_are_not_line_breaks() -> None:
    text = "a\u2028b\x85c\x0bd\x0ce\x1cf\n"
    assert split_lines(text) == ["a\u2028b\x85c\x0bd\x0ce\x1cf\n"]
    assert text_edits(text, text.replace("f", "F")) == [PlainEdit(0, 10, 0, 11, "F")]


def test_small_diffs_match_difflib_line_regions() -> None:
    # Below the difflib threshold the middle goes to difflib itself, as the server always did.
    old = [f"line {n}\n" for n in range(50)]
    new = [*old[:10], "new\n", *old[12:30], *old[31:]]
    ours = diff_regions(old, new)
    theirs = [
        (i1, i2, j1, j2)
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
            None, old, new, autojunk=False
        ).get_opcodes()
        if tag != "equal"
    ]
    assert ours == theirs


def old_text_edits(old: str, new: str) -> list[PlainEdit]:
    """The server's former algorithm (difflib over every line, then characters), kept as
    the reference for texts whose lines are all distinct."""
    a, b = split_lines(old), split_lines(new)
    out: list[PlainEdit] = []
    starts_a = [0]
    for line in a:
        starts_a.append(starts_a[-1] + len(line))
    starts_b = [0]
    for line in b:
        starts_b.append(starts_b[-1] + len(line))
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        start, end = starts_a[i1], starts_a[i2]
        old_seg, new_seg = old[start:end], new[starts_b[j1] : starts_b[j2]]
        p = common_prefix(old_seg, new_seg)
        q = common_suffix(old_seg, new_seg, min(len(old_seg), len(new_seg)) - p)
        x, y, text = start + p, end - q, new_seg[p : len(new_seg) - q]
        if 0 < x < len(old) and old[x - 1 : x + 1] == "\r\n":
            x, text = x - 1, "\r" + text
        if 0 < y < len(old) and old[y - 1 : y + 1] == "\r\n":
            y, text = y + 1, text + "\n"
        if x == y and not text:
            continue
        (sl, sc), (el, ec) = position(old, x), position(old, y)
        out.append(PlainEdit(sl, sc, el, ec, text))
    return out


def position(text: str, offset: int) -> tuple[int, int]:
    before = split_lines(text[:offset])
    if not before or before[-1].endswith(("\n", "\r")):
        return len(before), 0
    return len(before) - 1, len(before[-1].encode("utf-16-le")) // 2


@st.composite
def distinct_line_edits(draw: st.DrawFn) -> tuple[str, str]:
    """Texts whose lines are all different (the common case in code), a few lines changed."""
    count = draw(st.integers(0, 60))
    old_lines = [f"line {n} 😀\n" if n % 7 == 0 else f"line {n}\n" for n in range(count)]
    new_lines = list(old_lines)
    for k in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(new_lines)))
        kind = draw(st.sampled_from(["insert", "delete", "change"]))
        if kind == "insert" or not new_lines:
            new_lines.insert(pos, f"new {k}\n")
        elif kind == "delete":
            del new_lines[min(pos, len(new_lines) - 1)]
        else:
            index = min(pos, len(new_lines) - 1)
            new_lines[index] = new_lines[index].replace("line", "LINE", 1)
    return "".join(old_lines), "".join(new_lines)


@PROPERTY
@given(distinct_line_edits())
def test_distinct_lines_give_the_same_edits_and_diff_as_before(pair: tuple[str, str]) -> None:
    old, new = pair
    assert text_edits(old, new) == old_text_edits(old, new)
    ours = unified_diff([FileChange(Path("/r/a.py"), old, new)], Path("/r"))
    a, b = split_lines(old), split_lines(new)
    theirs = "".join(difflib.unified_diff(a, b, "a/a.py", "b/a.py"))
    assert ours == (f"diff --git a/a.py b/a.py\n{theirs}" if old != new else "")


# -- diff_regions and its fallbacks -------------------------------------------------------


def apply_regions(
    a: list[str], b: list[str], regions: list[tuple[int, int, int, int]]
) -> list[str]:
    out: list[str] = []
    cursor = 0
    for i1, i2, j1, j2 in regions:
        assert i1 >= cursor and (i1 < i2 or j1 < j2)
        out += a[cursor:i1] + b[j1:j2]
        cursor = i2
    return out + a[cursor:]


@PROPERTY
@given(
    st.lists(st.sampled_from("xxxyz"), max_size=60),
    st.lists(st.sampled_from("xxyzw"), max_size=60),
    st.sampled_from([None, 0, 40, 400]),
    st.sampled_from([0, 40_000]),
)
def test_regions_are_exact_whatever_path_or_budget(
    a: list[str], b: list[str], budget: int | None, pairs: int
) -> None:
    original = textdiff.DIFFLIB_PAIRS
    textdiff.DIFFLIB_PAIRS = pairs  # 0: every range takes the Myers / anchor / whole paths
    try:
        regions = diff_regions(a, b, budget)
    finally:
        textdiff.DIFFLIB_PAIRS = original
    assert apply_regions(a, b, regions) == b
    # Sorted, and separated by at least one equal line (touching ones were merged).
    for left, right in itertools.pairwise(regions):
        assert left[1] < right[0] and left[3] < right[2]


def test_an_exhausted_budget_still_gives_an_exact_edit() -> None:
    a = [f"{n % 7}\n" for n in range(3000)]
    b = list(reversed(a))
    regions = diff_regions(a, b, budget=0)
    assert apply_regions(a, b, regions) == b


def test_few_changes_far_apart_among_identical_lines() -> None:
    # No line is unique and every line pairs with every other: Myers' diff, not difflib.
    a = ["same\n"] * 20_000
    b = [*a[:100], "one\n", *a[100:15000], "two\n", *a[15000:]]
    regions = diff_regions(a, b)
    assert apply_regions(a, b, regions) == b
    assert [(i2 - i1, j2 - j1) for i1, i2, j1, j2 in regions] == [(0, 1), (0, 1)]


def test_common_prefix_and_suffix_at_every_length() -> None:
    base = "abc😀\r\n" * 300
    for cut in (0, 1, 63, 64, 65, 500, len(base) - 1):
        changed = base[:cut] + "#" + base[cut + 1 :]
        assert common_prefix(base, changed) == cut
        assert common_suffix(base, changed) == len(base) - cut - 1
    assert common_prefix(base, base) == len(base)
    assert common_suffix("xab", "yab", limit=1) == 1


# -- hunks and rebase ---------------------------------------------------------------------


@PROPERTY
@given(edited())
def test_hunks_replay_to_the_new_text(pair: tuple[str, str]) -> None:
    old, new = pair
    found = hunks(old, new)
    out, cursor = [], 0
    for h in found:
        assert isinstance(h, Hunk) and cursor <= h.old_from <= h.old_to
        # Hunks cover whole lines: their start line is the line of their start offset.
        assert h.start == len(split_lines(old[: h.old_from]))
        out += [old[cursor : h.old_from], new[h.new_from : h.new_to]]
        cursor = h.old_to
    assert "".join(out) + old[cursor:] == new


@st.composite
def separated_changes(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """Base text; the agent changes its first part, the user its last, with a unique
    separator between, so both always rebase cleanly."""
    first, second = draw(texts()), draw(texts())
    first_changed = draw(texts()) if draw(st.booleans()) else first + "agent\n"
    second_changed = "typed\n" + second
    sep = "\n# ---- separator one ----\n# ---- separator two ----\n"
    base = first + sep + second
    return (
        base,
        first_changed + sep + second,
        first + sep + second_changed,
        (first_changed + sep + second_changed),
    )


@PROPERTY
@given(separated_changes())
def test_rebase_keeps_the_agents_change_and_the_users_typing(
    case: tuple[str, str, str, str],
) -> None:
    base, agent, user, both = case
    change = FileChange(Path("/w/a.py"), base, agent, 1)
    assert rebase(change, user) == both
    assert rebase(change, base) == agent


def test_rebase_conflict_found_among_many_hunks() -> None:
    base = "".join(f"line {n}\n" for n in range(2000))
    agent = base.replace("line 10\n", "ten\n").replace("line 1500\n", "1500!\n")
    user = base.replace("line 700\n", "seven hundred\n").replace("line 1501\n", "typed\n")
    with pytest.raises(EditConflict) as info:
        rebase(FileChange(Path("/w/a.py"), base, agent, 1), user)
    assert "line 1502" in info.value.message and "line 1501" in info.value.message


# -- big files: exact results (their speed is measured in bench/scale_edits.py) ------------


def big_text(blocks: int) -> str:
    return "".join(
        f"def handler_{n}(request):\n    if request is None:\n        return None\n"
        "    result = {}\n    return result\n\n\n"
        for n in range(blocks)
    )


def test_a_megabyte_file_with_scattered_changes() -> None:
    old = big_text(12_000)  # about 1 MB
    lines = split_lines(old)
    for index in range(5, len(lines), 997):
        lines[index] = lines[index].replace("result", "answer")
    lines.insert(40_000, "# a new line\n")
    new = "".join(lines)
    edits = text_edits(old, new)
    assert apply_text_edits(old, edits) == new
    assert sum(len(e.new_text) for e in edits) < 2_000


def test_a_megabyte_rebase_and_its_conflict() -> None:
    old = big_text(12_000)
    agent = old.replace("def handler_9000(", "def renamed_9000(")
    user = old.replace("def handler_10(", "def typed_10(")
    merged = rebase(FileChange(Path("/w/big.py"), old, agent, 1), user)
    assert merged == agent.replace("def handler_10(", "def typed_10(")
    clash = old.replace("def handler_9000(", "def mine_9000(")
    with pytest.raises(EditConflict):
        rebase(FileChange(Path("/w/big.py"), old, agent, 1), clash)
