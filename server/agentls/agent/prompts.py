"""The fixed system prompt and the per-task first message.

The system prompt and the tool schemas form the prompt prefix that Ollama and llama.cpp keep in
their KV cache. They must stay byte-identical across turns, tasks and runs: nothing in
``SYSTEM_PROMPT`` depends on the task, the file, the time or the settings. Everything specific to a
request goes into the first user message, after the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_PROMPT = """\
You are agentls, a coding agent in the user's editor. Your tools work on one workspace; paths \
are relative to its root. Edits are staged for the user to review, so make them complete and \
correct.
Rules:
- Call one tool at a time and wait for its result.
- edit: copy old_text exactly from the current file and keep it short. Never retype existing \
code: move it with to_path, replace long blocks by line numbers. After an error, read the \
file again.
- write: creates a file or replaces its whole content; to change part of a file, use edit.
- When the task is done, call finish with a short summary of what you did."""

# Files larger than this go into the first message only around the selection.
MAX_INLINE_CHARS = 24_000
CONTEXT_LINES = 60


@dataclass(frozen=True)
class FileExcerpt:
    """The part of the user's file that goes into the first message."""

    path: str  # relative to the workspace root
    text: str
    first_line: int  # 1-based number of the excerpt's first line
    last_line: int
    total_lines: int
    selection: tuple[int, int] | None  # 1-based inclusive lines the user selected


def excerpt(
    path: str, text: str, selection: tuple[int, int] | None, max_chars: int = MAX_INLINE_CHARS
) -> FileExcerpt:
    """Cut the file to what fits: all of it when small, else the selection with context."""
    lines = text.splitlines(keepends=True)
    total = len(lines)
    if len(text) <= max_chars or total == 0:
        return FileExcerpt(path, text, 1, max(total, 1), total, selection)
    start, end = selection or (1, min(total, CONTEXT_LINES))
    first = max(1, start - CONTEXT_LINES)
    last = min(total, end + CONTEXT_LINES)
    while last > first and sum(len(x) for x in lines[first - 1 : last]) > max_chars:
        # Shrink from the side farther from the selection so the selection itself survives.
        if start - first > last - end:
            first += 1
        else:
            last -= 1
    return FileExcerpt(path, "".join(lines[first - 1 : last]), first, last, total, selection)


def render_file(ex: FileExcerpt) -> str:
    """The file block of the first message, saying exactly what part of the file it holds."""
    if ex.first_line == 1 and ex.last_line >= ex.total_lines:
        where = f"File {ex.path} ({ex.total_lines} lines):"
    else:
        where = (
            f"File {ex.path}, lines {ex.first_line}-{ex.last_line} of {ex.total_lines} "
            "(read the rest with the read tool):"
        )
    body = ex.text if ex.text.endswith("\n") or not ex.text else ex.text + "\n"
    fence = "````" if "```" in body else "```"
    block = f"{where}\n{fence}\n{body}{fence}"
    if ex.selection:
        a, b = ex.selection
        block += f"\nThe user selected lines {a}-{b}."
    return block


def task_message(
    task_text: str, file_block: str, instruction: str | None, guidance: str = ""
) -> str:
    """The first user message: what to do, the user's own words, skill guidance, then the file.

    Guidance (the chosen skills) lives here rather than in the system prompt so that the
    prefix stays byte-identical whichever skills a request picks.
    """
    parts = [task_text]
    if instruction and instruction.strip():
        parts.append(f"The user's instruction: {instruction.strip()}")
    if guidance:
        parts.append(guidance)
    parts.append(file_block)
    return "\n\n".join(parts)


def turns_left_warning(turns_left: int) -> str:
    """Told to the model when it nears the turn cap."""
    return (
        f"Note from the harness: {turns_left} model turn(s) left. Make your last needed change "
        "now, then call finish with a summary."
    )


REPEATED_CALL = (
    "You already made this exact call and nothing has changed since; its result is above. "
    "Do not repeat it: take the next step, or call finish."
)


# After this many turns in a row that only repeated earlier calls, the run stops and the model is
# asked for its answer: it is looping, and more turns will not help.
MAX_REPEAT_TURNS = 2

FINAL_ANSWER = (
    "Note from the harness: no more tool calls. Answer now in plain text with what you have: "
    "for an explanation, the explanation itself; for a change, what you changed, what is "
    "left to do, and why you stopped."
)
