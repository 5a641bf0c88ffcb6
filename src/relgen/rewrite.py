"""The passes that regenerate the control page, each a function from tree to tree.

1. `rebase_area_references`: every instruction that forms a data-area address from the
   position anchor (`add sp=(memory_stack_end - 16 - .reloc_entry),r2`) is replaced, one
   for one and by an instruction of the same unit, by one that forms it from the area's new
   argument (`add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4`).
2. `widen_alloc`: the entry's `alloc` gains one input per area, in order of appearance.
3. `move_code_ahead`: inside the region, code keeps its order and goes before every area.
4. `lift_data_areas`: the areas (with their serving `.align`) leave the control page.
5. `include_header`: the file includes the generated header whose macros it now uses.
6. `document_entry_arguments`: a comment at the entry names the new arguments.
7. `guard_code_size`: after the size word, the assembler fails the build if the code
   outgrows the code page the header allocates for it.

`rewrite_control_page` runs them in that order. All label arithmetic is done on parsed
expressions (`expr.linear_form`), never on strings. What a register holds is followed across
preprocessor conditionals (each branch starts from the state before the `#if`). Every pass
walks the file once, so the work grows linearly with its size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from relgen.errors import RelgenError
from relgen.names import CODE_PAGE_MACRO, DEFAULT_ENTRY, HEADER_INCLUDE
from relgen.source import expressions as ex
from relgen.source.nodes import Directive, Instruction, Item, Label, MacroCall, Module, Preprocessor
from relgen.source.parser import parse_module, parse_statement
from relgen.source.region import (
    CONDITIONAL_OPENERS,
    ControlPageRegion,
    DataArea,
    bounds_procedure,
    find_region,
    require_data_areas,
)

# ALU (A-unit) instructions that add an immediate to a register: relgen may exchange one
# for another, since A-unit instructions run in the same M or I slot of a bundle.
ADD_MNEMONICS = frozenset({"add", "adds", "addl"})
# `adds` takes a signed 14-bit immediate; the argument registers are not r0-r3, so the
# 22-bit `addl` form is not available for them.
IMM14_RANGE = range(-(1 << 13), 1 << 13)
MAX_INPUTS = 8  # ia64 software conventions: arguments beyond eight go on the memory stack


@dataclass(frozen=True)
class RewrittenInstruction:
    line: int
    old: str
    new: str
    area: str


@dataclass(frozen=True)
class RewriteResult:
    module: Module
    region: ControlPageRegion  # of the input
    data_areas: tuple[DataArea, ...]
    argument_registers: Mapping[str, str]  # area name -> in4, in5, ...
    rewritten: tuple[RewrittenInstruction, ...]
    alloc_before: str
    alloc_after: str
    already_code_first: bool = False


def _error(module: Module, item: Item, message: str) -> RelgenError:
    source = next((line.shown for line in module.lines if item in line.items), None)
    return RelgenError(message, module.path, item.line, item.column, source)


def _replace_item(module: Module, old: Item, new: Item) -> Module:
    return _replace_items(module, {id(old): new})


def _replace_items(module: Module, replacements: Mapping[int, Item]) -> Module:
    """The module with each item whose id() is a key replaced, in one pass over the lines."""
    if not replacements:
        return module
    lines = [
        replace(line, items=tuple(replacements.get(id(i), i) for i in line.items))
        if any(id(i) in replacements for i in line.items) else line
        for line in module.lines
    ]
    return module.with_lines(lines)


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


def widen_alloc(module: Module, region: ControlPageRegion, extra_inputs: int) -> Module:
    """`alloc r31=ar.pfs,4,0,0,0` -> `alloc r31=ar.pfs,6,0,0,0` for two areas."""
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
    return _replace_item(module, alloc, alloc.with_operands(operands))


def argument_registers(module: Module, region: ControlPageRegion) -> dict[str, str]:
    """The input register each area arrives in: after the existing inputs, in order."""
    inputs, _ = _alloc_inputs(module, find_alloc(module, region))
    return {area.name: f"in{inputs + i}" for i, area in enumerate(region.data_areas)}


# ------------------------------------------------------------ rebasing area references


@dataclass(frozen=True)
class _RegisterValue:
    """What a register holds: a linear form of labels, and where it was set."""

    value: ex.LinearForm
    line: int


_Registers = dict[str, _RegisterValue]  # register name -> what it holds


class _AnchorTracker:
    """Which label `mov rX=ip` reads, followed item by item in one walk over the file.

    It is the label right before the explicit bundle `{ ... }` that holds the instruction
    (with only instructions and directives before it in that bundle), or right before the
    instruction itself (GAS starts a new bundle at a label). One walk keeps the rewrite
    linear in the size of the file.
    """

    def __init__(self) -> None:
        self._previous: Item | None = None  # the last item that is not a comment
        self._depth = 0
        self._bundle_label: str | None = None  # label before the open bundle, while clean

    def anchor(self, item: Item) -> str | None:
        """The label `item` (a `mov rX=ip`) would read, before `item` is seen."""
        if self._depth > 0:
            return self._bundle_label
        return self._previous.name if isinstance(self._previous, Label) else None

    def see(self, item: Item) -> None:
        if item.kind == "comment":
            return
        if item.kind == "bundle_open":
            self._depth += 1
            previous = self._previous
            self._bundle_label = previous.name if isinstance(previous, Label) else None
        elif item.kind == "bundle_close":
            self._depth = max(0, self._depth - 1)
        elif self._depth > 0 and not isinstance(item, Instruction | Directive):
            self._bundle_label = None
        self._previous = item


class _BranchStates:
    """What registers hold across preprocessor conditionals.

    Each branch of `#if ... #else ... #endif` starts from what held before the `#if`; after
    the `#endif` only what every branch (and, without an `#else`, the skipped case) leaves
    alike is known.
    """

    def __init__(self) -> None:
        # per open conditional: the state before it, the states its branches ended with,
        # and whether it has an #else
        self._open: list[tuple[_Registers, list[_Registers], bool]] = []

    def see(self, item: Preprocessor, known: _Registers) -> _Registers:
        if item.directive in CONDITIONAL_OPENERS:
            self._open.append((dict(known), [], False))
            return known
        if not self._open or item.directive not in ("elif", "else", "endif"):
            return known
        before, ends, has_else = self._open.pop()
        ends.append(known)
        if item.directive != "endif":
            self._open.append((before, ends, has_else or item.directive == "else"))
            return dict(before)
        if not has_else:
            ends.append(before)
        return {register: value for register, value in ends[0].items()
                if all(end.get(register) == value for end in ends[1:])}


def _register(expr: ex.Expr) -> str | None:
    return expr.name if isinstance(expr, ex.Symbol) else None


def _area_labels(region: ControlPageRegion) -> dict[str, DataArea]:
    return {label: area for area in region.data_areas for label in area.labels}


def _rebased_operands(
    module: Module, item: Instruction, area: DataArea, label: str, constant: int,
    register: str,
) -> Instruction:
    """The one-for-one replacement: same destination, base = the area's argument."""
    offset_text = area.offset_of(label)
    if offset_text != "0":
        # every size a configuration gives the area must fit
        values = [size + constant for size in area.sizes]
        text = offset_text + (f" - {-constant}" if constant < 0 else
                              f" + {constant}" if constant > 0 else "")
    else:
        values = [constant]
        text = str(constant)
    for offset in values:
        if offset not in IMM14_RANGE:
            raise _error(module, item, f"the offset {offset} into {area.name} does not fit "
                         f"the 14-bit immediate of adds ({IMM14_RANGE.start}.."
                         f"{IMM14_RANGE.stop - 1}); relgen will not change the code it "
                         "generates")
    comma = next((s for s in item.separators[1:] if s.strip() == ","), ",")
    if offset_text == "0" and constant == 0:
        return _reparsed(item, "mov", [register], comma)
    return _reparsed(item, "adds" if item.mnemonic == "addl" else item.mnemonic,
                     [text, register], comma)


def _reparsed(item: Instruction, mnemonic: str, sources: Sequence[str], comma: str
              ) -> Instruction:
    """`item` with a new mnemonic and source operands, made by parsing its new text with
    the grammar; its predicate, destination and spacing stay as they were."""
    text = (_with_mnemonic(item, mnemonic) + item.operands[0].text + item.separators[0]
            + comma.join(sources))
    new = parse_statement(text, item.text)
    assert isinstance(new, Instruction)  # a mnemonic and operands: the grammar's instruction
    return replace(new, line=item.line, column=item.column)


def _with_mnemonic(item: Instruction, mnemonic: str) -> str:
    position = item.head.rfind(item.mnemonic)
    return item.head[:position] + mnemonic + item.head[position + len(item.mnemonic):]


def rebase_area_references(
    module: Module, region: ControlPageRegion, registers: Mapping[str, str]
) -> tuple[Module, tuple[RewrittenInstruction, ...]]:
    """Rewrite every instruction of the file that forms a data-area address.

    Walks the file in order, keeping what registers hold where an instruction makes it
    plain (`mov rX=ip` under a label, `dep rX=0,rX,61,3` keeps it, `add rD=expr,rS`); a
    reference is rebased only when the address it forms is `area label + constant`.
    Anything else that touches an area label is an error that says what it computes.
    """
    labels = _area_labels(region)
    area_range = {i for a in region.data_areas for i in a.lines}
    known: dict[str, _RegisterValue] = {}
    changes: list[tuple[Instruction, Instruction, DataArea]] = []
    anchors = _AnchorTracker()
    branches = _BranchStates()
    for index, item in module.items():
        anchor = anchors.anchor(item)
        anchors.see(item)
        if isinstance(item, Preprocessor):
            known = branches.see(item, known)
            continue
        if isinstance(item, MacroCall):
            known.clear()  # a kernel macro may expand to anything
            continue
        if not isinstance(item, Instruction):
            if isinstance(item, Directive) and index not in area_range:
                _refuse_area_use(module, item, item.operands, labels)
            continue
        if item.kind == "data":
            if index != region.size_word_line:
                _refuse_area_use(module, item, item.operands, labels)
            continue
        destination = _register(item.operands[0]) if item.destinations == 1 else None
        touched = [op for op in item.sources if ex.symbols_in(op) & labels.keys()]
        if item.mnemonic == "mov" and len(item.sources) == 1 and _register(item.sources[0]) \
                == "ip" and destination:
            if anchor:
                known[destination] = _RegisterValue(ex.LinearForm({anchor: 1}, 0), item.line)
            else:
                known.pop(destination, None)
            continue
        if item.mnemonic == "dep" and destination and len(item.sources) == 4 and \
                _register(item.sources[1]) == destination:
            continue  # clearing the region bits keeps the offsets between labels
        if item.mnemonic in ADD_MNEMONICS and destination and len(item.sources) == 2:
            value = _added_value(module, item, known)
            if value is not None and not touched:
                _refuse_code_label_as_area_end(module, item, value, region)
            if touched:
                if item.predicate:
                    raise _error(module, item, "a predicated instruction forms a data-area "
                                 "address; relgen does not rewrite it")
                area, label, constant = _area_address(module, item, value, labels, known)
                new = _rebased_operands(module, item, area, label, constant,
                                        registers[area.name])
                changes.append((item, new, area))
                # the register still holds that address: later uses are judged by it
                known[destination] = _RegisterValue(value, item.line)  # type: ignore[arg-type]
                continue
            if value is not None:
                known[destination] = _RegisterValue(value, item.line)
            else:
                known.pop(destination, None)
            continue
        if touched:
            _refuse_area_use(module, item, item.sources, labels)
        if destination:
            known.pop(destination, None)
    rewritten = tuple(RewrittenInstruction(old.line, old.text, new.text, area.name)
                      for old, new, area in changes)
    return _replace_items(module, {id(old): new for old, new, _ in changes}), rewritten


def _added_value(module: Module, item: Instruction, known: Mapping[str, _RegisterValue]
                 ) -> ex.LinearForm | None:
    """What `add rD=A,B` leaves in rD, as a linear form, when both sides are known."""
    forms: list[ex.LinearForm] = []
    for operand in item.sources:
        register = _register(operand)
        if register in known:
            forms.append(known[register].value)
            continue
        try:
            form = ex.linear_form(operand)
        except ex.NotLinear:
            return None
        if len(form.terms) == 1 and form.constant == 0 and register is not None:
            return None  # a register whose value we do not know
        forms.append(form)
    return forms[0] + forms[1]


def _area_address(
    module: Module, item: Instruction, value: ex.LinearForm | None,
    labels: Mapping[str, DataArea], known: Mapping[str, _RegisterValue],
) -> tuple[DataArea, str, int]:
    """The area, label and constant of `label + constant`, which `item` must compute."""
    base = next((_register(op) for op in item.sources if _register(op) in known or
                 (_register(op) and not (ex.symbols_in(op) & labels.keys()))), None)
    expression = next(str(op) for op in item.sources if ex.symbols_in(op) & labels.keys())
    if value is None:
        raise _error(module, item, f"this forms a data-area address from {expression} and "
                     f"register {base}, whose value relgen cannot tell here; no rule "
                     "rewrites it")
    area_terms = {name: c for name, c in value.terms.items() if name in labels}
    other_terms = {name: c for name, c in value.terms.items() if name not in labels}
    if len(area_terms) == 1 and not other_terms and next(iter(area_terms.values())) == 1:
        (label,) = area_terms
        return labels[label], label, value.constant
    held = known.get(base or "")
    held_text = f" ({base} holds {held.value.describe()}, set at line {held.line})" \
        if held else ""
    ends = [name for name, c in area_terms.items() if c == 1 and name in
            labels[name].end_labels]
    if ends:
        label = ends[0]
        rest = value + ex.LinearForm({label: -1}, 0)
        area = labels[label].name
        message = (f"this computes {label} + ({rest.describe()}){held_text}: "
                   f"{rest.describe()} bytes past the end of {area}, outside the area")
    else:
        message = (f"this computes {value.describe()}{held_text}, which is not one "
                   "data-area label plus a constant")
    raise _error(module, item, message + "; no rule rewrites it")


def _refuse_code_label_as_area_end(module: Module, item: Instruction, value: ex.LinearForm,
                                   region: ControlPageRegion) -> None:
    """An address formed from a label that ends an area but that code follows: the label is
    code and moves with it, so the address would silently change."""
    for area in region.data_areas:
        for label in area.code_labels_after:
            if label in value.terms:
                raise _error(module, item, f"this forms an address from {label}, which ends "
                             f"the data area {area.name} but is a code label (code follows "
                             "it), so it moves with the code; give the area an end label of "
                             f"its own (`{area.name}_end:`) before the code")


def _refuse_area_use(module: Module, item: Instruction | Directive,
                     operands: Sequence[ex.Expr], labels: Mapping[str, DataArea]) -> None:
    for operand in operands:
        used = sorted(ex.symbols_in(operand) & labels.keys())
        if used:
            what = item.mnemonic if isinstance(item, Instruction) else item.name
            area = labels[used[0]].name
            raise _error(module, item, f"{what} refers to {', '.join(used)} (data area "
                         f"{area}) in `{operand}`; relgen rewrites only an add that forms "
                         "the area's address from the position anchor, and no rule covers "
                         "this use")


# ---------------------------------------------------------------- moving and lifting


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
    at = 0 if last is None else last + 1
    return _insert_parsed(module, at, f"#include <{HEADER_INCLUDE}>{_line_ending(module)}")


def _line_ending(module: Module) -> str:
    for line in module.lines:
        if line.ending.endswith("\r\n"):
            return "\r\n"
        if line.ending.endswith("\n"):
            return "\n"
    return "\n"


def _insert_parsed(module: Module, at: int, text: str) -> Module:
    """`text` parsed with the grammar, its lines inserted before line index `at`."""
    new_lines = parse_module(text).lines
    number = module.lines[at - 1].number if at else 1
    lines = list(module.lines)
    lines[at:at] = [replace(line, number=number) for line in new_lines]
    return module.with_lines(lines)


def document_entry_arguments(module: Module, region: ControlPageRegion,
                             areas: Sequence[DataArea], registers: Mapping[str, str]
                             ) -> Module:
    """A comment before the entry: which input register brings which data area."""
    ending = _line_ending(module)
    lines = ["/*", " * The stacks are not in the control page; the caller passes them in:"]
    lines += [f" * {registers[a.name]}: physical address of {a.name} ({a.size_macro} bytes)"
              for a in areas]
    lines.append(" */")
    return _insert_parsed(module, region.start, ending.join(lines) + ending)


#: A section the kernel's linker script discards (asm-generic/vmlinux.lds.h, DISCARDS).
GUARD_SECTION = ".discard.relocate_new_kernel_size"


def guard_code_size(module: Module, region: ControlPageRegion) -> Module:
    """After the size word: the assembler fails the build if the code outgrows its page.

    The size is measured by the assembler on the real code between the entry and the end
    label, so the guarantee holds for any later edit of the file. It cannot be an `.if`: an
    `.align` inside the code leaves the size unknown until the assembler has laid out the
    section. So a data1 in a section the kernel discards takes `too_big * 0x1000`, where
    `too_big` is set only after it: the assembler resolves it once the layout is final, and
    GAS's `>` gives -1 when true; -0x1000 does not fit in one byte, which is an error.
    """
    ending = _line_ending(module)
    size, too_big = ".Lkexec_code_size", ".Lkexec_code_too_big"  # local: not in the object
    text = ending.join([
        f"/* The build fails here if {region.entry} outgrows {CODE_PAGE_MACRO} */",
        f'\t.pushsection {GUARD_SECTION}, "", @progbits',
        f"\tdata1 {too_big} * 0x1000\t// 0, or -0x1000: too large for the byte",
        "\t.popsection",
        f"\t.set {size}, {region.end_label} - {region.entry}",
        f"\t.set {too_big}, {size} > {CODE_PAGE_MACRO}",
    ]) + ending
    return _insert_parsed(module, region.size_word_line + 1, text)


# ------------------------------------------------------------------------ all passes


def rewrite_control_page(module: Module, entry: str = DEFAULT_ENTRY) -> RewriteResult:
    """Run every pass. A file already in code-first layout comes back unchanged."""
    region = find_region(module, entry)
    alloc = find_alloc(module, region)
    if not region.data_areas and includes_header(module):
        return RewriteResult(module, region, (), {}, (), alloc.text, alloc.text,
                             already_code_first=True)
    require_data_areas(module, region)
    registers = argument_registers(module, region)
    new, rewritten = rebase_area_references(module, region, registers)
    new = widen_alloc(new, region, len(region.data_areas))
    new = move_code_ahead(new, region)
    new = lift_data_areas(new, find_region(new, entry))
    new = include_header(new)
    new = document_entry_arguments(new, find_region(new, entry), region.data_areas, registers)
    new = guard_code_size(new, find_region(new, entry))
    new_alloc = find_alloc(new, find_region(new, entry))
    return RewriteResult(new, region, region.data_areas, registers, rewritten, alloc.text,
                         new_alloc.text)
