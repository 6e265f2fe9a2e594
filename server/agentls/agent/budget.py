"""The token budget of a request: how many tokens a prompt is estimated to take, and the
window it must fit (``agent.contextLength`` or, when smaller, the window the model server
actually loaded), with the check for a prompt the server cut silently.

(Re-exported by :mod:`agentls.agent.context`, which fits requests to this budget.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from agentls.llm.types import ChatBackend, LoadedContext, LoadedContextSource, Message, ToolSpec

__all__ = [
    "CALL_OVERHEAD_CHARS",
    "FULL_WINDOW",
    "MESSAGE_OVERHEAD_CHARS",
    "MIN_SERVER_WINDOW",
    "TRUNCATION_RATIO",
    "ContextWindow",
    "TokenEstimator",
    "message_chars",
    "reply_reserve",
    "tool_schema_chars",
    "truncated_prompt",
]


# Chat templates wrap each message in role markers; a rough allowance per message and call.
MESSAGE_OVERHEAD_CHARS = 16
CALL_OVERHEAD_CHARS = 16


def message_chars(message: Message) -> int:
    """Characters one message costs: its text, its tool calls and a per-message allowance."""
    total = len(message.content) + MESSAGE_OVERHEAD_CHARS
    total += len(message.tool_call_id or "") + len(message.name or "")
    for call in message.tool_calls:
        total += len(call.name) + len(call.id) + CALL_OVERHEAD_CHARS
        total += len(json.dumps(call.arguments, ensure_ascii=False, sort_keys=True))
    return total


def tool_schema_chars(specs: Sequence[ToolSpec]) -> int:
    """Characters the tool schemas add to every request (pass as ``fixed_overhead_chars``)."""
    return len(
        json.dumps(
            [
                {"name": s.name, "description": s.description, "parameters": s.parameters}
                for s in specs
            ],
            ensure_ascii=False,
        )
    )


class TokenEstimator:
    """Estimates prompt tokens of a message list; calibrated from what the server reported.

    The estimate is characters divided by ``chars_per_token``. The ratio starts at the prior
    given to the constructor and is learnt from each request's reported prompt tokens, but
    only ever at or below the prior: a server that reports fewer tokens than the prompt has
    (some count only the part not served from the KV cache) must not make us believe tokens
    are cheaper than a sensible default says.
    """

    def __init__(self, chars_per_token: float = 3.5) -> None:
        if chars_per_token <= 0:
            raise ValueError("chars_per_token must be positive")
        self.prior_chars_per_token = chars_per_token
        self.chars_per_token = chars_per_token
        self.calibrated = False

    def chars(self, messages: Sequence[Message], fixed_overhead_chars: int = 0) -> int:
        """Characters of the whole prompt: every message plus the fixed overhead."""
        return fixed_overhead_chars + sum(message_chars(m) for m in messages)

    def tokens_for_chars(self, chars: float) -> int:
        """Tokens that ``chars`` characters are estimated to take (rounded up)."""
        return math.ceil(chars / self.chars_per_token)

    def estimate(self, messages: Sequence[Message], fixed_overhead_chars: int = 0) -> int:
        """Estimated prompt tokens of ``messages``; ``fixed_overhead_chars``: tool schemas etc."""
        return self.tokens_for_chars(self.chars(messages, fixed_overhead_chars))

    def calibrate(
        self,
        messages: Sequence[Message],
        fixed_overhead_chars: int,
        reported_prompt_tokens: int,
    ) -> None:
        """Learn chars/token from the last request: the messages sent and the tokens reported.

        Afterwards ``estimate(messages, fixed_overhead_chars)`` is at least
        ``reported_prompt_tokens``: never fewer tokens than the server saw. Reports of zero
        (the server gave no count) are ignored.
        """
        if reported_prompt_tokens <= 0:
            return
        chars = self.chars(messages, fixed_overhead_chars)
        if chars <= 0:
            return
        observed = chars / reported_prompt_tokens
        self.chars_per_token = min(self.prior_chars_per_token, observed)
        self.calibrated = True


def reply_reserve(context_length: int) -> int:
    """Tokens to keep free for the model's reply: 15%, at least 512, at most half the context."""
    return min(context_length // 2, max(512, context_length * 15 // 100))


# No server loads less than this by default (Ollama's oldest default was 2048 tokens), so a
# prompt estimated below it cannot have been cut to fit.
MIN_SERVER_WINDOW = 2048
# A server that reports fewer than this share of the tokens we estimate did not see the prompt
# we sent (the estimate overshoots by 30% at most, never by half).
TRUNCATION_RATIO = 0.5
# A reported prompt this close to the whole window left no room to answer: it was cut to fit.
FULL_WINDOW = 0.98


def truncated_prompt(estimated: int, reported: int, window: int | None) -> bool:
    """True when the server evidently cut the prompt to fit its window, without saying so.

    ``estimated``: our estimate of the prompt sent; ``reported``: the prompt tokens the
    server counted; ``window``: the window it loaded, None when unknown. Either rule fires:

    1. The server saw less than half of what we sent (``reported < TRUNCATION_RATIO *
       estimated``) and what we sent is more than the window holds (more than
       ``MIN_SERVER_WINDOW`` when the window is unknown). The estimate is conservative (at
       most 3.5 characters per token, only ever calibrated down), so it overshoots real
       tokens by about a third at most: half is not estimation error. A low count alone is
       no proof: some servers (several Ollama versions) count only the tokens not served
       from the KV cache. But a prompt the window holds was not cut, whatever the count.
    2. The window is known, we sent more than it holds, and the server counted a prompt that
       fills it (``FULL_WINDOW``): a prompt that fills the window leaves no room to answer,
       so it was cut to fit (Ollama keeps exactly its window).

    The loop fits every request to the known window, so both rules only fire when the
    window was unknown when the request went out (Ollama's ``/v1`` before its first load,
    LM Studio's just-in-time loading, servers without a probe) or the estimate was badly off.
    Reports of zero (no count given) never fire.
    """
    if reported <= 0:
        return False
    holds = window if window is not None else MIN_SERVER_WINDOW
    if estimated <= holds:
        return False
    if reported < TRUNCATION_RATIO * estimated:
        return True
    return window is not None and reported >= FULL_WINDOW * window


class ContextWindow:
    """The window every request is fitted to: ``agent.contextLength`` or, when smaller, the
    window the server actually loaded (asked of the backend, which caches the answer).

    Loop use: :meth:`update` before the first request and after each reply (a model loaded
    just in time reports its window only then); :attr:`length` and :attr:`budget` for
    fitting, the fill and the stats; :meth:`truncation` after each reply.
    """

    def __init__(self, setting: int, max_output_tokens: int) -> None:
        self.setting = setting
        self.max_output_tokens = max_output_tokens
        self.loaded: LoadedContext | None = None
        self._warned = False

    @property
    def length(self) -> int:
        """Tokens a request may use in all: the smaller of the setting and the loaded window."""
        if self.loaded is None:
            return self.setting
        return min(self.setting, self.loaded.length)

    @property
    def budget(self) -> int:
        """Tokens the prompt may use: the window less the room kept for the reply."""
        if self.loaded is not None and self.loaded.server == "vllm":
            # vLLM refuses a request whose prompt plus max_tokens exceeds max_model_len, so
            # the whole max_tokens is kept free (up to half the window).
            return self.length - min(self.max_output_tokens, self.length // 2)
        return self.length - min(self.max_output_tokens, reply_reserve(self.length))

    @property
    def max_tokens(self) -> int:
        """The reply cap to send: ``agent.maxOutputTokens``, but for vLLM no more than the room
        :attr:`budget` keeps free (it refuses requests that could outgrow the window)."""
        if self.loaded is not None and self.loaded.server == "vllm":
            return min(self.max_output_tokens, self.length // 2)
        return self.max_output_tokens

    async def update(self, backend: ChatBackend) -> str | None:
        """Learn the loaded window from ``backend``; returns the warning (once per run) when
        it is smaller than the setting: one sentence naming both numbers and the fix."""
        if not isinstance(backend, LoadedContextSource):
            return None  # a wrapper that does not forward it: the window stays unknown
        loaded = await backend.loaded_context()
        if loaded is None:
            return None
        self.loaded = loaded
        if loaded.length < self.setting and not self._warned:
            self._warned = True
            return loaded.mismatch(self.setting)
        return None

    def truncation(self, estimated: int, reported: int) -> str | None:
        """The error message when the server silently cut the last prompt (see
        :func:`truncated_prompt`), naming the window and the fix; None when it did not."""
        window = self.loaded.length if self.loaded is not None else None
        if not truncated_prompt(estimated, reported, window):
            return None
        name = self.loaded.server_name if self.loaded is not None else "The model server"
        where = (
            f"the {window}-token context window it loaded"
            if window is not None
            else "the context window it loaded"
        )
        message = (
            f"{name} saw only {reported} of the about {estimated} prompt tokens sent: the "
            f"prompt did not fit {where}, and the server cut it without an error, so its reply "
            "would answer a different question. "
        )
        if self.loaded is not None and self.setting > self.loaded.length:
            return message + self.loaded.fix(self.setting)
        if self.loaded is not None:
            return (
                message
                + "Select less code, or give the model a larger window: "
                + (self.loaded.fix(max(estimated, 2 * self.loaded.length), or_lower=False))
            )
        return message + (
            f"Load the model with a context window of at least {estimated} tokens, or lower "
            f"agent.contextLength to the window the server loaded (about {reported})."
        )
