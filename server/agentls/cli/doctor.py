"""`agentls doctor`: check the configured backend and print the fix for each failure."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from agentls.llm.factory import make_backend
from agentls.llm.types import BackendError, BackendUnreachable, ModelInfo
from agentls.settings import Settings


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool | None  # None: could not be determined (not a failure)
    detail: str
    fix: str = ""


async def run_checks(settings: Settings) -> list[Check]:
    """Run the checks in order; later checks are skipped when the server cannot be reached."""
    checks: list[Check] = []
    url = settings.resolved_base_url()
    backend = make_backend(settings)
    try:
        try:
            model = await backend.resolve_model()
        except BackendError as exc:
            reachable = not isinstance(exc, BackendUnreachable)
            checks.append(
                Check(
                    "server",
                    reachable,
                    f"{settings.backend} at {url}",
                    "" if reachable else exc.hint,
                )
            )
            if reachable:
                checks.append(Check("model", False, exc.message, exc.hint))
            return checks
        checks.append(Check("server", True, f"{settings.backend} at {url} answers"))
        checks.append(Check("model", True, f"{model} is available"))
        info = await backend.model_info()
        if info.supports_tools is None:
            checks.append(
                Check("tools", None, "the server does not say whether the model takes native tools")
            )
        elif info.supports_tools:
            checks.append(Check("tools", True, f"{model} takes native tool calls"))
        else:
            checks.append(
                Check(
                    "tools",
                    False,
                    f"{model} has no native tool support",
                    "Use a model with tool support (Gemma 4), or set agent.toolMode to "
                    "'constrained'.",
                )
            )
        if info.context_length is None:
            checks.append(
                Check(
                    "context",
                    None,
                    f"model's maximum unknown; agent.contextLength is {settings.context_length}",
                )
            )
        elif info.context_length < settings.context_length:
            checks.append(
                Check(
                    "context",
                    False,
                    f"agent.contextLength {settings.context_length} exceeds the model's "
                    f"{info.context_length}",
                    f"Set agent.contextLength to {info.context_length} or less.",
                )
            )
        else:
            checks.append(
                Check(
                    "context",
                    True,
                    f"agent.contextLength {settings.context_length} (model supports "
                    f"{info.context_length})",
                )
            )
        checks.append(loaded_check(settings, model, info))
    except BackendError as exc:
        checks.append(Check("server", False, exc.message, exc.hint))
    finally:
        await backend.aclose()
    return checks


def loaded_check(settings: Settings, model: str, info: ModelInfo) -> Check:
    """The context window the server actually loaded for the model, against the setting.

    OpenAI-compatible servers load their own window (LM Studio's load settings, llama-server's
    ``-c``, vLLM's ``--max-model-len``, Ollama's default behind ``/v1``), often far below the
    trained maximum; requests are fitted to it, so a larger agent.contextLength is a failure
    with the server's own fix.
    """
    setting = settings.context_length
    loaded = info.loaded
    if loaded is None:
        return Check(
            "loaded",
            None,
            "the server does not say which context window it loaded; requests are fitted to "
            f"agent.contextLength {setting}",
        )
    if loaded.server == "ollama-native":
        if loaded.length >= setting:
            return Check(
                "loaded", True, f"Ollama loads num_ctx {setting} (agent.contextLength) per request"
            )
        # The "context" check already fails with its fix: the trained maximum is the limit.
        return Check(
            "loaded", None, f"Ollama caps num_ctx at the model's trained maximum, {loaded.length}"
        )
    where = f"{loaded.server_name} loaded {model} with a {loaded.length}-token context window"
    if loaded.slots > 1:
        where += f" per slot ({loaded.slots} slots)"
    where += f" ({loaded.source})"
    if loaded.length < setting:
        return Check(
            "loaded",
            False,
            f"{where}, below agent.contextLength {setting}: requests are fitted to {loaded.length}",
            loaded.fix(setting),
        )
    return Check("loaded", True, f"{where}; agent.contextLength {setting} fits")


def print_report(checks: list[Check], out: TextIO = sys.stdout) -> int:
    """Print one line per check and the fixes; exit code 1 when any check failed."""
    marks = {True: "ok  ", False: "FAIL", None: "??  "}
    for check in checks:
        out.write(f"[{marks[check.ok]}] {check.name:8} {check.detail}\n")
        if check.ok is False and check.fix:
            out.write(f"       fix: {check.fix}\n")
    failed = any(c.ok is False for c in checks)
    out.write("Some checks failed.\n" if failed else "All checks passed.\n")
    return 1 if failed else 0
