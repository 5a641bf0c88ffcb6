"""The state an ia64 control page can touch, and the faults that stop a run.

The machine is mutable on purpose: it is what the instructions change as they run. Only
what relocate_kernel.S and its older shapes use is modelled: general registers with the
register frame `alloc` sets (stacked registers outside the frame fault), predicates with
rotation, branch registers, named application and control registers, the PSR as a plain
number, and sparse physical memory in aligned 8-byte words that faults on unaligned and
undefined accesses. Events (TLB purges, cache flushes, serialisation) are recorded in order,
not modelled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MASK = (1 << 64) - 1
REGION_SHIFT = 61
PHYSICAL_MASK = (1 << REGION_SHIFT) - 1
KERNEL_REGION = 7  # region 7: the kernel's identity map, physical address = low 61 bits

# PSR bits the control page reads or writes (Itanium SDM vol. 2, "Processor Status Register")
PSR_AC = 1 << 3
PSR_IC = 1 << 13
PSR_I = 1 << 14
PSR_DT = 1 << 17
PSR_RT = 1 << 27
PSR_IT = 1 << 36
PSR_RI_SHIFT = 41
PSR_BN = 1 << 44

IFS_VALID = 1 << 63
ROTATING_PREDICATES = 48  # p16..p63


class ExecutionFault(Exception):
    """What stops a run: an unimplemented instruction or an access the model forbids."""


@dataclass(frozen=True)
class Frame:
    """The current frame marker: size of frame, size of locals, size of the rotating part."""

    sof: int
    sol: int
    sor: int = 0

    def encoded(self) -> int:
        """CFM as ar.pfs.pfm and cr.ifs.ifm hold it (sof 0-6, sol 7-13, sor/8 14-17)."""
        return self.sof | self.sol << 7 | (self.sor // 8) << 14

    @staticmethod
    def decoded(value: int) -> Frame:
        return Frame(value & 0x7F, (value >> 7) & 0x7F, ((value >> 14) & 0xF) * 8)


class Memory:
    """Sparse physical memory in aligned 8-byte words; reading an undefined word faults."""

    __slots__ = ("words", "stores")

    def __init__(self) -> None:
        self.words: dict[int, int] = {}  # word index (address >> 3) -> little-endian value
        self.stores: list[int] = []  # byte address of every store, in order

    def define(self, address: int, data: bytes) -> None:
        """Place `data` (a multiple of 8 bytes) at an 8-byte aligned physical address."""
        if address % 8 or len(data) % 8:
            raise ValueError("memory is defined in aligned 8-byte words")
        base, count = address >> 3, len(data) // 8
        # all the words at once: a run defines tens of thousands of them
        self.words.update(zip(range(base, base + count), struct.unpack(f"<{count}Q", data),
                              strict=True))

    def read(self, address: int, size: int) -> bytes:
        """`size` bytes (a multiple of 8, aligned) as they are now; undefined words fault."""
        return b"".join(self.load(a, 8).to_bytes(8, "little")
                        for a in range(address, address + size, 8))

    def load(self, address: int, size: int) -> int:
        if address % size:
            raise ExecutionFault(f"unaligned {size}-byte load from {address:#x}")
        word = self.words.get(address >> 3)
        if word is None:
            raise ExecutionFault(f"load from {address:#x}, memory the image does not define")
        shift = (address & 7) * 8
        return (word >> shift) & ((1 << (size * 8)) - 1)

    def store(self, address: int, size: int, value: int) -> None:
        if address % size:
            raise ExecutionFault(f"unaligned {size}-byte store to {address:#x}")
        index = address >> 3
        self.stores.append(address)
        if size == 8:
            self.words[index] = value & MASK
            return
        word = self.words.get(index)
        if word is None:
            raise ExecutionFault(f"store to {address:#x}, memory the image does not define")
        shift = (address & 7) * 8
        field = ((1 << (size * 8)) - 1) << shift
        self.words[index] = (word & ~field) | ((value << shift) & field)


class Machine:
    """Registers, frame, PSR, memory and the event log of one run."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.gr = [0] * 32  # static r0..r31
        self.stacked: list[int | None] = [None] * 96  # r32..r127 of the current frame
        self.frame = Frame(0, 0)
        self.rrb_gr = 0
        self.rrb_pr = 0
        self.pr = [False] * 64  # physical predicates; p0 is always true
        self.pr[0] = True
        self.br = [0] * 8
        self.ar: dict[str, int] = {"lc": 0, "ec": 0, "rsc": 0, "bspstore": 0, "rnat": 0,
                                   "pfs": 0, "bsp": 0, **{f"k{n}": 0 for n in range(8)}}
        self.cr: dict[str, int] = {"ipsr": 0, "iip": 0, "ifs": 0}
        self.psr = 0
        self.ip = 0  # the address of the executing bundle, as the code sees it
        self.resume_slot = 0  # where a taken branch goes on in its target bundle (rfi: ri)
        self.events: list[tuple[object, ...]] = []

    # --------------------------------------------------------------- general registers

    def _stacked_index(self, register: int) -> int:
        offset = register - 32
        if offset >= self.frame.sof:
            raise ExecutionFault(f"r{register} is outside the current frame "
                                 f"(sof={self.frame.sof})")
        if offset < self.frame.sor:
            offset = (offset + self.rrb_gr) % self.frame.sor
        return offset

    def read_stacked(self, register: int) -> int:
        value = self.stacked[self._stacked_index(register)]
        if value is None:
            raise ExecutionFault(f"r{register} is read before anything was written to it")
        return value

    def write_stacked(self, register: int, value: int) -> None:
        self.stacked[self._stacked_index(register)] = value & MASK

    def read_gr(self, register: int) -> int:
        return self.gr[register] if register < 32 else self.read_stacked(register)

    # ---------------------------------------------------------------------- predicates

    def _predicate_index(self, number: int) -> int:
        if number < 16:
            return number
        return 16 + (number - 16 + self.rrb_pr) % ROTATING_PREDICATES

    def read_pr(self, number: int) -> bool:
        return self.pr[self._predicate_index(number)]

    def write_pr(self, number: int, value: bool) -> None:
        if number:
            self.pr[self._predicate_index(number)] = value

    def rotate(self) -> None:
        """What br.ctop/br.cexit do to the rotating registers: every rrb counts down by one."""
        self.rrb_pr = (self.rrb_pr - 1) % ROTATING_PREDICATES
        if self.frame.sor:
            self.rrb_gr = (self.rrb_gr - 1) % self.frame.sor

    # ------------------------------------------------------------------------ addresses

    def data_address(self, address: int) -> int:
        """The physical address a load or store reaches (region 7 is identity-mapped)."""
        region = address >> REGION_SHIFT
        if self.psr & PSR_DT:
            if region != KERNEL_REGION:
                raise ExecutionFault(f"data access to {address:#x} with translation on, "
                                     "outside the kernel's identity-mapped region 7")
            return address & PHYSICAL_MASK
        if region:
            raise ExecutionFault(f"data access to virtual address {address:#x} in "
                                 "physical mode (psr.dt=0)")
        return address

    def fetch_address(self, address: int) -> int:
        """The physical address of an instruction fetch (same rule with psr.it)."""
        region = address >> REGION_SHIFT
        if self.psr & PSR_IT:
            if region != KERNEL_REGION:
                raise ExecutionFault(f"instruction fetch from {address:#x} outside region 7")
            return address & PHYSICAL_MASK
        if region:
            raise ExecutionFault(f"instruction fetch from virtual address {address:#x} in "
                                 "physical mode (psr.it=0)")
        return address

    def event(self, *what: object) -> None:
        self.events.append(what)
