"""Settings of an ACP session: the environment and flags, as ``agentls run`` reads them, then
the session config options the client shows as selectors (model, tool mode).

An editor's ACP configuration is usually a command, its arguments and an environment, so
``AGENTLS_BACKEND``, ``AGENTLS_BASE_URL``, ``AGENTLS_MODEL`` (and the CLI's flags) are where the
user sets the backend, and ``AGENTLS_SETTINGS`` (a JSON object of any ``agent.*`` setting, as
in VS Code's settings) everything else; the selectors then change the model and tool mode per
session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from acp.schema import SessionConfigOptionSelect, SessionConfigSelectOption

from agentls.settings import Settings, ToolMode, load_settings

MODEL = "model"
TOOL_MODE = "tool_mode"

TOOL_MODES: dict[ToolMode, tuple[str, str]] = {
    "auto": ("Auto", "Native tool calls when the model has them, else constrained JSON"),
    "native": ("Native", "The server's tools API (the model must support tools)"),
    "constrained": ("Constrained", "Every reply is one JSON tool call (any model)"),
}


# The environment variable holding a JSON object of settings, applied over the others.
SETTINGS_ENV = "AGENTLS_SETTINGS"


def with_env_settings(settings: Settings, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """``settings`` with ``AGENTLS_SETTINGS`` applied over them, and warnings for what in it
    could not be used (as for any source: bad values fall back, trust only narrows)."""
    raw = env.get(SETTINGS_ENV, "").strip()
    if not raw:
        return settings, []
    try:
        extra = json.loads(raw)
    except ValueError as exc:
        return settings, [f"{SETTINGS_ENV} is not JSON ({exc}); ignored"]
    if not isinstance(extra, dict):
        return settings, [f"{SETTINGS_ENV} must be a JSON object; ignored"]
    base = settings.model_dump(by_alias=True, exclude_unset=True)
    return load_settings(base, extra)


class OptionError(ValueError):
    """A config option or value this agent does not have."""


def config_options(
    settings: Settings, model: str, models: Sequence[str]
) -> list[SessionConfigOptionSelect]:
    """The selectors: the model (when any is known) and the tool-call mode."""
    options: list[SessionConfigOptionSelect] = []
    names = list(dict.fromkeys([m for m in (model, *models) if m]))
    if names:
        options.append(
            SessionConfigOptionSelect(
                type="select",
                id=MODEL,
                name="Model",
                category="model",
                description=f"Models on the {settings.backend} server",
                current_value=model or names[0],
                options=[SessionConfigSelectOption(value=name, name=name) for name in names],
            )
        )
    options.append(
        SessionConfigOptionSelect(
            type="select",
            id=TOOL_MODE,
            name="Tool calls",
            category="model_config",
            description="How the model is asked for tool calls",
            current_value=settings.tool_mode,
            options=[
                SessionConfigSelectOption(value=mode, name=name, description=about)
                for mode, (name, about) in TOOL_MODES.items()
            ],
        )
    )
    return options


def apply_option(
    settings: Settings, config_id: str, value: str | bool, models: Sequence[str]
) -> Settings:
    """``settings`` with one option changed; :class:`OptionError` for an unknown one."""
    if not isinstance(value, str):
        raise OptionError(f"{config_id} takes a value from its list, not {value!r}")
    if config_id == MODEL:
        if models and value not in models:
            raise OptionError(f"model {value!r} is not on the server (it has {', '.join(models)})")
        return settings.model_copy(update={"model": value})
    if config_id == TOOL_MODE:
        if value not in TOOL_MODES:
            raise OptionError(f"tool mode must be one of {', '.join(TOOL_MODES)}, not {value!r}")
        return settings.model_copy(update={"tool_mode": value})
    raise OptionError(f"unknown config option {config_id!r} (use {MODEL} or {TOOL_MODE})")
