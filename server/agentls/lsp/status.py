"""agent/status: what the server is configured to use and whether it answers. Never raises."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from agentls.agent.stats import Stats
from agentls.llm.types import BackendError, BackendTimeout, BackendUnreachable, ChatBackend
from agentls.lsp.protocol import SkillJson, StatusResultJson
from agentls.settings import Settings
from agentls.skills import load_skills

log = logging.getLogger(__name__)

# Extra seconds on top of the connect timeout: model listing is quick once connected, and
# a status request must answer even when the server accepts connections but then stalls.
STATUS_GRACE = 5.0


def skills_status(workspace_root: Path | None) -> tuple[list[SkillJson], list[str]]:
    """The skills a request in this workspace can choose from, and unusable skill files."""
    try:
        found = load_skills(workspace_root)
    except Exception as exc:  # status never raises; loading is per file, so this is unexpected
        log.exception("loading skills failed")
        return [], [f"loading skills failed: {type(exc).__name__}: {exc}"]
    skills: list[SkillJson] = [
        {"name": s.name, "source": s.source, "path": str(s.path), "tokens": s.tokens}
        for s in found.skills
    ]
    return skills, found.warnings


async def backend_status(
    settings: Settings,
    last_stats: Stats | None,
    make_backend: Callable[[Settings], ChatBackend],
    workspace_root: Path | None = None,
) -> StatusResultJson:
    """Probe the model server; report configuration, reachability, the last run's stats and
    the loaded skills (shipped, user config, and ``workspace_root``'s own)."""
    skills, skill_warnings = skills_status(workspace_root)
    status: StatusResultJson = {
        "backend": settings.backend,
        "baseUrl": settings.resolved_base_url(),
        "model": settings.model,
        "reachable": False,
        "contextLength": settings.context_length,
        "toolMode": settings.tool_mode,
        "lastStats": last_stats.to_json() if last_stats else None,
        "skills": skills,
        "skillWarnings": skill_warnings,
    }
    try:
        backend = make_backend(settings)
    except Exception as exc:  # a bad setting combination is still a status, not a crash
        status["error"] = str(exc)
        return status
    try:
        async with asyncio.timeout(settings.connect_timeout + STATUS_GRACE):
            status["model"] = await backend.resolve_model()
            status["reachable"] = True
            info = await backend.model_info()
        status["modelContextLength"] = info.context_length
        status["loadedContextLength"] = info.loaded_context_length
        status["supportsTools"] = info.supports_tools
        if not info.present:
            status["error"] = f"model {info.name!r} is not available on the server"
    except TimeoutError:
        status["error"] = f"{status['baseUrl']} did not answer in time"
    except BackendError as exc:
        # Anything but "unreachable"/"timeout" means the server did answer (e.g. model missing).
        status["reachable"] = not isinstance(exc, BackendUnreachable | BackendTimeout)
        status["error"] = str(exc)
    except Exception as exc:
        log.exception("agent/status probe failed")
        status["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            await backend.aclose()
        except Exception as exc:
            log.warning("closing the backend failed: %s", exc)
    return status
