"""A tiny front matter parser: the YAML subset skill files use, without a YAML dependency.

Supported: ``key: value`` scalars (quoted or bare), integers, inline lists ``[a, b]``, block
lists (``key:`` then ``- item`` lines) and block scalars (``key: >`` or ``key: |`` then indented
lines), as pi and little-coder ``SKILL.md`` files write their descriptions. Nested mappings
(e.g. pi's ``metadata:``) are skipped. Anything else is an error naming the line, so a broken
skill file is reported rather than half-read.
"""

from __future__ import annotations

import re

FrontValue = str | int | list[str]

_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:(?:\s+(.*?))?\s*$")


class FrontMatterError(ValueError):
    """The front matter cannot be read; the message names the line."""


def split_front_matter(text: str) -> tuple[str, str]:
    """Split ``---`` delimited front matter from the body; raise if it is missing or unclosed."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise FrontMatterError("no front matter: the file must start with a '---' line")
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    raise FrontMatterError("front matter is not closed by a '---' line")


def _scalar(raw: str) -> str | int:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    return raw


def _inline_list(raw: str, lineno: int) -> list[str]:
    if not raw.endswith("]"):
        raise FrontMatterError(f"line {lineno}: list is not closed by ']'")
    inner = raw[1:-1].strip()
    if not inner:
        return []
    return [str(_scalar(part)) for part in inner.split(",") if part.strip()]


def parse_front_matter(text: str, first_line: int = 2) -> dict[str, FrontValue]:
    """Parse the front matter text into a dict; ``first_line`` numbers lines in errors."""
    result: dict[str, FrontValue] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = first_line + i
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            raise FrontMatterError(f"line {lineno}: unexpected indentation: {line.strip()!r}")
        match = _KEY.match(line)
        if not match:
            raise FrontMatterError(f"line {lineno}: expected 'key: value', got {line.strip()!r}")
        key, raw = match.group(1), (match.group(2) or "")
        # Indented continuation lines belong to this key (block list, block scalar, mapping).
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i][0].isspace()):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        if raw in (">", "|", ">-", "|-", ">+", "|+"):
            parts = [b.strip() for b in block]
            result[key] = (" " if raw.startswith(">") else "\n").join(parts).strip()
        elif raw.startswith("["):
            result[key] = _inline_list(raw, lineno)
        elif raw:
            if block:  # a plain scalar folded over several lines
                raw = " ".join([raw, *(b.strip() for b in block)])
            result[key] = _scalar(raw)
        elif block and all(b.strip().startswith("- ") or not b.strip() for b in block):
            result[key] = [str(_scalar(b.strip()[2:])) for b in block if b.strip()]
        elif block:
            continue  # a nested mapping (pi's metadata:): not ours, skipped
        else:
            result[key] = ""
    return result
