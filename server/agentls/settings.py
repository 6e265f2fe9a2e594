"""One settings model for server and CLI; every source is merged and validated here.

Sources, later ones winning: defaults, ``initializationOptions``, ``workspace/configuration``
(section ``agent``), ``workspace/didChangeConfiguration``, environment (CLI), command-line flags.
An invalid value never stops the server: it falls back to the default and a warning names the
setting, as jedi-language-server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

Backend = Literal["ollama", "openai"]
ToolMode = Literal["native", "constrained", "auto"]

# Files the tools never read, list, search or write (gitignore syntax, '!' re-includes). Keys,
# tokens and git internals: what a prompt-injected model would go for first.
DEFAULT_SECRET_FILES: tuple[str, ...] = (
    ".env*",
    "!.env.example",
    "!.env.sample",
    "!.env.template",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".ssh/",
    ".aws/",
    ".git",
    ".git-credentials",
    ".netrc",
    ".npmrc",
    ".pypirc",
)

# Argv prefixes the bash tool runs (the test runners and linters of common languages).
# The sandbox takes this list as its default too (SandboxConfig), for code without settings.
DEFAULT_ALLOWED_COMMANDS: tuple[str, ...] = (
    "pytest",
    "python -m pytest",
    "python3 -m pytest",
    "ruff",
    "mypy",
    "node --test",
    "npm test",
    "go test",
    "cargo test",
)

DEFAULT_URLS: dict[str, str] = {
    "ollama": "http://localhost:11434",
    "openai": "http://localhost:1234/v1",
}


class Settings(BaseModel):
    """All user-facing settings, named in camelCase on the wire (``agent.baseUrl``)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    backend: Backend = Field("ollama", description="Model server kind: 'ollama' or 'openai'.")
    base_url: str | None = Field(
        None, description="Model server URL; default depends on backend (Ollama :11434, /v1 :1234)."
    )
    model: str | None = Field(
        None, description="Model name; default: the best pulled Gemma 4 that fits memory."
    )
    api_key: str | None = Field(None, description="Bearer token for OpenAI-compatible servers.")
    context_length: int = Field(
        16384, ge=512, le=1_048_576, description="Context window (num_ctx)."
    )
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    keep_alive: str = Field("30m", description="How long Ollama keeps the model loaded.")
    max_turns: int = Field(20, ge=1, le=200, description="Model calls allowed per request.")
    request_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for the model between streamed chunks."
    )
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait to connect.")
    # requestTimeout bounds each quiet gap, so a stream that keeps sending (tokens forever, or
    # only keep-alives) never trips it; this bounds the whole call. Prompt processing of a full
    # window on a laptop can take minutes, hence the generous default.
    model_call_timeout: float = Field(
        600.0,
        gt=0,
        le=86400,
        description="Seconds one model call may take in all, from sending the request to the "
        "last streamed token.",
    )
    tool_mode: ToolMode = Field("auto", description="How tool calls are requested.")
    max_output_tokens: int = Field(
        2048, ge=16, le=131072, description="Tokens the model may generate per reply."
    )
    max_read_lines: int = Field(400, ge=20, description="Lines a single read returns at most.")
    context_warning: float = Field(
        0.85, gt=0, le=1, description="Warn when a prompt fills this share of the context."
    )
    secret_files: tuple[str, ...] = Field(
        DEFAULT_SECRET_FILES,
        description="Globs (gitignore syntax) of files the tools refuse; [] disables.",
    )
    test_command: str = Field(
        "auto",
        description="Command that verifies refactors and generated tests; 'auto' detects "
        "it (pytest, npm test, go test, cargo test), '' turns verification off.",
    )
    repair_turns: int = Field(
        2, ge=0, le=10, description="Times failing test output goes back to the model."
    )
    trusted_workspace: bool = Field(
        True,
        description="False: no bash tool and no test runs. Any source saying false wins.",
    )
    skills_budget: int = Field(
        600,
        ge=0,
        le=8000,
        description="Tokens of skill guidance a request may carry (after the fixed prefix), "
        "at most a tenth of contextLength; 0 turns skills off.",
    )

    allowed_commands: tuple[str, ...] = Field(
        DEFAULT_ALLOWED_COMMANDS,
        description="Command prefixes the bash tool may run, e.g. 'pytest' or 'npm test'; "
        "[] turns bash off.",
    )
    command_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds a bash command may run before it is killed."
    )
    require_network_isolation: bool = Field(
        True,
        description="Refuse to run bash commands where no private network namespace can be "
        "made; false runs them with the network reachable.",
    )

    def resolved_base_url(self) -> str:
        """The base URL to use, falling back to the backend's conventional address."""
        return (self.base_url or DEFAULT_URLS[self.backend]).rstrip("/")


def _default_of(name: str) -> Any:
    return Settings.model_fields[name].default


def _field_name(key: str) -> str | None:
    for name, info in Settings.model_fields.items():
        if key in (name, info.alias):
            return name
    return None


def load_settings(*sources: Mapping[str, Any] | None) -> tuple[Settings, list[str]]:
    """Merge setting sources (later wins), validate each value; return settings and warnings.

    A source may be nested under ``agent`` (as VS Code sends it) or flat. Unknown keys are
    reported; invalid values fall back to their default with a message naming the setting.
    """
    merged: dict[str, Any] = {}
    warnings: list[str] = []
    distrusted = False
    for source in sources:
        if not source:
            continue
        if not isinstance(source, Mapping):
            warnings.append(f"agent settings: expected an object, got {type(source).__name__}")
            continue
        flat = source.get("agent", source)
        if not isinstance(flat, Mapping):
            warnings.append("agent settings: 'agent' must be an object; ignored")
            continue
        for key, value in flat.items():
            name = _field_name(str(key))
            if name is None:
                warnings.append(f"agent.{key}: unknown setting, ignored")
                continue
            if value is None and _default_of(name) is not None:
                continue  # editors send null for "not set"
            if name == "trusted_workspace" and value in (False, "false"):
                # Trust only narrows: a workspace's own settings must not undo the editor's
                # "untrusted", so any source saying false wins over later ones saying true.
                distrusted = True
            merged[name] = value

    values: dict[str, Any] = {}
    for name, value in merged.items():
        try:
            Settings.model_validate({name: value})
        except ValidationError as exc:
            alias = Settings.model_fields[name].alias or name
            reason = exc.errors()[0]["msg"]
            warnings.append(
                f"agent.{alias}: invalid value {value!r} ({reason}); "
                f"using default {_default_of(name)!r}"
            )
            continue
        values[name] = value
    if distrusted:
        values["trusted_workspace"] = False
    return Settings.model_validate(values), warnings
