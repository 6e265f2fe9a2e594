"""Server-side Python logging: stderr only, without tracebacks for errors we answer on purpose."""

from __future__ import annotations

import logging
import sys

from pygls.exceptions import JsonRpcException

# JSON-RPC errors the server raises deliberately: bad params, a run that failed for a reason
# the user can act on, a cancelled request. They reach the client and window/logMessage already.
EXPECTED_CODES = frozenset({-32602, -32803, -32800})


class ExpectedErrorFilter(logging.Filter):
    """Drop pygls' ``logger.exception`` records for the deliberate errors above.

    pygls logs every error response with a full traceback; for "Ollama is not running" that
    is pages of httpx internals in the editor's server log, hiding real problems.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, JsonRpcException) and exc.code in EXPECTED_CODES)


def configure_logging(level: str = "WARNING") -> None:
    """Log to stderr (stdout carries the LSP stream) and quiet the expected errors."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="agentls %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pygls.protocol.json_rpc").addFilter(ExpectedErrorFilter())
