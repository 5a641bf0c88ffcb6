"""Preprocessor conditionals decided where it can be: which lines of an area a configuration
keeps, when the conditions test only switches whose value is known.

Used for the configurations in which a hypervisor calls the control page (`CONFIG_XEN` in
the Xen dom0 trees): there the stacks stay in the page, and an area written as
`#ifdef CONFIG_XEN / .fill 4096 / #else / .fill 8192 / #endif` is, under `#ifdef
CONFIG_XEN`, just `.fill 4096`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from relgen.source.nodes import Line, Preprocessor
from relgen.source.region import CONDITIONAL_DIRECTIVES

_TOKEN = re.compile(r"\s*(defined|[A-Za-z_]\w*|&&|\|\||!|\(|\))")
_COMMENT = re.compile(r"/\*.*?\*/|//.*", re.S)


def _directive(line: Line) -> Preprocessor | None:
    for item in line.items:
        if isinstance(item, Preprocessor) and item.directive in CONDITIONAL_DIRECTIVES:
            return item
    return None


def _condition(item: Preprocessor) -> str:
    body = _COMMENT.sub(" ", item.text)[1:].lstrip(" \t")
    return body[len(item.directive):].strip()


def evaluate(item: Preprocessor, defined: Collection[str]) -> bool | None:
    """Whether the condition of `#if`/`#ifdef`/`#ifndef`/`#elif` holds when exactly the
    names of `defined` are defined and the others are not known: None where it depends on
    another name or on anything but `defined`."""
    text = _condition(item)
    if item.directive in ("ifdef", "ifndef"):
        name = text.split()[0] if text.split() else ""
        if name not in defined:
            return None
        return item.directive == "ifdef"
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            return None if text[position:].strip() else _parse(tokens, defined)
        tokens.append(match.group(1))
        position = match.end()
    return _parse(tokens, defined)


def _parse(tokens: list[str], defined: Collection[str]) -> bool | None:
    """`a || b`, `a && b`, `!a`, `(a)`, `defined(X)`, `defined X` over known names."""
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def either() -> bool | None:
        value = both()
        while peek() == "||":
            take()
            right = both()
            value = None if value is None or right is None else value or right
        return value

    def both() -> bool | None:
        value = single()
        while peek() == "&&":
            take()
            right = single()
            value = None if value is None or right is None else value and right
        return value

    def single() -> bool | None:
        token = take() if peek() is not None else ""
        if token == "!":
            value = single()
            return None if value is None else not value
        if token == "(":
            value = either()
            return value if peek() == ")" and take() else None
        if token == "defined":
            parenthesised = peek() == "("
            if parenthesised:
                take()
            name = take() if peek() is not None else ""
            if parenthesised and not (peek() == ")" and take()):
                return None
            return True if name in defined else None
        return None

    try:
        value = either()
    except IndexError:
        return None
    return value if position == len(tokens) else None


def lines_kept(lines: Sequence[Line], defined: Collection[str]) -> list[Line] | None:
    """The lines a configuration with `defined` keeps of `lines` (balanced conditionals),
    without the conditional lines themselves; None where a condition cannot be decided."""
    kept: list[Line] = []
    stack: list[tuple[bool, bool]] = []  # (this branch taken, a branch already taken)
    for line in lines:
        item = _directive(line)
        active = all(taken for taken, _ in stack)
        if item is None:
            if active:
                kept.append(line)
            continue
        if item.directive in ("if", "ifdef", "ifndef"):
            value = evaluate(item, defined) if active else False
            if value is None:
                return None
            stack.append((value, value))
        elif item.directive == "elif":
            if not stack:
                return None
            _, done = stack.pop()
            value = False if done else evaluate(item, defined)
            if value is None:
                return None
            stack.append((value, done or value))
        elif item.directive == "else":
            if not stack:
                return None
            _, done = stack.pop()
            stack.append((not done, True))
        elif item.directive == "endif":
            if not stack:
                return None
            stack.pop()
    return kept if not stack else None
