"""The ``bash`` tool: run one allowed command on a sandboxed copy with the staged edits applied.

The model sees ``bash(command)``. Each call syncs the workspace's staged changes into the
run's :class:`~agentls.sandbox.Sandbox` (made on the first call, reused after) and runs the
command there; the exit code and the (truncated) output go back to the model. A refused
command is an error result naming what is not allowed, so the model can correct itself.

Whoever builds the tools for a run owns the tool's lifetime and must ``await tool.aclose()``
when the run ends (also when it is cancelled): that kills a command still running and
removes the scratch copy. ``run_command`` lets the harness (edit verification) run the
project's tests in the same copy without going through the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentls.agent.tools import Tool, ToolDef, ToolResult
from agentls.agent.tools.base import Args, alias_field
from agentls.agent.workspace import ToolError, Workspace
from agentls.sandbox import CommandResult, Sandbox, SandboxConfig, SandboxError
from agentls.settings import Settings

__all__ = ["BASH", "BashArgs", "BashSession", "BashTool", "make_bash_tool", "sandbox_config"]

# What the model gets back: pytest's summary is at the end, so keep more of the tail.
TOOL_OUTPUT_HEAD = 3000
TOOL_OUTPUT_TAIL = 6000


class BashArgs(Args):
    """Arguments of ``bash``."""

    command: str = alias_field(..., "command", "cmd", "script")


# The declaration; its action needs the run's sandbox session, so make_bash_tool binds it.
BASH = ToolDef(
    "bash",
    "Run a test or lint command (e.g. pytest) on a copy of the workspace with your edits.",
    BashArgs,
    "running {command:.60}",
)


def sandbox_config(settings: Settings, **overrides: Any) -> SandboxConfig:
    """The sandbox limits the user's settings ask for (secret files are never copied)."""
    values: dict[str, Any] = {
        "allowed_commands": settings.allowed_commands,
        "timeout": settings.command_timeout,
        "require_network_isolation": settings.require_network_isolation,
        "exclude": settings.secret_files,
        "output_head": TOOL_OUTPUT_HEAD,
        "output_tail": TOOL_OUTPUT_TAIL,
    }
    values.update(overrides)
    return SandboxConfig(**values)


class BashSession:
    """The sandbox of one run, made lazily from the workspace's staged view."""

    def __init__(self, workspace: Workspace, config: SandboxConfig) -> None:
        self.workspace = workspace
        self.config = config
        self.sandbox: Sandbox | None = None
        self._closed = False

    def staged(self) -> dict[str, str]:
        """Relative path -> text of every file the agent changed or created."""
        return {self.workspace.rel(c.path): c.new_text for c in self.workspace.changes()}

    async def run_command(self, command: str, timeout: float | None = None) -> CommandResult:
        """Sync the staged edits into the copy and run ``command`` there.

        Raises :class:`~agentls.sandbox.CommandRefused` for a command that is not allowed
        and :class:`~agentls.sandbox.SandboxError` when it cannot run at all.
        """
        if self._closed:
            raise SandboxError("the run is over; its sandbox was removed")
        if self.sandbox is None:
            self.sandbox = Sandbox(self.workspace.root, self.config)
        await self.sandbox.sync(self.staged())
        return await self.sandbox.run(command, timeout)

    async def aclose(self) -> None:
        """Kill any running command and remove the scratch copy. Idempotent."""
        self._closed = True
        if self.sandbox is not None:
            await self.sandbox.aclose()


def format_result(result: CommandResult) -> str:
    """The text the model reads: one status line, then the output."""
    output = result.output.rstrip() or "(no output)"
    return f"$ {' '.join(result.argv)}\n{result.summary()}\n{output}"


@dataclass
class BashTool(Tool[BashArgs]):
    """The ``bash`` tool plus its session (``run_command``, ``aclose``)."""

    session: BashSession = field(kw_only=True)

    async def run_command(self, command: str, timeout: float | None = None) -> CommandResult:
        """Run a command in this run's sandbox (for the harness, e.g. verifying edits)."""
        return await self.session.run_command(command, timeout)

    async def aclose(self) -> None:
        """End of the run: kill what still runs, remove the scratch copy."""
        await self.session.aclose()


def make_bash_tool(
    workspace: Workspace, settings: Settings, config: SandboxConfig | None = None
) -> BashTool:
    """The ``bash`` tool for one run over ``workspace``; pass it to ``build_tools(extra=...)``.

    ``config`` overrides what ``settings`` give (tests use short timeouts this way).
    """
    session = BashSession(workspace, config or sandbox_config(settings))

    async def run(args: BashArgs) -> ToolResult:
        try:
            result = await session.run_command(args.command)
        except SandboxError as exc:  # refused, or cannot run: the model is told why
            raise ToolError(str(exc)) from exc
        return ToolResult(format_result(result))

    return BashTool(BASH, run, session=session)
