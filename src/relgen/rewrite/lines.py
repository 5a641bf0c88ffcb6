"""Editing a syntax tree by lines: replacing items, inserting parsed text, and putting lines
under a preprocessor condition with their other version under `#else`.

New syntax always comes from text parsed with the grammar, so it is what a file with that
text would hold; untouched lines keep their bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from relgen.source.nodes import Item, Line, Module
from relgen.source.parser import parse_module


def line_ending(module: Module) -> str:
    """The file's own line ending: CRLF or LF."""
    for line in module.lines:
        if line.ending.endswith("\r\n"):
            return "\r\n"
        if line.ending.endswith("\n"):
            return "\n"
    return "\n"


def parsed_lines(module: Module, text: str, number: int) -> list[Line]:
    """`text` (lines joined with the file's ending) parsed, numbered `number` for messages."""
    return [replace(line, number=number) for line in parse_module(text, module.path).lines]


def insert_text(module: Module, at: int, lines: Sequence[str]) -> Module:
    """`lines` parsed with the grammar, inserted before line index `at`."""
    ending = line_ending(module)
    number = module.lines[at - 1].number if at else 1
    new = parsed_lines(module, ending.join(lines) + ending, number)
    return module.with_lines([*module.lines[:at], *new, *module.lines[at:]])


def replace_items(module: Module, replacements: Mapping[int, Item]) -> Module:
    """The module with each item whose id() is a key replaced, in one pass over the lines."""
    if not replacements:
        return module
    return module.with_lines([_replaced(line, replacements) for line in module.lines])


def _replaced(line: Line, replacements: Mapping[int, Item]) -> Line:
    if not any(id(item) in replacements for item in line.items):
        return line
    return replace(line, items=tuple(replacements.get(id(i), i) for i in line.items))


def condition_lines(switches: Sequence[str]) -> tuple[str, str, str]:
    """`#ifdef X` (or `#if defined(A) || defined(B)`), `#else`, `#endif /* X */`."""
    if len(switches) == 1:
        opener = f"#ifdef {switches[0]}"
    else:
        opener = "#if " + " || ".join(f"defined({name})" for name in switches)
    return opener, "#else", f"#endif /* {' || '.join(switches)} */"


def _runs(indices: Iterable[int]) -> list[list[int]]:
    """Consecutive indices in runs: [3, 4, 9] -> [[3, 4], [9]]."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and runs[-1][-1] + 1 == index:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def replace_items_unless(module: Module, replacements: Mapping[int, Item],
                         switches: Sequence[str]) -> Module:
    """Like `replace_items`, but where any of `switches` is defined the lines stay as they
    were: each run of changed lines becomes `#ifdef X` / old lines / `#else` / new lines /
    `#endif`. Without switches it is `replace_items`."""
    if not switches:
        return replace_items(module, replacements)
    changed = [i for i, line in enumerate(module.lines)
               if any(id(item) in replacements for item in line.items)]
    if not changed:
        return module
    opener, other, closer = condition_lines(switches)
    ending = line_ending(module)
    lines = list(module.lines)
    for run in reversed(_runs(changed)):
        number = lines[run[0]].number
        old = [lines[i] for i in run]
        new = [_replaced(lines[i], replacements) for i in run]
        lines[run[0]:run[-1] + 1] = [
            *parsed_lines(module, opener + ending, number), *old,
            *parsed_lines(module, other + ending, number), *new,
            *parsed_lines(module, closer + ending, number)]
    return module.with_lines(lines)
