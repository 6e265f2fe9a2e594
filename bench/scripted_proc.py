"""Run the scripted model server in its own process for benchmarks (keeps its CPU off ours).

Usage: python bench/scripted_proc.py reads|explain  -> prints the URL, serves until stdin closes.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from scripted_model import Reply, ScriptedModelServer


def main() -> None:
    """Serve replies of the requested kind until the parent closes our stdin."""
    mode = sys.argv[1]
    counter = itertools.count(1)

    def reads(_body: dict[str, Any]) -> Reply:
        # A different offset each turn, so the loop's repeat detection never short-cuts a turn.
        return Reply(
            tool_calls=[
                {
                    "name": "read",
                    "arguments": {"path": "mod.py", "offset": next(counter) % 40 + 1, "limit": 5},
                }
            ],
            chunk_size=64,
        )

    def explain(_body: dict[str, Any]) -> Reply:
        return Reply(content="This module adds numbers. " * 8, chunk_size=16)

    server = ScriptedModelServer(reads if mode == "reads" else explain).start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
