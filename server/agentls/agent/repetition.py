"""Stopping a reply that has fallen into a loop.

Small models often fall into a loop: the same line, or the same few words, again and again
until the token cap (Gemma 3 270M repeats one rule of the system prompt for 400 tokens; others
write ``iatrics }iatrics }...``). At laptop speed that is half a minute of waiting for nothing.
:class:`RepetitionGuard` watches the answer text as it streams and says when its end is one
unit of text repeated :data:`MIN_REPEATS` times over at least :data:`MIN_LOOP_CHARS`
characters. The caller then closes the stream and keeps the text with the loop cut down to one
copy of its unit.

The bounds are set so that real prose and code do not trip them. A Markdown table row, a
ruler, or a few identical lines of code stay well under 240 characters of one exact repeated
unit. Only the answer text is watched, never a tool call's arguments: a file full of
identical lines is content, not a loop.
"""

from __future__ import annotations

__all__ = ["MAX_UNIT_CHARS", "MIN_LOOP_CHARS", "MIN_REPEATS", "RepetitionGuard"]

# A loop is one unit of text repeated at least this many times in a row, back to back...
MIN_REPEATS = 6
# ...covering at least this many characters...
MIN_LOOP_CHARS = 240
# ...with a unit of at most this many characters (a long line, its line break included).
MAX_UNIT_CHARS = 200
# Checking after every chunk costs little, but chunks are a few characters: check this often.
CHECK_EVERY_CHARS = 32


class RepetitionGuard:
    """Feed it the answer text as it streams; :meth:`feed` says when it has become a loop."""

    def __init__(self) -> None:
        self.text = ""
        self._checked = 0
        self._unit = 0  # the loop's unit length, once found

    def feed(self, text: str) -> bool:
        """Add streamed text; True once the text ends in a loop (and from then on)."""
        self.text += text
        if self._unit:
            return True
        if len(self.text) - self._checked < CHECK_EVERY_CHARS:
            return False
        self._checked = len(self.text)
        self._unit = _loop_unit(self.text)
        return self._unit > 0

    def kept(self) -> str:
        """The text so far with the loop at its end cut down to one copy of its unit."""
        unit = self._unit or _loop_unit(self.text)
        if not unit:
            return self.text
        text = self.text
        # Walk back to where the periodic stretch begins (the stream may have stopped in the
        # middle of a copy); what was before the loop stays whole, then one copy follows.
        start = len(text) - unit
        while start > 0 and text[start - 1] == text[start - 1 + unit]:
            start -= 1
        # The copy kept ends at a line break when the unit has one (a repeated line is kept
        # whole), else one unit after the stretch begins.
        end = start + unit
        for cut in range(start + unit, min(start + 2 * unit, len(text)) + 1):
            if text[cut - 1] == "\n":
                end = cut
                break
        return text[:end].rstrip()


def _loop_unit(text: str) -> int:
    """The length of the unit the text ends in a loop of, or 0 when it does not."""
    for unit in range(1, min(MAX_UNIT_CHARS, len(text) // MIN_REPEATS) + 1):
        # Cheap test first: the last two copies agree.
        if text[-unit:] != text[-2 * unit : -unit]:
            continue
        repeats = max(MIN_REPEATS, -(-MIN_LOOP_CHARS // unit))
        span = unit * repeats
        if span <= len(text) and text[-span:] == text[-unit:] * repeats:
            return unit
    return 0
