"""The control-page region of a syntax tree, and which of its lines are code or data areas.

The region runs from the entry procedure (`GLOBAL_ENTRY(relocate_new_kernel)` or its label)
to the label that its size word measures to (`data8 relocate_new_kernel_end -
relocate_new_kernel`). Inside it, a data area is a label followed by an area directive
(`.fill`, `.skip`, `.space`, `.zero`), or by a preprocessor conditional whose every branch
holds only area directives (the 2.6.18-xen trees: `#ifdef CONFIG_XEN` / `.fill 4096` /
`#else` / `.fill 8192` / `#endif`); the `.align` line right before it serves it, and the
labels right after it (`memory_stack_end`) mark its end, up to a label that code follows: a
label's kind comes from what follows it. Everything else is code and is split into chunks
that keep their order.

Conditionals (`#if`, `#ifdef`, `#ifndef`, `#elif`, `#else`, `#endif`) inside the region must
balance there, and each data area (its labels, its conditional body) lies at the region's
own level, so taking the areas out leaves every conditional of the code balanced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relgen.errors import RelgenError
from relgen.names import DEFAULT_ENTRY, size_macro
from relgen.source import expressions as ex
from relgen.source.nodes import (
    Directive,
    Instruction,
    Item,
    Label,
    Line,
    MacroCall,
    Module,
    Preprocessor,
)

STUB_INSTRUCTIONS = 8  # an entry this short only jumps elsewhere (the Xen hypervisor's)
CONDITIONAL_OPENERS = frozenset({"if", "ifdef", "ifndef"})
CONDITIONAL_DIRECTIVES = CONDITIONAL_OPENERS | {"elif", "else", "endif"}
# names in a conditional that are not configuration switches
_NOT_SWITCHES = frozenset({"defined", "if", "ifdef", "ifndef", "elif", "else", "endif"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"/\*.*?\*/|//.*", re.S)


@dataclass(frozen=True)
class DataArea:
    """A reserved area inside the control page, e.g. the 8 KiB `memory_stack`.

    `lines` are the indices of the lines that make it up (its serving `.align`, leading
    comments, its labels, the area directive and its end labels).
    """

    name: str
    aliases: tuple[str, ...]
    end_labels: tuple[str, ...]
    size: int | None  # None when not a literal, or when it depends on a conditional
    directive_line: int
    lines: range
    # the sizes its branches reserve (one for an unconditional area), where literal
    sizes: tuple[int, ...] = ()
    conditional: bool = False
    # labels right after the area that code follows: code labels at the area's end address
    code_labels_after: tuple[str, ...] = ()
    # the area itself stands inside a preprocessor conditional: some configurations lack it
    optional: bool = False

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.name, *self.aliases, *self.end_labels)

    @property
    def size_macro(self) -> str:
        """The header's name for its size: memory_stack -> KEXEC_MEMORY_STACK_SIZE."""
        return size_macro(self.name)

    def offset_of(self, label: str) -> str:
        """Where `label` lies inside the area, as relgen writes it: "0" or the size macro."""
        return "0" if label in (self.name, *self.aliases) else self.size_macro


@dataclass(frozen=True)
class Chunk:
    """A run of region lines [start, stop) that is all code or all one data area."""

    kind: str  # "code" or "data"
    start: int
    stop: int


@dataclass(frozen=True)
class ControlPageRegion:
    entry: str
    start: int  # index of the line that opens the entry procedure
    end_label: str
    end: int  # index of the line holding the end label
    size_word_line: int
    data_areas: tuple[DataArea, ...]
    chunks: tuple[Chunk, ...]
    switches: tuple[str, ...] = ()  # the names the region's conditionals test, in order

    def code_lines(self) -> list[int]:
        return [i for c in self.chunks if c.kind == "code" for i in range(c.start, c.stop)]


def _error(module: Module, line: Line | None, message: str, column: int = 1) -> RelgenError:
    if line is None:
        return RelgenError(message, module.path)
    return RelgenError(message, module.path, line.number, column, line.shown)


# The one rule for where procedures begin and end: the kernel's macros (asm/asmmacro.h:
# GLOBAL_ENTRY and ENTRY open with .proc, END closes with .endp) and the directives.
PROCEDURE_OPENERS = frozenset({"GLOBAL_ENTRY", "ENTRY", ".proc"})
PROCEDURE_CLOSERS = frozenset({"END", ".endp"})


def procedure_boundary(item: Item) -> tuple[str, str | None] | None:
    """("open" or "close", the procedure's name if one is given) for an item that opens or
    closes a procedure, None for any other."""
    if isinstance(item, MacroCall):
        name, given = item.name, item.args[0] if len(item.args) == 1 else None
    elif isinstance(item, Directive):
        name, given = item.name, str(item.operands[0]) if item.operands else None
    else:
        return None
    if name in PROCEDURE_OPENERS:
        return "open", given
    if name in PROCEDURE_CLOSERS:
        return "close", given
    return None


def bounds_procedure(line: Line) -> bool:
    """True for a line that opens or closes a procedure."""
    return any(procedure_boundary(item) for item in line.items)


def _opens_procedure(line: Line, name: str) -> bool:
    return any(procedure_boundary(item) == ("open", name) or
               isinstance(item, Label) and item.name == name for item in line.items)


def find_entry(module: Module, entry: str) -> int:
    """Index of the first line that opens `entry` (its GLOBAL_ENTRY or its label)."""
    if all(line.is_blank for line in module.lines):
        raise RelgenError("the file is empty" if not module.lines else
                          "the file holds only blank lines", module.path)
    for index, line in enumerate(module.lines):
        if _opens_procedure(line, entry):
            return index
    raise RelgenError(f"entry procedure {entry!r} not found (no GLOBAL_ENTRY({entry}) and no "
                      f"label {entry}:)", module.path)


def find_size_word(module: Module, entry: str, entry_line: int | None = None
                   ) -> tuple[int, str]:
    """The line of `dataN END - entry` and END, the label it measures to."""
    for index, item in module.items():
        if isinstance(item, Instruction) and item.kind == "data" and len(item.operands) == 1:
            try:
                form = ex.linear_form(item.operands[0])
            except ex.NotLinear:
                continue
            if form.constant == 0 and len(form.terms) == 2 and form.terms.get(entry) == -1:
                (end_label,) = (name for name, c in form.terms.items() if c == 1)
                return index, end_label
    stub = "" if entry_line is None else _stub_note(module, entry, entry_line)
    raise _error(
        module, None if entry_line is None else module.lines[entry_line],
        f"no size word for the control page: expected a line such as `data8 "
        f"{entry}_end - {entry}` that says where the region of {entry} ends{stub}; "
        "relgen cannot rewrite this file (`relgen layout --end-label NAME` maps it)")


def _stub_note(module: Module, entry: str, entry_line: int) -> str:
    """`, and relocate_new_kernel here is a stub of 2 instructions` for a short procedure."""
    count = 0
    for line in module.lines[entry_line + 1:]:
        if any((procedure_boundary(i) or ("",))[0] == "close" for i in line.items):
            break
        count += sum(isinstance(i, Instruction) for i in line.items)
        if count > STUB_INSTRUCTIONS or _area_directive(line):
            return ""
    return f", and {entry} here is a stub of {count} instructions"


def _label_only(line: Line) -> bool:
    return bool(line.items) and all(isinstance(i, Label) for i in line.items)


def _blank_or_comment(line: Line) -> bool:
    """Blank and comment-only lines, which belong to whatever they stand in."""
    return line.is_blank or line.is_comment_only


def _area_directive(line: Line) -> Directive | None:
    for item in line.items:
        if isinstance(item, Directive) and item.reserves_area:
            return item
    return None


def _align_only(line: Line) -> bool:
    statements = list(line.statements())
    return len(statements) == 1 and isinstance(statements[0], Directive) and \
        statements[0].name in (".align", ".balign", ".p2align") and \
        all(isinstance(i, Directive) or i.kind == "comment" for i in line.items)


def _area_size(directive: Directive) -> int | None:
    """Bytes reserved by `.fill repeat, size, value` / `.skip n` when they are literals."""
    try:
        values = [ex.linear_form(op) for op in directive.operands]
    except ex.NotLinear:
        return None
    if not values or any(v.terms for v in values):
        return None
    if directive.name == ".fill":
        repeat = values[0].constant
        size = values[1].constant if len(values) > 1 else 1
        return repeat * size
    return values[0].constant


def find_region(module: Module, entry: str = DEFAULT_ENTRY,
                end_label: str | None = None) -> ControlPageRegion:
    """Locate the control-page region of `entry` and split it into code and data areas.

    The region ends at the label the size word measures to, or at `end_label` when given
    (a file without a size word can then be mapped, though not rewritten).
    """
    start = find_entry(module, entry)
    if end_label is None:
        size_word_line, end_label = find_size_word(module, entry, start)
    else:
        size_word_line = -1
    end = next((i for i, line in enumerate(module.lines)
                if any(lab.name == end_label for lab in line.labels())), None)
    if end is None:
        if size_word_line < 0:
            raise _error(module, module.lines[start], f"the end label {end_label} is never "
                         f"defined in this file, so the region of {entry} has no end")
        line = module.lines[size_word_line]
        # point at the name in the size word: the label that is missing
        column = line.shown.find(end_label) + 1 or 1
        raise _error(module, line, f"the size word measures to {end_label}, which is never "
                     "defined", column)
    if end < start:
        raise _error(module, module.lines[end],
                     f"the end label {end_label} comes before {entry} itself")

    conditionals = _conditional_structure(module, start, end, end_label)
    levels, switches = conditionals.levels, conditionals.switches
    areas: list[DataArea] = []
    heads: list[tuple[range, int, list[str]]] = []  # body, first line, names
    for directive_index in range(start, end):
        if not _area_directive(module.lines[directive_index]):
            continue
        body = conditionals.area_bodies.get(directive_index,
                                            range(directive_index, directive_index + 1))
        if heads and heads[-1][0] == body:
            continue  # another branch of the same conditional body
        heads.append((body, *_area_names(module, start, directive_index, body)))

    for number, (body, first, names) in enumerate(heads):
        directive_index = next(i for i in body if _area_directive(module.lines[i]))
        optional = bool(levels[first - start] or levels[body.start - start])
        # its end labels: the label-only lines after it, up to the next area's name or up to
        # a label that code follows (that one is a code label, whatever stands before it)
        limit = heads[number + 1][1] if number + 1 < len(heads) else end
        stop = body.stop
        while stop < limit and (_label_only(module.lines[stop])
                                or _blank_or_comment(module.lines[stop])):
            stop += 1
        # a label right before END(procedure) ends the procedure, not the area: it stays
        # with the procedure's code (the 2006 shape: relocate_new_kernel_end, END, then
        # kexec_fake_sal_rendez inside the region)
        if stop < limit and (_is_code(module.lines[stop]) or bounds_procedure(
                module.lines[stop])):
            last_label = max((i for i in range(body.stop, stop)
                              if _label_only(module.lines[i])), default=None)
            stop = body.stop if last_label is None else last_label
            while stop > body.stop and module.lines[stop - 1].is_comment_only:
                stop -= 1  # comments lead the code label and go with it
        end_labels = [lab.name for i in range(body.stop, stop)
                      for lab in module.lines[i].labels()]
        code_after = [lab.name for lab in module.lines[stop].labels()] \
            if stop < limit and _label_only(module.lines[stop]) else []
        # an .align right above serves the area: it exists only to align the area
        previous_stop = areas[-1].lines.stop if areas else start + 1
        if first - 1 >= previous_stop and _align_only(module.lines[first - 1]):
            first -= 1
        # comment-only lines right above lead the chunk and go with it
        while first - 1 >= previous_stop and module.lines[first - 1].is_comment_only:
            first -= 1
        sizes = [_area_size(d) for i in body
                 if (d := _area_directive(module.lines[i])) is not None]
        literal = tuple(size for size in sizes if size is not None)
        conditional = len(body) > 1
        areas.append(DataArea(
            name=names[-1], aliases=tuple(names[:-1]), end_labels=tuple(end_labels),
            size=None if conditional or len(literal) != 1 else literal[0],
            directive_line=directive_index, lines=range(first, stop),
            sizes=literal, conditional=conditional, code_labels_after=tuple(code_after),
            optional=optional,
        ))

    chunks: list[Chunk] = []
    cursor = start
    for area in areas:
        if area.lines.start > cursor:
            chunks.append(Chunk("code", cursor, area.lines.start))
        chunks.append(Chunk("data", area.lines.start, area.lines.stop))
        cursor = area.lines.stop
    if cursor < end:
        chunks.append(Chunk("code", cursor, end))
    return ControlPageRegion(entry, start, end_label, end, size_word_line, tuple(areas),
                             tuple(chunks), switches)


def _conditional(line: Line) -> Preprocessor | None:
    for item in line.items:
        if isinstance(item, Preprocessor) and item.directive in CONDITIONAL_DIRECTIVES:
            return item
    return None


def conditional_switches(item: Preprocessor) -> list[str]:
    """The names a conditional tests: `#ifdef CONFIG_XEN`, `#if defined(A) && B` -> A, B."""
    body = _COMMENT.sub(" ", item.text)[1:].lstrip(" \t")[len(item.directive):]
    names = [name for name in _IDENTIFIER.findall(body) if name not in _NOT_SWITCHES]
    return names[:1] if item.directive in ("ifdef", "ifndef") else names


@dataclass(frozen=True)
class _Conditionals:
    """The conditionals of the region: each line's level, the names tested, and for each
    line the conditional body of area directives it lies in (if any)."""

    levels: list[int]  # per region line: how many conditionals are open around it
    switches: tuple[str, ...]
    area_bodies: dict[int, range]  # line -> the outermost all-area conditional around it


def _conditional_structure(module: Module, start: int, end: int, end_label: str
                           ) -> _Conditionals:
    """One pass over the region's conditionals, which must balance inside it: an #else or
    #endif whose #if lies outside it, or an #if not closed before the end label, is a
    positioned error. A conditional is an area body when each of its lines is an area
    directive, a conditional line (of nested area bodies), a comment or blank."""
    stack: list[int] = []
    levels: list[int] = []
    innermost: dict[int, int] = {}  # line -> the opener of the group directly around it
    parent: dict[int, int | None] = {}
    groups: dict[int, range] = {}
    all_area: dict[int, bool] = {}
    switches: dict[str, None] = {}
    for index in range(start, end):
        line = module.lines[index]
        item = _conditional(line)
        if item is None:
            levels.append(len(stack))
            if stack:
                innermost[index] = stack[-1]
                if not (_blank_or_comment(line) or _bare_area(line)):
                    all_area[stack[-1]] = False
            continue
        if item.directive in CONDITIONAL_OPENERS:
            levels.append(len(stack))
            parent[index] = stack[-1] if stack else None
            all_area[index] = True
            stack.append(index)
        elif not stack:
            raise _error(module, line, f"#{item.directive} closes a conditional opened before "
                         "the control-page region begins; the conditionals inside the region "
                         "must balance there", item.column)
        else:
            levels.append(len(stack) - 1)
            if item.directive == "endif":
                opener = stack.pop()
                groups[opener] = range(opener, index + 1)
                if stack and not all_area[opener]:
                    all_area[stack[-1]] = False
        switches.update(dict.fromkeys(conditional_switches(item)))
    if stack:
        line = module.lines[stack[-1]]
        raise _error(module, line, f"this conditional is not closed before {end_label}, the "
                     "end of the control-page region; the conditionals inside the region must "
                     "balance there")
    outermost: dict[int, int] = {}  # all-area group -> its outermost all-area ancestor
    for opener in sorted(groups):  # parents open before their children
        if all_area[opener]:
            up = parent[opener]
            outermost[opener] = outermost[up] if up is not None and up in outermost \
                else opener
    bodies = {index: groups[outermost[group]] for index, group in innermost.items()
              if group in outermost}
    return _Conditionals(levels, tuple(switches), bodies)


def _bare_area(line: Line) -> bool:
    statements = list(line.statements())
    return len(statements) == 1 and _area_directive(line) is not None and \
        not any(line.labels())


def _area_names(module: Module, start: int, directive_index: int, body: range
                ) -> tuple[int, list[str]]:
    """The area's first line and its names: the labels on its directive's line, else those
    of the nearest label-only line above its body (only comments or blank lines between)."""
    names = [lab.name for lab in module.lines[directive_index].labels()] \
        if len(body) == 1 else []
    first = body.start
    if not names:
        above = body.start - 1
        while above > start and _blank_or_comment(module.lines[above]):
            above -= 1
        if above > start and _label_only(module.lines[above]):
            names = [lab.name for lab in module.lines[above].labels()]
            first = above
    if not names:
        line = module.lines[directive_index]
        directive = _area_directive(line)
        assert directive is not None  # called for lines with one only
        raise _error(module, line, f"the data area reserved by {directive.name} has no "
                     "label, so nothing can refer to it")
    return first, names


#: Directives that lay down neither code nor data: a procedure's end and symbol attributes.
_LAYS_NOTHING_DOWN = PROCEDURE_CLOSERS | {".align", ".global", ".globl", ".type", ".size"}


def _is_code(line: Line) -> bool:
    """A line that lays down code or data words (not the END of a procedure)."""
    for item in line.statements():
        if isinstance(item, Instruction):
            return True
        if isinstance(item, Directive) and item.name not in _LAYS_NOTHING_DOWN:
            return True
        if isinstance(item, MacroCall) and item.name not in PROCEDURE_CLOSERS:
            return True
    return False


def require_data_areas(module: Module, region: ControlPageRegion) -> None:
    """Error when the region has no data area (there is nothing to take out), or one that
    only some configurations have (relgen passes every area in every configuration)."""
    if not region.data_areas:
        line = module.lines[region.start]
        raise _error(module, line, f"no data area in the control page of {region.entry}: "
                     "no label followed by .fill/.skip/.space/.zero between "
                     f"{region.entry} and {region.end_label}")
    for area in region.data_areas:
        if area.optional:
            raise _error(module, module.lines[area.directive_line],
                         f"the data area {area.name} lies inside a preprocessor conditional, "
                         "so it exists in some configurations only; relgen needs every data "
                         "area in every configuration (put the conditional inside the area: "
                         "#ifdef around its .fill lines)")


def check_procedures_closed(module: Module) -> None:
    """Every GLOBAL_ENTRY/ENTRY(x) or .proc x needs its END(x) or .endp x."""
    open_at: dict[str, Line] = {}
    for line in module.lines:
        for item in line.items:
            boundary = procedure_boundary(item)
            if boundary is None or boundary[1] is None:
                continue
            if boundary[0] == "open":
                open_at.setdefault(boundary[1], line)
            else:
                open_at.pop(boundary[1], None)
    for name, line in open_at.items():
        raise _error(module, line, f"procedure {name} is never closed: no END({name}) or "
                     f".endp {name}")
