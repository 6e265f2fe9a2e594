"""find, grep and ls on ripgrep and on the pure-Python walk: the same answers, fast paths and
all (ignore rules, secret files, links, encodings, the staged view), a listing made once per
run, and work that stops when its caller is cancelled."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentls.agent import ripgrep
from agentls.agent.offloop import STOP, Stopped, check_stop, run_off_loop
from agentls.agent.search import walk_key
from agentls.agent.secret_precheck import secret_prefilter
from agentls.agent.workspace import Workspace
from agentls.secret_files import SecretFiles
from agentls.settings import DEFAULT_SECRET_FILES
from agentls.tasks.base import DocumentSnapshot
from agentls.tasks.verify import detect_test_command

RG = ripgrep.find_ripgrep()
needs_rg = pytest.mark.skipif(RG is None, reason="ripgrep is not installed")
USER_SECRETS = (*DEFAULT_SECRET_FILES, "/private.txt", "**/secrets/*.json", "vault/", "*.cfg")


def _write(root: Path, rel: str, data: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree with every case where ripgrep and the Python walk could part ways."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "far.py").write_text("needle outside\n")
    root = tmp_path / "root"
    files: dict[str, str | bytes] = {
        ".gitignore": "build/\n*.log\n/top_only.txt\n!keep.log\ndocs/**/*.tmp\n",
        "app.py": "def main():\n    return 'needle'\n",
        "top_only.txt": "needle\n",
        "sub/top_only.txt": "needle in sub\n",
        "debug.log": "needle\n",
        "keep.log": "needle kept\n",
        "build/out.py": "needle\n",
        "docs/a/b.tmp": "needle\n",
        "docs/a/b.md": "needle doc\n",
        "pkg/.gitignore": "generated.py\n!build/\n",
        "pkg/generated.py": "needle\n",
        "pkg/real.py": "needle\nx = 1  \n",
        "pkg/build/kept.py": "needle re-included below\n",
        "pkg/deep/er/mod.py": "needle deep\n",
        "node_modules/dep/index.js": "needle dep\n",
        "pkg/node_modules/x.js": "needle nested dep\n",
        "pkg/__pycache__/m.pyc": b"\x00needle",
        ".venv/lib.py": "needle\n",
        ".hidden/conf.py": "needle hidden\n",
        ".env": "needle TOKEN\n",
        ".env.example": "needle example\n",
        "private.txt": "needle private\n",
        "sub/private.txt": "needle public\n",
        "secrets/a.json": "needle\n",
        "secrets/readme.md": "needle readme\n",
        "x/secrets/b.json": "needle\n",
        "vault/k.txt": "needle\n",
        "app.cfg": "needle\n",
        "deploy/id_rsa": "needle\n",
        "crlf.txt": "needle end\r\nsecond\r\n",
        "bom.py": "\ufeffneedle_first\nother\n",
        "latin.txt": b"caf\xe9 needle\n",
        "utf16.txt": "needle wide\n".encode("utf-16"),
        "early.bin": b"needle\x00binary\n",
        "late_nul.txt": b"needle early\n" + b"x" * 9000 + b"\n\x00\nneedle late\n",
        "big.txt": "needle\n" + "y" * 2_000_100 + "\n",
        "colon:name.py": "needle colon\n",
        "space name.py": "needle space\n",
        "look.py": "needle_ahead\nneedle_behind\n",
        "Zed.py": "needle\n",
        "a/z.py": "needle\n",
        "a/b/c.py": "needle\n",
        "a.py": "needle\n",
    }
    for rel, data in files.items():
        _write(root, rel, data)
    os.symlink(root / "app.py", root / "link_app.py")  # a link inside: listed
    os.symlink(outside / "far.py", root / "link_out.py")  # leaves the root: hidden
    os.symlink(outside, root / "linkdir")  # a directory link: never descended
    os.symlink(root / ".env", root / "innocent.txt")  # an innocent name for a secret
    os.symlink(root / "pkg", root / "pkglink")  # a directory link inside
    os.symlink(root / "missing", root / "broken.py")
    os.mkfifo(root / "pipe.py")
    return root


def _views(root: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> list[Workspace]:
    """The same workspace on ripgrep and on the Python walk."""
    monkeypatch.delenv(ripgrep.RIPGREP_ENV, raising=False)
    fast = Workspace(root, secret_files=USER_SECRETS, **kwargs)
    monkeypatch.setenv(ripgrep.RIPGREP_ENV, "off")
    slow = Workspace(root, secret_files=USER_SECRETS, **kwargs)
    monkeypatch.delenv(ripgrep.RIPGREP_ENV)
    assert fast._tree.rg is not None and slow._tree.rg is None
    return [fast, slow]


def _grep(ws: Workspace, pattern: str, path: str | None = None) -> list[tuple[str, int, str]]:
    return [(m.path, m.line, m.text) for m in ws.grep(pattern, path).matches]


@needs_rg
def test_ripgrep_and_python_walk_agree(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _views(tree, monkeypatch)
    assert len(_grep(fast, "needle")) > 20 and len(fast.find("**/*")) > 20  # not vacuous
    for pattern in ("**/*", "*.py", "pkg/**/*.py", "*.{log,txt}", "a/*"):
        assert fast.find(pattern) == slow.find(pattern), pattern
    for pattern, path in [
        ("needle", None),
        ("needle", "pkg"),
        ("needle", "node_modules"),  # named by the model: searched, as before
        ("needle", "pkg/node_modules"),
        ("needle", "pkglink"),  # through a directory link inside the root
        ("needle", "app.py"),
        ("^needle_first", None),  # after a UTF-8 BOM
        ("end$", None),  # before a CRLF
        ("caf. needle", None),  # a replaced invalid byte
        ("needle_(?=ahead)", None),  # look-ahead: ripgrep refuses it, Python searches
        (r"needle_(?<!x)behind", None),
        ("main(", None),  # invalid: literal
        ("x = 1  $", None),
        ("", "pkg/deep"),
    ]:
        assert _grep(fast, pattern, path) == _grep(slow, pattern, path), (pattern, path)
    for path in (".", "pkg", "pkg/build", "node_modules", "pkglink", "a"):
        assert fast.list_dir(path) == slow.list_dir(path), path


@needs_rg
def test_what_is_visible(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for ws in _views(tree, monkeypatch):
        found = ws.find("**/*")
        assert found == sorted(
            [
                ".env.example",
                ".gitignore",
                ".hidden/conf.py",
                "Zed.py",
                "a.py",
                "a/b/c.py",
                "a/z.py",
                "app.py",
                "big.txt",
                "bom.py",
                "colon:name.py",
                "crlf.txt",
                "docs/a/b.md",
                "early.bin",
                "keep.log",
                "late_nul.txt",
                "latin.txt",
                "link_app.py",
                "look.py",
                "pkg/.gitignore",
                "pkg/build/kept.py",
                "pkg/deep/er/mod.py",
                "pkg/real.py",
                "secrets/readme.md",
                "space name.py",
                "sub/private.txt",
                "sub/top_only.txt",
                "utf16.txt",
            ]
        )
        hits = {path for path, _, _ in _grep(ws, "needle")}
        # binary (NUL in the first 8 KiB, UTF-16), too big: skipped; a late NUL is text.
        assert not hits & {"early.bin", "utf16.txt", "big.txt"}
        assert ("late_nul.txt", 4, "needle late") in _grep(ws, "needle late")
        assert _grep(ws, "needle", "node_modules") == [
            ("node_modules/dep/index.js", 1, "needle dep")
        ]
        assert _grep(ws, "needle", "pkglink") == [
            ("pkglink/real.py", 1, "needle"),
            ("pkglink/build/kept.py", 1, "needle re-included below"),
            ("pkglink/deep/er/mod.py", 1, "needle deep"),
        ]


@needs_rg
def test_grep_lists_in_walk_order(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for ws in _views(tree, monkeypatch):
        order = [path for path, _, _ in _grep(ws, "^needle$")]
        # A directory's files by name, then each subdirectory with everything under it.
        assert order == ["Zed.py", "a.py", "a/z.py", "a/b/c.py", "pkg/real.py"]
        assert order == sorted(order, key=walk_key)


@needs_rg
def test_the_staged_view_overlays_the_disk(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tree / "app.py"
    opened = {app: DocumentSnapshot("def main():\n    return 'unsaved needle'\n", 3)}

    def provider(path: Path) -> DocumentSnapshot | None:
        return opened.get(path)

    def listing(path: Path) -> DocumentSnapshot | None:
        return opened.get(path)

    listing.open_paths = lambda: list(opened)  # type: ignore[attr-defined]
    for documents in (provider, listing):
        for ws in _views(tree, monkeypatch, documents=documents):
            ws.stage("pkg/real.py", "staged needle\n")
            ws.stage("build/new.py", "needle in an ignored folder\n")  # staged: always shown
            ws.stage("zz_new.py", "needle new\n")
            hits = _grep(ws, "needle")
            assert ("app.py", 2, "    return 'unsaved needle'") in hits
            assert ("pkg/real.py", 1, "staged needle") in hits
            assert ("pkg/real.py", 2, "x = 1  ") not in hits
            assert hits[-2:] == [
                ("build/new.py", 1, "needle in an ignored folder"),
                ("zz_new.py", 1, "needle new"),
            ]
            assert {"build/new.py", "zz_new.py"} <= set(ws.find("*.py"))


def test_grep_has_no_phantom_line_after_a_final_newline(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n\n")
    assert _grep(Workspace(tmp_path), "^$") == [("a.txt", 2, "")]


# -- the secret pre-check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "patterns",
    [
        DEFAULT_SECRET_FILES,
        USER_SECRETS,
        ("[abc]*.key", "\\!bang", "a/**/b", "**/x/", "foo?", "\\*.txt", "[!z]ed", "d/e/"),
        ("*.cfg", "!public.cfg", "vault/*", "!vault/ok.txt", "sec[0-9]/"),
    ],
)
def test_the_secret_precheck_never_misses_a_secret(patterns: tuple[str, ...]) -> None:
    secrets = SecretFiles(patterns)
    maybe = secret_prefilter(secrets)
    assert maybe is not None
    names = [
        "a",
        "b",
        "c",
        "x",
        "d",
        "e",
        "z",
        ".env",
        ".env.local",
        ".env.example",
        "id_rsa",
        "id_rsa.pub",
        "key.pem",
        "x.key",
        "akey.key",
        "!bang",
        "*.txt",
        "q.txt",
        "fooz",
        "foo",
        "zed",
        "bed",
        "ed",
        "vault",
        "ok.txt",
        "secrets",
        "a.json",
        "sec1",
        ".ssh",
        ".git",
        ".aws",
        "private.txt",
        "public.cfg",
        "app.cfg",
    ]
    rng = random.Random(13)
    for _ in range(20_000):
        rel = "/".join(rng.choice(names) for _ in range(rng.randint(1, 4)))
        for is_dir in (False, True):
            if secrets.matches(rel, is_dir):
                assert any(maybe(part) for part in rel.split("/")), (rel, is_dir)
    assert secret_prefilter(SecretFiles(["**"])) is None
    assert secret_prefilter(SecretFiles(["*", "a.txt"])) is None
    empty = secret_prefilter(SecretFiles([]))
    assert empty is not None and not empty("anything")


# -- once per run, off the loop ----------------------------------------------------------------


@needs_rg
def test_the_tree_is_listed_once_per_run(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class Counting(ripgrep.Run):
        def __init__(self, argv: list[str], cwd: Path, path: str) -> None:
            calls.append(argv)
            super().__init__(argv, cwd, path)

    monkeypatch.setattr(ripgrep, "Run", Counting)
    ws = Workspace(tree)
    ws.find("*.py")
    ws.find("**/*.md")
    detect_test_command(ws, "app.py")
    ws.grep("needle")
    ws.grep("needle", "pkg")
    listings = [argv for argv in calls if "--files" in argv]
    assert len(listings) == 1
    assert len(calls) == 3  # the listing and two searches


def test_off_loop_work_stops_when_its_caller_is_cancelled() -> None:
    stopped = threading.Event()
    started = threading.Event()

    def endless() -> None:
        started.set()
        try:
            for _ in itertools.count():
                check_stop()
                time.sleep(0.001)
        except Stopped:
            stopped.set()

    async def main() -> None:
        task = asyncio.ensure_future(run_off_loop(endless))
        await asyncio.to_thread(started.wait, 10)
        for _ in range(20):  # the loop keeps running while the work does
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(stopped.wait, 10)

    asyncio.run(main())
    assert stopped.is_set()


@needs_rg
def test_a_cancelled_search_kills_ripgrep(tmp_path: Path) -> None:
    for i in range(300):
        _write(tmp_path, f"d{i % 10}/f{i}.txt", "needle\n" * 50)
    ws = Workspace(tmp_path)
    ws._tree.rg = str(_slow_rg(tmp_path.parent / "bin"))
    stop = threading.Event()
    stop.set()
    token = STOP.set(stop)
    try:
        begin = time.perf_counter()
        with pytest.raises(Stopped):
            run = ws._tree.search_start("needle", False, tmp_path)
            ws._tree.search_finish(run, re.compile("needle"), set())
        assert time.perf_counter() - begin < 15  # the stand-in sleeps 30 s unless killed
    finally:
        STOP.reset(token)


def _slow_rg(folder: Path) -> Path:
    """A stand-in for ripgrep that takes 30 s (so only a kill ends it early)."""
    folder.mkdir(exist_ok=True)
    script = folder / "rg"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    return script
