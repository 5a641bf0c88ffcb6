"""Emit what a kernel developer uses: the C header and the patch (diffs, diffstat, mail).

The header is rendered from `templates/kexec_control_page.h.j2` with facts measured by the
caller in the assembled, regenerated object. The patch part works on bytes and needs neither
lark nor pyelftools: a Myers diff slid the way git slides its hunks, git-style unified diffs
(with `\\ No newline at end of file` and CRLF kept as they are), git's diffstat and a
`git format-patch`-style mail whose commit message comes from `templates/patch_message.j2`.

Text returned here may hold lone surrogates standing for bytes that are not UTF-8
(`surrogateescape`); write it with `encode_patch()` so those bytes come back unchanged.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import jinja2

from relgen import __version__
from relgen.errors import RelgenError
from relgen.names import offset_macro
from relgen.resources import data_dir

# ----------------------------------------------------------------------------------------------
# Facts

#: The parameters of `relocate_new_kernel_t` in Linux 6.1 `arch/ia64/kernel/machine_kexec.c`.
UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS: tuple[str, ...] = (
    "unsigned long indirection_page",
    "unsigned long start_address",
    "struct ia64_boot_param *boot_param",
    "unsigned long pal_addr",
)

#: The page sizes an ia64 kernel can be built with (CONFIG_IA64_PAGE_SIZE_*).
IA64_PAGE_SIZES: tuple[int, ...] = (4096, 8192, 16384, 65536)

#: Where the header goes in a kernel tree.
HEADER_PATH = "arch/ia64/include/asm/kexec_control_page.h"

#: Author and sign-off when the caller knows no better: an identity nobody can mistake for a
#: person, to be replaced by the one of whoever sends the patch (see format_patch).
PLACEHOLDER_IDENTITY = "relgen <relgen@localhost>"

#: A fixed mail date, so that the same input gives the same patch: the Unix epoch, which no
#: one takes for the real date of a change (`git am` keeps it; `--reset-author` replaces it).
FIXED_DATE = "Thu, 1 Jan 1970 00:00:00 +0000"

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
    page_sizes: tuple[int, ...] = IA64_PAGE_SIZES
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
    page_sizes: tuple[int, ...] = IA64_PAGE_SIZES
    instructions_compared: int | None = None  # instructions compared between both objects
    before_region_size: int | None = None  # bytes the old control page held (code + areas)
    code_after_data: tuple[str, ...] = ()  # procedures that followed the areas (2006 shape)
    configurations: str | None = None  # which preprocessor configurations were checked
    header_path: str = HEADER_PATH
    assembler: str = "ia64-linux-gnu-as -x"
    signed_off_by: str = PLACEHOLDER_IDENTITY
    existing_arguments: tuple[str, ...] = UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS


def _fail(message: str) -> None:
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


def _together(text: str) -> str:
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
        loader=jinja2.FileSystemLoader(data_dir("templates")),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["hex"] = _hex
    env.filters["hexn"] = _hex_plain
    env.filters["words"] = _words
    env.filters["together"] = _together
    env.filters["kib_list"] = _kib_list
    env.filters["and_list"] = _and_list
    env.filters["c_comment"] = _c_comment
    return env


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
        ["KEXEC_CONTROL_CODE_SIZE", "KEXEC_CONTROL_CODE_PAGE_SIZE", "KEXEC_CONTROL_STACK_ARGS"]
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


# ----------------------------------------------------------------------------------------------
# Diff: Myers' algorithm on lines, hunks slid like git's, unified output like git's

Funcname = Callable[[str], bool]

_ASM_FUNCNAME = re.compile(r"(?:[A-Za-z_.$][A-Za-z0-9_.$]*:|(?:[A-Z_]*_)?ENTRY(?:_[A-Z_]+)?\()")
_GIT_DEFAULT_FUNCNAME = re.compile(r"[A-Za-z_$]")


def ia64_asm_funcname(line: str) -> bool:
    """A label at column 0 (`relocate_new_kernel:`, `.loop:`) or `GLOBAL_ENTRY(`/`ENTRY(`."""
    return _ASM_FUNCNAME.match(line) is not None


def git_default_funcname(line: str) -> bool:
    """git's rule without a diff driver: the line starts with a letter, `_` or `$`."""
    return _GIT_DEFAULT_FUNCNAME.match(line) is not None


def default_funcname(path: str) -> Funcname:
    """The function-name rule for a path: ia64 labels for assembly, git's default otherwise."""
    if path.endswith((".S", ".s")):
        return ia64_asm_funcname
    return git_default_funcname


def _split_lines(data: bytes) -> list[bytes]:
    """Lines with their `\\n`; only `\\n` ends a line (a `\\r` before it belongs to the line)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
        return [line + b"\n" for line in lines]
    return [line + b"\n" for line in lines[:-1]] + [lines[-1]]


def _mark_changes(a: Sequence[int], b: Sequence[int]) -> tuple[list[bool], list[bool]]:
    """Changed flags for a minimal edit script from `a` to `b` (Myers, linear space)."""
    changed_a = [False] * len(a)
    changed_b = [False] * len(b)
    # explicit stack instead of recursion: deep splits on long files must not hit the limit
    work = [(0, len(a), 0, len(b))]
    while work:
        a_lo, a_hi, b_lo, b_hi = work.pop()
        while a_lo < a_hi and b_lo < b_hi and a[a_lo] == b[b_lo]:
            a_lo += 1
            b_lo += 1
        while a_lo < a_hi and b_lo < b_hi and a[a_hi - 1] == b[b_hi - 1]:
            a_hi -= 1
            b_hi -= 1
        if a_lo == a_hi:
            changed_b[b_lo:b_hi] = [True] * (b_hi - b_lo)
        elif b_lo == b_hi:
            changed_a[a_lo:a_hi] = [True] * (a_hi - a_lo)
        else:
            x, y, u, v = _middle_snake(a, b, a_lo, a_hi, b_lo, b_hi)
            work.append((a_lo, x, b_lo, y))
            work.append((u, a_hi, v, b_hi))
    return changed_a, changed_b


def _middle_snake(
    a: Sequence[int], b: Sequence[int], a_lo: int, a_hi: int, b_lo: int, b_hi: int
) -> tuple[int, int, int, int]:
    """The middle snake (x, y) -> (u, v) of an optimal path through a[a_lo:a_hi], b[b_lo:b_hi].

    Forward and reverse searches run D-paths from both corners until they overlap (Myers 1986,
    section 4b). Both ends of the range differ, so D >= 2 and both halves are smaller.
    """
    n = a_hi - a_lo
    m = b_hi - b_lo
    delta = n - m
    odd = delta % 2 == 1
    max_d = (n + m + 1) // 2
    offset = max_d + 1
    forward = [0] * (2 * max_d + 3)  # furthest x per diagonal k = x - y, index k + offset
    reverse = [0] * (2 * max_d + 3)  # the same counted from the far corner
    for d in range(max_d + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and forward[k - 1 + offset] < forward[k + 1 + offset]):
                x = forward[k + 1 + offset]
            else:
                x = forward[k - 1 + offset] + 1
            y = x - k
            x0, y0 = x, y
            while x < n and y < m and a[a_lo + x] == b[b_lo + y]:
                x += 1
                y += 1
            forward[k + offset] = x
            if odd and delta - (d - 1) <= k <= delta + (d - 1):
                if x + reverse[delta - k + offset] >= n:
                    return a_lo + x0, b_lo + y0, a_lo + x, b_lo + y
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and reverse[k - 1 + offset] < reverse[k + 1 + offset]):
                x = reverse[k + 1 + offset]
            else:
                x = reverse[k - 1 + offset] + 1
            y = x - k
            x0, y0 = x, y
            while x < n and y < m and a[a_hi - 1 - x] == b[b_hi - 1 - y]:
                x += 1
                y += 1
            reverse[k + offset] = x
            if not odd and -d <= delta - k <= d:
                if x + forward[delta - k + offset] >= n:
                    return a_lo + n - x, b_lo + m - y, a_lo + n - x0, b_lo + m - y0
    raise AssertionError("Myers search ended without overlap")  # cannot happen


class _Group:
    """A run [start, end) of changed lines in one file, possibly empty."""

    __slots__ = ("start", "end")

    def __init__(self, changed: list[bool]) -> None:
        """The first run, at the top of the file."""
        self.start = 0
        self.end = 0
        while self.end < len(changed) and changed[self.end]:
            self.end += 1

    def next(self, changed: list[bool]) -> bool:
        if self.end == len(changed):
            return False
        self.start = self.end + 1
        self.end = self.start
        while self.end < len(changed) and changed[self.end]:
            self.end += 1
        return True

    def previous(self, changed: list[bool]) -> bool:
        if self.start == 0:
            return False
        self.end = self.start - 1
        self.start = self.end
        while self.start > 0 and changed[self.start - 1]:
            self.start -= 1
        return True


def _slide(lines: Sequence[int], changed: list[bool], other: list[bool]) -> None:
    """Move each run of changes in `changed` where git would show it.

    A run can move by one line when the line it gives up equals the line it takes; runs that
    meet merge. git slides every run as far down as it goes, unless some position lines it up
    with a change in the other file; this follows git with `--no-indent-heuristic`.
    """
    n = len(changed)

    def slide_up(g: _Group) -> bool:
        if g.start > 0 and lines[g.start - 1] == lines[g.end - 1]:
            g.start -= 1
            g.end -= 1
            changed[g.start] = True
            changed[g.end] = False
            while g.start > 0 and changed[g.start - 1]:
                g.start -= 1
            return True
        return False

    def slide_down(g: _Group) -> bool:
        if g.end < n and lines[g.start] == lines[g.end]:
            changed[g.start] = False
            changed[g.end] = True
            g.start += 1
            g.end += 1
            while g.end < n and changed[g.end]:
                g.end += 1
            return True
        return False

    group = _Group(changed)
    other_group = _Group(other)
    while True:
        if group.end != group.start:
            while True:
                size = group.end - group.start
                end_matching_other = -1
                while slide_up(group):
                    other_group.previous(other)
                earliest_end = group.end
                if other_group.end > other_group.start:
                    end_matching_other = group.end
                while slide_down(group):
                    other_group.next(other)
                    if other_group.end > other_group.start:
                        end_matching_other = group.end
                if group.end - group.start == size:
                    break  # no merge happened: this run is final
            if group.end != earliest_end and end_matching_other != -1:
                # line it up with the change in the other file, as git does
                while other_group.end == other_group.start:
                    slide_up(group)
                    other_group.previous(other)
        if not group.next(changed):
            break
        other_group.next(other)


class _Change(NamedTuple):
    a_start: int
    a_end: int
    b_start: int
    b_end: int


def _changes(a: list[bytes], b: list[bytes]) -> list[_Change]:
    ids: dict[bytes, int] = {}
    a_ids = [ids.setdefault(line, len(ids)) for line in a]
    b_ids = [ids.setdefault(line, len(ids)) for line in b]
    changed_a, changed_b = _mark_changes(a_ids, b_ids)
    _slide(a_ids, changed_a, changed_b)
    _slide(b_ids, changed_b, changed_a)
    changes: list[_Change] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if (i < len(a) and changed_a[i]) or (j < len(b) and changed_b[j]):
            i0, j0 = i, j
            while i < len(a) and changed_a[i]:
                i += 1
            while j < len(b) and changed_b[j]:
                j += 1
            changes.append(_Change(i0, i, j0, j))
        else:
            i += 1
            j += 1
    return changes


def _hunk_range(start: int, count: int) -> str:
    # like git and GNU diff: a count of 1 is left out, an empty range names the line before it
    first = start + 1 if count else start
    return f"{first}" if count == 1 else f"{first},{count}"


def _function_line(lines: list[bytes], before: int, funcname: Funcname) -> str:
    """The nearest line above index `before` that funcname accepts, cut like git's (80 bytes)."""
    for index in range(before - 1, -1, -1):
        text = lines[index].rstrip(b"\n").decode("utf-8", "surrogateescape")
        if funcname(text):
            cut = lines[index].rstrip(b"\n")[:80].rstrip()
            return cut.decode("utf-8", "surrogateescape")
    return ""


def _emit_line(out: list[bytes], prefix: bytes, line: bytes) -> None:
    out.append(prefix + line)
    if not line.endswith(b"\n"):
        out.append(b"\n\\ No newline at end of file\n")


def _hunks(a: list[bytes], b: list[bytes], context: int, funcname: Funcname | None) -> list[bytes]:
    changes = _changes(a, b)
    out: list[bytes] = []
    index = 0
    while index < len(changes):
        # a hunk takes every following change whose gap is at most twice the context
        last = index
        while (
            last + 1 < len(changes)
            and changes[last + 1].a_start - changes[last].a_end <= 2 * context
        ):
            last += 1
        first_change, last_change = changes[index], changes[last]
        lead = min(context, first_change.a_start, first_change.b_start)
        trail = min(context, len(a) - last_change.a_end, len(b) - last_change.b_end)
        a_start, b_start = first_change.a_start - lead, first_change.b_start - lead
        a_end, b_end = last_change.a_end + trail, last_change.b_end + trail
        header = f"@@ -{_hunk_range(a_start, a_end - a_start)} "
        header += f"+{_hunk_range(b_start, b_end - b_start)} @@"
        if funcname is not None:
            name = _function_line(a, a_start, funcname)
            if name:
                header += " " + name
        out.append(header.encode("utf-8", "surrogateescape") + b"\n")
        cursor = a_start
        for change in changes[index : last + 1]:
            for line in a[cursor : change.a_start]:
                _emit_line(out, b" ", line)
            for line in a[change.a_start : change.a_end]:
                _emit_line(out, b"-", line)
            for line in b[change.b_start : change.b_end]:
                _emit_line(out, b"+", line)
            cursor = change.a_end
        for line in a[cursor:a_end]:
            _emit_line(out, b" ", line)
        index = last + 1
    return out


def git_blob_id(data: bytes) -> str:
    """The object id `git hash-object` gives these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


_ABBREV = 12  # the kernel's core.abbrev
_NULL_ID = "0" * _ABBREV


def _check_text(data: bytes, path: str) -> None:
    if b"\0" in data[:8000]:  # git's own test for binary content
        raise RelgenError("binary content cannot go into a text patch", path=path)


def unified_diff(
    old: bytes,
    new: bytes,
    path: str,
    *,
    context: int = 3,
    funcname: Funcname | None = None,
) -> str:
    """A git-style diff of one file changed in place; "" when old and new are the same.

    `funcname` picks the lines hunk headers name (the nearest one above the hunk, as git and
    `diff -p` do); None chooses by the path (`default_funcname`).
    """
    _check_kernel_path(path, "the patched path")
    _check_text(old, path)
    _check_text(new, path)
    if old == new:
        return ""
    if funcname is None:
        funcname = default_funcname(path)
    head = (
        f"diff --git a/{path} b/{path}\n"
        f"index {git_blob_id(old)[:_ABBREV]}..{git_blob_id(new)[:_ABBREV]} 100644\n"
        f"--- a/{path}\n"
        f"+++ b/{path}\n"
    )
    body = b"".join(_hunks(_split_lines(old), _split_lines(new), context, funcname))
    return head + body.decode("utf-8", "surrogateescape")


def new_file_diff(new: bytes, path: str) -> str:
    """A git-style diff that creates `path` (mode 100644) with the bytes `new`."""
    _check_kernel_path(path, "the new path")
    _check_text(new, path)
    head = (
        f"diff --git a/{path} b/{path}\n"
        "new file mode 100644\n"
        f"index {_NULL_ID}..{git_blob_id(new)[:_ABBREV]}\n"
    )
    if not new:
        return head  # git writes no hunk, and no ---/+++ lines, for an empty file
    head += f"--- /dev/null\n+++ b/{path}\n"
    body = b"".join(_hunks([], _split_lines(new), 0, None))
    return head + body.decode("utf-8", "surrogateescape")


def encode_patch(text: str) -> bytes:
    """The bytes of a diff or patch from this module, non-UTF-8 bytes of the files included."""
    return text.encode("utf-8", "surrogateescape")


# ----------------------------------------------------------------------------------------------
# Diffstat and mail


class _FileStat(NamedTuple):
    path: str
    added: int
    deleted: int
    created: bool


def _file_stat(diff: str) -> _FileStat:
    lines = diff.split("\n")
    match = re.match(r"diff --git a/(\S+) b/(\S+)\Z", lines[0])
    if match is None:
        raise RelgenError(f"not a git diff: {lines[0][:60]!r}")
    added = deleted = 0
    created = False
    in_hunks = False
    for line in lines[1:]:
        if not in_hunks:
            # header lines until the first hunk: "--- a/x" there is not a deleted line
            created = created or line.startswith("new file mode ")
            in_hunks = line.startswith("@@ ")
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            deleted += 1
    return _FileStat(match.group(2), added, deleted, created)


def _graph_counts(added: int, deleted: int, graph_width: int, max_change: int) -> tuple[int, int]:
    """How many `+` and `-` git draws when the graph must be scaled down."""
    if graph_width > max_change:
        return added, deleted

    def scale(count: int) -> int:
        # one column less, plus one: any change draws at least one sign
        return 0 if count == 0 else 1 + count * (graph_width - 1) // max_change

    total = scale(added + deleted)
    if total < 2 and added and deleted:
        total = 2  # keep both signs visible
    if added < deleted:
        plus = scale(added)
        return plus, total - plus
    minus = scale(deleted)
    return total - minus, minus


def diffstat(diffs: list[str], *, width: int = 72) -> str:
    """git's `--stat --summary` for these diffs, `width` columns as `git format-patch` uses."""
    stats = [_file_stat(diff) for diff in diffs if diff]
    if not stats:
        return " 0 files changed\n"
    max_change = max(s.added + s.deleted for s in stats)
    max_name = max(len(s.path) for s in stats)
    number_width = len(str(max_change))
    width = max(width, 16 + 6 + number_width)
    graph_width = max_change
    name_width = max_name
    if name_width + number_width + 6 + graph_width > width:
        # git's split: at most 3/8 of the width for the graph, the rest for the name
        graph_width = max(width * 3 // 8 - number_width - 6, 6)
        if name_width > width - number_width - 6 - graph_width:
            name_width = width - number_width - 6 - graph_width
        else:
            graph_width = width - number_width - 6 - name_width
    out = []
    for stat in stats:
        name = stat.path
        if len(name) > name_width:
            keep = max(name_width - 3, 0)
            tail = name[len(name) - keep :]
            slash = tail.find("/")
            name = "..." + (tail[slash:] if slash >= 0 else tail)
        total = stat.added + stat.deleted
        plus, minus = _graph_counts(stat.added, stat.deleted, graph_width, max_change)
        line = f" {name:<{name_width}} | {total:>{number_width}}"
        if total:
            line += " " + "+" * plus + "-" * minus
        out.append(line)
    insertions = sum(s.added for s in stats)
    deletions = sum(s.deleted for s in stats)
    summary = f" {len(stats)} file{'s' if len(stats) != 1 else ''} changed"
    if insertions or not deletions:
        summary += f", {insertions} insertion{'s' if insertions != 1 else ''}(+)"
    if deletions or not insertions:
        summary += f", {deletions} deletion{'s' if deletions != 1 else ''}(-)"
    out.append(summary)
    out += [f" create mode 100644 {s.path}" for s in stats if s.created]
    return "\n".join(out) + "\n"


def _fold_header(line: str, width: int = 78) -> str:
    """Fold a mail header line at white space to `width` columns, as git does (RFC 2822)."""
    return "\n".join(
        textwrap.wrap(
            line,
            width,
            subsequent_indent=" ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    )


def _diff_path(diff: str) -> str:
    return _file_stat(diff).path


def format_patch(
    *,
    subject: str,
    author: str,
    body: str,
    diffs: list[str],
    date: str = FIXED_DATE,
    notes: str = "",
    version: str | None = None,
) -> str:
    """A `git format-patch` mail: headers, commit message, `---`, diffstat, diffs, signature.

    `subject` goes after `[PATCH] ` (e.g. "ia64/kexec: ..."); `body` is the commit message
    after the subject, its prose wrapped here at 75 columns. `notes` go below `---`, where
    `git am` ignores them. The files come in path order, as git writes them. The signature
    line names relgen and `version`.
    """
    if "\n" in subject.strip() or not subject.strip():
        raise RelgenError("the subject must be one non-empty line")
    if not re.fullmatch(r"[^<>\n]+ <[^<>\s]+@[^<>\s]+>", author):
        raise RelgenError(f"author must look like `Name <address>`, not {author!r}")
    if version is None:
        version = __version__
    diffs = sorted((d for d in diffs if d), key=_diff_path)
    if not diffs:
        raise RelgenError("a patch needs at least one changed file")
    # the caller's line breaks stay where they fit: a template may have placed them on purpose
    message = reflow(body, keep_fitting=True)
    headers = [
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
        f"From: {author}",
        f"Date: {date}",
        _fold_header(f"Subject: [PATCH] {' '.join(subject.split())}"),
    ]
    if not (message + "".join(diffs) + subject + author).isascii():
        headers += [
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=UTF-8",
            "Content-Transfer-Encoding: 8bit",
        ]
    parts = ["\n".join(headers), "\n\n", message, "---\n"]
    if notes:
        parts += [reflow(notes, keep_fitting=True), "\n"]
    parts += [diffstat(diffs), "\n", *diffs, f"-- \nrelgen {version}\n\n"]
    return "".join(parts)
