"""Run an instant model server in its own process for benchmarks (keeps its CPU off ours).

Usage: python bench/scripted_proc.py reads|explain [ROOT]
Prints the URL and serves until stdin closes. With ROOT (the workspace the harness works in),
it then prints how many chat requests arrived and the SHA-256 of their bodies as sent, ROOT
replaced by a placeholder, so two versions of the harness can be shown to send the same bytes.
"""

from __future__ import annotations

import hashlib
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
    root = sys.argv[2].encode() if len(sys.argv) > 2 else None
    script = reads if sys.argv[1] == "reads" else explain
    server = InstantModel(script, count_prompt=True, record=root is not None)
    print(server.url, flush=True)
    sys.stdin.read()
    server.close()
    if root is not None:
        digest = hashlib.sha256()
        for body in server.bodies:
            digest.update(body.replace(root, b"<root>") + b"\n")
        print(len(server.bodies), digest.hexdigest(), flush=True)


if __name__ == "__main__":
    main()
