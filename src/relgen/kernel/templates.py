"""The one place that knows jinja2: the templates of the header, the commit message and the
semantic patches, with the filters that write kernel prose (counts in words, lists with
"and", text filled to 75 columns as commit messages are, or into a `/* */` comment).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import jinja2

#: The header's and the commit message's templates, and the semantic patches' (spatch).
TEMPLATES = Path(__file__).with_name("templates")
SEMANTIC_PATCHES = Path(__file__).with_name("cocci")


def _hex(value: int) -> str:
    return f"0x{value:04x}"


def _hex_plain(value: int) -> str:
    return f"{value:#x}"


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _words(value: int) -> str:
    """Small counts in words, as prose spells them; larger ones in digits."""
    return _NUMBER_WORDS[value] if 0 <= value < len(_NUMBER_WORDS) else str(value)


# NO-BREAK SPACE marks spaces that reflow must not break at; it becomes a space again after
_KEEP = "\u00a0"


def _unbreakable(text: str) -> str:
    return text.replace(" ", _KEEP)


def _kib_list(sizes: Sequence[int]) -> str:
    return _and_list([f"{size // 1024}" for size in sorted(sizes)]) + " KiB"


def _and_list(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _define(name: str, value: object, column: int, width: int = 80) -> str:
    """`#define NAME<tabs>VALUE`, the value at `column` (a multiple of 8) as kernel headers
    do; a value that would pass `width` columns goes on a line of its own."""
    head = f"#define {name}"
    tabs = max(1, -(-(column - len(head)) // 8))
    if max(column, len(head) + 1) + len(str(value)) > width:
        return f"{head} \\\n\t{value}"
    return head + "\t" * tabs + str(value)


def defines_at(names: Sequence[str]):  # noqa: ANN201 - a function for the template
    """A `define(name, value)` that lines the values of `names` up in one column."""
    column = -(-(len("#define ") + max(len(n) for n in names) + 1) // 8) * 8
    return lambda name, value: _define(name, value, column)


def _c_comment(text: str, width: int = 80) -> str:
    """The lines of a `/* */` block comment: text filled to `width` columns after ` * `."""
    lines = reflow(text, width - 3).rstrip("\n").split("\n")
    return "\n".join(f" * {line}" if line else " *" for line in lines) + "\n"


def _parenthesised(text: str) -> str:
    """A sum in parentheses, as a macro's value should be; a lone name as it is."""
    return f"({text})" if " " in text else text


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([TEMPLATES, SEMANTIC_PATCHES]),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(hex=_hex, hexn=_hex_plain, words=_words, together=_unbreakable,
                       kib_list=_kib_list, and_list=_and_list, c_comment=_c_comment,
                       parenthesised=_parenthesised)
    return env


def render_template(name: str, **context: object) -> str:
    """Any template of templates/ or cocci/ with `context`."""
    return _environment().get_template(name).render(**context)


_TRAILER = re.compile(r"[A-Z][A-Za-z-]*-by: |Link: |Fixes: |Cc: ")


def reflow(text: str, width: int = 75, *, keep_fitting: bool = False) -> str:
    """Fill prose to `width` columns; keep indented lines and trailers as they are.

    Paragraphs are separated by blank lines. Within one, consecutive unindented lines are prose
    and are filled together; a line starting with "- " opens a list item, filled with its
    continuation lines (indented) and wrapped under its text; any other indented line (a
    table, a quoted line) and trailer lines such as `Signed-off-by:` stay verbatim. With
    `keep_fitting`, prose whose lines all fit already keeps its line breaks.
    """
    paragraphs = re.split(r"\n[ \t]*\n", text.strip("\n"))
    filled = [
        _reflow_paragraph(p.split("\n"), width, keep_fitting) for p in paragraphs if p.strip()
    ]
    return "\n\n".join(filled) + "\n" if filled else ""


def _reflow_paragraph(lines: list[str], width: int, keep_fitting: bool) -> str:
    out: list[str] = []
    words: list[str] = []
    originals: list[str] = []  # the lines `words` came from
    bullet = False  # whether `words` is a list item rather than prose

    def flush() -> None:
        if words and keep_fitting and all(len(line) <= width for line in originals):
            out.extend(originals)
        elif words:
            text = textwrap.fill(
                " ".join(words),
                width,
                initial_indent="- " if bullet else "",
                subsequent_indent="  " if bullet else "",
                break_long_words=False,
                break_on_hyphens=False,
            )
            out.append(text.replace(_KEEP, " "))
        words.clear()
        originals.clear()

    for line in lines:
        if _TRAILER.match(line):
            flush()
            out.append(line.rstrip())
        elif line.startswith("- "):
            flush()
            bullet = True
            words.extend(_split_words(line[2:]))
            originals.append(line.rstrip())
        elif line[:1] in (" ", "\t"):
            if bullet and words:
                words.extend(_split_words(line))
                originals.append(line.rstrip())
            else:
                flush()
                out.append(line.rstrip())
        else:
            if bullet:
                flush()
                bullet = False
            words.extend(_split_words(line))
            originals.append(line.rstrip())
    flush()
    return "\n".join(out)


def _split_words(line: str) -> list[str]:
    # ASCII white space only: str.split() would also break at the no-break spaces
    return [word for word in re.split(r"[ \t]+", line) if word]


