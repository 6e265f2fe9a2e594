"""A ChatBackend wrapper for benchmarks: records every model call of a real backend."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agentls.llm.types import ChatBackend, ChatRequest, ChatResponse, ModelInfo, StreamCallback


@dataclass
class RecordedCall:
    """One model call: when it started, how long it took, what the agent got back."""

    start: float  # time.perf_counter()
    duration: float
    response: ChatResponse


class RecordingBackend:
    """Passes everything to the wrapped backend and keeps a ``RecordedCall`` per chat."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.base_url = inner.base_url
        self.calls: list[RecordedCall] = []

    @property
    def model(self) -> str:
        return self.inner.model

    async def resolve_model(self) -> str:
        return await self.inner.resolve_model()

    async def chat(
        self, request: ChatRequest, on_event: StreamCallback | None = None
    ) -> ChatResponse:
        start = time.perf_counter()
        response = await self.inner.chat(request, on_event)
        self.calls.append(RecordedCall(start, time.perf_counter() - start, response))
        return response

    async def model_info(self) -> ModelInfo:
        return await self.inner.model_info()

    async def aclose(self) -> None:
        await self.inner.aclose()
