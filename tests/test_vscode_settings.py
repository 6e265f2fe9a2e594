"""The VS Code extension's settings mirror the server's: every server setting is contributed
in client-vscode/package.json with the same default, type and choices, and nothing else is
sent (the extension sends every ``agent.*`` property but its own; see src/settings.ts)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest

from agentls.settings import Settings

PACKAGE = Path(__file__).resolve().parents[1] / "client-vscode" / "package.json"
CLIENT_ONLY = {"pythonPath", "trace.server"}  # src/settings.ts CLIENT_ONLY


def contributed() -> dict[str, dict[str, Any]]:
    data = json.loads(PACKAGE.read_text())
    properties: dict[str, dict[str, Any]] = data["contributes"]["configuration"]["properties"]
    return {name.removeprefix("agent."): spec for name, spec in properties.items()}


def server_settings() -> dict[str, Any]:
    return {info.alias or name: info for name, info in Settings.model_fields.items()}


def test_every_server_setting_is_contributed_and_nothing_else() -> None:
    server = set(server_settings())
    client = set(contributed()) - CLIENT_ONLY
    assert server - client == set(), "add these to client-vscode/package.json"
    assert client - server == set(), "the server does not know these settings"


@pytest.mark.parametrize("alias", sorted(server_settings()))
def test_contributed_setting_matches_the_server(alias: str) -> None:
    info = server_settings()[alias]
    spec = contributed()[alias]
    assert spec.get("markdownDescription") or spec.get("description")
    annotation = info.annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        assert sorted(spec["enum"]) == sorted(args)
        assert spec["type"] == "string"
    elif annotation is bool:
        assert spec["type"] == "boolean"
    elif typing.get_origin(annotation) is tuple:  # tuple[str, ...]: a list of strings
        assert spec["type"] == "array" and spec["items"] == {"type": "string"}
    elif annotation is int:
        assert spec["type"] == "integer"
    elif annotation is float:
        assert spec["type"] == "number"
    else:  # str or str | None: an empty text field means "not set" and is not sent
        assert str in (annotation, *args)
        assert spec["type"] == "string"
    expected = "" if info.default is None else info.default
    if isinstance(expected, tuple):
        expected = list(expected)
    assert spec["default"] == expected
