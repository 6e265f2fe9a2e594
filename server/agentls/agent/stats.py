"""Honest run statistics: summed from what the backend reported on each model call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentls.llm.types import Usage


@dataclass
class Stats:
    """Totals for one agent run. ``to_json`` gives the camelCase shape of the public contract."""

    backend: str = ""
    model: str = ""
    context_length: int = 0
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int | None = None
    time_to_first_token: float | None = None  # first model call of the run, seconds
    tokens_per_second: float | None = None  # generation speed over all calls
    context_fill: float = 0.0  # largest prompt / context length
    max_prompt_tokens: int = 0
    wall_time: float = 0.0
    tool_calls: int = 0
    skills: list[str] = field(default_factory=list)
    _gen_tokens: int = 0
    _gen_seconds: float = 0.0

    def add(self, usage: Usage) -> None:
        """Fold one model call's usage into the totals."""
        self.turns += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        if usage.cached_prompt_tokens is not None:
            self.cached_prompt_tokens = (
                self.cached_prompt_tokens or 0
            ) + usage.cached_prompt_tokens
        if self.time_to_first_token is None and usage.time_to_first_token is not None:
            self.time_to_first_token = usage.time_to_first_token
        if usage.tokens_per_second and usage.completion_tokens:
            self._gen_tokens += usage.completion_tokens
            self._gen_seconds += usage.completion_tokens / usage.tokens_per_second
            self.tokens_per_second = self._gen_tokens / self._gen_seconds
        self.max_prompt_tokens = max(self.max_prompt_tokens, usage.prompt_tokens)
        if self.context_length:
            self.context_fill = self.max_prompt_tokens / self.context_length

    def to_json(self) -> dict[str, Any]:
        """The stats object of the LSP results and the CLI's --json output."""
        return {
            "backend": self.backend,
            "model": self.model,
            "turns": self.turns,
            "toolCalls": self.tool_calls,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "cachedPromptTokens": self.cached_prompt_tokens,
            "timeToFirstToken": _round(self.time_to_first_token),
            "tokensPerSecond": _round(self.tokens_per_second),
            "contextLength": self.context_length,
            "contextFill": round(self.context_fill, 4),
            "wallTime": round(self.wall_time, 3),
            "skills": list(self.skills),
        }

    def summary_line(self) -> str:
        """One line for logs and the CLI."""
        tps = f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second else "- tok/s"
        ttft = f"{self.time_to_first_token:.2f}s" if self.time_to_first_token is not None else "-"
        cached = f", {self.cached_prompt_tokens} cached" if self.cached_prompt_tokens else ""
        return (
            f"{self.model} via {self.backend}: {self.turns} turns, {self.prompt_tokens} prompt"
            f"{cached} + {self.completion_tokens} completion tokens, first token {ttft}, {tps}, "
            f"context {self.context_fill:.0%} of {self.context_length}, {self.wall_time:.1f}s"
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
