"""Rebasing the data-area addresses: the instructions that form an area's address from the
position anchor (`add sp=(memory_stack_end - 16 - .reloc_entry),r2`) become, one for one
and in the same unit, instructions that form it from the area's argument
(`add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4`).

What a register holds is followed item by item in one walk over the file (`mov rX=ip` under
a label, `dep rX=0,rX,61,3`, `add rD=expr,rS`), across preprocessor conditionals (each
branch starts from the state before the `#if`); an address is rebased only when it is `area
label + constant`, and anything else that touches an area label is an error that says what
it computes. All label arithmetic is on parsed expressions, never on strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from relgen.errors import RelgenError
from relgen.source import expressions as ex
from relgen.source.nodes import Directive, Instruction, Item, Label, MacroCall, Module, Preprocessor
from relgen.source.parser import parse_statement
from relgen.source.region import CONDITIONAL_OPENERS, ControlPageRegion, DataArea

# ALU (A-unit) instructions that add an immediate to a register: relgen may exchange one
# for another, since A-unit instructions run in the same M or I slot of a bundle.
ADD_MNEMONICS = frozenset({"add", "adds", "addl"})

# `adds` takes a signed 14-bit immediate; the argument registers are not r0-r3, so the
# 22-bit `addl` form is not available for them.
IMM14_RANGE = range(-(1 << 13), 1 << 13)

@dataclass(frozen=True)
class RewrittenInstruction:
    """One instruction rebased: its line in the input, its text before and after."""

    line: int
    old: str
    new: str
    area: str
    old_item: Instruction | None = field(default=None, compare=False, repr=False)
    new_item: Instruction | None = field(default=None, compare=False, repr=False)

def _error(module: Module, item: Item, message: str) -> RelgenError:
    source = next((line.shown for line in module.lines if item in line.items), None)
    return RelgenError(message, module.path, item.line, item.column, source)

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
) -> tuple[RewrittenInstruction, ...]:
    """The new form of every instruction of the file that forms a data-area address.

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
    return tuple(RewrittenInstruction(old.line, old.text, new.text, area.name, old, new)
                 for old, new, area in changes)

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
