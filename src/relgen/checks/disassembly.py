"""The twins' disassembly, correlated and compared instruction for instruction.

The code of both control pages is lined up as one sequence each (the original's data areas
and the nop padding that served them left out); every slot must be the same but for the
alloc and the rewritten instructions, and each rewritten one must form the same area
address from the area's argument that the original formed from the position anchor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from relgen.checks.report import Check
from relgen.checks.twins import Twin
from relgen.toolchain import layout
from relgen.toolchain.objdump import DecodedSlot, disassemble_instructions

NOP = re.compile(r"nop(\.[mifbx])?\b")

BRANCH_ADDRESS = re.compile(r"\b([0-9a-f]+) <[^>]+>")

@dataclass(frozen=True)
class ProcedurePair:
    """The instructions of one code piece in both objects, matched by its symbol."""

    name: str
    original: tuple[DecodedSlot, ...]
    new: tuple[DecodedSlot, ...]

def correlate(twin: Twin, area_sizes: dict[str, int | None] | None = None
              ) -> list[ProcedurePair]:
    """The code of both control pages as one sequence each, in address order.

    The original's data areas are left out (each from its symbol over the size the source
    gives it, else up to the next symbol), and so are the bundles of nops right before each
    area, which only the `.align` that served it had added: code placed between or after the
    areas, labelled or not, then lines up with where it went in the regenerated page.
    """
    original = disassemble_instructions(twin.original_object)
    new = disassemble_instructions(twin.new_object)
    sizes = area_sizes or {}
    start = twin.before.start
    areas = sorted((start + s.offset, start + s.offset + (sizes.get(s.name) or s.size))
                   for s in twin.before.data_symbols)
    code = [i for i in original if start <= i.bundle < twin.before.end and
            not any(low <= i.bundle < high for low, high in areas)]
    padding = {bundle for low, _ in areas for bundle in _nop_bundles_before(code, low)}
    padding |= _entry_alignment(code, twin.before)
    code = [i for i in code if i.bundle not in padding]
    after = [i for i in new if twin.after.start <= i.bundle < twin.after.end]
    moved_padding = _entry_alignment(after, twin.after)
    after = [i for i in after if i.bundle not in moved_padding]
    return [ProcedurePair(twin.before.entry, tuple(code), tuple(after))]

def _entry_alignment(code: Sequence[DecodedSlot], control_map: layout.ControlPageMap
                     ) -> set[int]:
    """The nop bundles right before each global entry point but the first: GLOBAL_ENTRY
    aligns to 32 bytes, so how many it adds depends on where the code before it ends, which
    moving code changes."""
    return {bundle for symbol in control_map.entry_points if symbol.offset
            for bundle in _nop_bundles_before(code, control_map.start + symbol.offset)}

def _nop_bundles_before(code: Sequence[DecodedSlot], address: int) -> list[int]:
    """The bundles of nops that end right at `address`, nearest first."""
    bundles: dict[int, list[DecodedSlot]] = {}
    for instruction in code:
        bundles.setdefault(instruction.bundle, []).append(instruction)
    found, at = [], address - 16
    while at in bundles and all(NOP.match(i.text) for i in bundles[at]):
        found.append(at)
        at -= 16
    return found

def branch_target(instruction: DecodedSlot) -> int | None:
    """The absolute address a branch names in objdump's text (`br.few 160 <x+0x160>`)."""
    match = BRANCH_ADDRESS.search(instruction.text)
    return int(match.group(1), 16) if match else None

def _slot(i: DecodedSlot) -> str:
    return f"{i.symbol}+0x{i.symbol_offset:03x} slot {i.slot} [{i.unit}]"

ADD_IMMEDIATE = re.compile(r"(?:adds|addl|add) (r\d+)=(-?\d+),(r\d+)$")

MOVE_REGISTER = re.compile(r"mov (r\d+)=(r\d+)$")

IP_READ = re.compile(r"mov (r\d+)=ip$")

@dataclass(frozen=True)
class AreaArguments:
    """Where each area was in the original page, and the register it now arrives in."""

    offsets: dict[str, int]  # area name -> offset in the original control page
    registers: dict[str, str]  # area name -> "r36"
    region_start: int  # section address of the entry in the original object

def _address_formed(old: DecodedSlot, before: Sequence[DecodedSlot],
                    areas: AreaArguments) -> tuple[str, int] | None:
    """(area, offset) that `add rD=imm,rB` forms when rB was set by `mov rB=ip`."""
    match = ADD_IMMEDIATE.match(old.text)
    if not match:
        return None
    base = match.group(3)
    anchor = next((i.bundle for i in reversed(before)
                   if (m := IP_READ.match(i.text)) and m.group(1) == base), None)
    if anchor is None:
        return None
    target = anchor + int(match.group(2)) - areas.region_start
    inside = [(name, target - offset) for name, offset in areas.offsets.items()
              if target >= offset]
    return max(inside, key=lambda pair: areas.offsets[pair[0]]) if inside else None

def _address_from_argument(new: DecodedSlot, areas: AreaArguments
                           ) -> tuple[str, int] | None:
    """(area, offset) that `adds rD=imm,rN` or `mov rD=rN` forms from an area's register."""
    by_register = {register: name for name, register in areas.registers.items()}
    if (match := ADD_IMMEDIATE.match(new.text)) and match.group(3) in by_register:
        return by_register[match.group(3)], int(match.group(2))
    if (match := MOVE_REGISTER.match(new.text)) and match.group(2) in by_register:
        return by_register[match.group(2)], 0
    return None

def _same_address(old: DecodedSlot, new: DecodedSlot,
                  earlier: Sequence[DecodedSlot], areas: AreaArguments) -> str | None:
    """None when both instructions put the same area address in the same register."""
    formed = _address_formed(old, earlier, areas)
    rebased = _address_from_argument(new, areas)
    if formed is None or rebased is None:
        return (f"{_slot(old)}: `{old.text}` -> `{new.text}` is not an area address formed "
                "from the anchor turned into one formed from the area's argument")
    if old.text.split("=")[0].split()[-1] != new.text.split("=")[0].split()[-1]:
        return f"{_slot(old)}: the destination register changed"
    if formed != rebased:
        return (f"{_slot(old)}: the original forms {formed[0]}+{formed[1]}, the new code "
                f"{rebased[0]}+{rebased[1]}")
    return None

def compare_instructions(pairs: Sequence[ProcedurePair], expected_rewrites: int,
                         areas: AreaArguments | None = None, expected_allocs: int = 1
                         ) -> tuple[Check, int]:
    """Same instruction for instruction, but for the alloc, the rewrites and nop padding.

    A rewritten slot passes only when the original formed an area address from the
    position anchor (`addl r12=8992,r2` after `mov r2=ip`) and the new one forms the same
    address, area and offset, from the area's argument register (`adds r12=8176,r36`).
    """
    evidence: list[str] = []
    identical = total = allocs = rewrites = 0
    problems: list[str] = []
    for pair in pairs:
        if not pair.new:
            problems.append(f"{pair.name}: missing from the regenerated object")
            continue
        total += len(pair.new)
        # where each original bundle went: a branch must reach the same instruction
        moved = {old.bundle: new.bundle for old, new in zip(pair.original, pair.new,
                                                            strict=False)}
        for old, new in zip(pair.original, pair.new, strict=False):
            target = branch_target(old)
            if target is not None and BRANCH_ADDRESS.sub("", old.text) == \
                    BRANCH_ADDRESS.sub("", new.text):
                if moved.get(target) == branch_target(new):
                    identical += 1
                    continue
                problems.append(f"{_slot(old)}: `{old.text}` -> `{new.text}` no longer "
                                "branches to the same instruction")
            elif old.comparable == new.comparable:
                identical += 1
                continue
            line = f"  {_slot(old):40} {old.text:28} -> {new.text}"
            if old.unit != new.unit:
                problems.append(f"{_slot(old)}: unit {old.unit} became {new.unit}")
            if old.text.startswith("alloc ") and new.text.startswith("alloc "):
                allocs += 1
            else:
                rewrites += 1
                earlier = pair.original[: pair.original.index(old)]
                if areas is not None and (problem := _same_address(old, new, earlier, areas)):
                    problems.append(problem)
            evidence.append(line)
        extra_old = pair.original[len(pair.new):]
        extra_new = pair.new[len(pair.original):]
        if extra_new:
            problems.append(f"{pair.name}: {len(extra_new)} instructions more than before")
        if extra_old:
            if all(NOP.match(i.text) for i in extra_old):
                evidence.append(f"  {_slot(extra_old[0]):40} {len(extra_old)} nop slots of "
                                "padding before the data areas -> removed")
            else:
                problems.append(f"{pair.name}: {len(extra_old)} instructions at its end are "
                                "gone and not all are padding nops")
    if allocs != expected_allocs:
        problems.append(f"expected the alloc to change {expected_allocs} times, it changed "
                        f"{allocs} times")
    if rewrites != expected_rewrites:
        problems.append(f"expected {expected_rewrites} rewritten instructions, "
                        f"found {rewrites} that differ")
    evidence.append(f"  identical: {identical} of {total} instructions; "
                    f"{allocs} alloc and {rewrites} rewritten instructions differ")
    evidence += [f"  FAIL: {p}" for p in problems]
    return Check("disassembly matches but for the alloc, the rewrites and padding",
                 not problems, tuple(evidence)), identical
