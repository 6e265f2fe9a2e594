"""Settings as the editor gives them: initializationOptions, workspace/configuration pulls and
workspace/didChangeConfiguration pushes, merged by ``settings.load_settings``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from agentls.lsp.protocol import to_plain
from agentls.settings import Settings, load_settings

log = logging.getLogger(__name__)

SECTION = "agent"


class SettingsState:
    """The settings sources seen so far and the settings merged from them."""

    def __init__(self) -> None:
        self.init_options: Any = None
        self.pulled: Any = None
        self.pushed: Any = None
        self.settings, _ = load_settings()
        self._shown: set[str] = set()

    def reload(self) -> list[str]:
        """Merge the sources again; return the warnings not already shown for this config.

        A bad value that is still bad after an unrelated change is not reported twice: the
        user saw it already, and one popup per keystroke in settings.json is hostile.
        """
        init = self.init_options
        if _trust_of(self.pulled) is not None or _trust_of(self.pushed) is not None:
            # The client restated its trust (VS Code does when the user grants it): that
            # replaces the value it gave at start. Otherwise "untrusted" sticks.
            init = _without_trust(init)
        self.settings, warnings = load_settings(init, self.pulled, self.pushed)
        new = [w for w in warnings if w not in self._shown]
        self._shown = set(warnings)
        return new

    def set_init_options(self, options: Any) -> None:
        """Record initializationOptions (flat, or nested under ``agent``) and use them now.

        Their warnings are left for ``reload`` after ``initialized``: a message sent before the
        initialize response is against the protocol, and the pulled settings may fix them.
        """
        self.init_options = _with_trust(_mapping_or_none(options))
        self.settings, _ = load_settings(self.init_options)

    def apply_push(self, payload: Any) -> bool:
        """Use a didChangeConfiguration payload; False when it has no ``agent`` section.

        Clients that use the pull model send ``{settings: null}`` or unrelated sections, and
        the server must then pull again.
        """
        data = _mapping_or_none(payload)
        if data is None or not isinstance(data.get(SECTION), Mapping):
            return False
        self.pushed = {SECTION: data[SECTION]}
        return True


def _with_trust(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Fold a top-level ``trustedWorkspace`` into a nested ``agent`` section.

    Clients send the editor's workspace trust beside their settings; with the settings nested
    under ``agent`` the top-level key would otherwise be ignored, and an untrusted workspace
    would get the bash tool.
    """
    if options is None or not isinstance(options.get(SECTION), Mapping):
        return options
    trust = options.get("trustedWorkspace")
    if trust is None:
        return options
    section = dict(options[SECTION])
    if section.get("trustedWorkspace") is not False:
        section["trustedWorkspace"] = trust
    return {**options, SECTION: section}


def _section(source: Any) -> Mapping[str, Any] | None:
    if not isinstance(source, Mapping):
        return None
    nested = source.get(SECTION)
    return nested if isinstance(nested, Mapping) else source


def _trust_of(source: Any) -> Any:
    """The ``trustedWorkspace`` a settings source states, or None."""
    section = _section(source)
    return section.get("trustedWorkspace") if section is not None else None


def _without_trust(source: dict[str, Any] | None) -> dict[str, Any] | None:
    section = _section(source)
    if source is None or section is None or "trustedWorkspace" not in section:
        return source
    trimmed = {k: v for k, v in section.items() if k != "trustedWorkspace"}
    return {**source, SECTION: trimmed} if section is not source else trimmed


def _mapping_or_none(value: Any) -> dict[str, Any] | None:
    plain = to_plain(value)
    return dict(plain) if isinstance(plain, Mapping) else None


def client_supports_configuration(ls: LanguageServer) -> bool:
    """Whether the client answers workspace/configuration."""
    workspace = ls.client_capabilities.workspace
    return bool(workspace and workspace.configuration)


async def pull_configuration(ls: LanguageServer) -> Any:
    """Ask the client for the ``agent`` section; None when unsupported or on failure."""
    if not client_supports_configuration(ls):
        return None
    try:
        result = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        )
    except Exception as exc:  # a client bug must not stop the server: keep what we have
        log.warning("workspace/configuration failed: %s", exc)
        return None
    values = to_plain(result)
    if isinstance(values, list) and values:
        return _mapping_or_none(values[0])
    return None


def announce_warnings(ls: LanguageServer, warnings: list[str]) -> None:
    """Log each settings warning and show it once as a warning message."""
    for warning in warnings:
        log.warning("settings: %s", warning)
        ls.window_log_message(
            types.LogMessageParams(type=types.MessageType.Warning, message=f"agentls: {warning}")
        )
        ls.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=f"agentls: {warning}")
        )


__all__ = [
    "SECTION",
    "Settings",
    "SettingsState",
    "announce_warnings",
    "client_supports_configuration",
    "pull_configuration",
]
