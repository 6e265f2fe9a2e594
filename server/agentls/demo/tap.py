"""A look inside llama-server's KV cache, for the benchmarks and the real-model tests.

:class:`TimingsTap` is an HTTP transport for the agent's client. For each ``/chat/completions``
call it keeps the messages sent, the last ``timings`` object llama-server streams (``cache_n``:
prompt tokens served from its KV cache, ``prompt_n``, ``prompt_ms``) and, by adding
``logprobs`` to the request (the agent ignores them), the tokens the server generated. The
body reaches the agent unchanged. Never used by the agent itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["TappedCall", "TimingsTap"]


@dataclass
class TappedCall:
    """One ``/chat/completions`` call: the messages sent, llama-server's ``timings`` and the
    tokens it generated (as their text pieces, from ``logprobs``)."""

    messages: list[dict[str, Any]]
    timings: dict[str, Any] = field(default_factory=dict)
    generated: list[str] = field(default_factory=list)


class _TappedStream(httpx.AsyncByteStream):
    """Passes the SSE body through unchanged, noting ``timings`` and generated tokens."""

    def __init__(self, inner: httpx.AsyncByteStream, call: TappedCall) -> None:
        self.inner = inner
        self.call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        async for chunk in self.inner:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._scan(line)
            yield chunk
        self._scan(buffer)

    def _scan(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        try:
            event = json.loads(line[5:])
        except ValueError:
            return  # [DONE]
        if not isinstance(event, dict):
            return
        if isinstance(event.get("timings"), dict):
            self.call.timings = event["timings"]
        for choice in event.get("choices") or []:
            for token in (choice.get("logprobs") or {}).get("content") or []:
                self.call.generated.append(token["token"])

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimingsTap(httpx.AsyncBaseTransport):
    """Records each chat call (:class:`TappedCall`, in ``calls``) on its way through."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[TappedCall] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Pass the request on, with ``logprobs`` asked for when it is a chat call."""
        if not request.url.path.endswith("/chat/completions"):
            return await self.inner.handle_async_request(request)
        body = json.loads(request.content)
        body["logprobs"] = True
        headers = [(k, v) for k, v in request.headers.multi_items() if k != "content-length"]
        request = httpx.Request(request.method, request.url, headers=headers, json=body)
        call = TappedCall(body["messages"])
        self.calls.append(call)
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TappedStream(response.stream, call)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()
