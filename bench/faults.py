"""The fault-injection table: run both fault modules against the real server, print the table.

Runs ``tests/test_faults.py`` (frames, params, documents, lifecycle, memory, races) and
``tests/test_faults_backend.py`` (hostile model streams, signals, sandboxed commands) with
``AGENTLS_FAULT_TABLE`` set, so each module records held / failed per case and writes
``bench/results/faults-<date>.md`` (and its ``.json``); then prints that table.

Usage: python bench/faults.py [extra pytest arguments]
Exit status: pytest's (non-zero when any case failed).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ["tests/test_faults.py", "tests/test_faults_backend.py"]


def main(argv: list[str]) -> int:
    """Run the fault modules and print today's table; returns pytest's exit status."""
    table = REPO / "bench" / "results" / f"faults-{datetime.date.today().isoformat()}.md"
    store = table.with_suffix(".json")
    store.unlink(missing_ok=True)  # this run's outcomes only
    env = dict(os.environ, AGENTLS_FAULT_TABLE="1")
    # -p no:cacheprovider: a bench run leaves no .pytest_cache behind.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *MODULES, *argv]
    status = subprocess.run(command, cwd=REPO, env=env, check=False).returncode
    if table.exists():
        print()
        print(table.read_text())
        print(f"written to {table.relative_to(REPO)}")
    else:
        print("no table was written (did the modules run?)", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
