"""``agentls acp``: the ACP agent on stdio, for Zed, JetBrains, Neovim (CodeCompanion, avante)
and Emacs (agent-shell).

stdout carries the protocol (one JSON message a line), so once the SDK holds it, Python's own
``sys.stdout`` points at stderr: a stray print anywhere below cannot corrupt the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import cast

from agentls.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> int:
    """Serve one ACP connection on stdin/stdout until the client closes it."""
    import acp

    from agentls.acp.agent import AgentlsAgent

    reader, writer = await acp.stdio_streams(limit=50 * 1024 * 1024)
    sys.stdout = sys.stderr
    agent = AgentlsAgent(settings)
    try:
        # Not a subclass of the SDK's Agent protocol on purpose: a method we do not implement
        # must stay missing, so the SDK answers "method not found" instead of null.
        await acp.run_agent(cast(acp.Agent, agent), input_stream=writer, output_stream=reader)
    finally:
        await agent.close()
    return 0


def run_acp(args: argparse.Namespace) -> int:
    """The ``agentls acp`` command: settings as ``agentls run`` reads them (environment, then
    flags; ``--backend demo`` starts the demo model), then ``AGENTLS_SETTINGS``;
    ``--untrusted`` to run no commands."""
    from agentls.acp.config import with_env_settings
    from agentls.agent.offloop import favour_the_loop
    from agentls.cli.main import with_backend
    from agentls.lifecycle import stop_on_signals

    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(args, "log_level", None) or "WARNING",
        format="agentls acp %(levelname)s %(name)s: %(message)s",
    )
    favour_the_loop()
    received: list[int] = []

    async def body(settings: Settings) -> int:
        settings, warnings = with_env_settings(settings, os.environ)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if getattr(args, "untrusted", False):
            settings = settings.model_copy(update={"trusted_workspace": False})
        return await serve(settings)

    async def run() -> int:
        # A stop signal kills sandboxed commands and removes scratch copies at once, then
        # cancels the server (which cancels the prompts, closing their model streams).
        task = asyncio.current_task()
        assert task is not None
        with stop_on_signals(lambda _signum: task.cancel()) as signals:
            try:
                return await with_backend(args, body)
            finally:
                received.extend(signals)

    try:
        code = asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    # The SDK ends its read loop quietly when cancelled, so a stop signal may return normally.
    return 128 + received[0] if received else code
