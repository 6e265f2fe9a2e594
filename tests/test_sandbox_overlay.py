"""The sandbox's overlay view: the workspace itself, read-only, under a private layer.

What must hold exactly as with the scratch copy it replaces (docs/security.md): secret files
are never visible to a command (every pattern shape of ``tests/test_secret_match.py``, in a git
repository and without one, also when made between commands), what a command writes never
reaches the workspace (not even through a link it made), sockets and other projects stay out
of reach, the network is isolated, staged edits sync incrementally, and closing, cancelling
or ``terminate_all`` (and the server dying) removes the upper layer with its holder.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agentls import sandbox as sandbox_module
from agentls.sandbox import Isolation, Sandbox, SandboxConfig, SandboxError, detect_isolation
from agentls.sandbox import overlay as overlay_module
from agentls.sandbox.isolation import probe
from agentls.sandbox.listing import list_view, topmost
from agentls.sandbox.overlay import overlay_possible
from agentls.sandbox.secret_scan import literal_pieces, secret_paths
from agentls.secret_files import SecretFiles
from agentls.settings import Settings
from test_secret_match import LINKS, PATTERNS, PUBLIC, SECRET, marker, secret_project

PYTEST = "python -m pytest -q -s -p no:cacheprovider --disable-plugin-autoload"
ISOLATION = detect_isolation()
needs_overlay = pytest.mark.skipif(
    overlay_possible(ISOLATION) is not None, reason="no overlay view on this machine"
)
COMMANDS = ("cat", "ls -R", "python3 -c", "python -m pytest", "true")


def config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "allowed_commands": COMMANDS,
        "timeout": 30.0,
        "kill_grace": 0.2,
        "exclude": PATTERNS,
    }
    values.update(overrides)
    return SandboxConfig(**values)


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(root), *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def holder_pid(sandbox: Sandbox) -> int:
    view = sandbox._view
    assert view is not None and view.mechanism == "overlay"
    process = view._process  # type: ignore[union-attr]
    assert process is not None
    return int(process.pid)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


# -- the secret scan: a prefilter that never lets a secret through ---------------------------


@pytest.mark.parametrize(
    ("pattern", "pieces"),
    [
        (".env*", [".env"]),
        ("/private.txt", ["private.txt"]),
        ("**/secrets/*.json", ["secrets", ".json"]),
        ("vault/", ["vault"]),
        ("[abc]x*.key", ["x", ".key"]),
        ("a\\*b", ["a", "b"]),
        ("id_rsa*  ", ["id_rsa"]),
        ("\\!imp", ["!imp"]),
        ("!negated", []),
        ("# comment", []),
        ("*", None),
        ("foo[", None),
    ],
)
def test_literal_pieces(pattern: str, pieces: list[str] | None) -> None:
    assert literal_pieces(pattern) == pieces


@pytest.mark.parametrize(
    "patterns",
    [
        Settings().secret_files,
        PATTERNS,
        ("*.PEM", "[Ss]ecret*", "deep/**/x.txt", "a?c", "!a?c/keep"),
        ("*",),
        ("!only-negations",),
    ],
)
def test_secret_scan_agrees_with_the_one_matcher(patterns: tuple[str, ...]) -> None:
    parts = [*{p.rpartition("/")[2] for p in SECRET + PUBLIC}, "vault", "secrets", "x", "deep"]
    parts += [".env", ".env.example", "k.pem", "K.PEM", "Secretz", "aXc", "x.txt", "İx.pem"]
    rng = random.Random(13)
    paths = sorted(
        {"/".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) for _ in range(5000)}
    )
    secrets = SecretFiles(patterns)
    assert secret_paths(secrets, paths) == [p for p in paths if secrets.matches(p)]


# -- the listing: what the view hides ----------------------------------------------------------


def layout(root: Path) -> None:
    for rel, text in {
        "src/app.py": "x = 1\n",
        ".gitignore": "build/\n*.log\n",
        "build/out.py": "y = 1\n",
        "run.log": "log\n",
        ".env": "TOKEN=s3cr3t\n",
        "keys/id_rsa": "KEY\n",
        "__pycache__/app.pyc": "\0",
        "node_modules/dep/index.js": "1\n",
        "a/b/c/node_modules/dep.js": "1\n",
        "nested/.git/HEAD": "ref\n",
        "nested/inner.py": "1\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "empty").mkdir()
    os.mkfifo(root / "src" / "pipe")
    os.symlink("/etc/passwd", root / "src" / "out_link")
    os.symlink("../.env", root / "src" / "env_link")
    os.symlink("app.py", root / "src" / "in_link")


@pytest.mark.parametrize("repository", [True, False])
def test_the_listing_hides_what_the_copy_left_out(tmp_path: Path, repository: bool) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    layout(root)
    if repository:
        git(root, "init", "-q")
    found = list_view(root, SecretFiles(Settings().secret_files))
    assert found.source == ("git" if repository else "find")
    expected = {".env", "keys/id_rsa", "__pycache__", "a/b/c/node_modules"}
    expected |= {"src/pipe", "src/out_link", "src/env_link"}
    if repository:  # ignored entries, one line per tree; a repository inside: all of it
        expected |= {".git", "build", "run.log", "nested"}
    else:  # every file but version-control internals, as the copy's walk did
        expected |= {"nested/.git"}
    assert found.hidden == expected
    assert found.passthrough == ["node_modules"]
    assert found.links_out == ["src/out_link"]
    assert {"", "src", "empty", "keys"} <= set(found.dirs)
    assert not any(d.startswith(("nested/.git", "node_modules", "__pycache__")) for d in found.dirs)


TRICKY = {
    ".gitignore": "build/\n*.log\n!keep.log\nstar/*\n!star/kept.txt\n/anchored\n"
    "deep/**/gen_*.py\nuntracked_dir/*.log\n",
    "src/a.py": "",
    "src/b.log": "",
    "src/keep.log": "",
    "build/x.py": "",
    "build/sub/y.py": "",
    "star/f.txt": "",
    "star/kept.txt": "",
    "star/x/g.txt": "",
    "anchored/z.txt": "",
    "other/anchored/z.txt": "",
    "deep/p/q/gen_1.py": "",
    "deep/p/q/real.py": "",
    "sub/.gitignore": "*.tmp\n!important.tmp\n",
    "sub/a.tmp": "",
    "sub/important.tmp": "",
    "sub/dir/b.tmp": "",
    "untracked_dir/u.py": "",
    "untracked_dir/u.log": "",
    "untracked_dir/inner/v.py": "",
    "untracked_dir/inner/w.log": "",
    "tracked_ignored.log": "",
    "pkg/__pycache__/m.pyc": "",
    "pkg/m.py": "",
    "a/b/c/node_modules/x.js": "",
    "node_modules/dep/i.js": "",
    "nested/n.py": "",
    "weird name with spaces.py": "",
    "\u00fcn\u00ef.py": "",
    "new\nline.py": "",
}


def test_the_view_shows_exactly_what_git_lists(tmp_path: Path) -> None:
    """Visible files (not under a hidden path) are git's own listing of tracked and
    untracked-but-not-ignored files: nested and negated ignore rules, anchored and ``**``
    patterns, force-added files, odd names; minus caches, pass-through contents and links
    out. Special files are hidden."""
    root = tmp_path / "proj"
    for rel, text in TRICKY.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "empty").mkdir()
    os.symlink("a.py", root / "src" / "link_in")
    os.symlink("/etc/hostname", root / "src" / "link_out")
    os.mkfifo(root / "src" / "pipe")
    git(root / "nested", "init", "-q")  # a repository of its own: git lists none of it
    git(root, "init", "-q")
    git(root, "add", ".gitignore", "src", "sub", "pkg", "star/kept.txt", "deep")
    git(root, "add", "-f", "tracked_ignored.log", "pkg/__pycache__/m.pyc")
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    expected = {
        os.fsdecode(n)
        for n in listed.split(b"\0")
        if n and not n.endswith(b"/") and not n.startswith((b"node_modules/", b"pkg/__"))
    } - {"a/b/c/node_modules/x.js", "src/link_out"}
    found = list_view(root, SecretFiles([]))
    assert found.source == "git"

    def hidden(rel: str) -> bool:
        parts = rel.split("/")
        return any("/".join(parts[:n]) in found.hidden for n in range(1, len(parts) + 1))

    seen = set()
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        if rel_dir == "node_modules":
            dirs[:] = []
            continue
        for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not hidden(rel):
                seen.add(rel)
    assert seen == expected
    assert found.passthrough == ["node_modules"]
    assert {"src/pipe", "src/link_out", ".git", "nested", "pkg/__pycache__"} <= found.hidden
    assert "empty" in found.dirs  # not ignored, so shown (the view's directories)


def test_topmost_keeps_only_the_outer_paths() -> None:
    assert topmost(["a/b", "a", "ab", "c/d", "c/d/e", "c/dd"]) == ["a", "ab", "c/d", "c/dd"]


# -- secrets through the sandbox -----------------------------------------------------------------


def assert_only_public(output: str) -> None:
    assert "SECRET-" not in output, output
    for rel in PUBLIC:
        assert marker(rel) in output, (rel, output)


@needs_overlay
@pytest.mark.parametrize("repository", ["none", "untracked", "committed"])
async def test_no_secret_pattern_reaches_a_command(tmp_path: Path, repository: str) -> None:
    """Every shape of test_secret_match: anchored, **, negated, directory, links to secrets;
    the files plain, untracked in a repository, or committed to it."""
    root = secret_project(tmp_path / "proj")
    if repository != "none":
        git(root, "init", "-q")
    if repository == "committed":
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "all, secrets too")
    async with Sandbox(root, config(), mechanism="overlay") as sandbox:
        listing = await sandbox.run("ls -R")
        cat = await sandbox.run("cat " + " ".join([*SECRET, *LINKS, "cfgdir/key.txt", *PUBLIC]))
        walk = await sandbox.run(f"{PYTEST} test_walk.py")
        assert sandbox.copy_stats.skipped_secrets == len(SECRET) + len(LINKS)
        seen = sorted(
            p.relative_to(sandbox.work).as_posix()
            for p in sandbox.work.rglob("*")
            if p.is_file() or p.is_symlink()
        )
    top = listing.output.split(".:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert sorted(top) == ["public.cfg", "secrets", "src", "sub", "test_walk.py", "x"]
    for name in ("app.cfg", "a.json", "b.json", "vault", "key.txt", "alias.txt", "cfgdir"):
        assert name not in listing.output, listing.output
    assert_only_public(cat.output)
    assert walk.exit_code == 0, walk.output
    assert_only_public(walk.output)
    assert all(not p.startswith(".git/") for p in seen)
    assert sorted(p for p in seen if not p.startswith((".git/", "__pycache__/"))) == sorted(
        [*PUBLIC, "test_walk.py"]
    )


@needs_overlay
async def test_what_appears_between_commands_is_hidden_too(tmp_path: Path) -> None:
    """The lower layer is the live workspace: a secret file, a new ignored directory and a
    socket made after the first command are checked before the next one."""
    root = secret_project(tmp_path / "proj")
    git(root, "init", "-q")
    (root / ".gitignore").write_text("dist/\n")
    async with Sandbox(root, config(), mechanism="overlay") as sandbox:
        first = await sandbox.run("cat public.cfg")
        assert first.exit_code == 0
        (root / "sub" / "late.cfg").write_text("SECRET-late\n")
        (root / "dist").mkdir()
        (root / "dist" / "bundle.js").write_text("SECRET-ignored\n")
        (root / "empty_then_not").mkdir()
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(root / "src" / "app.sock"))
        server.listen()
        try:
            code = (
                "import socket, os; s = socket.socket(socket.AF_UNIX); "
                "print('SOCK', os.path.exists('src/app.sock')); "
                "s.connect('src/app.sock'); print('CONNECTED')"
            )
            probe_sock = await sandbox.run(f'python3 -c "{code}"')
        finally:
            server.close()
        cat = await sandbox.run("cat sub/late.cfg dist/bundle.js")
        # A file made inside a directory that was empty at the last listing.
        (root / "empty_then_not" / "x.cfg").write_text("SECRET-in-empty\n")
        again = await sandbox.run("cat empty_then_not/x.cfg")
    assert "SOCK False" in probe_sock.output and "CONNECTED" not in probe_sock.output
    assert "SECRET-" not in cat.output + again.output
    assert "No such file or directory" in again.output


# -- writes never reach the workspace ------------------------------------------------------------


WRITER = """\
import os, pathlib, shutil
pathlib.Path('src/app.py').write_text('CHANGED')
os.remove('public.cfg')
shutil.move('sub', 'moved')  # a directory of the lower layer: copied up, then renamed
os.makedirs('made/deep', exist_ok=True)
pathlib.Path('made/deep/new.txt').write_text('new')
os.chmod('test_walk.py', 0o777)
os.symlink(OUTSIDE, 'escape')
os.symlink(WORKSPACE, 'self_link')
print('WROTE')
"""


@needs_overlay
async def test_writes_stay_in_the_upper_layer_even_through_links(tmp_path: Path) -> None:
    root = secret_project(tmp_path / "proj")
    outside = tmp_path / "outside"
    outside.mkdir()
    before = {
        p.relative_to(root).as_posix(): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in root.rglob("*")
    }
    code = WRITER.replace("OUTSIDE", repr(str(outside))).replace("WORKSPACE", repr(str(root)))
    async with Sandbox(root, config(), mechanism="overlay") as sandbox:
        await sandbox.sync({"writer_test.py": f"def test_w():\n    exec({code!r})\n"})
        result = await sandbox.run(f"{PYTEST} writer_test.py")
        assert result.exit_code == 0 and "WROTE" in result.output, result.output
        # Staged edits through the links the command made are refused (they are written
        # in a chroot of the view, where those links lead nowhere).
        for rel in ("escape/planted.txt", "self_link/src/app.py"):
            with pytest.raises(SandboxError, match="a link on its way"):
                await sandbox.sync({rel: "planted\n"})
        seen = await sandbox.run("cat src/app.py made/deep/new.txt moved/private.txt")
        assert seen.output == "CHANGEDnew" + marker("sub/private.txt") + "\n", seen.output
    after = {
        p.relative_to(root).as_posix(): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in root.rglob("*")
    }
    assert after == before
    assert list(outside.iterdir()) == []


# -- staged edits sync incrementally -------------------------------------------------------------


@needs_overlay
async def test_staged_edits_update_the_upper_layer(tmp_path: Path) -> None:
    root = secret_project(tmp_path / "proj")
    (root / "src" / "run.sh").write_text("echo hi\n")
    (root / "src" / "run.sh").chmod(0o755)
    async with Sandbox(root, config(), mechanism="overlay") as sandbox:
        assert await sandbox.sync({"src/app.py": "v1\n", "new/file.txt": "n1\n"}) == 2
        assert (await sandbox.run("cat src/app.py new/file.txt")).output == "v1\nn1\n"
        assert await sandbox.sync({"src/app.py": "v2\n", "new/file.txt": "n1\n"}) == 1
        assert (await sandbox.run("cat src/app.py")).output == "v2\n"
        assert await sandbox.sync({"src/run.sh": "echo staged\n"}, ["public.cfg"]) == 4
        work = sandbox.work
        assert (work / "src" / "app.py").read_text() == marker("src/app.py") + "\n"  # restored
        assert not (work / "new").joinpath("file.txt").exists()
        assert not (work / "public.cfg").exists()
        assert (work / "src" / "run.sh").stat().st_mode & 0o111  # the executable bit is kept
        # A secret staged (the model's own text) is shown; unstaged, it is hidden again.
        await sandbox.sync({"vault/key.txt": "model text\n"})
        assert (await sandbox.run("cat vault/key.txt")).output == "model text\n"
        await sandbox.sync({})
        assert "No such file" in (await sandbox.run("cat vault/key.txt")).output
        assert (work / "public.cfg").read_text() == marker("public.cfg") + "\n"
        assert sandbox.files_written == 11
        assert sandbox.usage() < 1_000_000


# -- cleanup ---------------------------------------------------------------------------------------


@needs_overlay
async def test_close_and_terminate_all_end_the_holder_and_its_layer(tmp_path: Path) -> None:
    root = secret_project(tmp_path / "proj")
    first = Sandbox(root, config(), mechanism="overlay")
    second = Sandbox(root, config(), mechanism="overlay")
    await first.sync({"big.bin": "x" * 1_000_000})
    await second.sync({})
    pids = [holder_pid(first), holder_pid(second)]
    paths = [first.path, second.path]
    assert first.usage() >= 1_000_000
    await first.aclose()
    assert wait_dead(pids[0]) and paths[0] is not None and not paths[0].exists()
    assert sandbox_module.terminate_all() >= 1
    assert wait_dead(pids[1]) and paths[1] is not None and not paths[1].exists()
    with pytest.raises(SandboxError, match="closed"):
        await second.run("true")


@needs_overlay
async def test_closing_while_the_view_is_being_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = secret_project(tmp_path / "proj")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    listing_started = threading.Event()
    release = threading.Event()
    slow = list_view

    def slow_listing(*args: Any) -> Any:
        listing_started.set()
        release.wait(10)
        return slow(*args)

    monkeypatch.setattr(overlay_module, "list_view", slow_listing)
    sandbox = Sandbox(root, config(), mechanism="overlay")
    sync = asyncio.create_task(sandbox.sync({}))
    while not listing_started.is_set():
        await asyncio.sleep(0.01)
    holders = [p for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if _is_holder(p)]
    sandbox_module.terminate_all()  # as a signal would, mid-listing
    release.set()
    with pytest.raises(SandboxError, match="closed"):
        await sync
    for _ in range(100):
        if not list(temp.iterdir()):
            break
        await asyncio.sleep(0.05)
    assert list(temp.iterdir()) == []
    assert all(wait_dead(pid) for pid in holders if str(temp) in _cmdline(pid))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _is_holder(pid: int) -> bool:
    return "holder.py" in _cmdline(pid)


DYING_SERVER = """\
import asyncio, os, signal, sys
from pathlib import Path
from agentls.sandbox import Sandbox, SandboxConfig

async def main():
    sandbox = Sandbox(Path(sys.argv[1]), SandboxConfig(), mechanism="overlay")
    await sandbox.sync({})
    print(sandbox._view._process.pid, sandbox.path, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup at all

asyncio.run(main())
"""


@needs_overlay
def test_the_holder_goes_when_the_server_dies_hard(tmp_path: Path) -> None:
    """SIGKILL gives the server no chance to clean up: the holder sees EOF on its stdin and
    exits, and its tmpfs (the upper layer) goes with its namespaces."""
    root = secret_project(tmp_path / "proj")
    done = subprocess.run(
        [sys.executable, "-c", DYING_SERVER, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pid_text, path = done.stdout.split()
    try:
        assert wait_dead(int(pid_text))
        # The sandbox's own directory (home, temp: empty here) is the atexit hook's, which
        # a SIGKILL skips; the upper layer was never in it.
        assert not any(Path(path, "layers").iterdir())
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- where the overlay is not available -----------------------------------------------------------


async def test_without_the_overlay_the_copy_stands_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = secret_project(tmp_path / "proj")
    broken = tmp_path / "holder.py"
    broken.write_text(
        "import json; print(json.dumps({'error': 'overlay: Operation not permitted'}))\n"
    )
    monkeypatch.setattr(overlay_module, "HOLDER_PATH", broken)
    if overlay_possible(ISOLATION) is None:
        with pytest.raises(SandboxError, match="Operation not permitted"):
            async with Sandbox(root, config(), mechanism="overlay") as forced:
                await forced.sync({})
    async with Sandbox(root, config()) as sandbox:
        await sandbox.sync({"src/new.py": "staged\n"})
        assert sandbox.mechanism == "copy"
        assert (sandbox.work / "src" / "new.py").read_text() == "staged\n"
        assert sandbox.copy_stats.skipped_secrets == len(SECRET) + len(LINKS)
        if ISOLATION.network:
            assert_only_public((await sandbox.run(f"{PYTEST} test_walk.py")).output)
    assert sandbox.overlay_note


# -- the helper joining by itself (no unshare program) -------------------------------------------


SELF = Isolation((), True, True, True, False)


@needs_overlay
async def test_the_helper_joins_the_view_itself(
    tmp_path: Path, listener: tuple[int, list[bytes]]
) -> None:
    if not probe((), True, tmp_path / "probe").get("fs"):
        pytest.skip("the helper cannot build a new root by itself here")
    port, got = listener
    root = secret_project(tmp_path / "proj")
    code = (
        "import os, socket; print('SHADOW', os.path.exists('/etc/shadow'), flush=True); "
        f"socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'LEAK')"
    )
    async with Sandbox(root, config(), isolation=SELF, mechanism="overlay") as sandbox:
        await sandbox.sync({"src/app.py": "staged\n"})
        cat = await sandbox.run("cat src/app.py private.txt")
        walk = await sandbox.run(f"{PYTEST} test_walk.py")
        # No PID namespace here: the holder is in sight, yet its root (the host's) is not.
        peek = (
            "import os\ntry:\n"
            f"    print('ROOT', os.listdir('/proc/{holder_pid(sandbox)}/root/etc'))\n"
            "except OSError as exc:\n    print('NO ROOT', exc.strerror)\n"
        )
        await sandbox.sync(
            {"src/app.py": "staged\n", "peek_test.py": f"def test_p():\n    exec({peek!r})\n"}
        )
        peeked = await sandbox.run(f"{PYTEST} peek_test.py")
        net = await sandbox.run(f'python3 -c "{code}"')
    assert "NO ROOT Permission denied" in peeked.output, peeked.output
    assert cat.filesystem_protected and cat.output.startswith("staged\n"), cat.output
    assert "private.txt: No such file" in cat.output
    assert "SHADOW False" in net.output, net.output
    assert "SECRET-" not in walk.output and "PUBLIC-public.cfg" in walk.output
    assert net.exit_code != 0 and got == []


# -- the rest of the safety properties, on the overlay --------------------------------------------


@needs_overlay
async def test_the_overlay_keeps_the_disk_and_the_network_out_of_reach(
    tmp_path: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, got = listener
    root = secret_project(tmp_path / "proj")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("dep\n")
    code = textwrap.dedent(
        f"""
        import os, socket, json
        out = {{}}
        out['etc'] = sorted(os.listdir('/etc'))
        out['shadow'] = os.path.exists('/etc/shadow')
        out['parent'] = sorted(os.listdir({str(tmp_path)!r}))
        out['caps'] = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')]
        try:
            open('node_modules/dep/index.js', 'a').write('x')
            out['node_modules'] = 'written'
        except OSError as exc:
            out['node_modules'] = exc.strerror
        try:
            socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'LEAK')
            out['net'] = 'connected'
        except OSError as exc:
            out['net'] = 'refused'
        print('RESULT', json.dumps(out))
        """
    )
    (root / "probe_test.py").write_text(f"def test_probe():\n    exec({code!r})\n")
    async with Sandbox(root, config(), mechanism="overlay") as sandbox:
        result = await sandbox.run(f"{PYTEST} probe_test.py")
    assert result.filesystem_protected, result.output
    found = json.loads(result.output.split("RESULT ", 1)[1].splitlines()[0])
    assert not found["shadow"] and "shadow" not in found["etc"] and "passwd" in found["etc"]
    assert found["parent"] == ["proj"]  # no sibling project, no holder layers
    assert found["caps"] == ["0000000000000000"]
    assert found["node_modules"] == "Read-only file system"  # shown as it is, read-only
    assert found["net"] == "refused" and got == []
    assert (root / "node_modules" / "dep" / "index.js").read_text() == "dep\n"


UNPRIVILEGED_DRIVER = """\
import json, os, subprocess, sys
args = json.loads(sys.argv[1])
base, code = args["base"], args["code"]
options = {"lower": args["ws"], "mount": base + "/work", "layers": base + "/layers"}
options["size"] = 1 << 26
holder = subprocess.Popen(
    [sys.executable, "-I", "-S", code + "/holder.py", json.dumps(options)],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
)
def ask(request):
    holder.stdin.write((json.dumps(request) + "\\n").encode())
    holder.stdin.flush()
    return json.loads(holder.stdout.readline())
out = {"ready": json.loads(holder.stdout.readline())}
out["mount"] = ask({"op": "mount", "hide": [".env"]})
out["sync"] = ask({"op": "sync", "ops": [["put", "new.txt", "staged", None]]})
out["view"] = sorted(os.listdir(f"/proc/{holder.pid}/root{base}/work"))
wrapper = [w.replace("=PID", f"={holder.pid}") for w in args["wrapper"]]
helper = dict(args["helper"], **{k: holder.pid for k in args["extra"]})
script = "cat new.txt; echo; cat .env; echo x > a.txt; cat a.txt; grep CapEff /proc/self/status"
helper_argv = [sys.executable, "-I", "-S", code + "/helper.py", json.dumps(helper)]
done = subprocess.run(
    [*wrapper, *helper_argv, "/bin/sh", "-c", script],
    capture_output=True, text=True,
)
out["command"] = [done.returncode, done.stdout, done.stderr]
holder.stdin.close()
out["exit"] = holder.wait(timeout=10)
print(json.dumps(out))
"""


@needs_overlay
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
    reason="needs root to become an unprivileged user (setpriv) and a system python3",
)
def test_an_unprivileged_user_gets_the_same_view(tmp_path: Path) -> None:
    """Users are not root: as uid 65534, the holder mounts the view, the server side reads
    it through /proc/PID/root, and a command joins it with the wrapper the sandbox builds."""
    from types import SimpleNamespace

    top = Path(tempfile.mkdtemp(prefix="agentls-nobody-", dir="/tmp"))
    try:
        top.chmod(0o755)
        code, ws, base = top / "code", top / "ws", top / "base"
        for path in (code, ws, *(base / sub for sub in ("work", "layers", "root", "home"))):
            path.mkdir(parents=True)
        for name in ("holder.py", "helper.py"):
            shutil.copy(Path(overlay_module.__file__).with_name(name), code / name)
        (ws / "a.txt").write_text("hi\n")
        (ws / ".env").write_text("SECRET\n")
        subprocess.run(["chown", "-R", "65534:65534", str(top)], check=True)
        view = overlay_module.OverlayView(ws, base, SecretFiles([]), 1 << 26)
        view._process = SimpleNamespace(pid="PID", poll=lambda: None)  # type: ignore[assignment]
        wrapper, extra = view.command_wrapper(ISOLATION)
        helper = {
            "self_unshare": ISOLATION.self_unshare,
            "fs": True,
            "keep": str(base),
            "work": str(base / "work"),
            "newroot": str(base / "root"),
            "home": str(base / "home"),
            "expose": [],
            "mask": [],
            "root": str(ws),
            "passthrough": [],
            "cwd": str(ws),
            "nproc": 4096,
            "fsize": 1 << 30,
        }
        arguments: dict[str, Any] = {"base": str(base), "code": str(code), "ws": str(ws)}
        arguments["wrapper"] = wrapper
        arguments |= {"helper": helper, "extra": list(extra)}
        done = subprocess.run(
            [
                *("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"),
                *("/usr/bin/python3", "-c", UNPRIVILEGED_DRIVER, json.dumps(arguments)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["ready"]["ok"] and out["ready"]["userns"], out
        assert out["mount"] == {"ok": True} and out["sync"] == {"ok": True, "errors": []}
        assert out["view"] == ["a.txt", "new.txt"]
        code_, stdout, stderr = out["command"]
        assert code_ == 0 and stdout.startswith("staged\nx\n"), out
        assert ".env: No such file" in stderr and "CapEff:\t0000000000000000" in stdout
        assert (ws / "a.txt").read_text() == "hi\n"
        assert out["exit"] == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)
