"""The ``agentls`` command: the language server on stdio (default) or TCP.

Subcommands live in ``build_parser``; ``agentls`` with no subcommand means ``agentls lsp`` so
that editor configs can run the bare command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

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
    return parser


def run_lsp(args: argparse.Namespace) -> int:
    """Start the language server on stdio or TCP; returns when the client exits."""
    # Imported late: `agentls --help`, `run` and `doctor` don't pay for pygls.
    from agentls.lsp_logging import configure_logging
    from agentls.server import create_server

    configure_logging(getattr(args, "log_level", "WARNING"))

    server = create_server()
    if getattr(args, "tcp", False):
        server.start_tcp(getattr(args, "host", DEFAULT_HOST), getattr(args, "port", DEFAULT_PORT))
    else:
        server.start_io()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentls`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "lsp"):
        return run_lsp(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse catches it
    return 2  # pragma: no cover
