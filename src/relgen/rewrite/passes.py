"""The passes of the rewrite, each a function from tree to tree (see `relgen.rewrite`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from relgen.errors import RelgenError
from relgen.names import CODE_PAGE_MACRO, HEADER_INCLUDE
from relgen.rewrite.conditions import lines_kept
from relgen.rewrite.lines import (
    condition_lines,
    insert_text,
    line_ending,
    parsed_lines,
)
from relgen.source import expressions as ex
from relgen.source.nodes import Directive, Instruction, Item, Line, MacroCall, Module, Preprocessor
from relgen.source.region import ControlPageRegion, DataArea, bounds_procedure

MAX_INPUTS = 8  # ia64 software conventions: arguments beyond eight go on the memory stack
#: The kernel's macros that open a procedure with `.align 32` (asm/asmmacro.h).
ALIGNING_MACROS = frozenset({"GLOBAL_ENTRY", "ENTRY"})
#: The label that ends the code where the stacks stay behind it (a hypervisor's layout).
CODE_END_LABEL = ".Lkexec_code_end"


def _error(module: Module, item: Item, message: str) -> RelgenError:
    source = next((line.shown for line in module.lines if item in line.items), None)
    return RelgenError(message, module.path, item.line, item.column, source)


# ------------------------------------------------------------------ the entry's alloc


def find_alloc(module: Module, region: ControlPageRegion) -> Instruction:
    """The entry procedure's own alloc: between its start and its END or the next procedure."""
    for index in region.code_lines():
        line = module.lines[index]
        if index > region.start and bounds_procedure(line):
            break
        for item in line.items:
            if isinstance(item, Instruction) and item.mnemonic == "alloc":
                return item
    raise RelgenError(
        f"{region.entry} has no alloc instruction: relgen adds the stacks as new inputs of "
        "its register frame and needs `alloc rN=ar.pfs,inputs,locals,outputs,rotating`",
        module.path, module.lines[region.start].number, 1, module.lines[region.start].shown)


def _alloc_inputs(module: Module, alloc: Instruction) -> tuple[int, ex.Number]:
    sources = alloc.sources
    if len(sources) != 5 or not isinstance(sources[1], ex.Number):
        raise _error(module, alloc, "cannot read the number of inputs of this alloc: expected "
                     "`alloc rN=ar.pfs,i,l,o,r` with i a number")
    return sources[1].value, sources[1]


def widened_alloc(module: Module, region: ControlPageRegion, extra_inputs: int
                  ) -> tuple[Instruction, Instruction]:
    """The entry's alloc and its new form with one input more per area: `alloc
    r31=ar.pfs,4,0,0,0` -> `alloc r31=ar.pfs,6,0,0,0` for two areas."""
    alloc = find_alloc(module, region)
    inputs, number = _alloc_inputs(module, alloc)
    new_inputs = inputs + extra_inputs
    if new_inputs > MAX_INPUTS:
        raise _error(module, alloc, f"{region.entry} would need {new_inputs} inputs; only "
                     f"{MAX_INPUTS} arguments are passed in registers")
    frame = sum(op.value for op in alloc.sources[1:4] if isinstance(op, ex.Number))
    if frame + extra_inputs > 96:
        raise _error(module, alloc, "the register frame would exceed 96 registers")
    spacing = number.text[: len(number.text) - len(str(number))]
    new_number = ex.Number(f"{spacing}{new_inputs}", new_inputs)
    operands = [new_number if op is number else op for op in alloc.operands]
    return alloc, alloc.with_operands(operands)


def argument_registers(module: Module, region: ControlPageRegion) -> dict[str, str]:
    """The input register each area arrives in: after the existing inputs, in order."""
    inputs, _ = _alloc_inputs(module, find_alloc(module, region))
    return {area.name: f"in{inputs + i}" for i, area in enumerate(region.data_areas)}


# ---------------------------------------------------------------- moving and lifting


def procedures_after_data(module: Module, region: ControlPageRegion) -> tuple[str, ...]:
    """The procedures of the region that stand after a data area: the code that moves."""
    first_data = next((c.start for c in region.chunks if c.kind == "data"), None)
    if first_data is None:
        return ()
    names = []
    for chunk in region.chunks:
        if chunk.kind != "code" or chunk.start < first_data:
            continue
        for index in range(chunk.start, chunk.stop):
            for item in module.lines[index].statements():
                if isinstance(item, MacroCall) and item.name in ALIGNING_MACROS and item.args:
                    names.append(item.args[0])
                elif isinstance(item, Directive) and item.name == ".proc" and item.operands:
                    names.append(str(item.operands[0]).strip())
    return tuple(names)


def move_code_ahead(module: Module, region: ControlPageRegion) -> Module:
    """Code chunks of the region in their order, then its data areas in theirs."""
    lines = list(module.lines)
    code = [lines[i] for c in region.chunks if c.kind == "code" for i in range(c.start, c.stop)]
    data = [lines[i] for c in region.chunks if c.kind == "data" for i in range(c.start, c.stop)]
    return module.with_lines(lines[: region.start] + code + data + lines[region.end:])


def lift_data_areas(module: Module, region: ControlPageRegion) -> Module:
    """The region without its data areas (labels, area directives, serving .align)."""
    drop = {i for area in region.data_areas for i in area.lines}
    return module.with_lines([line for i, line in enumerate(module.lines) if i not in drop])


def keep_data_areas(module: Module, region: ControlPageRegion, switches: Sequence[str]
                    ) -> Module:
    """The data areas, all after the code now, stay in the page only where one of
    `switches` is defined (a hypervisor calls the page there, with no stacks to pass): the
    code ends at `CODE_END_LABEL`, then `#ifdef X` and the areas as that configuration has
    them (a conditional inside an area that only tests `switches` is decided), `#endif`."""
    indices = sorted(i for area in region.data_areas for i in area.lines)
    first, last = indices[0], indices[-1]
    area_lines = list(module.lines[first:last + 1])
    decided = lines_kept(area_lines, switches)
    opener, _, closer = condition_lines(switches)
    ending = line_ending(module)
    number = area_lines[0].number
    why = (f"\t/* {' or '.join(switches)}: the hypervisor calls this page itself, without "
           "stacks */")
    block = [*parsed_lines(module, ending.join([f"{CODE_END_LABEL}:", opener, why]) + ending,
                           number),
             *(decided if decided is not None else area_lines),
             *parsed_lines(module, closer + ending, module.lines[last].number)]
    return module.with_lines([*module.lines[:first], *block, *module.lines[last + 1:]])


# ---------------------------------------------------------------- the header and comments


def includes_header(module: Module) -> bool:
    return any(isinstance(item, Preprocessor) and item.directive == "include" and
               HEADER_INCLUDE in item.text for _, item in module.items())


def include_header(module: Module) -> Module:
    """`#include <asm/kexec_control_page.h>` after the last #include of the file's head."""
    if includes_header(module):
        return module
    last = None
    for index, line in enumerate(module.lines):
        statements = [i for i in line.items if i.kind != "comment"]
        if any(isinstance(i, Preprocessor) and i.directive == "include" for i in statements):
            last = index
        elif statements and not all(isinstance(i, Preprocessor) for i in statements):
            break
    return insert_text(module, 0 if last is None else last + 1, [f"#include <{HEADER_INCLUDE}>"])


def document_entry_arguments(module: Module, region: ControlPageRegion,
                             areas: Sequence[DataArea], registers: Mapping[str, str],
                             kept: Sequence[str] = ()) -> Module:
    """A comment before the entry: which input register brings which data area."""
    lines = ["/*", " * The stacks are not in the control page; the caller passes them in:"]
    lines += [f" * {registers[a.name]}: physical address of {a.name} ({a.size_macro} bytes)"
              for a in areas]
    if kept:
        lines += [f" * Under {' or '.join(kept)} the hypervisor calls the page with the "
                  "arguments", " * before these, and the stacks stay in it, after the code."]
    lines.append(" */")
    return insert_text(module, region.start, lines)


# ---------------------------------------------------------------- guarding the code size


def _alignment(line: Line) -> int | None:
    """The bytes a line aligns to before it lays anything down, if it aligns."""
    for item in line.statements():
        if isinstance(item, MacroCall) and item.name in ALIGNING_MACROS:
            return 32  # asm/asmmacro.h: `.align 32` before the procedure's label
        if isinstance(item, Directive) and item.name in (".align", ".balign", ".p2align"):
            value = _number(item.operands[0]) if item.operands else None
            if value is None:
                raise RelgenError("an alignment relgen cannot read in the control page's "
                                  "code", None, item.line, item.column, line.shown)
            return 1 << value if item.name == ".p2align" else value
    return None


def _number(expr: ex.Expr) -> int | None:
    try:
        form = ex.linear_form(expr)
    except ex.NotLinear:
        return None
    return None if form.terms else form.constant


def _named_labels(line: Line) -> list[str]:
    return [label.name for label in line.labels() if not label.is_numeric]


def _lays_down(line: Line) -> bool:
    """Code or data at this line (a procedure's END, a label, .global lay down nothing)."""
    if any(isinstance(i, Instruction) for i in line.statements()):
        return True
    return any(isinstance(i, Directive) and i.name not in (".endp", ".global", ".globl",
                                                             ".type", ".size", ".proc",
                                                             ".prologue", ".body")
               for i in line.statements())


def code_size_bound(module: Module, region: ControlPageRegion, code_end: str
                    ) -> tuple[Module, list[str]]:
    """An expression the assembler can evaluate in `.if` that bounds the code's size.

    GAS cannot subtract two labels across an `.align` before it has laid out the section
    (`non-constant expression in ".if"`), so the code is measured in runs between its
    alignments, each run from a label to a label, and each alignment counts for its largest
    padding: the bound is exact without alignments and at most the padding above the size
    with them. Labels are inserted (local, `.L`) only where a run has no label of its own.
    """
    lines = list(module.lines)
    terms: list[str] = []
    start = region.entry
    last_label: str | None = None  # a label with nothing laid down after it yet
    number = 0
    index = region.start + 1
    while index < len(lines) and code_end not in _named_labels(lines[index]):
        line = lines[index]
        alignment = _alignment(line)
        if alignment is not None:
            if last_label is None:
                number += 1
                last_label = f".Lkexec_code_{number}"
                lines[index:index] = parsed_lines(module, f"{last_label}:{line_ending(module)}",
                                                  line.number)
                index += 1
            terms.append(f"({last_label} - {start}) + {alignment - 1}")
            macro = next((i for i in line.statements() if isinstance(i, MacroCall)), None)
            if macro is not None and macro.args:
                start, last_label = macro.args[0], None
            else:
                number += 1
                start, last_label = f".Lkexec_code_{number}", None
                lines[index + 1:index + 1] = parsed_lines(
                    module, f"{start}:{line_ending(module)}", line.number)
                index += 1
        elif _lays_down(line):
            last_label = None
        elif _named_labels(line) and last_label is None:
            last_label = _named_labels(line)[-1]
        index += 1
    terms.append(f"({code_end} - {start})")
    return module.with_lines(lines), terms


def guard_code_size(module: Module, region: ControlPageRegion, code_end: str) -> Module:
    """After the size word: the build fails, with a message that names the problem, if the
    code outgrows the page the header allocates for it (measured by the assembler on the
    code as it is, so it holds for any later edit of the file)."""
    module, terms = code_size_bound(module, region, code_end)
    size_word = module.lines.index(region_size_line(module, region))
    text = []
    if len(terms) > 1:
        text.append("/* The code must fit in its page; an .align counts as its largest padding */")
    # one term a line past the first: cpp joins the lines before the assembler reads them
    condition = " + \\\n\t    ".join(terms) if len(terms) > 1 else terms[0]
    last = condition.rsplit("\n", 1)[-1]
    compare = f" \\\n\t    > {CODE_PAGE_MACRO}" if len(f"\t.if {last} > {CODE_PAGE_MACRO}"
                                                    .expandtabs()) > 80 else f" > {CODE_PAGE_MACRO}"
    text += [f"\t.if {condition}{compare}", f'\t.error "{region.entry} outgrew {CODE_PAGE_MACRO}"',
             "\t.endif"]
    return insert_text(module, size_word + 1, text)


def region_size_line(module: Module, region: ControlPageRegion) -> Line:
    """The line of the size word (`data8 end - entry`) in `module`."""
    measured = re.compile(rf"\b{re.escape(region.end_label)}\s*-\s*{re.escape(region.entry)}\b")
    for line in module.lines:
        for item in line.statements():
            if isinstance(item, Instruction) and item.kind == "data" and \
                    any(measured.search(str(op)) for op in item.operands):
                return line
    raise RelgenError(f"no size word measures {region.entry} to {region.end_label}",
                      module.path)


# ---------------------------------------------------------------- entry points for C


def offset_symbol(entry_point: str) -> str:
    """kexec_fake_sal_rendez -> kexec_fake_sal_rendez_offset."""
    return f"{entry_point}_offset"


def global_entry_points(module: Module, region: ControlPageRegion) -> list[str]:
    """The global entry points in the region but the entry itself (GLOBAL_ENTRY(x))."""
    found = []
    for index in region.code_lines():
        for item in module.lines[index].statements():
            if isinstance(item, MacroCall) and item.name == "GLOBAL_ENTRY" and item.args and \
                    item.args[0] != region.entry:
                found.append(item.args[0])
    return found


def define_entry_offsets(module: Module, region: ControlPageRegion, points: Sequence[str]
                         ) -> Module:
    """After the size word, for each entry point a word C can read where it lies in the
    control page, measured by the assembler: `kexec_fake_sal_rendez_offset`, as
    `relocate_new_kernel_size` is the code's size."""
    if not points:
        return module
    size_word = module.lines.index(region_size_line(module, region))
    text = []
    for point in points:
        symbol = offset_symbol(point)
        text += [f"\t.global {symbol}", f"{symbol}:", f"\tdata8\t{point} - {region.entry}"]
    return insert_text(module, size_word + 1, text)
