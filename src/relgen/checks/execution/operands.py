"""What the instruction semantics share: how an objdump operand is read and written, the
effect of one slot, and the effect of an instruction the model does not implement."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from relgen.checks.execution.machine import MASK, ExecutionFault, Machine
from relgen.toolchain.objdump import DecodedSlot

Effect = Callable[[Machine], "int | None"]
Reader = Callable[[Machine], int]

QUALIFIER = re.compile(r"^\(p(\d+)\)\s*")
GR = re.compile(r"^r(\d+)$")
NUMBER = re.compile(r"^-?(0x[0-9a-f]+|\d+)$")
MEMORY = re.compile(r"^\[r(\d+)\]$")
TARGET = re.compile(r"^([0-9a-f]+)\s*<[^>]+>$")
BR_REGISTER = re.compile(r"^b(\d)$")

# the application and control registers the model names (objdump spells them ar.lc, cr.iip)
APPLICATION = frozenset({"lc", "ec", "rsc", "bspstore", "rnat", "pfs", "bsp",
                         *(f"k{n}" for n in range(8))})
CONTROL = frozenset({"ipsr", "iip", "ifs"})
RSE_CONTROLLED = frozenset({"bspstore", "rnat"})  # writable only in enforced lazy mode

EVENTS = frozenset({"flushrs", "srlz.i", "srlz.d", "sync.i", "fc", "fc.i", "ptc.e", "ptr.i",
                    "ptr.d", "ptc.l", "ptc.g", "ptc.ga", "mf", "mf.a", "invala", "loadrs"})


@dataclass(frozen=True)
class Slot:
    """One compiled instruction: its qualifying predicate and its effect."""

    instruction: DecodedSlot
    predicate: int
    effect: Effect


def unimplemented(text: str, why: str = "not implemented by relgen's interpreter") -> Effect:
    def effect(machine: Machine) -> int | None:
        raise ExecutionFault(f"{why} (`{text}`)")
    return effect


def number(text: str) -> int:
    return int(text, 0)


def reader(operand: str) -> Reader:
    """A general register or an immediate as a function of the machine."""
    if match := GR.match(operand):
        register = int(match.group(1))
        if register == 0:
            return lambda m: 0
        if register < 32:
            return lambda m: m.gr[register]
        return lambda m: m.read_stacked(register)
    if NUMBER.match(operand):
        value = number(operand) & MASK
        return lambda m: value
    raise ValueError(operand)


def writer(operand: str) -> Callable[[Machine, int], None]:
    match = GR.match(operand)
    if match is None:
        raise ValueError(operand)
    register = int(match.group(1))
    if register == 0:
        raise ExecutionFault("r0 cannot be written")
    if register < 32:
        def write_static(m: Machine, value: int) -> None:
            m.gr[register] = value & MASK
        return write_static
    return lambda m, value: m.write_stacked(register, value)


def signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


