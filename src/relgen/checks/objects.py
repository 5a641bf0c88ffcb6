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
from relgen.names import CODE_SIZE_MACRO, PAGE_SIZES, offset_macro, size_macro
from relgen.source.configurations import Configuration, Configurations
from relgen.toolchain import layout
from relgen.toolchain.assemble import header_macros
from relgen.toolchain.elf import ObjectFile, load_object


def check_region(twin: Twin, data_areas: Sequence[str]) -> list[Check]:
    after = twin.after
    left = sorted(set(data_areas) & twin.new_symbols)
    outside = [s.name for s in after.code_symbols if s.end > after.size]
    code_only = Check("the control page holds only code",
                      not after.data_symbols and not left and not outside,
                      tuple(f"  {s.offset:#06x} {s.name} {s.kind} {s.size:#x}"
                            for s in after.symbols)
                      + tuple(f"  FAIL: data area {n} still defined" for n in left))
    fits = Check("the code fits in one 4 KiB page", after.size <= 4096,
                 (f"  control page: {after.size:#x} bytes ({after.size}), was "
                  f"{twin.before.size:#x}",))
    warnings = [w for report in layout.page_report(after, PAGE_SIZES)
                for w in report.warnings]
    entries = Check("no entry point beyond the first page or across a page boundary",
                    not warnings,
                    tuple(f"  {s.name} at {s.offset:#06x}" for s in after.entry_points)
                    + tuple(f"  FAIL: {w}" for w in warnings))
    return [code_only, fits, entries]

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

DEFINE = re.compile(r"^#define\s+(KEXEC_[A-Z0-9_]+)\s+(0x[0-9a-fA-F]+|[0-9]+)\s*$", re.M)

def check_header_numbers(twin: Twin, data_areas: Sequence[str], macros: dict[str, str]
                         ) -> Check:
    """The header's numbers against the object's; `macros` are the header's macros as cpp
    sees them in the twin's configuration."""
    defined = {name: int(value, 0) for name, value in macros.items()
               if DEFINE.match(f"#define {name} {value}")}
    expected = {CODE_SIZE_MACRO: twin.after.size}
    sizes = {s.name: s.size for s in twin.before.symbols}
    for area in data_areas:
        expected[size_macro(area)] = sizes.get(area, -1)
    for symbol in twin.after.entry_points:
        expected[offset_macro(symbol.name)] = symbol.offset
    lines, good = [], True
    for name, value in expected.items():
        got = defined.get(name)
        ok = got == value
        good &= ok
        shown = "missing" if got is None else f"{got:#x}"
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {name:36} header {shown:>8}  "
                     f"object {value:#x}")
    return Check("the header's numbers equal the object's", good, tuple(lines))

def _check_configuration(inputs: Inputs, twins: Sequence[Twin], work: Path,
                         page_sizes: Sequence[int]) -> tuple[int, list[Check], str]:
    """One configuration's instructions compared, its static checks and its map text."""
    expected = inputs.expected
    areas = [a.name for a in expected.data_areas] if expected else []
    rewrites = len(expected.rewritten) if expected else 0
    same = all(t.after == twins[0].after and t.before == twins[0].before for t in twins)
    checks = [Check("the layout is the same at every page size", same)]
    twin = twins[0]
    checks += check_region(twin, areas)
    arguments = AreaArguments(
        {s.name: s.offset for s in twin.before.data_symbols},
        {name: f"r{32 + int(reg[2:])}"
         for name, reg in (expected.argument_registers if expected else {}).items()},
        twin.before.start)
    pairs = correlate(twin, {a.name: a.size for a in expected.data_areas}
                      if expected else None)
    allocs = 0 if expected is None or expected.already_code_first else 1
    checks.append(compare_instructions(pairs, rewrites, arguments, allocs)[0])
    checks.append(check_relocations(twin))
    macros = header_macros(inputs.header_text, work / f"header-{twin.configuration.folder}",
                                  twin.configuration.cpp_flags)
    checks.append(check_header_numbers(twin, areas, macros))
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
