"""Backend-neutral chat types shared by every model backend and the tool loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class ToolCall:
    """One tool call the model made. ``arguments`` is parsed JSON when it parsed."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    # The raw argument text as the model wrote it, kept for error messages.
    raw_arguments: str = ""


@dataclass
class Message:
    """One chat message in the conversation, independent of wire format."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None  # the tool's name, for role "tool"


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: name, one-line description, JSON schema of arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class ChatRequest:
    """Everything one model call needs."""

    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    context_length: int = 16384
    temperature: float = 0.2
    # A JSON schema the reply must follow (constrained tool-call mode); None for free text.
    response_schema: dict[str, Any] | None = None
    # Cap on generated tokens (Ollama num_predict, OpenAI max_tokens); None: the server's default.
    max_tokens: int | None = None
    # True: the tools stay in the request (the cached prefix holds) but the model must answer in
    # text (OpenAI tool_choice "none"; Ollama has no such switch, the prompt asks instead).
    no_tool_calls: bool = False


@dataclass
class Usage:
    """Token counts and timings of one model call, as the backend reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int | None = None
    time_to_first_token: float | None = None  # seconds, measured by us
    tokens_per_second: float | None = None  # generation speed
    wall_time: float = 0.0  # seconds for the whole call


@dataclass
class ChatResponse:
    """The model's complete reply to one request."""

    content: str
    tool_calls: list[ToolCall]
    usage: Usage
    finish_reason: str | None = None


@dataclass
class StreamEvent:
    """A streaming update, used for progress (tokens so far, speed)."""

    text: str
    completion_tokens: int
    elapsed: float


StreamCallback = Callable[[StreamEvent], None]


@dataclass
class ModelInfo:
    """What a backend knows about the configured model."""

    name: str
    present: bool
    supports_tools: bool | None = None  # None: unknown
    context_length: int | None = None  # the model's trained maximum, when known
    available: list[str] = field(default_factory=list)


class ChatBackend(Protocol):
    """A streaming chat backend: ``ollama.OllamaBackend`` or ``openai.OpenAIBackend``."""

    name: str
    base_url: str

    @property
    def model(self) -> str: ...

    async def resolve_model(self) -> str:
        """Pick the model to use (the configured one, or the best default) and check it exists."""
        ...

    async def chat(
        self, request: ChatRequest, on_event: StreamCallback | None = None
    ) -> ChatResponse:
        """Send one request and stream the reply; cancelling the caller closes the HTTP stream."""
        ...

    async def model_info(self) -> ModelInfo:
        """Report presence, tool support and context length of the model."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client."""
        ...


class BackendError(Exception):
    """A failure talking to the model server, with a hint that tells the user what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


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


class ToolsUnsupported(BackendHTTPError):
    """The server said the model cannot take native tools."""
