"""The command line: parsed, never given to a shell; refused with a reason when not allowed."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence

from agentls.sandbox.config import CommandRefused

__all__ = ["check_command"]

_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = {
    ";": "';' (command separator)",
    "&": "'&' (background or '&&' chaining)",
    "|": "'|' (pipe or '||' chaining)",
    ">": "'>' (output redirection)",
    "<": "'<' (input redirection)",
    "(": "'(' (subshell)",
    ")": "')' (subshell)",
    "\n": "a newline (a second command)",
    "\r": "a carriage return",
}


def _shell_syntax(command: str) -> str | None:
    """The first piece of shell syntax in ``command`` a shell would act on, described.

    Quoting is honoured as a shell would: inside single quotes nothing is special; inside
    double quotes ``$`` and backticks still are. Nothing runs through a shell, but refusing
    these keeps "what the model wrote" equal to "what ran" and tells the model why.
    """
    quote: str | None = None
    i = 0
    word_start = True
    while i < len(command):
        c = command[i]
        nxt = command[i + 1] if i + 1 < len(command) else ""
        if c in "\n\r":
            return _OPERATORS[c]  # a newline ends a command even inside quotes for our purpose
        if quote == "'":
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "\\":
            i += 2
            word_start = False
            continue
        if c == "`":
            return "backticks (command substitution)"
        if c == "$":
            if nxt == "(":
                return "'$(...)' (command substitution)"
            if nxt == "{" or nxt == "_" or nxt.isalnum() or nxt in "?!@*#$-":
                return "'$' variable expansion"
        if quote == '"':
            if c == '"':
                quote = None
            i += 1
            continue
        if c in "'\"":
            quote = c
        elif c in _OPERATORS:
            return _OPERATORS[c]
        elif c == "#" and word_start:
            return "'#' (a shell comment)"
        elif c == "~" and word_start:
            return "'~' (home directory expansion)"
        word_start = c in " \t"
        i += 1
    if quote:
        return f"an unterminated {quote} quote"
    return None


def _escapes(arg: str) -> bool:
    """Whether an argument names a path outside the working directory (absolute, ~ or ..)."""
    candidates = [arg]
    if arg.startswith("-"):
        _name, eq, value = arg.partition("=")
        candidates = [value] if eq else []
        if not eq and not arg.startswith("--") and len(arg) > 2:
            candidates.append(arg[2:])  # a short option with its value glued on: -c/etc/x
    elif "=" in arg:
        candidates.append(arg.partition("=")[2])  # -o cache_dir=/x
    for value in candidates:
        path = value.split("::", 1)[0]  # pytest node ids: tests/test_a.py::test_b
        if path.startswith(("/", "~")):
            return True
        if os.path.normpath(path).split(os.sep)[0] == "..":
            return True
    return False


def check_command(command: str, allowed: Sequence[str]) -> list[str]:
    """The argv to run for ``command``, or :class:`CommandRefused` saying what is not allowed.

    The whole line is one command: argv must start with one of the ``allowed`` prefixes
    (compared word by word), and no argument may point outside the workspace.
    """
    text = command.strip()
    if not text:
        raise CommandRefused("the command is empty")
    if "\n" in text or "\r" in text:
        raise CommandRefused(
            "a newline (a second command) is not allowed: one command per bash call"
        )
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise CommandRefused("control characters are not allowed in a command")
    syntax = _shell_syntax(text)
    if syntax is not None:
        raise CommandRefused(
            f"{syntax} is not allowed: the command runs without a shell, one command per call. "
            "Run each command in its own bash call."
        )
    argv = shlex.split(text)
    if argv and _ENV_ASSIGNMENT.match(argv[0]):
        raise CommandRefused(
            f"environment assignments like '{argv[0]}' are not allowed; "
            "pass options as arguments instead"
        )
    prefixes = [shlex.split(p) for p in allowed]
    if not any(argv[: len(p)] == p for p in prefixes if p):
        shown = ", ".join(repr(p) for p in allowed) or "none (bash is turned off)"
        raise CommandRefused(
            f"'{argv[0]}' is not an allowed command here. Allowed command prefixes: {shown} "
            "(setting agent.allowedCommands)"
        )
    for arg in argv[1:]:
        if _escapes(arg):
            raise CommandRefused(
                f"argument {arg!r} points outside the workspace; use paths relative to the "
                "workspace root without '..'"
            )
    return argv
