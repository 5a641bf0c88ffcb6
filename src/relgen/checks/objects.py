"""The passes on the twin objects that need no execution: the region holds only code, the
disassembly compares, the relocations are the same piece by piece, and the header's
numbers are the object's; run alike on every page size and configuration."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from relgen.checks.disassembly import AreaArguments, compare_instructions, correlate
from relgen.checks.inputs import Inputs
from relgen.checks.report import Check
from relgen.checks.twins import Twin, assemble_twins
from relgen.names import PAGE_SIZES, size_macro
from relgen.rewrite import offset_symbol
from relgen.source.configurations import Configuration, Configurations
from relgen.toolchain import layout
from relgen.toolchain.assemble import header_macros
from relgen.toolchain.elf import ObjectFile, load_object


def check_region(twin: Twin, data_areas: Sequence[str], kept: bool = False) -> list[Check]:
    """The page holds only code (where a hypervisor calls it: the code first, then the
    stacks it keeps), the code fits in one 4 KiB page, and no entry point crosses one."""
    after = twin.after
    symbols = tuple(f"  {s.offset:#06x} {s.name} {s.kind} {s.size:#x}" for s in after.symbols)
    if kept:
        code_end = max((s.end for s in after.code_symbols), default=0)
        stacks = {s.name: s.size for s in after.data_symbols}
        before = {s.name: s.size for s in twin.before.data_symbols}
        first = Check("the code comes first; the stacks stay in the page after it",
                      stacks == before and all(s.offset >= code_end
                                               for s in after.data_symbols), symbols)
    else:
        left = sorted(set(data_areas) & twin.new_symbols)
        first = Check("the control page holds only code",
                      not after.data_symbols and not left,
                      symbols + tuple(f"  FAIL: data area {n} still defined" for n in left))
    fits = Check("the code fits in one 4 KiB page", after.code_size <= 4096,
                 (f"  code: {after.code_size:#x} bytes ({after.code_size}), control page "
                  f"{after.size:#x}, was {twin.before.size:#x}",))
    warnings = [w for report in layout.page_report(after, PAGE_SIZES)
                for w in report.warnings]
    entries = Check("no entry point beyond the first page or across a page boundary",
                    not warnings,
                    tuple(f"  {s.name} at {s.offset:#06x}" for s in after.entry_points)
                    + tuple(f"  FAIL: {w}" for w in warnings))
    return [first, fits, entries]


def _place(control_map: layout.ControlPageMap, address: int) -> str | None:
    """`piece+0xoff` for a section address inside the region, None outside it."""
    offset = address - control_map.start
    piece = next((s for s in reversed(control_map.symbols)
                  if s.offset <= offset < max(s.end, s.offset + 1)), None)
    return None if piece is None else f"{piece.name}+{offset - piece.offset:#x}"

def _region_relocations(obj: ObjectFile, control_map: layout.ControlPageMap
                        ) -> tuple[str, ...]:
    """Each relocation inside the region as `place: TYPE target`, targets in the region
    (a section symbol plus addend) named by piece, so that both objects compare."""
    found = []
    for relocation in obj.relocations:
        if relocation.section != control_map.section:
            continue
        place = _place(control_map, relocation.offset)
        if place is None:
            continue
        target = f"{relocation.symbol}{relocation.addend:+#x}"
        if relocation.symbol == control_map.section:
            target = _place(control_map, relocation.addend) or target
        found.append(f"{place}: {relocation.type} {target}")
    return tuple(sorted(found))

def check_relocations(twin: Twin) -> Check:
    """The regenerated code refers to the same symbols from the same places."""
    before = _region_relocations(load_object(twin.original_object), twin.before)
    after = _region_relocations(load_object(twin.new_object), twin.after)
    evidence = [f"  {line}" for line in before] or ["  (no relocation in the control page)"]
    evidence += [f"  FAIL: only in the original: {line}" for line in before if line not in after]
    evidence += [f"  FAIL: only in the regenerated: {line}" for line in after
                 if line not in before]
    return Check("the relocations in the control page are the same, piece by piece",
                 before == after, tuple(evidence))

DEFINE = re.compile(r"^(?:0x[0-9a-fA-F]+|[0-9]+)$")


def check_header_sizes(twin: Twin, data_areas: Sequence[str], macros: dict[str, str]
                       ) -> Check:
    """The header's stack sizes against the object's; `macros` are the header's macros as
    cpp sees them in the twin's configuration."""
    sizes = {s.name: s.size for s in twin.before.symbols}
    lines, good = [], True
    for area in data_areas:
        name, value = size_macro(area), sizes.get(area, -1)
        text = macros.get(name, "")
        got = int(text, 0) if DEFINE.match(text) else None
        good &= got == value
        shown = "missing" if got is None else str(got)
        lines.append(f"  {'ok  ' if got == value else 'FAIL'} {name:32} header {shown:>6}  "
                     f"object {value}")
    return Check("the header's stack sizes are the object's", good, tuple(lines))


def check_entry_offsets(twin: Twin, points: Sequence[str]) -> Check:
    """Each `<entry point>_offset` word the .S defines holds where that entry point lies in
    the regenerated control page (the assembler measured it: this checks the words exist
    and say what the map says)."""
    obj = load_object(twin.new_object)
    where = {s.name: s.offset for s in twin.after.entry_points}
    lines, good = [], True
    for point in points:
        symbol = obj.symbol(offset_symbol(point)) if obj.has_symbol(offset_symbol(point)) \
            else None
        value = None
        if symbol is not None and symbol.is_defined:
            data = obj.section_data(symbol.section)[symbol.value:symbol.value + 8]
            value = int.from_bytes(data, "little") if len(data) == 8 else None
        ok = value is not None and value == where.get(point)
        good &= ok
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {offset_symbol(point):32} "
                     f"{'missing' if value is None else hex(value):>8}  map "
                     f"{hex(where[point]) if point in where else 'missing'}")
    return Check("the entry point offsets the .S defines are where the map says", good,
                 tuple(lines))


def _check_configuration(inputs: Inputs, twins: Sequence[Twin], work: Path,
                         page_sizes: Sequence[int]) -> tuple[int, list[Check], str]:
    """One configuration's instructions compared, its static checks and its map text."""
    expected = inputs.expected
    twin = twins[0]
    kept = expected is not None and twin.configuration.switched_on(expected.kept)
    areas = [a.name for a in expected.data_areas] if expected else []
    rewrites = len(expected.rewritten) if expected and not kept else 0
    same = all(t.after == twins[0].after and t.before == twins[0].before for t in twins)
    checks = [Check("the layout is the same at every page size", same)]
    checks += check_region(twin, areas, kept)
    arguments = AreaArguments(
        {s.name: s.offset for s in twin.before.data_symbols},
        {name: f"r{32 + int(reg[2:])}"
         for name, reg in (expected.argument_registers if expected and not kept
                           else {}).items()},
        twin.before.start)
    pairs = correlate(twin, {a.name: a.size for a in expected.data_areas}
                      if expected else None)
    allocs = 0 if expected is None or expected.already_code_first or kept else 1
    checks.append(compare_instructions(pairs, rewrites, arguments, allocs)[0])
    checks.append(check_relocations(twin))
    if not kept and areas:
        macros = header_macros(inputs.header_text,
                               work / f"header-{twin.configuration.folder}",
                               twin.configuration.cpp_flags)
        checks.append(check_header_sizes(twin, areas, macros))
    if expected is not None and expected.entry_points:
        checks.append(check_entry_offsets(twin, expected.entry_points))
    text = ("before:\n" + layout.render_text(twin.before, page_sizes)
            + "\nafter:\n" + layout.render_text(twin.after, page_sizes))
    return sum(len(pair.new) for pair in pairs), checks, text

@dataclass(frozen=True)
class ObjectChecks:
    """The twins and what reading them showed: the passes that need no execution."""

    configurations: Configurations
    twins: tuple[Twin, ...]
    checks: tuple[Check, ...]
    layout_text: str
    instructions_compared: int | None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def named(self, each: Configuration) -> str:
        """The suffix that tells one configuration's checks from another's."""
        return "" if len(self.configurations.each) == 1 else f" [{each.describe()}]"

def check_objects(inputs: Inputs, work: Path, page_sizes: Sequence[int],
                  map_each: Callable = map) -> ObjectChecks:
    """Assemble the twins, then load, correlate and compare them in every configuration."""
    twins, checks = assemble_twins(inputs, work, page_sizes, map_each)
    configurations = inputs.configurations
    objects = ObjectChecks(configurations, tuple(twins), (), "", None)
    if not twins:
        return replace(objects, checks=tuple(checks))
    sizes = ", ".join(f"{t.page_size // 1024} KiB: {t.before.size:#x} -> "
                      f"{t.after.size:#x}" for t in twins)
    checks.insert(0, Check("both files assemble with ia64-linux-gnu-as -x at every "
                           "page size" + (" in every configuration"
                                          if len(configurations.each) > 1 else "")
                           + ", without a dependency violation",
                           len(twins) == len(page_sizes) * len(configurations.each),
                           (f"  {configurations.describe()}",
                            f"  control page {sizes}")))
    layout_text = f"configurations checked: {configurations.describe()}\n"
    compared = 0
    for each in configurations.each:
        group = [t for t in twins if t.configuration == each]
        if not group:
            continue
        named = objects.named(each)
        count, found, text = _check_configuration(inputs, group, work, page_sizes)
        checks += [Check(c.name + named, c.passed, c.evidence) for c in found]
        compared += count
        layout_text += (f"{named.strip(' []') + ': ' if named else ''}" + text)
    return replace(objects, checks=tuple(checks), layout_text=layout_text,
                   instructions_compared=compared)
