"""What a sandbox allows and how a command ended: configuration, errors, results."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentls.settings import DEFAULT_ALLOWED_COMMANDS

__all__ = [
    "NO_NETWORK",
    "CommandRefused",
    "CommandResult",
    "SandboxConfig",
    "SandboxError",
]

NO_NETWORK = "network isolation is unavailable"


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message is meant for the model and the user."""


class CommandRefused(SandboxError):
    """The command line is not allowed; the message names what is not allowed."""


class SandboxConfig(BaseModel):
    """What one sandbox allows; the ``bash`` tool builds it from the user's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_commands: tuple[str, ...] = DEFAULT_ALLOWED_COMMANDS
    timeout: float = Field(60.0, gt=0)
    require_network_isolation: bool = True
    kill_grace: float = Field(0.5, ge=0, description="SIGTERM to SIGKILL, seconds.")
    output_head: int = Field(8192, ge=0, description="Bytes of output kept from the start.")
    output_tail: int = Field(8192, ge=0, description="Bytes of output kept from the end.")
    max_output_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Output beyond this stops the command."
    )
    max_file_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Bigger files are not copied.")
    exclude: tuple[str, ...] = Field(
        (), description="Globs of files never copied (secret files), '!' to re-include."
    )
    max_written_bytes: int = Field(
        2 * 1024**3,
        gt=0,
        description="What staged edits and commands may write in all (the overlay's upper "
        "layer, a private tmpfs).",
    )
    max_file_size_limit: int = Field(
        2 * 1024**3, gt=0, description="RLIMIT_FSIZE: the largest file a command may write."
    )
    max_processes: int = Field(
        4096, gt=0, description="RLIMIT_NPROC (per user; not enforced by the kernel for root)."
    )

    @field_validator("allowed_commands")
    @classmethod
    def _parse_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if not shlex.split(prefix):
                raise ValueError(f"empty command prefix {prefix!r}")
        return value


@dataclass(frozen=True)
class CommandResult:
    """How one command ended. ``output`` is stdout and stderr interleaved, maybe truncated."""

    exit_code: int | None  # negative: killed by that signal
    output: str
    timed_out: bool
    duration: float
    network_isolated: bool
    output_bytes: int = 0  # everything the command wrote, even what was dropped
    truncated: bool = False
    output_limit_hit: bool = False  # the command was stopped for writing too much
    filesystem_protected: bool = False  # a new root: only the view, system dirs and toolchains
    argv: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for the model and logs: exit code, time, and why it ended if unusual."""
        if self.timed_out:
            head = (
                f"timed out after {self.duration:.1f} s; the command and its children were killed"
            )
        elif self.output_limit_hit:
            head = (
                f"stopped after {self.output_bytes:,} bytes of output "
                f"(exit code {self.exit_code}, {self.duration:.1f} s)"
            )
        else:
            head = f"exit code {self.exit_code} ({self.duration:.1f} s)"
        if not self.network_isolated:
            head += f"; {NO_NETWORK}, the command had network access"
        elif not self.filesystem_protected:
            head += "; the file system was not isolated (no new root on this machine)"
        return head
