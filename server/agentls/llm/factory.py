"""Backend construction from settings."""

from __future__ import annotations

import httpx

from agentls.llm.ollama import OllamaBackend
from agentls.llm.openai import OpenAIBackend
from agentls.llm.types import ChatBackend
from agentls.settings import Settings


def make_backend(settings: Settings, client: httpx.AsyncClient | None = None) -> ChatBackend:
    """The chat backend ``settings.backend`` names, talking to ``settings.resolved_base_url()``.

    ``client`` lets callers share one HTTP client (and tests inject one); the backend only
    closes clients it created itself.
    """
    if settings.backend == "openai":
        return OpenAIBackend(settings, client)
    return OllamaBackend(settings, client)
