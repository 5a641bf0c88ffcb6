"""White space as relgen's grammar reads it: blanks, and `\\` line continuations, which cpp
joins before GAS sees them. Every token keeps the white space in front of it; these say where
that white space ends."""

from __future__ import annotations

import re

# Horizontal white space; with `\` continuations it makes the space before a token.
BLANK = " \t\f\v"
LEADING_SPACE = re.compile(r"(?:[ \t\f\v]|\\\r?\n)*")


def strip_space(raw: str) -> str:
    """`raw` without the white space (and `\\` continuations) in front of it."""
    text = raw.lstrip(BLANK)
    if text[:1] != "\\":
        return text
    return raw[LEADING_SPACE.match(raw).end():]  # type: ignore[union-attr]
