"""Line diffs in near-linear time, and the changed line hunks of two texts.

A leaf: standard library only. Lines split at ``\\n``, ``\\r\\n`` and ``\\r`` (and nothing
else, unlike ``str.splitlines``), as LSP counts them.

Why not plain ``difflib.SequenceMatcher(autojunk=False)`` on whole files: it compares every
repeated line with all its copies, so a 1 MB file took 10 s and a 5 MB file minutes. Here
the common prefix and suffix are trimmed first by comparing slices (C speed, no line split),
so one change costs a few string scans. What is left in the middle is diffed by lines:
small ranges with difflib (the results the server always gave); large ones first with a
Myers diff of at most a few dozen differences (a few changes far apart, equal runs
compared as slices), then split at lines unique to both sides (patience diff), and where
no line is unique by a Myers diff again. Every step spends from one work budget of a few
steps per line; a range the budget cannot pay for becomes one replaced range, which is
still exact, only less minimal.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, compress
from operator import mul

_LSP_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


# str.splitlines also splits at these; where none occurs it splits as LSP does, 3x faster.
_OTHER_BREAKS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def split_lines(text: str) -> list[str]:
    """Split into lines at ``\\n``, ``\\r\\n`` and ``\\r`` only, keeping the terminators."""
    if not any(char in text for char in _OTHER_BREAKS):
        return text.splitlines(keepends=True)
    return _LSP_LINE.findall(text)


def count_breaks(text: str, start: int, end: int) -> int:
    """How many line breaks lie in ``text[start:end]`` (``\\r\\n`` counts once).

    ``end`` must not split a ``\\r\\n``: LSP has no position between the two.
    """
    return (
        text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)
    )


def line_start(text: str, offset: int, floor: int = 0) -> int:
    """Offset of the start of the line holding ``offset`` (not before ``floor``, a line start)."""
    return max(text.rfind("\n", floor, offset), text.rfind("\r", floor, offset), floor - 1) + 1


# --------------------------------------------------------------------------------------
# Common prefix and suffix by slices
# --------------------------------------------------------------------------------------

_CHUNK = 64  # first slice length; doubles, so a long equal run costs O(n) in C


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    lo, step = 0, _CHUNK
    while lo < n:
        hi = min(n, lo + step)
        if a[lo:hi] != b[lo:hi]:
            # The first difference is in [lo, hi): halve until it is small, then walk.
            while hi - lo > _CHUNK:
                mid = (lo + hi) // 2
                if a[lo:mid] == b[lo:mid]:
                    lo = mid
                else:
                    hi = mid
            while a[lo] == b[lo]:
                lo += 1
            return lo
        lo, step = hi, step * 2
    return n


def common_suffix(a: str, b: str, limit: int | None = None) -> int:
    """Length of the longest common suffix of ``a`` and ``b``, at most ``limit``."""
    n = min(len(a), len(b)) if limit is None else min(len(a), len(b), limit)
    la, lb = len(a), len(b)
    lo, step = 0, _CHUNK
    while lo < n:
        hi = min(n, lo + step)
        if a[la - hi : la - lo] != b[lb - hi : lb - lo]:
            while hi - lo > _CHUNK:
                mid = (lo + hi) // 2
                if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
                    lo = mid
                else:
                    hi = mid
            while a[la - 1 - lo] == b[lb - 1 - lo]:
                lo += 1
            return lo
        lo, step = hi, step * 2
    return n


# --------------------------------------------------------------------------------------
# Line diff of two sequences
# --------------------------------------------------------------------------------------

Region = tuple[int, int, int, int]  # a[i1:i2] was replaced by b[j1:j2]; never both empty

# Ranges whose lines could pair up at most this many ways go to difflib as they are: its
# cost is about that number, and small ranges keep the exact results the server gave.
DIFFLIB_PAIRS = 40_000
# Larger ranges first try Myers' diff up to this many inserted or deleted lines: with equal
# runs compared as slices it costs little more than reading the range once, so a few
# changes far apart in a big file stay cheap.
QUICK_MYERS = 64


class _Budget:
    """Steps left for the whole diff; ranges it cannot pay for are replaced whole."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def spend(self, steps: int) -> bool:
        if steps > self.steps:
            return False
        self.steps -= steps
        return True


def _run_forward(a: list[str], i: int, b: list[str], j: int, limit: int) -> int:
    """How many lines ``a[i:]`` and ``b[j:]`` share at their start, at most ``limit``.

    Slices compared in doubling chunks: a long equal run costs C time, not a Python loop.
    """
    run, step = 0, 8
    while run < limit:
        size = min(step, limit - run)
        if a[i + run : i + run + size] != b[j + run : j + run + size]:
            while a[i + run] == b[j + run]:
                run += 1
            return run
        run, step = run + size, step * 2
    return limit


def _run_backward(a: list[str], i: int, b: list[str], j: int, limit: int) -> int:
    """How many lines ``a[:i]`` and ``b[:j]`` share at their end, at most ``limit``."""
    run, step = 0, 8
    while run < limit:
        size = min(step, limit - run)
        if a[i - run - size : i - run] != b[j - run - size : j - run]:
            while a[i - 1 - run] == b[j - 1 - run]:
                run += 1
            return run
        run, step = run + size, step * 2
    return limit


def diff_regions(a: Sequence[str], b: Sequence[str], budget: int | None = None) -> list[Region]:
    """The changed regions between the lines ``a`` and ``b``, sorted, touching ones merged.

    Work is bounded by ``budget`` steps (default: a few per line); the result is always
    exact: replacing each ``a[i1:i2]`` by ``b[j1:j2]`` gives ``b``.
    """
    a, b = list(a), list(b)
    steps = _Budget(budget if budget is not None else 4 * (len(a) + len(b)) + 200_000)
    found: list[Region] = []
    pending: list[Region] = [(0, len(a), 0, len(b))]
    while pending:
        alo, ahi, blo, bhi = pending.pop()
        head = _run_forward(a, alo, b, blo, min(ahi - alo, bhi - blo))
        alo, blo = alo + head, blo + head
        tail = _run_backward(a, ahi, b, bhi, min(ahi - alo, bhi - blo))
        ahi, bhi = ahi - tail, bhi - tail
        if alo == ahi or blo == bhi:
            if alo < ahi or blo < bhi:
                found.append((alo, ahi, blo, bhi))
            continue
        _split(a, b, (alo, ahi, blo, bhi), steps, found, pending)
    return _merge(sorted(found))


def _split(
    a: list[str],
    b: list[str],
    rng: Region,
    steps: _Budget,
    found: list[Region],
    pending: list[Region],
) -> None:
    """Diff one trimmed range: difflib when small, else a quick Myers, else unique-line
    anchors, else a full Myers, else the whole range as one region."""
    alo, ahi, blo, bhi = rng
    n, m = ahi - alo, bhi - blo
    if not steps.spend(n + m):
        found.append(rng)
        return
    ca, cb = Counter(a[alo:ahi]), Counter(b[blo:bhi])
    common = ca.keys() & cb.keys()
    if not common:
        found.append(rng)  # nothing in common at all
        return
    # How many line pairs difflib would look at; map keeps the per-line work in C.
    pairs = sum(map(mul, map(ca.__getitem__, common), map(cb.__getitem__, common)))
    if pairs <= DIFFLIB_PAIRS and steps.spend(2 * pairs + n + m):
        matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag != "equal":
                found.append((alo + i1, alo + i2, blo + j1, blo + j2))
        return
    regions = _myers(a, b, rng, steps, QUICK_MYERS)
    if regions is not None:
        found.extend(regions)
        return
    anchors = _unique_anchors(a, b, rng, _once(ca) & _once(cb))
    if anchors:
        # Equal lines found in order: the ranges between them are diffed on their own.
        _queue_gaps(a, b, rng, anchors, pending)
        return
    regions = _myers(a, b, rng, steps, n + m)
    found.extend(regions if regions is not None else [rng])


def _once(counts: Counter[str]) -> set[str]:
    """The lines counted exactly once."""
    return set(compress(counts.keys(), map((1).__eq__, counts.values())))


def _queue_gaps(
    a: list[str],
    b: list[str],
    rng: Region,
    anchors: list[tuple[int, int]],
    pending: list[Region],
) -> None:
    """Queue the ranges between anchors that differ.

    A file of 40,000 unique lines around a few hundred changes has 40,000 gaps, nearly all
    equal. Anchors on one diagonal enclose ranges of equal length on both sides, so halves
    of such a run are compared as slices (C time) and only differing halves are split
    further: about (changes * log anchors) comparisons instead of a trim per gap.
    """
    alo, ahi, blo, bhi = rng
    # The range's ends act as anchors just outside it.
    bounds = [(alo - 1, blo - 1), *anchors, (ahi, bhi)]
    first = 0
    for k in range(1, len(bounds) + 1):
        if k < len(bounds) and (bounds[k][0] - bounds[k][1] == bounds[first][0] - bounds[first][1]):
            continue
        # bounds[first:k] share a diagonal: find the gaps inside that differ.
        halves = [(first, k - 1)]
        while halves:
            s, e = halves.pop()
            (ai, bj), (ae, be) = bounds[s], bounds[e]
            if s == e or a[ai + 1 : ae] == b[bj + 1 : be]:
                continue
            if e == s + 1:
                pending.append((ai + 1, ae, bj + 1, be))
            else:
                mid = (s + e) // 2
                halves += [(s, mid), (mid, e)]
        if k < len(bounds):
            # Between two diagonals lines were inserted or deleted: always a gap to diff.
            (ai, bj), (ae, be) = bounds[k - 1], bounds[k]
            pending.append((ai + 1, ae, bj + 1, be))
        first = k


def _unique_anchors(
    a: list[str], b: list[str], rng: Region, unique: set[str]
) -> list[tuple[int, int]]:
    """Lines that occur once on each side, the longest run of them in the same order."""
    if not unique:
        return []
    alo, ahi, blo, bhi = rng
    # Line -> position maps built in C (a repeated line keeps its last position, which does
    # not matter: only unique lines are looked up); only the anchors reach Python code.
    where_a = dict(zip(a[alo:ahi], range(alo, ahi), strict=True))
    where_b = dict(zip(b[blo:bhi], range(blo, bhi), strict=True))
    a_at = sorted(map(where_a.__getitem__, unique))
    b_at = list(map(where_b.__getitem__, map(a.__getitem__, a_at)))
    if b_at == sorted(b_at):
        return list(zip(a_at, b_at, strict=True))  # nothing moved: every anchor is in order
    # Longest increasing subsequence of the b positions (patience sorting).
    tails: list[int] = []  # b position ending the best run of each length
    tail_index: list[int] = []
    previous: list[int] = [-1] * len(b_at)
    for index, j in enumerate(b_at):
        k = bisect.bisect_left(tails, j)
        if k > 0:
            previous[index] = tail_index[k - 1]
        if k == len(tails):
            tails.append(j)
            tail_index.append(index)
        else:
            tails[k] = j
            tail_index[k] = index
    run: list[tuple[int, int]] = []
    index = tail_index[-1]
    while index >= 0:
        run.append((a_at[index], b_at[index]))
        index = previous[index]
    run.reverse()
    return run


def _came_down(v: dict[int, int], k: int, d: int) -> bool:
    """Whether Myers' best path to diagonal ``k`` in round ``d`` comes from ``k + 1``."""
    return k == -d or (k != d and v[k - 1] < v[k + 1])


def _myers(
    a: list[str], b: list[str], rng: Region, steps: _Budget, most: int
) -> list[Region] | None:
    """Myers' shortest edit script for a range, or None when it needs more than ``most``
    inserted or deleted lines or the budget runs out first."""
    alo, ahi, blo, bhi = rng
    n, m = ahi - alo, bhi - blo
    v = {1: 0}
    trace: list[dict[int, int]] = []
    for d in range(min(n + m, most) + 1):
        # A step on one diagonal is some Python work, ten times a line's share of a
        # Counter or slice; the trace keeps every round's frontier for the walk back.
        if not steps.spend(16 * (d + 1)):
            return None
        trace.append(dict(v))
        for k in range(-d, d + 1, 2):
            x = v[k + 1] if _came_down(v, k, d) else v[k - 1] + 1
            y = x - k
            if x < n and y < m:
                run = _run_forward(a, alo + x, b, blo + y, min(n - x, m - y))
                if not steps.spend(1 + run // 32):  # compared as slices: cheap per line
                    return None
                x += run
            v[k] = x
            if x >= n and x - k >= m:
                return _myers_regions(trace, k, alo, blo)
    return None


def _myers_regions(trace: list[dict[int, int]], k: int, alo: int, blo: int) -> list[Region]:
    """Walk Myers' frontiers back from the end and collect the edit steps as regions."""
    regions: list[Region] = []
    for d in range(len(trace) - 1, 0, -1):
        v = trace[d]
        # Each round is one edit step, then equal lines along the diagonal.
        if _came_down(v, k, d):
            prev_x = v[k + 1]
            prev_y = prev_x - (k + 1)
            regions.append((prev_x, prev_x, prev_y, prev_y + 1))  # b[prev_y] inserted
            k += 1
        else:
            prev_x = v[k - 1]
            prev_y = prev_x - (k - 1)
            regions.append((prev_x, prev_x + 1, prev_y, prev_y))  # a[prev_x] deleted
            k -= 1
    regions.reverse()
    return [(alo + i1, alo + i2, blo + j1, blo + j2) for i1, i2, j1, j2 in _merge(regions)]


def _merge(regions: list[Region]) -> list[Region]:
    """Join regions that touch, so two edits never share a boundary."""
    out: list[Region] = []
    for region in regions:
        if out and out[-1][1] == region[0] and out[-1][3] == region[2]:
            out[-1] = (out[-1][0], region[1], out[-1][2], region[3])
        else:
            out.append(region)
    return out


# --------------------------------------------------------------------------------------
# Hunks of two texts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hunk:
    """One changed range of lines: ``old[old_from:old_to]`` became ``new[new_from:new_to]``.

    ``start``/``end`` are the 0-based lines of the old text it replaces (half-open),
    ``new_start``/``new_end`` those of the new text replacing them; the offsets are
    characters in the old and new texts, always at line starts.
    """

    start: int
    end: int
    old_from: int
    old_to: int
    new_from: int
    new_to: int
    new_start: int = 0
    new_end: int = 0


def hunks(old: str, new: str) -> list[Hunk]:
    """The changed line ranges of ``old`` -> ``new``, sorted and separated by equal lines.

    The common prefix and suffix are found on the texts themselves and widened to whole
    lines; only the lines between them are split and diffed.
    """
    if old == new:
        return []
    prefix = common_prefix(old, new)
    suffix = common_suffix(old, new, min(len(old), len(new)) - prefix)
    # Back to a line start that is one in both texts: a "\r" that ends the common prefix
    # may be followed by "\n" on one side only.
    head = max(old.rfind("\n", 0, prefix), old.rfind("\r", 0, max(prefix - 1, 0))) + 1
    tail = _line_end(old, len(old) - suffix)
    old_end, new_end = tail, len(new) - (len(old) - tail)
    old_lines = split_lines(old[head:old_end])
    new_lines = split_lines(new[head:new_end])
    first_line = count_breaks(old, 0, head)
    old_starts = _starts(old_lines, head)
    new_starts = _starts(new_lines, head)
    return [
        Hunk(
            first_line + i1,
            first_line + i2,
            old_starts[i1],
            old_starts[i2],
            new_starts[j1],
            new_starts[j2],
            first_line + j1,
            first_line + j2,
        )
        for i1, i2, j1, j2 in diff_regions(old_lines, new_lines)
    ]


def _line_end(text: str, offset: int) -> int:
    """The first line start at or after ``offset`` found by looking only at ``text[offset:]``.

    Those characters are the common suffix, so the position is a line start in both texts.
    """
    ends = [len(text)]
    newline = text.find("\n", offset)
    if newline >= 0:
        ends.append(newline + 1)
    carriage = text.find("\r", offset)
    if carriage >= 0 and text[carriage + 1 : carriage + 2] != "\n":
        ends.append(carriage + 1)
    return min(ends)


def _starts(lines: list[str], base: int) -> list[int]:
    return list(accumulate(map(len, lines), initial=base))
