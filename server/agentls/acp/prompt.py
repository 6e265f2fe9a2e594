"""A ``session/prompt``'s content blocks, read as a request: the words, the files the user
@-mentioned (with a selection when the mention carries one), the buffer text the client
embedded, and a slash command.

Mentions are files under the session's ``cwd`` and nothing else: a link or an embedded
resource outside it (or not a ``file:`` URI) is refused by name, never read.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acp.schema import (
    AudioContentBlock,
    BlobResourceContents,
    EmbeddedResourceContentBlock,
    ImageContentBlock,
    ResourceContentBlock,
    TextContentBlock,
    TextResourceContents,
)

from agentls.tasks.base import TextRange
from agentls.tasks.registry import TASKS, TaskSpec

ContentBlock = (
    TextContentBlock
    | ImageContentBlock
    | AudioContentBlock
    | ResourceContentBlock
    | EmbeddedResourceContentBlock
)

# Selections in mention URIs: Zed writes file:///a.py#L10:20, others #L10-20 or #L10-L20.
_LINES = re.compile(r"^L(\d+)(?:[:-]L?(\d+))?$")
# A slash command at the start of the prompt: "/refactor split it", "/tests".
_COMMAND = re.compile(r"/([A-Za-z][\w-]*)(?![\w-])")


@dataclass(frozen=True)
class Mention:
    """A file the user attached, its selection (1-based inclusive lines), and the text the
    client embedded (its buffer, possibly unsaved), if it sent any."""

    path: Path
    lines: tuple[int, int] | None = None
    text: str | None = None

    def range(self) -> TextRange | None:
        """The selection as a task range (zero-based, end exclusive at column 0)."""
        if self.lines is None:
            return None
        first, last = self.lines
        return TextRange(first - 1, 0, last, 0)


@dataclass
class PromptRequest:
    """What the user asked: their words (mentions written as `path`), a slash command's task,
    the files they attached, and why some attachments were refused."""

    text: str = ""
    asked: bool = False  # the user wrote words of their own, not only a command and mentions
    command: TaskSpec | None = None
    mentions: list[Mention] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def buffers(self) -> dict[Path, str]:
        """The embedded texts by path: what the client says the buffers hold."""
        return {m.path: m.text for m in self.mentions if m.text is not None}


def commands() -> dict[str, TaskSpec]:
    """The slash commands: each named task's CLI word (``/explain``, ``/refactor``, ``/tests``)."""
    return {spec.cli_word: spec for spec in TASKS if spec.cli_word}


def file_path(uri: str, root: Path) -> tuple[Path, tuple[int, int] | None] | str:
    """The workspace file a ``file:`` URI (or absolute path) names, with its selection; else the
    reason it is refused."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("file", ""):
        return f"{uri}: only files in the workspace can be attached"
    raw = urllib.parse.unquote(parts.path)
    if not raw or not os.path.isabs(raw):
        return f"{uri}: not an absolute file path"
    path = Path(os.path.normpath(raw))
    real_root = root.resolve()
    if not (path.is_relative_to(root) and path.resolve().is_relative_to(real_root)):
        return f"{path}: outside the workspace ({root}); agentls only works on files under it"
    lines = None
    match = _LINES.match(parts.fragment)
    if match:
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if first >= 1 and last >= first:
            lines = (first, last)
    return path, lines


def parse_prompt(blocks: Sequence[ContentBlock], root: Path) -> PromptRequest:
    """Read the prompt's blocks against the session root (absolute, normalised)."""
    request = PromptRequest()
    words: list[str] = []
    plain: list[str] = []
    for block in blocks:
        if isinstance(block, TextContentBlock):
            words.append(block.text)
            plain.append(block.text)
        elif isinstance(block, ResourceContentBlock):
            _mention(request, words, block.uri, None, root, block.name)
        elif isinstance(block, EmbeddedResourceContentBlock):
            resource = block.resource
            if isinstance(resource, TextResourceContents):
                _mention(request, words, resource.uri, resource.text, root, None)
            elif isinstance(resource, BlobResourceContents):
                request.refused.append(f"{resource.uri}: binary content cannot be attached")
        else:
            request.refused.append(f"{block.type} content is not supported; it was left out")
    text = "".join(words).strip()
    own = "".join(plain).strip()
    match = _COMMAND.match(text)
    if match and match.group(1) in commands():
        request.command = commands()[match.group(1)]
        text = text[match.end() :].strip()
        own = own[match.end() :] if own.startswith(match.group(0)) else own
    request.text = text
    request.asked = bool(own.strip())
    return request


def _mention(
    request: PromptRequest,
    words: list[str],
    uri: str,
    text: str | None,
    root: Path,
    name: str | None,
) -> None:
    found = file_path(uri, root)
    if isinstance(found, str):
        request.refused.append(found)
        words.append(f"`{name or uri}`")
        return
    path, lines = found
    rel = path.relative_to(root).as_posix()
    where = f" (lines {lines[0]}-{lines[1]})" if lines else ""
    # The mention's place in the sentence keeps its meaning: "move `a.py` into `pkg/`".
    words.append(f"`{rel}`{where}")
    for i, known in enumerate(request.mentions):
        if known.path == path:  # mentioned twice: keep the richer one
            request.mentions[i] = Mention(
                path, known.lines or lines, text if text is not None else known.text
            )
            return
    request.mentions.append(Mention(path, lines, text))
