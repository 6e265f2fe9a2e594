"""Run an instant model server in its own process for benchmarks (keeps its CPU off ours).

Usage: python bench/scripted_proc.py reads|explain  -> prints the URL, serves until stdin closes.
"""

from __future__ import annotations

import sys

from instant_model import InstantModel, Turn


def reads(number: int) -> Turn:
    """A read of the module, at a different offset each turn, so the loop's repeat detection
    never short-cuts a turn."""
    arguments = {"path": "mod.py", "offset": (number + 1) % 40 + 1, "limit": 5}
    return Turn(call={"name": "read", "arguments": arguments})


def explain(_number: int) -> Turn:
    """An answer in 16-character pieces."""
    return Turn(content="This module adds numbers. " * 8, chunk_size=16)


def main() -> None:
    """Serve replies of the requested kind until the parent closes our stdin."""
    server = InstantModel(reads if sys.argv[1] == "reads" else explain, count_prompt=True)
    print(server.url, flush=True)
    sys.stdin.read()
    server.close()


if __name__ == "__main__":
    main()
