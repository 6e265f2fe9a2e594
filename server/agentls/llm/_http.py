"""Helpers shared by the HTTP backends: error mapping, argument parsing, timeouts."""

from __future__ import annotations

import json
from typing import Any

import httpx

from agentls.llm.types import (
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnreachable,
    StreamBroken,
)
from agentls.settings import Settings

MAX_ERROR_TEXT = 500


def make_timeout(settings: Settings) -> httpx.Timeout:
    """Read/write/pool timeouts are per operation, so the read timeout bounds each chunk gap."""
    return httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout)


def truncate(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """Shorten server text for an error message."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text(body: bytes) -> str:
    """The error message in an HTTP error body: Ollama's ``{"error": str}``, OpenAI's
    ``{"error": {"message": str}}``, or the raw text."""
    raw = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(raw)
    except ValueError:
        return truncate(raw)
    if isinstance(data, dict):
        err = data.get("error", data.get("message"))
        if isinstance(err, dict):
            err = err.get("message", err)
        if isinstance(err, str):
            return truncate(err)
        if err is not None:
            return truncate(json.dumps(err))
    return truncate(raw)


def transport_error(
    exc: httpx.HTTPError, *, what: str, base_url: str, start_hint: str, settings: Settings
) -> BackendError:
    """Map an httpx transport failure to the backend error a user can act on.

    ``what`` names the server ("Ollama", "the OpenAI-compatible server"); ``start_hint`` tells
    how to start it.
    """
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendTimeout(
            f"Connecting to {what} at {base_url} timed out after {settings.connect_timeout:g}s.",
            f"Check that it is running, or raise agent.connectTimeout. {start_hint}",
        )
    if isinstance(exc, httpx.ConnectError):
        return BackendUnreachable(f"Cannot reach {what} at {base_url}.", start_hint)
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(
            f"{what} at {base_url} sent nothing for {settings.request_timeout:g}s.",
            "The model may still be loading or the machine is overloaded; "
            "raise agent.requestTimeout if this is expected.",
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return StreamBroken(
            f"The connection to {what} at {base_url} broke: {exc or type(exc).__name__}.",
            "The server may have crashed or run out of memory; check its log.",
        )
    return BackendError(f"Request to {what} at {base_url} failed: {exc!r}.")


def http_error(status: int, body: bytes, *, what: str, hint: str = "") -> BackendHTTPError:
    """A generic HTTP error carrying the server's (truncated) error text."""
    return BackendHTTPError(f"{what} answered HTTP {status}: {error_text(body)}", hint, status)


def parse_arguments(raw: Any) -> tuple[dict[str, Any], str]:
    """Tool-call arguments as (parsed dict, raw text).

    A dict is taken as is; a string is JSON-parsed. Anything that does not parse to an object
    gives ``{}`` with the raw text kept, so the loop can report the mistake to the model.
    """
    if isinstance(raw, dict):
        return raw, json.dumps(raw)
    if raw is None:
        return {}, ""
    if not isinstance(raw, str):
        return {}, json.dumps(raw)
    if not raw.strip():
        return {}, raw  # some servers send "" for a call without arguments
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}, raw
    return (parsed, raw) if isinstance(parsed, dict) else ({}, raw)
