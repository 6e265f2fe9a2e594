"""The ACP front end's parts without a process: reading prompts, the registry's general
request, settings from the environment, the config options."""

from __future__ import annotations

from pathlib import Path

import acp
import pytest

from agentls.acp.config import OptionError, apply_option, config_options, with_env_settings
from agentls.acp.prompt import commands, file_path, parse_prompt
from agentls.settings import Settings
from agentls.tasks import registry
from agentls.tasks.registry import ASK, TASKS


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "proj" / "src").mkdir(parents=True)
    (tmp_path / "proj" / "src" / "a.py").write_text("x = 1\n")
    return tmp_path / "proj"


def test_the_general_request_is_in_the_registry_but_not_offered_over_lsp() -> None:
    assert ASK not in TASKS  # the LSP server and code actions iterate TASKS only
    assert registry.by_name("ask") is ASK
    assert ASK.method == ASK.command == ASK.cli_word == ""
    assert not ASK.read_only and ASK.prose_answer and ASK.verify_kind == "refactor"
    assert registry.cli_words() == ["explain", "refactor", "tests"]
    # The slash commands are the CLI words of the named tasks.
    assert list(commands()) == ["explain", "refactor", "tests"]
    assert commands()["tests"] is registry.by_name("generateTests")


def test_a_slash_command_with_a_mention_and_words(root: Path) -> None:
    a = root / "src" / "a.py"
    request = parse_prompt(
        [
            acp.text_block("/refactor "),
            acp.resource_link_block("a.py", a.as_uri() + "#L3:7"),
            acp.text_block(" into two functions"),
        ],
        root,
    )
    assert request.command is registry.by_name("refactor")
    assert request.asked and request.text == "`src/a.py` (lines 3-7) into two functions"
    (mention,) = request.mentions
    assert mention.path == a and mention.lines == (3, 7)
    rng = mention.range()
    assert rng is not None and (rng.start_line, rng.end_line) == (2, 7)


def test_a_command_and_a_mention_alone_ask_nothing_more(root: Path) -> None:
    a = root / "src" / "a.py"
    request = parse_prompt(
        [acp.text_block("/explain"), acp.resource_link_block("a.py", a.as_uri())], root
    )
    assert request.command is registry.by_name("explain") and not request.asked


def test_plain_text_is_the_general_request_and_unknown_commands_stay_text(root: Path) -> None:
    request = parse_prompt([acp.text_block("/frobnicate the widgets")], root)
    assert request.command is None and request.text == "/frobnicate the widgets"


def test_embedded_text_is_the_buffer(root: Path) -> None:
    a = root / "src" / "a.py"
    request = parse_prompt(
        [acp.resource_block(acp.embedded_text_resource(a.as_uri(), "x = 2  # unsaved\n"))], root
    )
    assert request.buffers() == {a: "x = 2  # unsaved\n"}


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "https://example.com/a.py",
        "file://{root}/../outside.py",
        "file://{root}/%2e%2e/outside.py",
        "relative/a.py",
    ],
)
def test_mentions_outside_the_root_are_refused(root: Path, uri: str) -> None:
    refused = file_path(uri.format(root=root), root)
    assert isinstance(refused, str)
    request = parse_prompt([acp.resource_link_block("x", uri.format(root=root))], root)
    assert request.mentions == [] and request.refused


def test_a_symlink_out_of_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert isinstance(file_path((root / "link.txt").as_uri(), root), str)


def test_agentls_settings_env_applies_any_setting_and_trust_only_narrows() -> None:
    base = Settings(backend="openai", base_url="http://127.0.0.1:1/v1", model="m")
    settings, warnings = with_env_settings(
        base, {"AGENTLS_SETTINGS": '{"maxTurns": 7, "trustedWorkspace": false, "nope": 1}'}
    )
    assert settings.max_turns == 7 and not settings.trusted_workspace
    assert settings.base_url == "http://127.0.0.1:1/v1" and settings.model == "m"
    assert warnings == ["agent.nope: unknown setting, ignored"]
    untrusted = base.model_copy(update={"trusted_workspace": False})
    settings, _ = with_env_settings(untrusted, {"AGENTLS_SETTINGS": '{"trustedWorkspace": true}'})
    assert not settings.trusted_workspace
    assert with_env_settings(base, {"AGENTLS_SETTINGS": "{oops"})[1][0].startswith(
        "AGENTLS_SETTINGS is not JSON"
    )


def test_config_options_change_the_model_and_tool_mode() -> None:
    settings = Settings(model="a")
    options = {o.id: o for o in config_options(settings, "a", ["a", "b"])}
    assert options["model"].current_value == "a"
    assert apply_option(settings, "model", "b", ["a", "b"]).model == "b"
    assert apply_option(settings, "tool_mode", "constrained", []).tool_mode == "constrained"
    with pytest.raises(OptionError):
        apply_option(settings, "model", "c", ["a", "b"])
    with pytest.raises(OptionError):
        apply_option(settings, "tool_mode", "telepathy", [])
    # Nothing known about models (backend down, none configured): only the tool mode.
    assert [o.id for o in config_options(Settings(), "", [])] == ["tool_mode"]
