"""What each instruction does: one objdump slot compiled into a function of the machine.

`compile_slot(instruction)` reads the slot's text as `ia64-linux-gnu-objdump -d` prints it
("(p07) br.cond.dpnt.few 160 <x+0x160>", "ld8 r14=[r18],8", "alloc r31=ar.pfs,4,4,0") and
returns a `Slot` whose `effect(machine)` applies the instruction and returns the address of
the next bundle when a branch is taken (None to go on with the next slot). An instruction
the model does not implement compiles to an effect that raises ExecutionFault naming it, so
it stops the run only if it is reached, never as a silent no-op.

Only the forms relocate_kernel.S has used since 2005 are implemented: integer arithmetic,
logic, shifts and deposits, compares and bit tests, 1/2/4/8-byte loads and stores with
post-increment, moves between general, branch, application and control registers, `alloc`,
`rsm`/`ssm`, IP-relative and indirect branches (cond, call, ret, cloop, ctop, cexit), `rfi`,
and as recorded events the TLB purges, cache flushes, serialisation and `flushrs`.
"""

from __future__ import annotations

from collections.abc import Callable

from relgen.checks.execution.branches import branch, rfi
from relgen.checks.execution.machine import (
    MASK,
    ExecutionFault,
    Frame,
    Machine,
)
from relgen.checks.execution.operands import (
    APPLICATION,
    BR_REGISTER,
    CONTROL,
    EVENTS,
    GR,
    MEMORY,
    NUMBER,
    QUALIFIER,
    RSE_CONTROLLED,
    Effect,
    Reader,
    Slot,
    number,
    reader,
    signed,
    unimplemented,
    writer,
)
from relgen.toolchain.objdump import DecodedSlot

# ------------------------------------------------------------------------- integer ALU


ALU: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "adds": lambda a, b: a + b,
    "addl": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "andcm": lambda a, b: a & ~b,
}


def _arithmetic(mnemonic: str, destination: str, operands: str) -> Effect:
    parts = operands.split(",")
    operation, write = ALU[mnemonic], writer(destination)
    left, right = reader(parts[0]), reader(parts[1])
    if len(parts) == 3:  # add r1=r2,r3,1 adds one more; sub r1=r2,r3,1 subtracts one more
        if parts[2] != "1" or mnemonic not in ("add", "sub"):
            raise ValueError(operands)
        extra = 1 if mnemonic == "add" else -1
        return lambda m: write(m, operation(left(m), right(m)) + extra)
    return lambda m: write(m, operation(left(m), right(m)))


def _shift(mnemonic: str, destination: str, operands: str) -> Effect:
    value_text, count_text = operands.split(",")
    value, count = reader(value_text), reader(count_text)
    write = writer(destination)
    if mnemonic == "shl":
        return lambda m: write(m, 0 if count(m) > 63 else value(m) << count(m))
    if mnemonic == "shr.u":
        return lambda m: write(m, 0 if count(m) > 63 else value(m) >> count(m))
    return lambda m: write(m, signed(value(m)) >> min(count(m), 63))


def _deposit(mnemonic: str, destination: str, operands: str) -> Effect:
    """dep r1=r2|imm1,r3,pos,len (merge) and dep.z r1=r2|imm8,pos,len (zero)."""
    parts = operands.split(",")
    write = writer(destination)
    if mnemonic == "dep.z":
        source, position, length = reader(parts[0]), int(parts[1]), int(parts[2])
        field = ((1 << length) - 1) << position
        return lambda m: write(m, (source(m) << position) & field)
    source, target = reader(parts[0]), reader(parts[1])
    position, length = int(parts[2]), int(parts[3])
    field = (((1 << length) - 1) << position) & MASK
    return lambda m: write(m, (target(m) & ~field) | ((source(m) << position) & field))


def _extract(mnemonic: str, destination: str, operands: str) -> Effect:
    source_text, position_text, length_text = operands.split(",")
    source, position, length = reader(source_text), int(position_text), int(length_text)
    write = writer(destination)
    if mnemonic == "extr.u":
        return lambda m: write(m, (source(m) >> position) & ((1 << length) - 1))
    sign = 1 << (length - 1)
    return lambda m: write(m, ((((source(m) >> position) & ((1 << length) - 1)) ^ sign)
                               - sign))


# ------------------------------------------------------------------ compares and tests


RELATIONS: dict[str, Callable[[int, int], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: signed(a) < signed(b),
    "le": lambda a, b: signed(a) <= signed(b),
    "gt": lambda a, b: signed(a) > signed(b),
    "ge": lambda a, b: signed(a) >= signed(b),
    "ltu": lambda a, b: a < b,
    "leu": lambda a, b: a <= b,
    "gtu": lambda a, b: a > b,
    "geu": lambda a, b: a >= b,
}


def _predicates(destination: str) -> tuple[int, int]:
    first, second = destination.split(",")
    return int(first[1:]), int(second[1:])


def _compare(text: str, completers: list[str], destination: str, operands: str,
             predicate: int) -> Effect:
    """cmp/cmp4 of the normal and unc types; the parallel types are not implemented."""
    relation = completers[0] if completers else ""
    kind = completers[1] if len(completers) > 1 else ""
    if relation not in RELATIONS or kind not in ("", "unc"):
        return unimplemented(text)
    test = RELATIONS[relation]
    p1, p2 = _predicates(destination)
    left_text, right_text = operands.split(",")
    left, right = reader(left_text), reader(right_text)
    width = 32 if text.split()[0].split(".")[0].startswith("cmp4") else 64

    def operand(reader: Reader) -> Callable[[Machine], int]:
        if width == 64:
            return reader
        # cmp4 compares the low 32 bits, sign-extended for the signed relations
        return lambda m: (((reader(m) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) & MASK
    left, right = operand(left), operand(right)

    def effect(m: Machine) -> None:
        result = test(left(m), right(m))
        m.write_pr(p1, result)
        m.write_pr(p2, not result)
    if kind == "unc":
        return _unconditional(effect, p1, p2, predicate)
    return effect


def _unconditional(effect: Effect, p1: int, p2: int, predicate: int) -> Effect:
    """The .unc type: both targets are cleared first, even when the qualifier is false."""
    def unc(m: Machine) -> None:
        m.write_pr(p1, False)
        m.write_pr(p2, False)
        if m.read_pr(predicate):
            effect(m)
    return unc


def _bit_test(text: str, completers: list[str], destination: str, operands: str,
              predicate: int) -> Effect:
    sense = completers[0] if completers else ""
    kind = completers[1] if len(completers) > 1 else ""
    if sense not in ("z", "nz") or kind not in ("", "unc"):
        return unimplemented(text)
    p1, p2 = _predicates(destination)
    source_text, position_text = operands.split(",")
    source, position = reader(source_text), int(position_text)
    want = 0 if sense == "z" else 1

    def effect(m: Machine) -> None:
        result = ((source(m) >> position) & 1) == want
        m.write_pr(p1, result)
        m.write_pr(p2, not result)
    if kind == "unc":
        return _unconditional(effect, p1, p2, predicate)
    return effect


# ------------------------------------------------------------------------------ memory

SPECULATIVE = frozenset({"s", "a", "sa", "c", "fill", "spill", "bias"})


def _access_size(mnemonic: str) -> int:
    return int(mnemonic.split(".")[0][2:])


def _load(text: str, mnemonic: str, destination: str, operands: str) -> Effect:
    if set(mnemonic.split(".")[1:]) & SPECULATIVE:
        return unimplemented(text)
    size = _access_size(mnemonic)
    parts = operands.split(",")
    base_match = MEMORY.match(parts[0])
    if base_match is None:
        return unimplemented(text)
    base_register = f"r{base_match.group(1)}"
    base, write = reader(base_register), writer(destination)
    increment = reader(parts[1]) if len(parts) == 2 else None
    update = writer(base_register) if increment else None

    def effect(m: Machine) -> None:
        address = base(m)
        value = m.memory.load(m.data_address(address), size)
        if update is not None and increment is not None:
            update(m, address + increment(m))
        write(m, value)
    return effect


def _store(text: str, mnemonic: str, destination: str, operands: str) -> Effect:
    if set(mnemonic.split(".")[1:]) & SPECULATIVE:
        return unimplemented(text)
    size = _access_size(mnemonic)
    base_match = MEMORY.match(destination)
    parts = operands.split(",")
    if base_match is None:
        return unimplemented(text)
    base_register = f"r{base_match.group(1)}"
    base, value = reader(base_register), reader(parts[0])
    increment = reader(parts[1]) if len(parts) == 2 else None
    update = writer(base_register) if increment else None

    def effect(m: Machine) -> None:
        address = base(m)
        m.memory.store(m.data_address(address), size, value(m))
        if update is not None and increment is not None:
            update(m, address + increment(m))
    return effect


# ------------------------------------------------------------------------------- moves


def _register_class(operand: str) -> tuple[str, str]:
    """("gr", "r12"), ("ar", "lc"), ("cr", "iip"), ("br", "6"), ("ip", ""), ("imm", "5")."""
    if GR.match(operand):
        return "gr", operand
    if operand.startswith("ar."):
        return "ar", operand[3:]
    if operand.startswith("cr."):
        return "cr", operand[3:]
    if match := BR_REGISTER.match(operand):
        return "br", match.group(1)
    if operand == "ip":
        return "ip", ""
    if operand == "psr":
        return "psr", ""
    if NUMBER.match(operand):
        return "imm", operand
    return "other", operand


def _move(text: str, destination: str, source: str) -> Effect:
    target_kind, target = _register_class(destination)
    source_kind, origin = _register_class(source)
    if source_kind in ("gr", "imm"):
        read = reader(source)
    elif source_kind == "ar" and origin in APPLICATION:
        def read(m: Machine) -> int:
            return m.ar[origin]
    elif source_kind == "cr" and origin in CONTROL:
        def read(m: Machine) -> int:
            return m.cr[origin]
    elif source_kind == "br":
        number = int(origin)

        def read(m: Machine) -> int:
            return m.br[number]
    elif source_kind == "ip":
        def read(m: Machine) -> int:
            return m.ip
    elif source_kind == "psr":
        def read(m: Machine) -> int:
            return m.psr
    else:
        return unimplemented(text)
    if target_kind == "gr":
        write = writer(destination)
        return lambda m: write(m, read(m))
    if target_kind == "ar" and target in APPLICATION:
        def write_ar(m: Machine) -> None:
            if target in RSE_CONTROLLED and m.ar["rsc"] & 3:
                raise ExecutionFault(f"`{text}`: ar.{target} written while the RSE is not "
                                     "in enforced lazy mode (ar.rsc.mode != 0)")
            m.ar[target] = read(m) & MASK
            if target == "bspstore":
                m.ar["bsp"] = m.ar[target]  # nothing dirty after flushrs: BSP = BSPSTORE
        return write_ar
    if target_kind == "cr" and target in CONTROL:
        def write_cr(m: Machine) -> None:
            m.cr[target] = read(m) & MASK
        return write_cr
    if target_kind == "br":
        number = int(target)

        def write_br(m: Machine) -> None:
            m.br[number] = read(m) & MASK
        return write_br
    return unimplemented(text)


def _alloc(text: str, destination: str, operands: str) -> Effect:
    parts = operands.split(",")
    if parts[0] != "ar.pfs" or len(parts) != 4:
        return unimplemented(text)
    frame = Frame(int(parts[1]), int(parts[2]), int(parts[3]))
    write = writer(destination)

    def effect(m: Machine) -> None:
        pfs = m.ar["pfs"]
        m.frame = frame
        m.rrb_gr = 0
        write(m, pfs)
    return effect


def _system_mask(mnemonic: str, operand: str) -> Effect:
    bits = number(operand)
    if mnemonic == "rsm":
        def reset(m: Machine) -> None:
            m.psr &= ~bits
        return reset

    def setting(m: Machine) -> None:
        m.psr |= bits
    return setting


def _event(mnemonic: str, operands: str) -> Effect:
    readers = [reader(o) for o in operands.split(",") if o]
    name = "fc.i" if mnemonic == "fc" else mnemonic
    return lambda m: m.event(name, *(r(m) for r in readers))


# -------------------------------------------------------------------------------- compile


def compile_slot(instruction: DecodedSlot) -> Slot:
    """The effect of one slot of objdump's disassembly."""
    text = instruction.text
    predicate = 0
    if match := QUALIFIER.match(text):
        predicate = int(match.group(1))
        text = text[match.end():]
    try:
        effect = _compile(text, instruction, predicate)
    except (ValueError, IndexError):
        effect = unimplemented(instruction.text, "operands relgen's interpreter cannot read")
    except ExecutionFault as fault:
        effect = unimplemented(instruction.text, str(fault))
    unconditional = ".unc" in text.split(" ")[0]  # the effect reads its qualifier itself
    return Slot(instruction, 0 if unconditional else predicate, effect)


def _compile(text: str, instruction: DecodedSlot, predicate: int) -> Effect:
    mnemonic, _, operand_text = text.partition(" ")
    operand_text = operand_text.replace(" ", "")
    base, *completers = mnemonic.split(".")
    destination, has_destination, operands = operand_text.partition("=")
    if not has_destination:
        operands, destination = operand_text, ""
    if base in ("nop", "hint"):  # architecturally without effect
        return lambda m: None
    if mnemonic in EVENTS or (base == "fc" and completers in ([], ["i"])):
        return _event(mnemonic, operand_text)
    if mnemonic in ALU:
        return _arithmetic(mnemonic, destination, operands)
    if mnemonic in ("shl", "shr", "shr.u"):
        return _shift(mnemonic, destination, operands)
    if mnemonic in ("dep", "dep.z"):
        return _deposit(mnemonic, destination, operands)
    if mnemonic in ("extr", "extr.u"):
        return _extract(mnemonic, destination, operands)
    if base in ("cmp", "cmp4"):
        return _compare(text, completers, destination, operands, predicate)
    if base == "tbit":
        return _bit_test(text, completers, destination, operands, predicate)
    if base in ("ld1", "ld2", "ld4", "ld8"):
        return _load(text, mnemonic, destination, operands)
    if base in ("st1", "st2", "st4", "st8"):
        return _store(text, mnemonic, destination, operands)
    if base == "mov" and completers in ([], ["m"], ["i"]):
        return _move(text, destination, operands)
    if mnemonic == "movl":
        write, value = writer(destination), number(operands) & MASK
        return lambda m: write(m, value)
    if mnemonic == "alloc":
        return _alloc(text, destination, operands)
    if mnemonic in ("rsm", "ssm"):
        return _system_mask(mnemonic, operand_text)
    if base == "br":
        return branch(text, instruction, completers, operand_text)
    if mnemonic == "rfi":
        return rfi
    return unimplemented(text)
