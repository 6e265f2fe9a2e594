"""Helpers shared by the HTTP backends: error mapping, argument parsing, timeouts."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from agentls.llm.types import (
    SERVER_NAMES,
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnreachable,
    ChatResponse,
    ContextOverflow,
    EmptyReply,
    LoadedContext,
    StreamBroken,
    ToolSpec,
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


def tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    """A tool as both wire formats declare it: ``{"type": "function", "function": {...}}``."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def server_root(base_url: str) -> str:
    """The server's root URL: an OpenAI base URL without its ``/v1``.

    LM Studio's ``/api/v0``, llama-server's ``/props`` and Ollama's ``/api/ps`` live at the
    root, beside ``/v1``, not under it.
    """
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def int_field(value: Any) -> int | None:
    """``value`` if it is a positive int (JSON booleans are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None


# How each server words "the prompt does not fit the loaded window" (HTTP 400 or in-stream):
# (pattern that recognises it, server key or "" when several servers say it).
_OVERFLOW_SIGNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # llama-server: {"type": "exceed_context_size_error", "n_prompt_tokens", "n_ctx"}; older
    # builds only "the request exceeds the available context size".
    (re.compile(r"exceed_context_size_error|exceeds the available context size"), "llama-server"),
    # LM Studio: "Trying to keep the first N tokens when context the overflows. However, the
    # model is loaded with context length of only M tokens", "The number of tokens to keep
    # from the initial prompt is greater than the context length", "Cannot truncate prompt
    # with n_keep (N) >= n_ctx (M)".
    (re.compile(r"when context the overflows|tokens to keep from the initial prompt"), "lmstudio"),
    (re.compile(r"cannot truncate prompt with n_keep"), "lmstudio"),
    # vLLM: "This model's maximum context length is M tokens. However, you requested N tokens".
    (re.compile(r"maximum context length is \d+ tokens"), "vllm"),
    (re.compile(r"context_length_exceeded|context length exceeded|exceeds? the context"), ""),
)
_WINDOW_NUMBERS = (
    re.compile(r"available context size \((\d+) tokens?\)"),
    re.compile(r"context length of only (\d+) tokens"),
    re.compile(r"n_ctx \((\d+)\)"),
    re.compile(r"maximum context length is (\d+) tokens"),
)
_PROMPT_NUMBERS = (
    re.compile(r"request \((\d+) tokens?\)"),
    re.compile(r"keep the first (\d+) tokens"),
    re.compile(r"n_keep \((\d+)\)"),
    re.compile(r"requested (\d+) tokens"),
    re.compile(r"has (\d+) input tokens"),
)


def _first_number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def _error_fields(body: bytes) -> dict[str, Any]:
    """The ``error`` object of a JSON error body (llama-server puts its numbers there)."""
    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    if isinstance(data, dict):
        err = data.get("error")
        return err if isinstance(err, dict) else data
    return {}


def overflow_hint(
    settings: Settings, loaded: LoadedContext | None, window: int | None, needed: int | None
) -> str:
    """What to do when a request did not fit ``window``, the server's loaded window."""
    setting = settings.context_length
    if loaded is not None and window is not None and loaded.length != window:
        loaded = LoadedContext(window, loaded.server, loaded.source, loaded.slots)
    if loaded is not None:
        if setting > loaded.length:
            return loaded.fix(setting)
        # The setting already fits the window, so the task itself is too large for it.
        wanted = max(2 * loaded.length, needed or 0)
        return "Select less code, or give the model a larger window: " + loaded.fix(
            wanted, or_lower=False
        )
    if window is not None and setting > window:
        return (
            f"Set agent.contextLength to {window} (the server's window) so requests are fitted "
            "to it, or load the model with a larger context window."
        )
    return "Select less code, or load the model with a larger context window."


def context_overflow(
    text: str,
    body: bytes,
    *,
    status: int,
    settings: Settings,
    loaded: LoadedContext | None,
) -> ContextOverflow | None:
    """A :class:`ContextOverflow` if ``text`` (a server's error) says the prompt did not fit
    its context window; None for any other error."""
    lower = text.lower()
    server = ""
    for pattern, who in _OVERFLOW_SIGNS:
        if pattern.search(lower):
            server = who or (loaded.server if loaded else "")
            break
    else:
        return None
    fields = _error_fields(body)
    window = int_field(fields.get("n_ctx")) or _first_number(_WINDOW_NUMBERS, lower)
    needed = int_field(fields.get("n_prompt_tokens")) or _first_number(_PROMPT_NUMBERS, lower)
    if loaded is None and server and window is not None:
        loaded = LoadedContext(window, server, "its error message")
    name = SERVER_NAMES.get(server, "The model server") if server else "The model server"
    if needed is not None and window is not None:
        message = (
            f"{name} refused the request: it needs {needed} tokens but the context window it "
            f"loaded holds {window}."
        )
    elif window is not None:
        message = f"{name} refused the request: it does not fit the {window}-token context window."
    else:
        message = f"{name} refused the request: it does not fit the loaded context window."
    return ContextOverflow(
        f"{message} ({truncate(text, 200)})",
        overflow_hint(settings, loaded, window, needed),
        status,
        window=window,
        prompt_tokens=needed,
    )


def is_empty_reply(response: ChatResponse) -> bool:
    """True when the server answered 200 with nothing at all: no text, no tool call, zero
    tokens generated, and a normal finish (stop, length, or none given).

    That is not an answer: LM Studio and Ollama do this when the prompt fills the whole loaded
    window (nothing left to write into). Taking it as the model's final answer would hand the
    user an empty result.
    """
    if response.content or response.tool_calls or response.usage.completion_tokens:
        return False
    return response.finish_reason in (None, "stop", "length")


def empty_reply(
    response: ChatResponse, *, settings: Settings, loaded: LoadedContext | None, what: str
) -> EmptyReply:
    """The error for an empty reply (see :func:`is_empty_reply`), naming the loaded window
    and the fix when they are known."""
    prompt = response.usage.prompt_tokens
    sent = f" to a prompt of {prompt} tokens" if prompt else ""
    message = (
        f"{what[0].upper() + what[1:]} returned an empty reply{sent} (no text, no tool call, "
        f"0 tokens generated, finish_reason {response.finish_reason or 'none'})."
    )
    if loaded is not None:
        message += (
            f" Its loaded context window is {loaded.length} tokens; a prompt that fills it "
            "leaves no room to answer."
        )
        hint = overflow_hint(settings, loaded, loaded.length, prompt or None)
    else:
        hint = (
            "Servers do this when the prompt fills the context window they loaded: load the "
            "model with a larger window, lower agent.contextLength to it, or select less code."
        )
    return EmptyReply(message, hint)
