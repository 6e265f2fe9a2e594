"""Fault injection on the LSP side: the real server, raw bytes on its stdio.

What a client checks after each fault: exactly one reply to every request it sent, with the
error code the LSP/JSON-RPC specs name; the server still answers ``agent/status``; the exit
status. Categories: frames, params, documents, lifecycle, memory, races. Backend and signal
faults are in ``test_faults_backend.py``. The outcome table: ``python bench/faults.py``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fault_support import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REPLY_TIMEOUT,
    REQUEST_CANCELLED,
    REQUEST_FAILED,
    SERVER_NOT_INITIALIZED,
    RawServer,
    assert_error,
    assert_one_reply,
    fault,
    frame,
    message,
    model_options,
    raw_server,
    write_table,
)
from lsp_support import CALC, closed_port, server_env
from scripted_model import Reply, ScriptedModelServer


@pytest.fixture(scope="module", autouse=True)
def fault_table() -> Iterator[None]:
    """Write this module's outcomes to the table at the end (when AGENTLS_FAULT_TABLE is set)."""
    yield
    write_table("test_faults")


def open_calc(server: RawServer, tmp_path: Path, name: str = "calc.py") -> str:
    """Write CALC to proj/<name> and open it in the server with that text; its URI."""
    path = tmp_path / "proj" / name
    path.write_text(CALC)
    return server.open(path, CALC)


def status_request(msg_id: int) -> bytes:
    """A framed agent/status request."""
    return message(id=msg_id, method="agent/status", params={})


# ---- frames --------------------------------------------------------------------------------


@dataclass
class FrameCase:
    """Bytes to send, and what must come back: error codes (or None: a result) per id, and the
    codes of the id-null errors that report broken frames (at least these, in order)."""

    name: str
    data: bytes
    replies: dict[int, int | None] = field(default_factory=lambda: {2: None})
    null_errors: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.name


STATUS_1 = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent/status", "params": {}})
NEXT = status_request(2)  # the well-formed message after the fault, which must be answered

FRAME_CASES = [
    FrameCase("nonnumeric-length", b"Content-Length: abc\r\n\r\n" + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("negative-length", b"Content-Length: -5\r\n\r\n" + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("missing-length",
              b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("length-too-small",
              b"Content-Length: %d\r\n\r\n" % (len(STATUS_1) - 10) + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("length-too-large",
              b"Content-Length: %d\r\n\r\n" % (len(STATUS_1) + 30) + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("length-zero", b"Content-Length: 0\r\n\r\n" + NEXT, null_errors=(PARSE_ERROR,)),
    FrameCase("huge-length", b"Content-Length: 1000000000000\r\n\r\n{\"x\": 1}" + NEXT,
              null_errors=(INVALID_REQUEST,)),
    FrameCase("conflicting-lengths",
              b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n" + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("lf-only-header",
              b"Content-Length: %d\n\n" % len(STATUS_1) + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("junk-before-message", b"hello world\r\n" + NEXT, null_errors=(PARSE_ERROR,)),
    FrameCase("unicode-junk-header",
              "Cöntent-Längth: 12\r\n\r\n".encode() + STATUS_1.encode() + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("binary-junk", bytes(range(256)) * 4 + NEXT, null_errors=(PARSE_ERROR,)),
    FrameCase("stray-crlf", b"\r\n\r\n" + NEXT + b"\r\n" + status_request(3),
              replies={2: None, 3: None}),
    FrameCase("invalid-json", frame(b"{not json") + NEXT, null_errors=(PARSE_ERROR,)),
    FrameCase("truncated-json", frame(STATUS_1[:-3]) + NEXT, null_errors=(PARSE_ERROR,)),
    FrameCase("invalid-utf8",
              frame(b'{"jsonrpc":"2.0","id":1,"method":"agent/status","params":{"x":"\xff\xfe"}}')
              + NEXT, null_errors=(PARSE_ERROR,)),
    FrameCase("deep-nesting", frame(b"[" * 200_000 + b"]" * 200_000) + NEXT,
              null_errors=(PARSE_ERROR,)),
    FrameCase("batch-array", frame("[" + STATUS_1 + "]") + NEXT, null_errors=(INVALID_REQUEST,)),
    FrameCase("scalar", frame(b"42") + NEXT, null_errors=(INVALID_REQUEST,)),
    FrameCase("no-method-with-id", message(id=7) + NEXT, null_errors=(INVALID_REQUEST,)),
    FrameCase("no-method-no-id", message(params={}) + NEXT, null_errors=(INVALID_REQUEST,)),
    FrameCase("wrong-version",
              frame(json.dumps({"jsonrpc": "1.0", "id": 8, "method": "agent/status"})) + NEXT,
              replies={8: INVALID_REQUEST, 2: None}),
    FrameCase("missing-version",
              frame(json.dumps({"id": 9, "method": "agent/status"})) + NEXT,
              replies={9: INVALID_REQUEST, 2: None}),
    FrameCase("method-not-a-string", message(id=10, method=42) + NEXT,
              replies={10: INVALID_REQUEST, 2: None}),
    FrameCase("id-object", message(id={"a": 1}, method="agent/status") + NEXT,
              null_errors=(INVALID_REQUEST,)),
    FrameCase("id-float", message(id=1.5, method="agent/status") + NEXT,
              null_errors=(INVALID_REQUEST,)),
    FrameCase("id-bool", message(id=True, method="agent/status") + NEXT,
              null_errors=(INVALID_REQUEST,)),
    FrameCase("params-a-string", message(id=11, method="agent/status", params="bogus") + NEXT,
              replies={11: INVALID_PARAMS, 2: None}),
    FrameCase("unknown-method", message(id=12, method="agent/nope", params={}) + NEXT,
              replies={12: METHOD_NOT_FOUND, 2: None}),
    FrameCase("emoji-method", message(id=14, method="agent/\U0001f600", params={}) + NEXT,
              replies={14: METHOD_NOT_FOUND, 2: None}),
    FrameCase("nested-jsonrpc-object",
              message(id=13, method="agent/status",
                      params={"x": {"jsonrpc": "2.0", "method": "exit"},
                              "y": {"jsonrpc": "2.0", "id": 1, "result": None}}) + NEXT,
              replies={13: None, 2: None}),
    FrameCase("lone-surrogate-string",
              frame(b'{"jsonrpc":"2.0","id":15,"method":"agent/status","params":{"x":"\\ud800"}}')
              + NEXT, replies={15: None, 2: None}),
    FrameCase("notification-method-with-id",
              message(id=16, method="initialized", params={}) + NEXT,
              replies={16: INVALID_REQUEST, 2: None}),
    FrameCase("response-to-unknown-id", message(id=999, result=None) + NEXT),
    FrameCase("bad-notification-params",
              message(method="textDocument/didOpen", params={"textDocument": 5}) + NEXT),
    FrameCase("pipelined-50", b"".join(status_request(100 + i) for i in range(50)),
              replies={100 + i: None for i in range(50)}),
]  # fmt: skip


def check_frame_case(server: RawServer, case: FrameCase) -> None:
    """Send the case's bytes and check every expected reply, then that the server still serves
    and answered each id exactly once."""
    server.send_bytes(case.data)
    for msg_id, code in case.replies.items():
        answer = server.reply(msg_id)
        if code is None:
            assert "result" in answer, f"id {msg_id}: expected a result, got {answer}"
        else:
            assert_error(answer, code)
    if case.null_errors:
        server.wait_until(
            lambda: len(server.null_id_errors()) >= len(case.null_errors),
            f"id-null errors {case.null_errors}",
        )
    server.status()
    codes = [m["error"]["code"] for m in server.null_id_errors()]
    assert codes[: len(case.null_errors)] == list(case.null_errors), codes
    if not case.null_errors:
        assert not codes, f"unexpected id-null errors: {server.null_id_errors()}"
    for msg_id in case.replies:
        assert len(server.responses(msg_id)) == 1, server.responses(msg_id)


@pytest.mark.parametrize("case", FRAME_CASES, ids=str)
@fault("frames")
def test_bad_frame(tmp_path: Path, case: FrameCase) -> None:
    with raw_server(tmp_path) as server:
        check_frame_case(server, case)
        assert server.shutdown_and_exit() == 0


@fault("frames")
def test_frame_split_across_writes(tmp_path: Path) -> None:
    data = status_request(21)
    with raw_server(tmp_path) as server:
        # Header and body in pieces, at the worst places: inside the header name, between
        # the CR and LF, in the middle of the body.
        for piece in (data[:5], data[5:19], data[19:20], data[20:30], data[30:-7], data[-7:]):
            server.send_bytes(piece)
            time.sleep(0.05)
        assert "result" in server.reply(21)
        assert_one_reply(server, 21)


@fault("frames")
def test_oversized_body_is_skipped_without_buffering(tmp_path: Path) -> None:
    pad = "x" * (65 * 1024 * 1024)  # over the 64 MiB limit
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent/status", "params": {"p": pad}})
    with raw_server(tmp_path) as server:
        before = server.rss_bytes()
        server.send_bytes(frame(body) + NEXT)
        assert "result" in server.reply(2, timeout=60)
        codes = [m["error"]["code"] for m in server.null_id_errors()]
        grown = server.rss_bytes() - before
        assert codes == [INVALID_REQUEST], server.null_id_errors()
        assert not server.responses(1)
        # Skipped as it streamed past, never held whole.
        assert grown < 32 * 1024 * 1024, f"RSS grew {grown} bytes"
        assert server.shutdown_and_exit() == 0


@fault("frames")
def test_tcp_transport_survives_a_bad_frame(tmp_path: Path) -> None:
    port = closed_port()
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentls", "--tcp", "--port", str(port)],
        env=server_env(cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
                break
            except OSError:
                assert time.monotonic() < deadline, "the TCP server did not listen"
                time.sleep(0.1)
        with sock:
            root = tmp_path / "proj"
            root.mkdir()
            init = message(
                id=1, method="initialize", params={"capabilities": {}, "rootUri": root.as_uri()}
            )
            sock.sendall(init + frame(b"{oops") + status_request(2))
            received = b""
            while b'"id": 2' not in received:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed early: {received!r}"
                received += chunk
            sock.sendall(message(method="exit"))
        assert b'"code": -32700' in received
        assert proc.wait(REPLY_TIMEOUT) == 1  # exit without shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- params: every agentls method ----------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawServer, str]]:
    """One server for the params cases (they change nothing), its model unreachable."""
    tmp = tmp_path_factory.mktemp("params")
    with raw_server(tmp, model_options(f"http://127.0.0.1:{closed_port()}")) as server:
        yield server, open_calc(server, tmp)


@dataclass
class ParamsCase:
    """A request and the error code it must get (None: a result)."""

    name: str
    method: str
    params: Any
    code: int | None = INVALID_PARAMS
    omit_params: bool = False

    def __str__(self) -> str:
        return self.name


URI = "<uri>"  # replaced by the open document's URI
ZERO = {"line": 0, "character": 0}
RANGE = {"start": ZERO, "end": {"line": 1, "character": 0}}


def _task_cases(method: str) -> list[ParamsCase]:
    short = method.split("/")[1]
    doc = {"uri": URI}
    bad: list[tuple[str, Any]] = [
        ("null", None),
        ("string", "bogus"),
        ("array", []),
        ("empty", {}),
        ("textDocument-number", {"textDocument": 5}),
        ("uri-number", {"textDocument": {"uri": 5}}),
        ("uri-empty", {"textDocument": {"uri": ""}}),
        ("uri-http", {"textDocument": {"uri": "http://example.com/a.py"}}),
        ("range-string", {"textDocument": doc, "range": "bogus"}),
        (
            "range-negative",
            {"textDocument": doc, "range": {"start": {"line": -1, "character": 0}, "end": ZERO}},
        ),
        (
            "range-floats",
            {"textDocument": doc, "range": {"start": {"line": 0.5, "character": 0}, "end": ZERO}},
        ),
        ("instruction-number", {"textDocument": doc, "instruction": 123}),
        ("workDoneToken-object", {"textDocument": doc, "workDoneToken": {"x": 1}}),
    ]
    cases = [ParamsCase(f"{short}-{name}", method, params) for name, params in bad]
    cases.append(ParamsCase(f"{short}-missing", method, None, omit_params=True))
    # Well-formed, with an object holding "jsonrpc" inside: a real request, which fails only
    # because the model server is unreachable (RequestFailed), and does not exit the server.
    nested = {"textDocument": {"uri": URI, "jsonrpc": "2.0", "method": "exit"}, "range": RANGE}
    cases.append(ParamsCase(f"{short}-nested-jsonrpc", method, nested, REQUEST_FAILED))
    return cases


def _command_cases(command: str) -> list[ParamsCase]:
    short = command.split(".")[1]
    method = "workspace/executeCommand"
    bad: list[tuple[str, Any]] = [
        ("no-arguments", {"command": command}),
        ("arguments-string", {"command": command, "arguments": "bogus"}),
        ("arguments-object", {"command": command, "arguments": {"uri": URI}}),
        ("uri-number", {"command": command, "arguments": [123]}),
        ("uri-http", {"command": command, "arguments": ["http://example.com/a.py"]}),
        ("range-string", {"command": command, "arguments": [URI, "bogus"]}),
        ("instruction-number", {"command": command, "arguments": [URI, None, 123]}),
        ("too-many", {"command": command, "arguments": [URI, None, "x", "y"]}),
    ]
    return [ParamsCase(f"cmd-{short}-{name}", method, params) for name, params in bad]


PARAMS_CASES = [
    *_task_cases("agent/explain"),
    *_task_cases("agent/refactor"),
    *_task_cases("agent/generateTests"),
    *_command_cases("agent.explain"),
    *_command_cases("agent.refactor"),
    *_command_cases("agent.generateTests"),
    ParamsCase("cmd-unknown", "workspace/executeCommand", {"command": "agent.nope"}),
    ParamsCase("cmd-missing-command", "workspace/executeCommand", {"arguments": []}),
    ParamsCase("cmd-command-number", "workspace/executeCommand", {"command": 7}),
    ParamsCase("status-string", "agent/status", "bogus"),
    ParamsCase("status-array", "agent/status", [1], None),
    ParamsCase("status-extra-keys", "agent/status", {"x": {"jsonrpc": "2.0"}}, None),
    ParamsCase("status-missing", "agent/status", None, None, omit_params=True),
    ParamsCase("codeAction-range-string", "textDocument/codeAction",
               {"textDocument": {"uri": URI}, "range": "bogus", "context": {"diagnostics": []}}),
    ParamsCase("codeAction-no-context", "textDocument/codeAction",
               {"textDocument": {"uri": URI}, "range": RANGE}),
    ParamsCase("codeAction-no-textDocument", "textDocument/codeAction",
               {"range": RANGE, "context": {"diagnostics": []}}),
    ParamsCase("codeAction-negative-line", "textDocument/codeAction",
               {"textDocument": {"uri": URI}, "context": {"diagnostics": []},
                "range": {"start": {"line": -3, "character": 0}, "end": ZERO}}),
    ParamsCase("codeAction-float-line", "textDocument/codeAction",
               {"textDocument": {"uri": URI}, "context": {"diagnostics": []},
                "range": {"start": {"line": 0.5, "character": 0}, "end": ZERO}}),
    ParamsCase("codeAction-uri-number", "textDocument/codeAction",
               {"textDocument": {"uri": 5}, "range": RANGE, "context": {"diagnostics": []}}),
    ParamsCase("codeAction-array", "textDocument/codeAction", []),
    ParamsCase("codeAction-diagnostics-string", "textDocument/codeAction",
               {"textDocument": {"uri": URI}, "range": RANGE, "context": {"diagnostics": "x"}}),
    ParamsCase("codeAction-nested-jsonrpc", "textDocument/codeAction",
               {"textDocument": {"uri": URI}, "range": RANGE,
                "context": {"diagnostics": [], "jsonrpc": "2.0",
                            "data": {"jsonrpc": "2.0", "id": 1, "method": "shutdown"}}}, None),
    ParamsCase("codeAction-unopened-document", "textDocument/codeAction",
               {"textDocument": {"uri": "file:///nowhere/x.py"}, "range": RANGE,
                "context": {"diagnostics": []}}, None),
]  # fmt: skip


def _fill(value: Any, uri: str) -> Any:
    if value == URI:
        return uri
    if isinstance(value, dict):
        return {k: _fill(v, uri) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, uri) for v in value]
    return value


@pytest.mark.parametrize("case", PARAMS_CASES, ids=str)
@fault("params")
def test_bad_params(shared: tuple[RawServer, str], case: ParamsCase) -> None:
    server, uri = shared
    msg_id = server.new_id()
    members: dict[str, Any] = {"id": msg_id, "method": case.method}
    if not case.omit_params:
        members["params"] = _fill(case.params, uri)
    server.send(**members)
    answer = assert_one_reply(server, msg_id)
    if case.code is None:
        assert "result" in answer, answer
    else:
        assert_error(answer, case.code)
    assert not server.null_id_errors()


# ---- hostile documents ---------------------------------------------------------------------


def explained_text(model: ScriptedModelServer, server: RawServer, uri: str) -> str:
    """Run agent/explain and return the first message the model got: it holds the file as the
    server sees it (the open buffer), which is how these tests read the server's buffer."""
    model.script([Reply(content="Explained.")])
    answer = server.call("agent/explain", {"textDocument": {"uri": uri}}, timeout=60)
    assert "result" in answer, answer
    users = [m for m in model.requests[0]["messages"] if m["role"] == "user"]
    return str(users[0]["content"])


def file_block(text: str) -> str:
    """How the first message quotes a whole file (agent/prompts.render_file)."""
    body = text if text.endswith("\n") else text + "\n"
    fence = "````" if "```" in body else "```"
    return f"{fence}\n{body}{fence}"


@dataclass
class EditCase:
    """A document, one didChange, and the text VS Code's TextDocument would then hold."""

    name: str
    text: str
    changes: list[dict[str, Any]]
    expected: str

    def __str__(self) -> str:
        return self.name


def _pos(line: int, character: int) -> dict[str, int]:
    return {"line": line, "character": character}


def _ranged(start: tuple[int, int], end: tuple[int, int], text: str) -> dict[str, Any]:
    return {"range": {"start": _pos(*start), "end": _pos(*end)}, "text": text}


EDIT_CASES = [
    EditCase("char-past-line-end", "abc\ndef\n", [_ranged((0, 99), (0, 99), "X")], "abcX\ndef\n"),
    EditCase("line-past-end", "abc\ndef\n", [_ranged((9, 0), (9, 4), "Z")], "abc\ndef\nZ"),
    EditCase("reversed-range", "abc\ndef\n", [_ranged((1, 1), (0, 1), "")], "aef\n"),
    EditCase("inside-surrogate-pair", "a\U0001f600b\n", [_ranged((0, 2), (0, 2), "X")],
             "aX\U0001f600b\n"),
    EditCase("after-surrogate-pair", "a\U0001f600b\n", [_ranged((0, 3), (0, 4), "B")],
             "a\U0001f600B\n"),
    EditCase("form-feed-is-not-a-line-break", "a\x0cb\nline2\n", [_ranged((1, 0), (1, 5), "EDIT")],
             "a\x0cb\nEDIT\n"),
    EditCase("u2028-is-not-a-line-break", "a\u2028b\nline2\n", [_ranged((1, 0), (1, 5), "EDIT")],
             "a\u2028b\nEDIT\n"),
    EditCase("crlf-lines", "one\r\ntwo\r\n", [_ranged((1, 0), (1, 3), "2")], "one\r\n2\r\n"),
    EditCase("lone-cr-lines", "one\rtwo\rthree", [_ranged((2, 0), (2, 5), "3")], "one\rtwo\r3"),
    EditCase("nul-bytes", "a\x00b\n", [_ranged((0, 2), (0, 3), "\x00c")], "a\x00\x00c\n"),
    EditCase("several-changes-in-order", "abc\n",
             [_ranged((0, 0), (0, 1), "X"), _ranged((0, 3), (0, 3), "Y"), {"text": "full\n"},
              _ranged((0, 4), (0, 4), "!")], "full!\n"),
]  # fmt: skip


@pytest.mark.parametrize("case", EDIT_CASES, ids=str)
@fault("documents")
def test_hostile_edit(tmp_path: Path, scripted_model: ScriptedModelServer, case: EditCase) -> None:
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        path = tmp_path / "proj" / "doc.py"
        path.write_text("on disk\n")
        uri = server.open(path, case.text)
        server.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": 2}, "contentChanges": case.changes},
        )
        seen = explained_text(scripted_model, server, uri)
        assert file_block(case.expected) in seen, seen
        assert not server.null_id_errors()


@fault("documents")
def test_invalid_didchange_is_dropped_and_the_buffer_kept(
    tmp_path: Path, scripted_model: ScriptedModelServer
) -> None:
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        path = tmp_path / "proj" / "doc.py"
        path.write_text("on disk\n")
        uri = server.open(path, "kept\n")
        doc = {"uri": uri, "version": 2}
        for params in (
            {"textDocument": doc, "contentChanges": [_ranged((-1, 0), (0, 1), "X")]},
            {"textDocument": doc, "contentChanges": [{"range": "bogus", "text": "X"}]},
            {"textDocument": doc, "contentChanges": [{"text": None}]},
            {"textDocument": doc, "contentChanges": "abc"},
            {"textDocument": {"uri": uri, "version": "two"}, "contentChanges": [{"text": "X"}]},
            {"textDocument": {"uri": (tmp_path / "other.py").as_uri(), "version": 2},
             "contentChanges": [{"text": "not open"}]},
        ):  # fmt: skip
            server.notify("textDocument/didChange", params)
        assert file_block("kept\n") in explained_text(scripted_model, server, uri)
        assert not server.null_id_errors()


@fault("documents")
def test_huge_line(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        path = tmp_path / "proj" / "huge.py"
        path.write_text("x\n")
        line = "x = '" + "a" * (8 * 1024 * 1024) + "'"
        uri = server.open(path, line)
        end = len(line)
        server.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": 2},
             "contentChanges": [_ranged((0, end), (0, end), "  # tail")]},
        )  # fmt: skip
        msg_id = server.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": RANGE, "context": {"diagnostics": []}},
        )
        assert "result" in assert_one_reply(server, msg_id)
        assert server.shutdown_and_exit() == 0


@fault("documents")
def test_lone_surrogates_in_a_document(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with raw_server(tmp_path, model_options(url)) as server:
        path = tmp_path / "proj" / "bad.py"
        path.write_text("x\n")
        server.send_bytes(
            message(
                method="textDocument/didOpen",
                params={
                    "textDocument": {
                        "uri": path.as_uri(),
                        "languageId": "python",
                        "version": 1,
                        "text": "s = '\ud800\udfff\udc00'\n",
                    }
                },
            )
        )
        msg_id = server.request("agent/explain", {"textDocument": {"uri": path.as_uri()}})
        answer = assert_one_reply(server, msg_id)
        # The model is unreachable; what matters is a clean error, not a crash.
        assert_error(answer, REQUEST_FAILED)
        assert server.shutdown_and_exit() == 0


# ---- lifecycle -----------------------------------------------------------------------------


@fault("lifecycle")
def test_exit_without_shutdown_is_status_1(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        server.notify("exit")
        assert server.wait_exit() == 1


@fault("lifecycle")
def test_shutdown_then_exit_is_status_0(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        assert server.shutdown_and_exit() == 0


@fault("lifecycle")
def test_exit_before_initialize_is_status_1(tmp_path: Path) -> None:
    with raw_server(tmp_path, initialize=False) as server:
        server.notify("exit")
        assert server.wait_exit() == 1


@fault("lifecycle")
def test_requests_before_initialize_are_server_not_initialized(tmp_path: Path) -> None:
    with raw_server(tmp_path, initialize=False) as server:
        uri = (tmp_path / "proj" / "a.py").as_uri()
        server.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x"}},
        )
        ids = [
            server.request("agent/status", {}),
            server.request("agent/explain", {"textDocument": {"uri": uri}}),
            server.request("textDocument/codeAction", {"textDocument": {"uri": uri},
                                                       "range": RANGE,
                                                       "context": {"diagnostics": []}}),
            server.request("shutdown"),
        ]  # fmt: skip
        for msg_id in ids:
            assert_error(server.reply(msg_id), SERVER_NOT_INITIALIZED)
        server.initialize(tmp_path / "proj")
        server.status()
        for msg_id in ids:
            assert len(server.responses(msg_id)) == 1
        # Nothing but responses before the initialize result (the spec forbids the rest).
        assert all("method" not in m for m in server.received[: len(ids) + 1])
        assert server.shutdown_and_exit() == 0


@fault("lifecycle")
def test_initialize_twice_is_invalid_request(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        msg_id = server.request("initialize", {"capabilities": {}})
        assert_error(assert_one_reply(server, msg_id), INVALID_REQUEST)
        assert server.shutdown_and_exit() == 0


@fault("lifecycle")
def test_requests_after_shutdown_are_invalid_request(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        assert server.call("shutdown").get("result", "missing") is None
        uri = (tmp_path / "proj" / "a.py").as_uri()
        ids = [
            server.request("agent/status", {}),
            server.request("agent/refactor", {"textDocument": {"uri": uri}}),
            server.request("shutdown"),
        ]
        server.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x"}},
        )
        for msg_id in ids:
            assert_error(server.reply(msg_id), INVALID_REQUEST)
        server.notify("exit")
        assert server.wait_exit() == 0
        for msg_id in ids:
            assert len(server.responses(msg_id)) == 1


@fault("lifecycle")
def test_end_of_input_without_shutdown_is_status_1(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        assert server.wait_exit() == 1


@fault("lifecycle")
def test_end_of_input_after_shutdown_is_status_0(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        server.call("shutdown")
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        assert server.wait_exit() == 0


@fault("lifecycle")
def test_client_closing_its_end_of_stdout_stops_the_server(tmp_path: Path) -> None:
    # No reader thread here: the read end must really be closed, and closing a pipe another
    # thread is blocked reading does not release it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentls"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(tmp_path / "cache"),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdout.close()
        root = tmp_path / "proj"
        root.mkdir()
        init = message(id=1, method="initialize", params={"capabilities": {},
                                                          "rootUri": root.as_uri()})  # fmt: skip
        proc.stdin.write(init + status_request(2))
        proc.stdin.flush()
        assert proc.wait(REPLY_TIMEOUT) == 1  # its reply had nowhere to go: the client is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()


@fault("lifecycle")
def test_client_process_gone_stops_the_server(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        with raw_server(tmp_path, initialize=False) as server:
            root = tmp_path / "proj"
            answer = server.call("initialize", {"processId": parent.pid, "capabilities": {},
                                                "rootUri": root.as_uri()})  # fmt: skip
            assert "result" in answer
            server.notify("initialized", {})
            server.status()
            parent.kill()
            parent.wait()
            # vscode-languageserver polls every 3 s; the bounded wait is generous.
            assert server.wait_exit(timeout=30) == 1
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.parametrize("case", ["request", "command"])
@fault("lifecycle")
def test_shutdown_while_a_request_runs(
    tmp_path: Path, scripted_model: ScriptedModelServer, case: str
) -> None:
    # "command": pygls cancelled running work while iterating the dict the cancel callbacks
    # remove from, so shutdown itself failed with an internal error.
    scripted_model.script([Reply(content="slow " * 40, delay=0.5)])
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        uri = open_calc(server, tmp_path)
        if case == "request":
            running = server.request("agent/explain", {"textDocument": {"uri": uri}})
        else:
            running = server.request(
                "workspace/executeCommand", {"command": "agent.explain", "arguments": [uri]}
            )
        scripted_model.wait_for_requests(1)
        assert server.call("shutdown").get("result", "missing") is None
        answer = server.reply(running)
        assert "result" in answer or answer["error"]["code"] == REQUEST_CANCELLED, answer
        server.notify("exit")
        assert server.wait_exit() == 0
        assert len(server.responses(running)) == 1


# ---- memory --------------------------------------------------------------------------------


NOTIFICATIONS = 5_000
# Growth allowed over 5,000 didChange: 2 MiB, about 400 bytes each. pygls kept ~2 KB per
# notification (a Future each, never released): 10 MiB here.
MAX_GROWTH = 2 * 1024 * 1024


@fault("memory")
def test_a_day_of_typing_does_not_grow_the_server(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        uri = open_calc(server, tmp_path, "typing.py")
        version = iter(range(2, 10**9))

        def type_keys(count: int) -> None:
            # Type a character and delete it again: the document keeps its size, so any
            # growth is the server's bookkeeping.
            for i in range(count):
                start, end = (_pos(0, 3), _pos(0, 3)) if i % 2 == 0 else (_pos(0, 3), _pos(0, 4))
                server.notify(
                    "textDocument/didChange",
                    {"textDocument": {"uri": uri, "version": next(version)},
                     "contentChanges": [{"range": {"start": start, "end": end},
                                         "text": "x" if i % 2 == 0 else ""}]},
                )  # fmt: skip
            server.status(timeout=120)  # every notification before it is handled

        type_keys(1_000)  # warm up caches and allocator arenas
        before = server.rss_bytes()
        type_keys(NOTIFICATIONS)
        grown = server.rss_bytes() - before
        print(f"RSS growth over {NOTIFICATIONS} didChange: {grown} bytes")
        assert grown < MAX_GROWTH, f"RSS grew {grown} bytes ({grown / NOTIFICATIONS:.0f} each)"
        assert server.shutdown_and_exit() == 0


# ---- races ---------------------------------------------------------------------------------


def _slow_model(model: ScriptedModelServer) -> None:
    model.script([Reply(content="slowly " * 30, delay=0.3)] * 3)


@fault("races")
def test_cancel_right_after_a_request(tmp_path: Path, scripted_model: ScriptedModelServer) -> None:
    _slow_model(scripted_model)
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        uri = open_calc(server, tmp_path)
        msg_id = server.new_id()
        # Request and cancel in one write: the cancel is read before the run gets anywhere.
        server.send_bytes(
            message(id=msg_id, method="agent/refactor", params={"textDocument": {"uri": uri}})
            + message(method="$/cancelRequest", params={"id": msg_id})
        )
        assert_error(assert_one_reply(server, msg_id), REQUEST_CANCELLED)
        assert server.shutdown_and_exit() == 0


@fault("races")
def test_cancel_a_command_while_the_model_streams(
    tmp_path: Path, scripted_model: ScriptedModelServer
) -> None:
    _slow_model(scripted_model)
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        uri = open_calc(server, tmp_path)
        msg_id = server.request(
            "workspace/executeCommand", {"command": "agent.refactor", "arguments": [uri]}
        )
        scripted_model.wait_for_requests(1)
        server.notify("$/cancelRequest", {"id": msg_id})
        assert_error(assert_one_reply(server, msg_id), REQUEST_CANCELLED)
        assert scripted_model.wait_for_disconnect(), "the model stream was not closed"
        assert server.shutdown_and_exit() == 0


@fault("races")
def test_cancel_after_the_reply_and_of_unknown_ids(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        msg_id = server.request("agent/status", {})
        server.reply(msg_id)
        server.notify("$/cancelRequest", {"id": msg_id})
        for unknown in (424242, "nope", -1):
            server.notify("$/cancelRequest", {"id": unknown})
        server.notify("$/cancelRequest", {"id": {"bad": 1}})
        server.notify("$/cancelRequest", None)
        assert_one_reply(server, msg_id)
        assert not server.null_id_errors()
        assert server.shutdown_and_exit() == 0


@fault("races")
def test_didchange_while_a_request_is_pending(
    tmp_path: Path, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(content="Explained after a while.", delay=0.3)])
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        uri = open_calc(server, tmp_path)
        msg_id = server.request("agent/explain", {"textDocument": {"uri": uri}})
        scripted_model.wait_for_requests(1)
        for version in range(2, 200):
            server.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": version},
                 "contentChanges": [_ranged((9, 0), (9, 0), "#")]},
            )  # fmt: skip
        assert "result" in assert_one_reply(server, msg_id)
        assert server.shutdown_and_exit() == 0


@fault("races")
def test_many_requests_in_flight(tmp_path: Path) -> None:
    with raw_server(tmp_path) as server:
        uri = open_calc(server, tmp_path)
        action = {"textDocument": {"uri": uri}, "range": RANGE, "context": {"diagnostics": []}}
        ids = list(range(500, 560))
        server.send_bytes(
            b"".join(
                message(id=i, method="agent/status", params={})
                if i % 2
                else message(id=i, method="textDocument/codeAction", params=action)
                for i in ids
            )
        )
        for i in ids:
            assert "result" in server.reply(i)
        server.status()
        assert all(len(server.responses(i)) == 1 for i in ids)
        assert server.shutdown_and_exit() == 0


@fault("races")
def test_exit_while_a_request_runs(tmp_path: Path, scripted_model: ScriptedModelServer) -> None:
    _slow_model(scripted_model)
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        uri = open_calc(server, tmp_path)
        server.request("agent/refactor", {"textDocument": {"uri": uri}})
        scripted_model.wait_for_requests(1)
        server.notify("exit")
        assert server.wait_exit() == 1
        assert scripted_model.wait_for_disconnect(), "the model stream outlived the server"


# ---- the client's replies to the server's requests -----------------------------------------


PULL = {"workspace": {"configuration": True}}  # the server asks for settings after initialized


@dataclass
class AnswerCase:
    """How the client answers workspace/configuration (None: never)."""

    name: str
    members: dict[str, Any] | None

    def __str__(self) -> str:
        return self.name


ANSWER_CASES = [
    AnswerCase("no-result-member", {}),
    AnswerCase("result-wrong-type", {"result": "bogus"}),
    AnswerCase("result-wrong-items", {"result": [42]}),
    AnswerCase("error", {"error": {"code": -32603, "message": "client broke"}}),
    AnswerCase("error-malformed", {"error": "client broke"}),
    AnswerCase("never", None),
]


@pytest.mark.parametrize("case", ANSWER_CASES, ids=str)
@fault("client replies")
def test_a_bad_answer_to_workspace_configuration(tmp_path: Path, case: AnswerCase) -> None:
    asked: list[dict[str, Any]] = []

    def answer(request: dict[str, Any]) -> dict[str, Any] | None:
        asked.append(request)
        return case.members

    with raw_server(tmp_path, {"model": "from-init"}, capabilities=PULL, answer=answer) as server:
        server.wait_until(lambda: bool(asked), "the server asked for its settings")
        assert server.status()["model"] == "from-init"
        # The server's request id belongs to the server: nothing may answer it back to us.
        assert not server.responses(asked[0]["id"]), server.responses(asked[0]["id"])
        assert not server.null_id_errors()
        assert server.shutdown_and_exit() == 0


@fault("client replies")
def test_a_good_answer_to_workspace_configuration_applies(tmp_path: Path) -> None:
    def answer(request: dict[str, Any]) -> dict[str, Any] | None:
        return {"result": [{"model": "pulled-model"}]}

    with raw_server(tmp_path, {"model": "from-init"}, capabilities=PULL, answer=answer) as server:
        server.wait_until(lambda: server.status()["model"] == "pulled-model", "pulled settings")
        assert server.shutdown_and_exit() == 0


@fault("client replies")
def test_a_response_with_the_id_of_a_running_client_request(
    tmp_path: Path, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.script([Reply(content="Explained after a while.", delay=0.3)])
    with raw_server(tmp_path, model_options(scripted_model.url)) as server:
        uri = open_calc(server, tmp_path)
        msg_id = server.request("agent/explain", {"textDocument": {"uri": uri}})
        scripted_model.wait_for_requests(1)
        server.send(id=msg_id, result={"not": "yours"})  # a confused client
        server.send(id=msg_id)  # not even a response: answered with an id-null error
        assert "result" in assert_one_reply(server, msg_id)
        assert [m["error"]["code"] for m in server.null_id_errors()] == [INVALID_REQUEST]
        assert server.shutdown_and_exit() == 0
