"""The environment a sandboxed command gets, and the toolchain directories it must see."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["credential_files", "scrubbed_env", "toolchain_paths"]

_KEEP_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "USER",
        "LOGNAME",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "PYENV_ROOT",
        "PYENV_VERSION",
        "NODE_PATH",
        "GOPATH",
        "GOROOT",
        "GOFLAGS",
        "GOMODCACHE",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "JAVA_HOME",
        "NO_COLOR",
        "SOURCE_DATE_EPOCH",
    }
)
_KEEP_PREFIXES = ("LC_", "PYTHON", "PYTEST_")
# PYTHONSTARTUP/PYTHONINSPECT would run or stop at the user's interactive hooks.
_DROP_ENV = frozenset({"PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONBREAKPOINT"})
_SECRET_ENV = re.compile(
    r"TOKEN|KEY|SECRET|PASS(WORD|WD)?|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT", re.I
)
_CLOUD_ENV = re.compile(
    r"^(AWS|AZURE|GCP|GCLOUD|GOOGLE|GITHUB|GH|GITLAB|OPENAI|ANTHROPIC|HF|HUGGING|DOCKER|KUBE"
    r"|NPM|PYPI|TWINE|SSH|GPG|VAULT|SENTRY|SLACK|STRIPE|DATABASE|DB)",
    re.I,
)


def _secret_name(name: str) -> bool:
    return bool(_SECRET_ENV.search(name) or _CLOUD_ENV.match(name))


def scrubbed_env(source: Mapping[str, str], home: Path, tmp: Path) -> dict[str, str]:
    """The environment a sandboxed command gets: an allowlist of ``source``, minus secrets.

    ``HOME`` and the temp directories point into the sandbox; toolchains that keep their
    downloads under the real home (Go modules, cargo, rustup) are pointed at them read-only
    and told to stay offline, so `go test` and `cargo test` can work without the network.
    """
    env: dict[str, str] = {}
    for name, value in source.items():
        keep = name in _KEEP_ENV or name.startswith(_KEEP_PREFIXES)
        if keep and name not in _DROP_ENV and not _secret_name(name):
            env[name] = value
    # Relative PATH entries would find programs in the (model-written) working directory.
    path = [p for p in source.get("PATH", os.defpath).split(os.pathsep) if os.path.isabs(p)]
    env["PATH"] = os.pathsep.join(path)
    real_home = Path(source.get("HOME") or os.path.expanduser("~"))
    toolchain_dirs = {
        "GOMODCACHE": real_home / "go" / "pkg" / "mod",
        "CARGO_HOME": real_home / ".cargo",
        "RUSTUP_HOME": real_home / ".rustup",
        "PYENV_ROOT": real_home / ".pyenv",
    }
    for name, directory in toolchain_dirs.items():
        if name not in env and directory.is_dir():
            env[name] = str(directory)
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        TMP=str(tmp),
        TEMP=str(tmp),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        TERM="dumb",
        PYTHONUNBUFFERED="1",  # what was printed before a timeout still reaches the output
        GOPROXY="off",
        GOTOOLCHAIN="local",
        CARGO_NET_OFFLINE="true",
        npm_config_offline="true",
        npm_config_update_notifier="false",
    )
    return env


# --------------------------------------------------------------------------------------
# What of the disk a command sees besides the system directories: its toolchains
# --------------------------------------------------------------------------------------

# Shown in every sandbox anyway (the helper binds them), so never listed again.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Toolchain directories named by the environment (after scrubbing). GOPATH itself is left
# out: it holds other projects' sources; its module cache comes in as GOMODCACHE.
_TOOLCHAIN_DIRS = (
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYENV_ROOT",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "GOMODCACHE",
    "GOROOT",
    "JAVA_HOME",
)


def _prefix(program: Path) -> Path | None:
    """The installation prefix of a program in ``<prefix>/bin``, else None."""
    return program.parent.parent if program.parent.name in ("bin", "sbin") else None


def _shebang(program: Path) -> Path | None:
    """The absolute interpreter a script names on its first line (``#!/x/python``), if any."""
    try:
        with program.open("rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return Path(words[0]) if words and words[0].startswith("/") else None


def toolchain_paths(
    env: Mapping[str, str],
    commands: Sequence[str],
    *,
    workspace: Path,
    home: Path | None,
    interpreter: tuple[str, ...] = (),
) -> list[str]:
    """Directories a sandboxed command must see to run ``commands``; everything else is hidden.

    ``env`` is the command's (scrubbed) environment. Shown: every ``PATH`` directory; the
    toolchain directories the environment names (virtualenv, conda, pyenv, cargo, rustup, Go,
    Java); ``interpreter`` (the running Python's prefixes); and for the first word of each
    allowed command, found on ``PATH``, the prefix it is installed in (``/opt/node`` for
    ``/opt/node/bin/node``), also for its resolved location and a script's ``#!`` interpreter.

    Never shown, because they would show far more than a toolchain: ``/``, the home directory
    itself, the workspace or anything above it, and one-level directories such as ``/opt`` or
    ``/work``. Below the home, ``~/.local`` is reduced to ``bin`` and ``lib`` (``share`` holds
    keyrings). Paths inside the workspace are covered by the view; system paths are always shown.
    """
    real_workspace = Path(os.path.realpath(workspace))
    homes = {h for h in (home, Path(os.path.realpath(home)) if home else None) if h}
    found: set[Path] = set()

    def add(raw: str | Path | None) -> None:
        if not raw or not os.path.isabs(raw):
            return
        for path in {Path(os.path.normpath(raw)), Path(os.path.realpath(raw))}:
            if len(path.parts) < 3 or path in homes or not path.exists():
                continue  # '/', '/opt', '/work', the home: much more than a toolchain
            if real_workspace.is_relative_to(path) or workspace.is_relative_to(path):
                continue  # the workspace or above it: the view stands in for it
            if path.is_relative_to(workspace) or path.is_relative_to(real_workspace):
                continue  # inside the workspace: the view (and its pass-through dirs) has it
            if path.name == ".local" and path.parent in homes:
                found.update(p for p in (path / "bin", path / "lib") if p.exists())
                continue
            found.add(path)

    search = env.get("PATH", "")
    for entry in search.split(os.pathsep):
        add(entry)
    for name in _TOOLCHAIN_DIRS:
        add(env.get(name))
    for entry in env.get("NODE_PATH", "").split(os.pathsep):
        add(entry)
    for raw in interpreter:
        add(raw)
    for command in commands:
        words = command.split()
        located = shutil.which(words[0], path=search) if words else None
        if located is None:
            continue
        program = Path(located)
        for candidate in (program, Path(os.path.realpath(program))):
            add(candidate.parent)
            add(_prefix(candidate))
            interp = _shebang(candidate)
            if interp is not None:
                add(interp.parent)
                add(_prefix(interp))
                add(_prefix(Path(os.path.realpath(interp))))
    # Drop what the system directories or a shorter entry already show.
    ordered = sorted(found, key=lambda p: (len(p.parts), str(p)))
    kept: list[Path] = []
    for path in ordered:
        if any(path.is_relative_to(s) for s in SYSTEM_DIRS):
            continue
        if any(path.is_relative_to(k) for k in kept):
            continue
        kept.append(path)
    return [str(p) for p in kept]


# Registry tokens that live inside toolchain directories (cargo's credentials in CARGO_HOME,
# npm's and pip's configuration in an install prefix): shown empty inside the sandbox.
CREDENTIAL_NAMES = (
    "credentials",
    "credentials.toml",
    ".credentials.toml",
    ".npmrc",
    "etc/npmrc",
    ".pypirc",
    "pip.conf",
    ".netrc",
    ".git-credentials",
    ".docker/config.json",
)


def credential_files(directories: Sequence[str]) -> list[str]:
    """The known credential files at the top of the shown toolchain ``directories``."""
    found: list[str] = []
    for directory in directories:
        for name in CREDENTIAL_NAMES:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found.append(str(path))
    return found
