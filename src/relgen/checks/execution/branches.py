"""The branches: IP-relative and indirect (cond, call, ret), the counted and modulo-scheduled
loops (`br.cloop`, `br.ctop`, `br.cexit`, with LC and EC as the architecture defines them),
and `rfi`."""

from __future__ import annotations

from collections.abc import Callable

from relgen.checks.execution.machine import IFS_VALID, MASK, PSR_RI_SHIFT, Frame, Machine
from relgen.checks.execution.operands import BR_REGISTER, TARGET, Effect, unimplemented
from relgen.toolchain.objdump import DecodedSlot


def branch(text: str, instruction: DecodedSlot, completers: list[str], operands: str
            ) -> Effect:
    kind = completers[0] if completers and completers[0] in (
        "cond", "call", "ret", "cloop", "ctop", "cexit", "few", "many", "sptk", "dptk",
        "spnt", "dpnt") else ""
    if kind in ("few", "many", "sptk", "dptk", "spnt", "dpnt"):
        kind = "cond"  # "br.few 100 <x>" is br.cond without its qualifier
    if not kind:  # br.wtop, br.wexit, br.ia
        return unimplemented(text)
    link = None
    if kind == "call":
        link_text, operands = operands.split("=")
        link_match = BR_REGISTER.match(link_text)
        if link_match is None:
            return unimplemented(text)
        link = int(link_match.group(1))
    if match := TARGET.match(operands):
        displacement = int(match.group(1), 16) - instruction.bundle

        def target(m: Machine) -> int:
            return (m.ip + displacement) & MASK
    elif match := BR_REGISTER.match(operands):
        number = int(match.group(1))
        if kind in ("cloop", "ctop", "cexit"):
            return unimplemented(text)

        def target(m: Machine) -> int:
            return m.br[number] & ~0xF
    else:
        return unimplemented(text)
    if kind == "cond":
        return target
    if kind == "ret":
        def ret(m: Machine) -> int:
            m.frame = Frame.decoded(m.ar["pfs"])
            m.ar["ec"] = (m.ar["pfs"] >> 52) & 0x3F
            return target(m)
        return ret
    if kind == "call":
        assert link is not None

        def call(m: Machine) -> int:
            destination = target(m)
            m.br[link] = m.ip + 16
            m.ar["pfs"] = (m.ar["pfs"] & ~((1 << 38) - 1)) | m.frame.encoded() \
                | (m.ar["ec"] & 0x3F) << 52
            m.frame = Frame(m.frame.sof - m.frame.sol, 0)
            return destination
        return call
    if instruction.slot != 2:
        return unimplemented(text, "a counted branch outside slot 2 is an illegal "
                              "operation fault")
    if kind == "cloop":
        def cloop(m: Machine) -> int | None:
            if m.ar["lc"]:
                m.ar["lc"] -= 1
                return target(m)
            return None
        return cloop
    return modulo_loop(kind, target)


def modulo_loop(kind: str, target: Callable[[Machine], int]) -> Effect:
    """br.ctop and br.cexit as the Itanium SDM vol. 3 ("br") defines them:

    LC != 0: LC -= 1, PR[63] = 1, rotate, ctop taken;
    else EC > 1: EC -= 1, PR[63] = 0, rotate, ctop taken;
    else EC == 1: EC -= 1, PR[63] = 0, rotate, falls through (cexit taken);
    else (EC == 0): PR[63] = 0, no rotation, falls through (cexit taken).
    br.cexit is taken exactly where br.ctop falls through.
    """
    loop_taken = kind == "ctop"

    def effect(m: Machine) -> int | None:
        if m.ar["lc"]:
            m.ar["lc"] -= 1
            m.write_pr(63, True)
            m.rotate()
            continues = True
        elif m.ar["ec"] > 1:
            m.ar["ec"] -= 1
            m.write_pr(63, False)
            m.rotate()
            continues = True
        elif m.ar["ec"] == 1:
            m.ar["ec"] = 0
            m.write_pr(63, False)
            m.rotate()
            continues = False
        else:
            m.write_pr(63, False)
            continues = False
        return target(m) if continues == loop_taken else None
    return effect


def rfi(m: Machine) -> int:
    """Return from interruption: PSR from cr.ipsr, on at cr.iip and the slot ipsr.ri names;
    the frame from cr.ifs when its valid bit is set."""
    m.psr = m.cr["ipsr"]
    m.resume_slot = (m.cr["ipsr"] >> PSR_RI_SHIFT) & 3
    if m.cr["ifs"] & IFS_VALID:
        m.frame = Frame.decoded(m.cr["ifs"])
    m.event("rfi", m.cr["iip"])
    return m.cr["iip"]


