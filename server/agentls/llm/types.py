"""Backend-neutral chat types shared by every model backend and the tool loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

# The backends' errors are defined in the errors leaf; these names stay importable from here
# (the same classes).
from agentls.errors import BackendError as BackendError
from agentls.errors import BackendHTTPError as BackendHTTPError
from agentls.errors import BackendTimeout as BackendTimeout
from agentls.errors import BackendUnreachable as BackendUnreachable
from agentls.errors import ContextOverflow as ContextOverflow
from agentls.errors import EmptyReply as EmptyReply
from agentls.errors import ModelNotFound as ModelNotFound
from agentls.errors import StreamBroken as StreamBroken
from agentls.errors import StreamRunaway as StreamRunaway
from agentls.errors import ToolsUnsupported as ToolsUnsupported

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
    # Reasoning the server split off (Ollama's `thinking`, OpenAI-compatible `reasoning_content`):
    # shown to the user as thinking, never part of the answer.
    thinking: str = ""


StreamCallback = Callable[[StreamEvent], None]


@dataclass
class ModelInfo:
    """What a backend knows about the configured model."""

    name: str
    present: bool
    supports_tools: bool | None = None  # None: unknown
    context_length: int | None = None  # the model's trained maximum, when known
    available: list[str] = field(default_factory=list)
    # The window the server has actually loaded for the model (LM Studio, llama-server, vLLM,
    # Ollama's /v1), often far below the trained maximum; None: unknown or not separate from
    # the setting (native Ollama loads the num_ctx we send).
    loaded_context_length: int | None = None
    loaded: LoadedContext | None = None


SERVER_NAMES = {
    "lmstudio": "LM Studio",
    "llama-server": "llama-server",
    "vllm": "vLLM",
    "ollama": "Ollama",  # its OpenAI endpoint, /v1
    "ollama-native": "Ollama",  # /api/chat with num_ctx
}


@dataclass(frozen=True)
class LoadedContext:
    """The context window a model server has loaded for a model: what it will actually hold.

    OpenAI-compatible servers choose it when they load the model (LM Studio's load settings,
    llama-server's ``-c``, vLLM's ``--max-model-len``, Ollama's default for its ``/v1``), and a
    request beyond it is refused or silently truncated, whatever ``agent.contextLength`` says.
    """

    length: int
    server: str  # a key of SERVER_NAMES
    source: str  # where it was read, e.g. "GET /props"
    slots: int = 1  # llama-server: parallel slots; each gets -c / slots

    @property
    def server_name(self) -> str:
        """The server's name for messages ("LM Studio")."""
        return SERVER_NAMES.get(self.server, self.server)

    def fix(self, wanted: int, *, or_lower: bool = True) -> str:
        """One sentence telling the user how to give the model a ``wanted``-token window;
        ``or_lower`` adds the alternative of lowering agent.contextLength to this window."""
        if self.server == "lmstudio":
            how = (
                f"Reload the model in LM Studio with a context length of at least {wanted} "
                f"(its load settings, or `lms load <model> --context-length {wanted}`)"
            )
        elif self.server == "llama-server":
            split = f" (it splits -c across its {self.slots} slots)" if self.slots > 1 else ""
            how = f"Restart llama-server with `-c {wanted * max(self.slots, 1)}`{split}"
        elif self.server == "vllm":
            how = f"Restart vLLM with `--max-model-len {wanted}`"
        elif self.server == "ollama-native":
            # Ollama loads the num_ctx it is sent, capped at the model's trained maximum.
            how = (
                f"{self.length} tokens is the model's trained maximum, which Ollama does not "
                f"exceed: use a model trained for {wanted} tokens"
            )
        elif self.server == "ollama":
            how = (
                "Ollama's OpenAI endpoint (/v1) cannot ask for a window: set agent.backend to "
                "'ollama' (its native API sends agent.contextLength with every request), or "
                f"start Ollama with OLLAMA_CONTEXT_LENGTH={wanted}"
            )
        else:
            how = f"Load the model with a context window of at least {wanted} tokens"
        return f"{how}, or lower agent.contextLength to {self.length}." if or_lower else how + "."

    def mismatch(self, setting: int) -> str:
        """The warning when ``agent.contextLength`` is larger than the loaded window."""
        return (
            f"agent.contextLength is {setting} but {self.server_name} loaded the model with a "
            f"{self.length}-token context window, so requests are fitted to {self.length}. "
            + self.fix(setting)
        )


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


@runtime_checkable
class LoadedContextSource(Protocol):
    """A backend that can say which context window its server loaded (both backends here).

    Kept apart from :class:`ChatBackend` so wrappers that only forward chat calls (the
    benchmarks' recording backend) stay valid backends: for them the window is just unknown.
    """

    async def loaded_context(self) -> LoadedContext | None:
        """The window the server has loaded for the model; None when unknown. Probed once per
        model and cached; never raises."""
        ...
