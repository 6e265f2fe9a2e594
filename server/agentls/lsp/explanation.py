"""Where the agent.explain command puts its Markdown, and how it is shown without showDocument."""

from __future__ import annotations

import os
from pathlib import Path

# Editors truncate or choke on huge messages; this keeps the popup readable.
MESSAGE_LIMIT = 3000


def explanations_dir() -> Path:
    """``$XDG_CACHE_HOME/agentls/explanations`` (``~/.cache`` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "agentls" / "explanations"


def write_explanation(document: Path, markdown: str) -> Path:
    """Write the explanation of ``document`` to the cache; return the file's path."""
    target = explanations_dir() / f"{document.stem}-explanation.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    target.write_text(text, encoding="utf-8")
    return target


def message_text(markdown: str, saved_to: Path | None, limit: int = MESSAGE_LIMIT) -> str:
    """The explanation for window/showMessage, cut at a line break when it is too long."""
    if len(markdown) <= limit:
        return markdown
    cut = markdown.rfind("\n", 0, limit)
    if cut < limit // 2:  # no reasonable line break: cut mid-line rather than lose most text
        cut = limit
    where = f" Full text: {saved_to}" if saved_to else ""
    return markdown[:cut].rstrip() + f"\n\n[... truncated.{where}]"
