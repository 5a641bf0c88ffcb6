"""relgen's interpreter, one instruction at a time: tiny snippets through the real assembler
and decoder, run from a load address, and their effect on the machine."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from conftest import require_tool
from relgen.checks.execution.machine import (
    PSR_DT,
    PSR_I,
    PSR_IC,
    PSR_IT,
    ExecutionFault,
    Frame,
    Machine,
    Memory,
)
from relgen.checks.execution.run import Exit, Program, load_program, run
from relgen.toolchain.layout import ControlPageMap

LOAD = 0x10_0000  # where a snippet is copied
OUTSIDE = 0x90_0000  # b7: the snippets end with `br.few b7`, which leaves the copy
DATA = 0x20_0000  # a defined page of memory for loads and stores
SNIPPET = """\
	.text
	.global snippet
	.proc snippet
snippet:
{body}
	;;
	br.few b7
	;;
	.endp snippet
snippet_end:
"""


def assemble_snippet(body: str, work: Path) -> Program:
    require_tool("ia64-linux-gnu-as")
    require_tool("ia64-linux-gnu-objdump")
    source, obj = work / "snippet.s", work / "snippet.o"
    source.write_text(SNIPPET.format(body=body))
    assembled = subprocess.run(["ia64-linux-gnu-as", "-x", "-o", str(obj), str(source)],
                               capture_output=True, text=True, check=False)
    assert assembled.returncode == 0, assembled.stderr
    size = len(obj.read_bytes())  # an upper bound; the map needs only the region's end
    nm = subprocess.run(["ia64-linux-gnu-nm", str(obj)], capture_output=True, text=True,
                        check=True).stdout
    end = next(int(line.split()[0], 16) for line in nm.splitlines()
               if line.endswith(" snippet_end"))
    assert end < size
    return load_program(obj, ControlPageMap("snippet", 0, end, ()))


def set_state(machine: Machine, state: Mapping[str, object]) -> None:
    for name, value in state.items():
        if name.startswith("ar."):
            machine.ar[name[3:]] = int(value)  # type: ignore[call-overload]
        elif name.startswith("cr."):
            machine.cr[name[3:]] = int(value)  # type: ignore[call-overload]
        elif name == "psr":
            machine.psr = int(value)  # type: ignore[call-overload]
        elif name.startswith("p"):
            machine.write_pr(int(name[1:]), bool(value))
        elif name.startswith("b"):
            machine.br[int(name[1:])] = int(value)  # type: ignore[call-overload]
        elif int(name[1:]) < 32:
            machine.gr[int(name[1:])] = int(value)  # type: ignore[call-overload]
        else:
            machine.write_stacked(int(name[1:]), int(value))  # type: ignore[call-overload]


def read_state(machine: Machine, name: str) -> object:
    if name.startswith("ar."):
        return machine.ar[name[3:]]
    if name.startswith("cr."):
        return machine.cr[name[3:]]
    if name == "psr":
        return machine.psr
    if name.startswith("p"):
        return machine.read_pr(int(name[1:]))
    if name.startswith("b"):
        return machine.br[int(name[1:])]
    return machine.read_gr(int(name[1:]))


def execute(body: str, work: Path, state: Mapping[str, object] | None = None,
            data: bytes = b"") -> tuple[Machine, Exit]:
    program = assemble_snippet(body, work)
    memory = Memory()
    memory.define(LOAD, program.image)
    memory.define(DATA, data + bytes(4096 - len(data)))
    machine = Machine(memory)
    machine.frame = Frame(8, 8)
    machine.stacked[:8] = [0] * 8
    machine.ip = LOAD
    machine.br[7] = OUTSIDE
    set_state(machine, state or {})
    exit_ = run(program, machine, LOAD, max_slots=10_000)
    assert exit_.target == OUTSIDE
    return machine, exit_


M = (1 << 64) - 1

CASES = [
    # (instructions, state before, expected after)
    ("add r3=r1,r2", {"r1": 5, "r2": 7}, {"r3": 12}),
    ("add r3=r1,r2,1", {"r1": 5, "r2": 7}, {"r3": 13}),
    ("adds r3=-1,r1", {"r1": 0}, {"r3": M}),
    ("addl r3=0x12345,r1", {"r1": 1}, {"r3": 0x12346}),
    ("sub r3=r1,r2", {"r1": 5, "r2": 7}, {"r3": M - 1}),
    ("and r17=r30,r16", {"r30": 0x1234_5679, "r16": ~0x3FFF & M}, {"r17": 0x1234_4000}),
    ("and r3=15,r1", {"r1": 0xFF}, {"r3": 0xF}),
    ("or r3=r1,r2", {"r1": 0xF0, "r2": 0x0F}, {"r3": 0xFF}),
    ("xor r3=r1,r2", {"r1": 0xFF, "r2": 0x0F}, {"r3": 0xF0}),
    ("andcm r3=r1,r2", {"r1": 0xFF, "r2": 0x0F}, {"r3": 0xF0}),
    ("shl r16=r16,24", {"r16": 3}, {"r16": 3 << 24}),
    ("shl r3=r1,r2", {"r1": 1, "r2": 63}, {"r3": 1 << 63}),
    ("shr.u r3=r1,4", {"r1": 0xF0}, {"r3": 0xF}),
    ("shr r3=r1,4", {"r1": 1 << 63}, {"r3": 0xF8 << 56}),
    ("dep r2=0,r2,61,3", {"r2": 0xE000_0000_0010_0000}, {"r2": 0x10_0000}),
    ("dep r3=r1,r2,8,8", {"r1": 0x1AB, "r2": 0xFFFF}, {"r3": 0xABFF}),
    ("dep.z r3=r1,4,8", {"r1": 0x1AB}, {"r3": 0xAB0}),
    ("extr.u r3=r1,4,8", {"r1": 0xABC}, {"r3": 0xAB}),
    ("movl r16=0x100000002008", {}, {"r16": 0x1000_0000_2008}),
    ("mov r3=r1", {"r1": 42}, {"r3": 42}),
    ("mov r3=-5", {}, {"r3": M - 4}),
    ("mov r24=r0", {"r24": 9}, {"r24": 0}),
    ("mov b6=r33", {"r33": 0x4000}, {"b6": 0x4000}),
    ("mov r3=b6", {"b6": 0x4000}, {"r3": 0x4000}),
    ("mov.i ar.lc=r20", {"r20": 7}, {"ar.lc": 7}),
    ("mov ar.lc=r14", {"r14": 0x7FF}, {"ar.lc": 0x7FF}),
    ("mov.m ar.rsc=0", {"ar.rsc": 3}, {"ar.rsc": 0}),
    ("mov.m r18=ar.rnat", {"ar.rnat": 0x55}, {"r18": 0x55}),
    ("mov.m ar.bspstore=r8", {"r8": 0x8000}, {"ar.bspstore": 0x8000}),
    ("mov.m ar.rnat=r18", {"r18": 0x66}, {"ar.rnat": 0x66}),
    ("mov.m r2=ar.k3", {"ar.k3": 0x40_0000}, {"r2": 0x40_0000}),
    ("mov.m r16=ar.k4", {"ar.k4": 5}, {"r16": 5}),
    ("mov cr.ipsr=r16", {"r16": 0x2008}, {"cr.ipsr": 0x2008}),
    ("mov cr.iip=r3", {"r3": 0x1230}, {"cr.iip": 0x1230}),
    ("mov cr.ifs=r0", {"cr.ifs": 1 << 63}, {"cr.ifs": 0}),
    ("cmp.ltu p6,p7=r24,r19", {"r24": 1, "r19": 2}, {"p6": True, "p7": False}),
    ("cmp.ltu p6,p7=r24,r19", {"r24": 2, "r19": 2}, {"p6": False, "p7": True}),
    ("cmp.ltu p6,p7=r24,r19", {"r24": M, "r19": 2}, {"p6": False, "p7": True}),
    ("cmp.lt p6,p7=r24,r19", {"r24": M, "r19": 2}, {"p6": True, "p7": False}),
    ("cmp.eq p6,p7=r14,r0", {"r14": 0}, {"p6": True, "p7": False}),
    ("cmp.eq p6,p7=3,r14", {"r14": 4}, {"p6": False, "p7": True}),
    ("(p8) cmp.eq p6,p7=r14,r0", {"p8": False, "p6": False, "p7": False},
     {"p6": False, "p7": False}),
    ("(p8) cmp.eq.unc p6,p7=r14,r0", {"p8": False, "p6": True, "p7": True},
     {"p6": False, "p7": False}),
    ("tbit.z p0,p6=r30,0", {"r30": 1}, {"p6": True}),
    ("tbit.z p0,p6=r30,3", {"r30": 1, "p6": True}, {"p6": False}),
    ("tbit.z p6,p0=r30,3", {"r30": 8, "p6": True}, {"p6": False}),
    ("tbit.nz p6,p7=r30,2", {"r30": 4, "p7": True}, {"p6": True, "p7": False}),
    ("(p6) add r3=r1,r2", {"p6": False, "r1": 1, "r2": 2, "r3": 9}, {"r3": 9}),
    ("(p6) add r3=r1,r2", {"p6": True, "r1": 1, "r2": 2, "r3": 9}, {"r3": 3}),
    ("ld8 r3=[r1]", {"r1": DATA + 8}, {"r3": 0x0F0E0D0C0B0A0908}),
    ("ld8 r14=[r18],8", {"r18": DATA}, {"r14": 0x0706050403020100, "r18": DATA + 8}),
    ("ld4 r19=[r2],4", {"r2": DATA + 4}, {"r19": 0x07060504, "r2": DATA + 8}),
    ("ld4 r20=[r2]", {"r2": DATA + 12}, {"r20": 0x0F0E0D0C}),
    ("ld8 r30=[r32],8", {"r32": DATA}, {"r30": 0x0706050403020100, "r32": DATA + 8}),
    ("st8 [r17]=r14,8", {"r17": DATA + 16, "r14": 0xAA}, {"r17": DATA + 24}),
    ("alloc r31=ar.pfs,6,0,0,0", {"ar.pfs": 0x1234}, {"r31": 0x1234}),
    ("rsm 0x6000", {"psr": PSR_I | PSR_IC | 8}, {"psr": 8}),
    ("ssm 0x6000", {"psr": 8}, {"psr": PSR_I | PSR_IC | 8}),
]


@pytest.mark.parametrize(("body", "before", "after"), CASES,
                         ids=[f"{i}:{c[0]}" for i, c in enumerate(CASES)])
def test_instruction_effect(body: str, before: dict[str, object], after: dict[str, object],
                            tmp_path: Path) -> None:
    machine, _ = execute("\t" + body, tmp_path, before, bytes(range(64)))
    for name, value in after.items():
        assert read_state(machine, name) == value, name


def test_stores_write_memory(tmp_path: Path) -> None:
    machine, _ = execute("\tst8 [r17]=r14,8\n\t;;\n\tst8 [r17]=r15", tmp_path,
                         {"r17": DATA, "r14": 0x1122, "r15": 0x3344})
    assert machine.memory.read(DATA, 16) == (0x1122).to_bytes(8, "little") + \
        (0x3344).to_bytes(8, "little")
    assert machine.memory.stores == [DATA, DATA + 8]


def test_mov_ip_reads_the_bundle_address_where_the_code_was_copied(tmp_path: Path) -> None:
    machine, _ = execute("\tnop.m 0\n\t;;\n{ .mii\n\tnop.m 0\n\tmov r2=ip\n\tnop.i 0\n}",
                         tmp_path)
    assert machine.gr[2] == LOAD + 0x10


def test_events_are_recorded_in_order(tmp_path: Path) -> None:
    body = ("\tflushrs\n\t;;\n\tsrlz.i\n\t;;\n\tptc.e r18\n\t;;\n\tptr.i r16,r18\n\t;;\n"
            "\tptr.d r16,r18\n\t;;\n\tfc.i r17\n\t;;\n\tsync.i\n\t;;\n\tsrlz.d")
    machine, _ = execute(body, tmp_path, {"r16": 0xA000, "r17": 0xB000, "r18": 0x68})
    assert machine.events == [("flushrs",), ("srlz.i",), ("ptc.e", 0x68),
                              ("ptr.i", 0xA000, 0x68), ("ptr.d", 0xA000, 0x68),
                              ("fc.i", 0xB000), ("sync.i",), ("srlz.d",)]


def test_branches(tmp_path: Path) -> None:
    body = ("\tcmp.eq p6,p7=r1,r0\n\t;;\n(p6)\tbr.cond.sptk.few 1f\n\t;;\n\tadds r3=1,r3\n"
            "\t;;\n1:\n\tadds r3=2,r3")
    taken, _ = execute(body, tmp_path, {"r1": 0, "r3": 0})
    not_taken, _ = execute(body, tmp_path, {"r1": 1, "r3": 0})
    assert (taken.gr[3], not_taken.gr[3]) == (2, 3)


@pytest.mark.parametrize("lc", [0, 1, 2])
def test_br_cloop(lc: int, tmp_path: Path) -> None:
    body = "\tmov r3=r0\n\t;;\n1:\n{ .mib\n\tadds r3=1,r3\n\tnop.i 0\n\tbr.cloop.sptk.few 1b\n}"
    machine, _ = execute(body, tmp_path, {"ar.lc": lc})
    assert (machine.gr[3], machine.ar["lc"]) == (lc + 1, 0)


CTOP = "\tmov r3=r0\n\t;;\n1:\n{ .mib\n\tadds r3=1,r3\n\tnop.i 0\n\tbr.ctop.sptk.few 1b\n}"


@pytest.mark.parametrize("lc", [0, 1, 2])
@pytest.mark.parametrize("ec", [0, 1, 2])
def test_br_ctop(lc: int, ec: int, tmp_path: Path) -> None:
    """LC != 0: LC-1, taken; EC > 1: EC-1, taken; EC == 1: EC-1, falls through;
    EC == 0: falls through without rotating. Every step but the last writes and rotates."""
    machine, _ = execute(CTOP, tmp_path, {"ar.lc": lc, "ar.ec": ec})
    assert machine.gr[3] == 1 + lc + max(ec - 1, 0)  # iterations of the body
    assert (machine.ar["lc"], machine.ar["ec"]) == (0, 0)
    assert machine.rrb_pr == -(lc + ec) % 48  # one rotation per LC or EC step
    # the last PR[63] written was 0 (an epilogue step) or 1 (LC steps only, EC == 0)
    if lc and not ec:
        assert machine.read_pr(63) is False and machine.read_pr(16) is True
    elif ec:
        assert machine.read_pr(16) is False


def test_br_cexit_is_taken_where_ctop_falls_through(tmp_path: Path) -> None:
    body = ("\tmov r3=r0\n\t;;\n1:\n{ .mib\n\tadds r3=1,r3\n\tnop.i 0\n"
            "\tbr.cexit.sptk.few 2f\n}\n\t;;\n\tbr.few 1b\n\t;;\n2:\n\tadds r4=1,r0")
    machine, _ = execute(body, tmp_path, {"ar.lc": 2, "ar.ec": 1, "r4": 0})
    # two LC steps fall through to the br.few back; the EC step leaves through the cexit
    assert (machine.gr[3], machine.gr[4]) == (3, 1)


def test_rfi_continues_at_iip_with_ipsr(tmp_path: Path) -> None:
    body = ("\tmovl r16=0x20000000000\n\t;;\n1:\n{ .mii\n\tnop.m 0\n\tmov r3=ip\n\tnop.i 0\n}\n"
            "\t;;\n\tadds r3=2f-1b,r3\n\t;;\n\tmov cr.iip=r3\n\tmov cr.ipsr=r16\n\t;;\n"
            "\trfi\n\t;;\n2:\n{ .mii\n\tadds r4=1,r0\n\tadds r5=1,r0\n\tnop.i 0\n}\n\t;;")
    machine, _ = execute(body, tmp_path, {"psr": PSR_IC, "r4": 0, "r5": 0})
    assert machine.psr == 0x200_0000_0000 and ("rfi", machine.cr["iip"]) in machine.events
    # ipsr.ri = 1: the first slot of the target bundle is skipped
    assert (machine.gr[4], machine.gr[5]) == (0, 1)


@pytest.mark.parametrize(("body", "before", "message"), [
    ("\tld8 r3=[r1]", {"r1": DATA + 4}, "unaligned 8-byte load from 0x200004"),
    ("\tst8 [r1]=r2", {"r1": DATA + 2}, "unaligned 8-byte store to 0x200002"),
    ("\tld8 r3=[r1]", {"r1": 0x70_0000}, "load from 0x700000, memory the image does not"),
    ("\tld8 r3=[r1]", {"r1": 0xE000_0000_0020_0000}, "virtual address 0xe000000000200000 "
     "in physical mode"),
    ("\tmov r3=r40", {}, "r40 is outside the current frame (sof=8)"),
    ("\talloc r31=ar.pfs,10,0,0,0\n\t;;\n\tmov r3=r41", {}, "r41 is read before anything"),
    ("\tmov.m ar.bspstore=r8", {"ar.rsc": 3}, "not in enforced lazy mode"),
    ("\tpopcnt r3=r1", {}, "snippet+0x0 slot 1 `popcnt r3=r1`: not implemented by relgen's "
     "interpreter"),
    ("\tmov r3=ar.unat", {}, "not implemented by relgen's interpreter (`mov.m r3=ar.unat`)"),
    ("1:\n{ .mib\n\tnop.m 0\n\tnop.i 0\n\tbr.wtop.sptk.few 1b\n}", {},
     "not implemented by relgen's interpreter (`br.wtop.sptk.few"),
])
def test_faults_name_the_instruction_and_its_place(body: str, before: dict[str, object],
                                                   message: str, tmp_path: Path) -> None:
    with pytest.raises(ExecutionFault, match=None) as fault:
        execute(body, tmp_path, before)
    assert message in str(fault.value)


def test_fetch_from_region_7_needs_translation(tmp_path: Path) -> None:
    program = assemble_snippet("\tnop.m 0", tmp_path)
    memory = Memory()
    memory.define(LOAD, program.image)
    machine = Machine(memory)
    machine.ip = 0xE000_0000_0000_0000 + LOAD
    with pytest.raises(ExecutionFault, match="instruction fetch from virtual address"):
        run(program, machine, LOAD, max_slots=100)
    machine.psr = PSR_IT | PSR_DT
    machine.br[7] = 0xE000_0000_0000_0000 + OUTSIDE
    assert run(program, machine, LOAD, max_slots=100).target == machine.br[7]


def test_a_loop_that_never_leaves_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(ExecutionFault, match="no branch out of the control page within 50"):
        program = assemble_snippet("1:\n\tbr.few 1b", tmp_path)
        memory = Memory()
        memory.define(LOAD, program.image)
        machine = Machine(memory)
        machine.ip = LOAD
        run(program, machine, LOAD, max_slots=50)


def test_br_call_links_b0_and_starts_a_frame_of_the_outputs(tmp_path: Path) -> None:
    body = ("{ .mib\n\tnop.m 0\n\tnop.i 0\n\tbr.call.sptk.many b0=1f\n}\n\t;;\n"
            "\tadds r4=1,r0\n\t;;\n1:\n\tmov r3=b0")
    machine, _ = execute(body, tmp_path, {"r4": 0, "ar.ec": 3})
    assert (machine.gr[3], machine.gr[4]) == (LOAD + 16, 0)
    assert machine.frame == Frame(0, 0)  # sof 8 - sol 8 outputs
    assert machine.ar["pfs"] & 0x3FFF == Frame(8, 8).encoded()
    assert machine.ar["pfs"] >> 52 & 0x3F == 3  # pfs.pec keeps ar.ec
