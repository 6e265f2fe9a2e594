"""Default model choice: the best Gemma 4 that fits the machine's memory."""

from __future__ import annotations

import os
from collections.abc import Iterable

GEMMA4_MOE = "gemma4:26b-a4b-it-qat"
GEMMA4_DENSE_12B = "gemma4:12b-it-qat"

GIB = 1024**3
# A "32 GB" laptop reports less than 32 GiB in /proc/meminfo (firmware and the kernel keep some),
# typically 31-31.5 GiB; 30 GiB still separates it clearly from a 16 or 24 GB machine.
LARGE_MACHINE_BYTES = 30 * GIB


def default_model_candidates(total_bytes: int) -> list[str]:
    """Gemma 4 tags worth using on a machine with ``total_bytes`` of RAM, best first.

    The 26B MoE (about 15 GB resident) only fits next to an editor and a browser on 32 GB
    machines; the 12B dense model (7-8 GB) is the choice below that.
    """
    if total_bytes >= LARGE_MACHINE_BYTES:
        return [GEMMA4_MOE, GEMMA4_DENSE_12B]
    return [GEMMA4_DENSE_12B]


def _strip_latest(name: str) -> str:
    return name.removesuffix(":latest")


def model_name_matches(wanted: str, available: str) -> bool:
    """Whether ``available`` (a pulled tag) is ``wanted``; Ollama's ``:latest`` is optional."""
    return _strip_latest(wanted) == _strip_latest(available)


def choose_default_model(available: Iterable[str], total_bytes: int) -> str | None:
    """Pick the best pulled Gemma 4 for this machine, or None if no Gemma 4 is pulled.

    Preferred tags come from :func:`default_model_candidates`; any other ``gemma4:*`` tag is a
    last resort (better a slower Gemma 4 than a confusing failure).
    """
    names = list(available)
    for candidate in default_model_candidates(total_bytes):
        for name in names:
            if model_name_matches(candidate, name):
                return name
    for name in names:
        if name.startswith("gemma4:") or name == "gemma4":
            return name
    return None


def total_memory_bytes() -> int:
    """Physical memory of this machine in bytes; 0 when it cannot be determined."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return 0
