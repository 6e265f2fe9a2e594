"""The errors that cross layers, in one leaf (it imports nothing from agentls).

Each says what went wrong (``message``) and, when known, what the user can do (``hint``). The
model backends raise :class:`BackendError` and its kinds, the tasks and the loop raise
:class:`TaskError` (often wrapping a backend error), and every front end (LSP, ACP, the CLI)
shows both parts, read with :func:`message_and_hint`. ``agentls.llm.types`` and
``agentls.agent.progress`` re-export these names: they are the same classes, so ``except``
clauses written against either module catch them.
"""

from __future__ import annotations


class AgentlsError(Exception):
    """A failure the user can act on: what went wrong, and a hint saying what to do."""

    def __init__(self, message: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class TaskError(AgentlsError):
    """A task could not run (bad request, backend failure already explained)."""


# ---- talking to the model server -----------------------------------------------------------


class BackendError(AgentlsError):
    """A failure talking to the model server, with a hint that tells the user what to do."""


class BackendUnreachable(BackendError):
    """The server is not running or refuses connections."""


class ModelNotFound(BackendError):
    """The configured (or any suitable) model is not available on the server."""


class BackendTimeout(BackendError):
    """The server did not answer in time."""


class BackendHTTPError(BackendError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, hint: str = "", status: int = 0) -> None:
        super().__init__(message, hint)
        self.status = status


class StreamBroken(BackendError):
    """The response stream ended early or carried garbage."""


class StreamRunaway(BackendError):
    """The model kept generating far past the reply cap (the server ignored ``max_tokens`` /
    ``num_predict``, or counts differently): the client stopped the stream."""


class ToolsUnsupported(BackendHTTPError):
    """The server said the model cannot take native tools."""


class ContextOverflow(BackendHTTPError):
    """The prompt did not fit the context window the server loaded (refused, or truncated)."""

    def __init__(
        self,
        message: str,
        hint: str = "",
        status: int = 0,
        *,
        window: int | None = None,
        prompt_tokens: int | None = None,
    ) -> None:
        super().__init__(message, hint, status)
        self.window = window
        self.prompt_tokens = prompt_tokens


class EmptyReply(BackendError):
    """The server answered 200 with nothing: no text, no tool calls, zero tokens generated.

    Local servers do this when the prompt fills the whole loaded window (no room to write)."""


def message_and_hint(exc: BaseException) -> tuple[str, str] | None:
    """What went wrong and what to do, for an error agentls raised on purpose.

    A task error that wraps a backend error (``raise TaskError(...) from exc``) takes the
    backend's text for whatever part it leaves empty. None for any other exception: that is a
    bug, and each front end says where its log is.
    """
    if not isinstance(exc, AgentlsError):
        return None
    cause = exc.__cause__
    if isinstance(exc, TaskError) and isinstance(cause, BackendError):
        return exc.message or cause.message, exc.hint or cause.hint
    return exc.message, exc.hint
