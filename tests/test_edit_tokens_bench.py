"""The token benchmark's claims hold: the old and new ways give byte-identical results, and a
300-line split takes under 15% of the old generated tokens (chars/4) in at most 4 model calls."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "edit_tokens.py"


def load_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # As `python bench/edit_tokens.py` runs it: bench/ on the path, for its instant model.
    monkeypatch.syspath_prepend(str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("edit_tokens", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["edit_tokens"] = module
    spec.loader.exec_module(module)
    return module


async def test_old_and_new_ways_agree_and_the_split_is_cheap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = load_bench(monkeypatch)
    rows, problems = await bench.measure(None)
    assert problems == []
    by_way = {(row[0], row[1]): row for row in rows}
    split_old = by_way[("split a 300-line module into three", "old")]
    split_new = by_way[("split a 300-line module into three", "new")]
    assert 295 <= len(bench.MODULE.splitlines()) <= 310
    assert split_new[4] < 0.15 * split_old[4]  # tokens by chars/4
    assert split_new[2] <= 4  # model calls
    for (_task, way), row in by_way.items():
        assert row[-1] == "yes"
        if way == "new":
            assert row[4] < by_way[(_task, "old")][4]
