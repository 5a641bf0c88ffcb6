"""Load an assembled control page at a physical address and run it to the branch that leaves it.

The instructions come from the real decoder (`disassemble_instructions`, i.e.
`ia64-linux-gnu-objdump -d`), the bytes the caller copies from the object's section
(`elf`), so inline data words read back as the assembler wrote them. Branches are
IP-relative, so the code runs wherever it is copied; `mov rX=ip` reads the bundle's address
at that place. Relocated immediates keep the object's value (0 in an unlinked object).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relgen.checks.execution.machine import ExecutionFault, Machine
from relgen.checks.execution.semantics import Effect, compile_slot
from relgen.toolchain import elf, layout
from relgen.toolchain.objdump import disassemble_instructions

# (slot number, qualifying predicate, effect; None for a nop)
CompiledSlot = tuple[int, int, "Effect | None"]


@dataclass(frozen=True)
class Program:
    """The region of an object that is copied to the control page, decoded and compiled."""

    entry: str
    size: int
    image: bytes  # the region's bytes, padded to whole 8-byte words
    bundles: dict[int, tuple[CompiledSlot, ...]]  # offset from the entry -> its slots
    texts: dict[tuple[int, int], str]  # (offset, slot) -> objdump's text, for messages

    def where(self, offset: int, slot: int) -> str:
        return f"{self.entry}+{offset:#x} slot {slot} `{self.texts.get((offset, slot), '?')}`"


def load_program(object_path: Path, control_map: layout.ControlPageMap) -> Program:
    """Decode the control-page region of an assembled object."""
    data = elf.load_object(object_path).section_data(control_map.section)
    image = data[control_map.start:control_map.end]
    image += bytes(-len(image) % 8)
    by_bundle: dict[int, list[CompiledSlot]] = {}
    texts: dict[tuple[int, int], str] = {}
    for instruction in disassemble_instructions(object_path):
        offset = instruction.bundle - control_map.start
        if instruction.section != control_map.section or not 0 <= offset < control_map.size:
            continue
        slot = compile_slot(instruction)
        body = instruction.text.split(")")[-1].strip()
        effect = None if body.startswith("nop") else slot.effect
        by_bundle.setdefault(offset, []).append((instruction.slot, slot.predicate, effect))
        texts[(offset, instruction.slot)] = instruction.text
    return Program(control_map.entry, control_map.size, image,
                   {offset: tuple(slots) for offset, slots in by_bundle.items()}, texts)


@dataclass(frozen=True)
class Exit:
    """How a run left the code: the branch that did it and where it went."""

    target: int  # the address the code branched to
    offset: int  # the branch's bundle, from the entry
    slot: int
    text: str
    slots_run: int


def run(program: Program, machine: Machine, load_address: int, *, max_slots: int) -> Exit:
    """Execute from `machine.ip` until a branch leaves the copy at `load_address`.

    Raises ExecutionFault (with the place and the instruction) on anything the model
    forbids, and when the code does not leave within `max_slots` slots.
    """
    bundles = program.bundles
    predicates = machine.pr
    slots_run = 0
    first_slot = 0
    last = (0, 0)
    while True:
        offset = machine.fetch_address(machine.ip) - load_address
        bundle = bundles.get(offset)
        if bundle is None:
            if 0 <= offset < program.size:
                raise ExecutionFault(f"branch from {program.where(*last)} into bytes of the "
                                     f"control page that are not code ({program.entry}"
                                     f"+{offset:#x})")
            return Exit(machine.ip, last[0], last[1], program.texts.get(last, '?'), slots_run)
        target = None
        for number, predicate, effect in bundle:
            if number < first_slot:
                continue
            slots_run += 1
            if predicate and not (predicates[predicate] if predicate < 16
                                  else machine.read_pr(predicate)):
                continue
            if effect is None:
                continue
            try:
                target = effect(machine)
            except ExecutionFault as fault:
                raise ExecutionFault(f"{program.where(offset, number)}: {fault}") from None
            if target is not None:
                last = (offset, number)
                break
        if target is None:
            machine.ip += 16
            first_slot = 0
        else:
            machine.ip = target
            first_slot, machine.resume_slot = machine.resume_slot, 0
        if slots_run > max_slots:
            raise ExecutionFault(f"no branch out of the control page within {max_slots} "
                                 f"slots (last at {program.where(offset, 0)})")
