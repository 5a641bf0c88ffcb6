"""Render what a kernel developer reads: the C header, the commit message, the semantic patches.

The header is rendered from `templates/kexec_control_page.h.j2` with facts measured by the
caller in the assembled, regenerated object; the commit message from
`templates/patch_message.j2`, filled to 75 columns; the Coccinelle semantic patches from
`cocci/*.cocci.j2` (`render_template`). The mail itself is made by git (`relgen.patch`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple, NoReturn

import jinja2

from relgen.errors import RelgenError
from relgen.kernel.mail import PLACEHOLDER_IDENTITY
from relgen.names import (
    CODE_PAGE_MACRO,
    CODE_SIZE_MACRO,
    HEADER_PATH,
    PAGE_SIZES,
    STACKS_SIZE_MACRO,
    offset_macro,
)

#: The header's and the commit message's templates, and the semantic patches' (spatch).
TEMPLATES = Path(__file__).with_name("templates")
SEMANTIC_PATCHES = Path(__file__).with_name("cocci")

# ----------------------------------------------------------------------------------------------
# Facts

#: The parameters of `relocate_new_kernel_t` in Linux 6.1 `arch/ia64/kernel/machine_kexec.c`.
UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS: tuple[str, ...] = (
    "unsigned long indirection_page",
    "unsigned long start_address",
    "struct ia64_boot_param *boot_param",
    "unsigned long pal_addr",
)


# fits on one `Subject: [PATCH] ` line of 78 columns, so no mail reader has to unfold it
DEFAULT_SUBJECT = "ia64/kexec: put all control page code first, pass stacks in"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


class EntryPointFacts(NamedTuple):
    """A global entry point of the control page; a plain (symbol, offset, is_entry) also does."""

    symbol: str
    offset: int
    is_entry: bool = False

    @property
    def macro(self) -> str:
        return offset_macro(self.symbol)


@dataclass(frozen=True)
class DataAreaFacts:
    """A data area lifted out of the control page and passed in as an argument."""

    name: str  # the label in the source, e.g. "memory_stack"
    macro: str  # its size macro, e.g. "KEXEC_MEMORY_STACK_SIZE"
    size: int  # bytes, e.g. 8192
    argument_register: str  # the input register it arrives in, e.g. "in4"
    c_argument: str  # the C parameter name, e.g. "memory_stack"


@dataclass(frozen=True)
class HeaderFacts:
    """Everything `render_header` writes; the numbers come from the regenerated object."""

    relgen_version: str
    input_path: str  # kernel-relative, e.g. "arch/ia64/kernel/relocate_kernel.S"
    input_sha256: str  # of the input file's bytes
    entry: str  # "relocate_new_kernel"
    code_size: int  # bytes of code in the control page
    data_areas: tuple[DataAreaFacts, ...]
    entry_points: tuple[EntryPointFacts, ...]
    page_sizes: tuple[int, ...] = PAGE_SIZES
    existing_arguments: tuple[str, ...] = UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS

    def __post_init__(self) -> None:
        # plain (symbol, offset, is_entry) tuples are welcome; keep named ones from here on
        points = tuple(EntryPointFacts(*point) for point in self.entry_points)
        object.__setattr__(self, "entry_points", points)
        object.__setattr__(self, "data_areas", tuple(self.data_areas))
        object.__setattr__(self, "page_sizes", tuple(self.page_sizes))
        object.__setattr__(self, "existing_arguments", tuple(self.existing_arguments))
        _check_header_facts(self)

    @property
    def smallest_page_size(self) -> int:
        return min(self.page_sizes)

    @property
    def code_page_size(self) -> int:
        """The bytes to allocate for the code: the code size rounded up to the smallest page."""
        page = self.smallest_page_size
        return -(-self.code_size // page) * page

    @property
    def stacks_size(self) -> int:
        """The bytes of the one block that holds every data area, one after the other."""
        return sum(area.size for area in self.data_areas)


@dataclass(frozen=True)
class ControlMemory:
    """Bytes of control pages one image takes at one page size, before and after."""

    page_size: int
    before: int
    after: int


@dataclass(frozen=True)
class PatchFacts:
    """What the commit message states; sizes in bytes, measured in the assembled objects."""

    relgen_version: str
    input_path: str
    input_sha256: str
    entry: str
    data_areas: tuple[DataAreaFacts, ...]
    before_size: int  # control page allocated before: KEXEC_CONTROL_PAGE_SIZE, 20480
    after_size: int  # control page needed now: KEXEC_CONTROL_CODE_PAGE_SIZE
    code_size: int  # bytes of code in the regenerated control page
    instructions_rewritten: int  # one-for-one rewrites of stack address instructions
    page_sizes: tuple[int, ...] = PAGE_SIZES
    instructions_compared: int | None = None  # instructions compared between both objects
    before_region_size: int | None = None  # bytes the old control page held (code + areas)
    code_after_data: tuple[str, ...] = ()  # procedures that followed the areas (2006 shape)
    configurations: str | None = None  # which preprocessor configurations were checked
    header_path: str = HEADER_PATH
    assembler: str = "ia64-linux-gnu-as -x"
    signed_off_by: str = PLACEHOLDER_IDENTITY
    existing_arguments: tuple[str, ...] = UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS
    control_memory: tuple[ControlMemory, ...] = ()
    callers_changed: bool = False  # asm/kexec.h and machine_kexec.c are in the patch


def _fail(message: str) -> NoReturn:
    raise RelgenError(message)


def _check_kernel_path(path: str, what: str) -> None:
    # the header and the patch must not depend on where the tree was on this machine
    if not path or path.startswith("/") or "\\" in path or ".." in path.split("/"):
        _fail(f"{what} must be a path inside the kernel tree, not {path!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.+/-]+", path):
        _fail(f"{what} {path!r} has characters a patch would have to quote")


def _check_header_facts(facts: HeaderFacts) -> None:
    _check_kernel_path(facts.input_path, "input_path")
    if not _SHA256.match(facts.input_sha256):
        _fail(f"input_sha256 is not a lower-case sha256: {facts.input_sha256!r}")
    if facts.code_size <= 0:
        _fail(f"code_size must be positive, not {facts.code_size}")
    if not facts.page_sizes or any(p <= 0 or p & (p - 1) for p in facts.page_sizes):
        _fail(f"page sizes must be powers of two: {facts.page_sizes}")
    if not facts.existing_arguments or any(
        not a.strip() or any(c in a for c in ",;()") for a in facts.existing_arguments
    ):
        _fail(f"existing_arguments must be C parameter declarations: {facts.existing_arguments}")
    first_new = len(facts.existing_arguments)
    for number, area in enumerate(facts.data_areas, start=first_new):
        if area.argument_register != f"in{number}":
            # the typedef appends the areas in this order; the assembly must agree
            _fail(f"{area.name} arrives in {area.argument_register}, expected in{number}")
        if not _IDENTIFIER.match(area.macro) or not _IDENTIFIER.match(area.c_argument):
            _fail(f"{area.name}: macro and C argument must be identifiers")
        if area.size <= 0:
            _fail(f"{area.name}: size must be positive, not {area.size}")
    entries = [p for p in facts.entry_points if p.is_entry]
    if len(entries) != 1 or entries[0].symbol != facts.entry:
        _fail(f"exactly one entry point must be the entry {facts.entry!r}")
    macros = [p.macro for p in facts.entry_points] + [a.macro for a in facts.data_areas]
    if len(set(macros)) != len(macros):
        _fail(f"two macros would have the same name: {sorted(macros)}")
    for point in facts.entry_points:
        if not _IDENTIFIER.match(point.symbol) or point.offset < 0:
            _fail(f"bad entry point {point}")


def read_typedef_arguments(source: str, name: str = "relocate_new_kernel_t") -> tuple[str, ...]:
    """The parameter declarations of `typedef void (*name)(...)` in C source (machine_kexec.c)."""
    match = re.search(
        r"typedef\s+void\s*\(\s*\*\s*" + re.escape(name) + r"\s*\)\s*\(([^)]*)\)", source
    )
    if match is None:
        raise RelgenError(f"no `typedef void (*{name})(...)` found")
    # one declaration per comma, white space (tabs, line breaks) folded to single spaces
    return tuple(" ".join(part.split()) for part in match.group(1).split(","))


# ----------------------------------------------------------------------------------------------
# Templates


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
    env.filters["hex"] = _hex
    env.filters["hexn"] = _hex_plain
    env.filters["words"] = _words
    env.filters["together"] = _unbreakable
    env.filters["kib_list"] = _kib_list
    env.filters["and_list"] = _and_list
    env.filters["c_comment"] = _c_comment
    return env


def render_template(name: str, **context: object) -> str:
    """Any template of templates/ or cocci/ (a semantic patch) with `context`."""
    return _environment().get_template(name).render(**context)


def _c_comment(text: str, width: int = 80) -> str:
    """The lines of a `/* */` block comment: text filled to `width` columns after ` * `."""
    lines = reflow(text, width - 3).rstrip("\n").split("\n")
    return "\n".join(f" * {line}" if line else " *" for line in lines) + "\n"


def _define(name: str, value: object, column: int) -> str:
    """`#define NAME<tabs>VALUE`, the value at `column` (a multiple of 8) as kernel headers do."""
    head = f"#define {name}"
    tabs = max(1, -(-(column - len(head)) // 8))
    return head + "\t" * tabs + str(value)


class _Guard(NamedTuple):
    condition: str  # a C / #if expression over the header's macros
    message: str


def _guards(facts: HeaderFacts) -> list[_Guard]:
    page = facts.smallest_page_size
    guards = [
        _Guard(
            f"KEXEC_CONTROL_CODE_SIZE <= {page}",
            f"kexec control code does not fit in one {page}-byte page",
        ),
    ]
    for area in facts.data_areas:
        # sp and ar.bspstore start from these areas: keep the 16-byte stack alignment
        guards.append(
            _Guard(f"{area.macro} % 16 == 0", f"{area.name} size is not a multiple of 16")
        )
    for point in facts.entry_points:
        # an ia64 branch target is a bundle: 16-byte aligned, and it must lie in the code
        guards.append(_Guard(f"{point.macro} % 16 == 0", f"{point.symbol} is not bundle aligned"))
        guards.append(
            _Guard(
                f"{point.macro} < KEXEC_CONTROL_CODE_SIZE",
                f"{point.symbol} is not inside the control code",
            )
        )
    return guards


def render_header(facts: HeaderFacts,
                  variants: Sequence[tuple[str | None, HeaderFacts]] = ()) -> str:
    """The C header `asm/kexec_control_page.h`, usable from C and from assembly.

    `variants` are the numbers of each configuration under its C condition (None for the
    last, `#else`), measured where the source's conditionals make them differ; they must
    name the same macros as `facts`.
    """
    names = (
        [CODE_SIZE_MACRO, CODE_PAGE_MACRO, "KEXEC_CONTROL_STACK_ARGS", STACKS_SIZE_MACRO]
        + [area.macro for area in facts.data_areas]
        + [point.macro for point in facts.entry_points]
    )
    column = -(-(len("#define ") + max(len(n) for n in names) + 1) // 8) * 8
    arguments = list(facts.existing_arguments) + [
        f"unsigned long {area.c_argument}" for area in facts.data_areas
    ]
    return (
        _environment()
        .get_template("kexec_control_page.h.j2")
        .render(
            facts=facts,
            define=lambda name, value: _define(name, value, column),
            arguments=arguments,
            guards=_guards(facts),
            stacks_size_macro=STACKS_SIZE_MACRO,
            typedef_indent=_c_indent(len("typedef void (*relocate_new_kernel_t)(")),
            variants=tuple(variants) or ((None, facts),),
        )
    )


def _c_indent(width: int) -> str:
    """Tabs, then spaces, to column `width`: continuation lines under the open parenthesis."""
    return "\t" * (width // 8) + " " * (width % 8)


# ----------------------------------------------------------------------------------------------
# Commit message


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


def render_commit_message(facts: PatchFacts) -> str:
    """The commit message body (everything after the subject), wrapped at 75 columns."""
    _check_kernel_path(facts.input_path, "input_path")
    _check_kernel_path(facts.header_path, "header_path")
    text = (
        _environment()
        .get_template("patch_message.j2")
        .render(
            facts=facts,
            stack_total=sum(area.size for area in facts.data_areas),
            fits_one_page=facts.code_size <= min(facts.page_sizes),
        )
    )
    return reflow(text)


