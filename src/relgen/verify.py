"""Twin objects, original and regenerated: load, correlate, compare, report.

`verify()` reads like kpatch's create-diff-object: the same named passes run on both
files, and every check of the design's "Verification" section comes out as a `Check` with
PASS/FAIL and the evidence a reviewer needs (the rewritten instructions side by side, the
control-page map, the header's numbers next to the object's). The twins are made in every
configuration that the control page's conditionals name, and each is checked on its own.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import callers, kbuild, layout, tools
from .configurations import AS_GIVEN, Configuration, Configurations
from .elf import ObjectFile, load_object
from .errors import RelgenError
from .execute.checks import FULL, ExecutionPlan, execution_evidence
from .measure import SourceFile, configurations_of, kernel_path, load_source, source_map
from .names import (
    CODE_SIZE_MACRO,
    HEADER_INCLUDE,
    HEADER_NAME,
    PATCH_NAME,
    SOURCE_NAME,
    offset_macro,
    size_macro,
)
from .render import read_typedef_arguments
from .rewrite import RewriteResult, rewrite_control_page

NOP = re.compile(r"nop(\.[mifbx])?\b")
#: KEXEC_CONTROL_PAGE_SIZE before the change: 8192 + 8192 + 4096.
OLD_CONTROL_PAGE_SIZE = 20480

BRANCH_ADDRESS = re.compile(r"\b([0-9a-f]+) <[^>]+>")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "passed": self.passed, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Twin:
    """Both files assembled at one page size, with their control-page maps."""

    page_size: int
    before: layout.ControlPageMap
    after: layout.ControlPageMap
    original_object: Path
    new_object: Path
    new_symbols: frozenset[str]
    configuration: Configuration = AS_GIVEN


@dataclass(frozen=True)
class Inputs:
    original: SourceFile
    new: SourceFile
    header_text: str
    patch_path: Path | None
    tree: kbuild.KernelTree
    entry: str
    include_dirs: tuple[Path, ...] = ()
    expected: RewriteResult | None = field(default=None, compare=False)
    configuration: Configuration = AS_GIVEN  # the user's -D/-U


# ------------------------------------------------------------------------------- load


def load_inputs(out_dir: Path, tree: kbuild.KernelTree, *, original: Path | None,
                entry: str, include_dirs: Sequence[Path] = (),
                configuration: Configuration = AS_GIVEN) -> Inputs:
    """The output folder of `relgen rewrite` and the original it was made from."""
    if not out_dir.is_dir():
        raise RelgenError("no such output folder (run `relgen rewrite` first)", str(out_dir))
    for name in (SOURCE_NAME, HEADER_NAME):
        if not (out_dir / name).is_file():
            raise RelgenError(f"the output folder has no {name}", str(out_dir))
    original_path = original if original is not None else tree.relocate_kernel
    source = load_source(original_path, tree)
    return inputs_from(out_dir, source, load_source(out_dir / SOURCE_NAME, None), tree,
                       rewrite_control_page(source.module, entry), entry=entry,
                       include_dirs=include_dirs, original_given=original is not None,
                       configuration=configuration)


def inputs_from(out_dir: Path, source: SourceFile, new: SourceFile, tree: kbuild.KernelTree,
                expected: RewriteResult, *, entry: str, include_dirs: Sequence[Path] = (),
                original_given: bool = True, configuration: Configuration = AS_GIVEN
                ) -> Inputs:
    """The Inputs of files already read: `relgen rewrite` checks what it is about to write."""
    header = (out_dir / HEADER_NAME).read_text(encoding="utf-8")
    recorded = recorded_input_sha256(header)
    if recorded is not None and not expected.already_code_first and recorded != source.sha256:
        how = "pass --original with that file" if not original_given else \
            "this is not the file it was made from"
        raise RelgenError(
            f"{HEADER_NAME} was made from an input with sha256 {recorded[:16]}..., but "
            f"{source.shown} has sha256 {source.sha256[:16]}...; {how}", str(out_dir))
    patch = out_dir / PATCH_NAME
    return Inputs(source, new, header, patch if patch.is_file() else None, tree, entry,
                  tuple(include_dirs), expected, configuration)


_RECORDED_SHA256 = re.compile(r"\(sha256 ([0-9a-f]{64})\)")


def recorded_input_sha256(header: str) -> str | None:
    """The sha256 of the input that the header says it was generated from."""
    match = _RECORDED_SHA256.search(header)
    return match.group(1) if match else None


def assemble_twins(inputs: Inputs, work: Path, page_sizes: Sequence[int]
                   ) -> tuple[list[Twin], list[Check]]:
    """Both files at each page size, in every configuration the conditionals name.

    The pairs are assembled side by side: the work is in cpp and the assembler, so threads
    keep both cores busy; the results come back in the order of the loops."""
    configurations = configurations_of(inputs.original.module, inputs.entry,
                                       inputs.configuration)
    jobs = [(each, page_size) for each in configurations.each for page_size in page_sizes]

    def assemble_pair(job: tuple[Configuration, int]) -> Twin | Check:
        each, page_size = job
        place = f"{each.folder}-{page_size}"
        try:
            before, original, _ = source_map(
                inputs.original, inputs.tree, work / f"original-{place}",
                entry=inputs.entry, include_dirs=inputs.include_dirs,
                page_size=page_size, fatal_warnings=True, configuration=each)
            after, new, obj = source_map(
                inputs.new, inputs.tree, work / f"new-{place}", entry=inputs.entry,
                include_dirs=inputs.include_dirs, page_size=page_size,
                extra_headers={HEADER_INCLUDE: inputs.header_text}, fatal_warnings=True,
                configuration=each)
        except RelgenError as error:
            named = "" if len(configurations.each) == 1 else f", {each.describe()}"
            return Check(f"assemble at {page_size // 1024} KiB pages{named}", False,
                         tuple(error.render().splitlines()))
        return Twin(page_size, before, after, original.object_path, new.object_path,
                    frozenset(s.name for s in obj.symbols), each)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(assemble_pair, jobs))
    return ([r for r in results if isinstance(r, Twin)],
            [r for r in results if isinstance(r, Check)])


# -------------------------------------------------------------------------- correlate


@dataclass(frozen=True)
class ProcedurePair:
    """The instructions of one code piece in both objects, matched by its symbol."""

    name: str
    original: tuple[kbuild.DecodedSlot, ...]
    new: tuple[kbuild.DecodedSlot, ...]


def correlate(twin: Twin, area_sizes: dict[str, int | None] | None = None
              ) -> list[ProcedurePair]:
    """The code of both control pages as one sequence each, in address order.

    The original's data areas are left out (each from its symbol over the size the source
    gives it, else up to the next symbol), and so are the bundles of nops right before each
    area, which only the `.align` that served it had added: code placed between or after the
    areas, labelled or not, then lines up with where it went in the regenerated page.
    """
    original = kbuild.disassemble_instructions(twin.original_object)
    new = kbuild.disassemble_instructions(twin.new_object)
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


def _entry_alignment(code: Sequence[kbuild.DecodedSlot], control_map: layout.ControlPageMap
                     ) -> set[int]:
    """The nop bundles right before each global entry point but the first: GLOBAL_ENTRY
    aligns to 32 bytes, so how many it adds depends on where the code before it ends, which
    moving code changes."""
    return {bundle for symbol in control_map.entry_points if symbol.offset
            for bundle in _nop_bundles_before(code, control_map.start + symbol.offset)}


def _nop_bundles_before(code: Sequence[kbuild.DecodedSlot], address: int) -> list[int]:
    """The bundles of nops that end right at `address`, nearest first."""
    bundles: dict[int, list[kbuild.DecodedSlot]] = {}
    for instruction in code:
        bundles.setdefault(instruction.bundle, []).append(instruction)
    found, at = [], address - 16
    while at in bundles and all(NOP.match(i.text) for i in bundles[at]):
        found.append(at)
        at -= 16
    return found


def branch_target(instruction: kbuild.DecodedSlot) -> int | None:
    """The absolute address a branch names in objdump's text (`br.few 160 <x+0x160>`)."""
    match = BRANCH_ADDRESS.search(instruction.text)
    return int(match.group(1), 16) if match else None


# ---------------------------------------------------------------------------- compare


def _slot(i: kbuild.DecodedSlot) -> str:
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


def _address_formed(old: kbuild.DecodedSlot, before: Sequence[kbuild.DecodedSlot],
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


def _address_from_argument(new: kbuild.DecodedSlot, areas: AreaArguments
                           ) -> tuple[str, int] | None:
    """(area, offset) that `adds rD=imm,rN` or `mov rD=rN` forms from an area's register."""
    by_register = {register: name for name, register in areas.registers.items()}
    if (match := ADD_IMMEDIATE.match(new.text)) and match.group(3) in by_register:
        return by_register[match.group(3)], int(match.group(2))
    if (match := MOVE_REGISTER.match(new.text)) and match.group(2) in by_register:
        return by_register[match.group(2)], 0
    return None


def _same_address(old: kbuild.DecodedSlot, new: kbuild.DecodedSlot,
                  earlier: Sequence[kbuild.DecodedSlot], areas: AreaArguments) -> str | None:
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
    warnings = [w for report in layout.page_report(after, kbuild.PAGE_SIZES)
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


#: What a kernel build gives every unit (compiler_attributes.h), for a host compile.
HOST_KERNEL_DEFINES = ("-D__noreturn=__attribute__((__noreturn__))",)

#: <linux/build_bug.h> reduced to the one macro the header uses: the kernel's static_assert
#: (its message optional) on the compiler's _Static_assert.
BUILD_BUG_STANDIN = """#define static_assert(expr, ...) __static_assert(expr, ##__VA_ARGS__, #expr)
#define __static_assert(expr, msg, ...) _Static_assert(expr, msg)
"""


def write_kernel_standins(include_dir: Path) -> None:
    """The kernel headers the generated header includes, as stand-ins for a host compile."""
    (include_dir / "linux").mkdir(parents=True, exist_ok=True)
    (include_dir / "linux" / "build_bug.h").write_text(BUILD_BUG_STANDIN, encoding="utf-8")


def check_header_compiles(header: str, work: Path,
                          flag_sets: Sequence[Sequence[str]] = ((),)) -> Check:
    """The header compiles in C and in assembly, once per configuration's cpp flags."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return Check("the header compiles in C and in assembly", False,
                     ("  FAIL: gcc not found (install the Debian package gcc)",))
    include = work / "header-include" / "asm"
    include.mkdir(parents=True, exist_ok=True)
    (include / "kexec_control_page.h").write_text(header, encoding="utf-8")
    write_kernel_standins(include.parent)
    probe = f"#include <{HEADER_INCLUDE}>\n"
    evidence: list[str] = []
    passed = True
    for flags in flag_sets:
        c_mode = tools.run([gcc, "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror",
                       *HOST_KERNEL_DEFINES, *flags,
                       "-x", "c", "-I", str(include.parent), "-"],
                      stdin=probe + "int kexec_probe;\n")
        asm_mode = tools.run([gcc, "-E", "-D__ASSEMBLY__", *flags, "-x", "assembler-with-cpp",
                         "-I", str(include.parent), "-"], stdin=probe)
        shown = "".join(f" {flag}" for flag in flags)
        evidence += [f"  gcc -fsyntax-only{shown} -x c: exit {c_mode.returncode}",
                     f"  gcc -E -D__ASSEMBLY__{shown} -x assembler-with-cpp: exit "
                     f"{asm_mode.returncode}"]
        evidence += ["  " + line for line in (c_mode.stderr + asm_mode.stderr).splitlines()]
        passed &= c_mode.returncode == 0 and asm_mode.returncode == 0
    return Check("the header compiles in C and in assembly", passed, tuple(evidence))


def patch_checks(inputs: Inputs, work: Path) -> list[Check]:
    """The patch's checks; an input already in code-first layout has nothing to patch."""
    if inputs.expected is not None and inputs.expected.already_code_first:
        present = inputs.patch_path is not None
        return [Check("no patch: the input is already in code-first layout",
                      not present,
                      ("  FAIL: a patch was written for an input that needs no change",)
                      if present else ())]
    return check_patch(inputs, work)


#: What checkpatch.pl says of lines that end in CRLF (it counts the CR as trailing space).
CRLF_CHECKPATCH = frozenset({"DOS_LINE_ENDINGS", "TRAILING_WHITESPACE"})
#: The checkpatch.pl messages the patch cannot avoid, each with its reason.
EXPECTED_CHECKPATCH = {
    "FILE_PATH_CHANGES": "a new file; arch/ia64/ is in MAINTAINERS already",
    "DEFINE_ARCH_HAS": "ARCH_HAS_KIMAGE_ARCH is the only hook include/linux/kexec.h offers "
                       "for struct kimage_arch",
}


def _copy_tree_files(inputs: Inputs, scratch: Path) -> list[str]:
    """The files the patch changes, as the tree has them, the .S being the input's bytes."""
    path = kernel_path(inputs.original)  # the path the patch names
    copied = [path]
    (scratch / path).parent.mkdir(parents=True, exist_ok=True)
    (scratch / path).write_bytes(inputs.original.text.encode("utf-8"))
    for caller in (callers.KEXEC_H_PATH, callers.MACHINE_KEXEC_PATH):
        if (inputs.tree.root / caller).is_file():
            (scratch / caller).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(inputs.tree.root / caller, scratch / caller)
            copied.append(caller)
    return copied


def check_changed_callers(header: str, scratch: Path, entry: str) -> list[Check]:
    """Simple reads of the patched C: the call passes every argument, the page shrank."""
    machine_kexec = scratch / callers.MACHINE_KEXEC_PATH
    kexec_h = scratch / callers.KEXEC_H_PATH
    if not machine_kexec.is_file() or not kexec_h.is_file():
        return [Check("the patched C callers", False,
                      ("  FAIL: the patch does not change asm/kexec.h and machine_kexec.c",))]
    wanted = len(read_typedef_arguments(header))
    calls = callers.entry_call_arguments(machine_kexec.read_text(encoding="utf-8"))
    call = Check(f"the call of {entry} passes {wanted} arguments",
                 bool(calls) and all(count == wanted for count in calls),
                 (f"  {callers.MACHINE_KEXEC_PATH}: calls through {callers.TYPEDEF} pass "
                  f"{', '.join(map(str, calls)) or 'no'} arguments; the header's typedef "
                  f"takes {wanted}",))
    size = callers.control_page_size(kexec_h.read_text(encoding="utf-8"))
    page = Check("KEXEC_CONTROL_PAGE_SIZE is no longer 20480", size != OLD_CONTROL_PAGE_SIZE,
                 (f"  {callers.KEXEC_H_PATH}: KEXEC_CONTROL_PAGE_SIZE "
                  + (f"= {size}" if size is not None else "is a macro of the header"),))
    return [call, page]


def check_patch(inputs: Inputs, work: Path) -> list[Check]:
    if inputs.patch_path is None:
        return [Check("the patch applies to the tree", False, ("  FAIL: no patch written",))]
    path = kernel_path(inputs.original)
    scratch = work / "apply"
    copied = _copy_tree_files(inputs, scratch)
    own = inputs.tree.relocate_kernel.is_file() and \
        inputs.tree.relocate_kernel.read_bytes() == inputs.original.text.encode("utf-8")
    patch = str(inputs.patch_path.resolve())
    check = tools.run(["git", "apply", "--check", patch], scratch)
    applied = tools.run(["git", "apply", patch], scratch) if check.returncode == 0 else check
    result = (scratch / path).read_bytes() if (scratch / path).is_file() else b""
    same = result == inputs.new.text.encode("utf-8")
    applies = Check("the patch applies to the tree", check.returncode == 0 and
                    applied.returncode == 0 and same,
                    (f"  the input {'is' if own else 'is not'} the tree's own {path}",
                     f"  git apply --check on a scratch copy of {', '.join(copied)}: "
                     f"exit {check.returncode}",
                     f"  applied, {path} equals the regenerated file: {same}",
                     *("  " + line for line in check.stderr.splitlines())))
    checks = [applies]
    if applied.returncode == 0:
        checks += check_changed_callers(inputs.header_text, scratch, inputs.entry)
    script = inputs.tree.root / "scripts" / "checkpatch.pl"
    if not script.is_file():
        return [*checks, Check("checkpatch.pl --strict", False, (f"  FAIL: {script} not found",))]
    run = tools.run(["perl", str(script), "--no-tree", "--strict", "--show-types", patch], work)
    found = re.findall(r"^(ERROR|WARNING|CHECK):([A-Z_]+):", run.stdout, re.M)
    unexpected = [f"{kind}:{name}" for kind, name in found if name not in EXPECTED_CHECKPATCH]
    total = next((line for line in run.stdout.splitlines() if line.startswith("total:")),
                 "total: ?")
    evidence = [f"  {total}"]
    evidence += [f"  {kind}:{name} (expected: {EXPECTED_CHECKPATCH[name]})"
                 for kind, name in found if name in EXPECTED_CHECKPATCH]
    counts = Counter(unexpected)
    crlf = "\r\n" in inputs.original.text
    for message, count in counts.items():
        times = f" ({count} times)" if count > 1 else ""
        why = ""
        if crlf and message.split(":")[1] in CRLF_CHECKPATCH:
            why = (": the input's lines end in CRLF and the patch keeps the input's bytes; "
                   "the kernel's own file ends its lines in LF, so convert the input (e.g. "
                   "dos2unix) before making a patch of it")
        evidence.append(f"  FAIL: {message}{times}{why}")
    name = "checkpatch.pl --strict: nothing but " + " and ".join(EXPECTED_CHECKPATCH)
    return [*checks, Check(name, not unexpected, tuple(evidence))]


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
    macros = kbuild.header_macros(inputs.header_text, work / f"header-{twin.configuration.folder}",
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


def check_objects(inputs: Inputs, work: Path, page_sizes: Sequence[int]) -> ObjectChecks:
    """Assemble the twins, then load, correlate and compare them in every configuration."""
    twins, checks = assemble_twins(inputs, work, page_sizes)
    configurations = configurations_of(inputs.original.module, inputs.entry,
                                       inputs.configuration)
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


def check_execution(inputs: Inputs, objects: ObjectChecks, plan: ExecutionPlan
                    ) -> list[Check]:
    """Execution evidence (issue 13): both pages run on synthetic kexec images, in each
    configuration, at ia64's default page size where it was assembled."""
    expected = inputs.expected
    if expected is None or expected.already_code_first:
        return []
    checks: list[Check] = []
    for each in objects.configurations.each:
        group = [t for t in objects.twins if t.configuration == each]
        if not group:
            continue
        twin = next((t for t in group if t.page_size == kbuild.DEFAULT_PAGE_SIZE), group[0])
        evidence = execution_evidence(
            twin.original_object, twin.new_object, twin.before, twin.after,
            expected.argument_registers, plan, page_size=twin.page_size)
        checks += [Check(name + objects.named(each), passed, lines)
                   for name, passed, lines in evidence.checks]
    return checks


def checks_after_objects(inputs: Inputs, objects: ObjectChecks, work: Path,
                         plan: ExecutionPlan,
                         patch_job: Callable[[], list[Check]] | None) -> list[Check]:
    """The execution checks, the header compile and the patch's checks (`patch_job`).

    The execution checks are Python and run in this thread; the header compile and the
    patch job mostly wait for gcc, git and checkpatch.pl, so they run beside it in threads
    and both cores stay busy. The checks come back in that order whatever finishes first.
    """
    flag_sets = [c.cpp_flags for c in objects.configurations.each]
    with ThreadPoolExecutor(max_workers=2) as pool:
        header = pool.submit(check_header_compiles, inputs.header_text, work, flag_sets)
        patch = pool.submit(patch_job) if patch_job is not None else None
        try:
            executed = check_execution(inputs, objects, plan)
        finally:
            # an exception here (or Ctrl-C) waits for the programs already started: the
            # scratch folder they write in is removed only after them
            pool.shutdown(wait=True, cancel_futures=True)
        return [*executed, header.result(), *(patch.result() if patch is not None else [])]


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]
    layout_text: str
    instructions_compared: int | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def render(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(f"{'PASS' if check.passed else 'FAIL'}  {check.name}")
            lines += list(check.evidence)
        lines.append("")
        lines.append(self.layout_text.rstrip("\n"))
        passed = sum(c.passed for c in self.checks)
        lines.append("")
        lines.append(f"{passed} passed, {len(self.checks) - passed} failed")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "checks": [c.to_json() for c in self.checks]}


def page_sizes_for(tree: kbuild.KernelTree,
                   page_sizes: Sequence[int] = kbuild.PAGE_SIZES) -> tuple[int, ...]:
    """The page sizes the twins are made at: a built tree is used as it is, so only its own
    page size can be assembled there."""
    if tree.has_build:
        return (tree.configured_page_size or kbuild.DEFAULT_PAGE_SIZE,)
    return tuple(page_sizes)


def verify(inputs: Inputs, page_sizes: Sequence[int] = kbuild.PAGE_SIZES, *,
           execution: ExecutionPlan = FULL, require_kernel_checks: bool = False,
           kernel_checks: bool = True) -> Report:
    """Every check, in order: the twins at each page size, execution, header and patch,
    then the kernel's own checkers. `execution` says how many kexec images both pages run
    on (default: all of them; `relgen rewrite`, which runs these passes itself through
    `check_objects` and `checks_after_objects`, runs fewer and smaller ones).
    """
    page_sizes = page_sizes_for(inputs.tree, page_sizes)
    with tempfile.TemporaryDirectory(prefix="relgen-verify-") as scratch:
        work = Path(scratch)
        objects = check_objects(inputs, work, page_sizes)
        checks = [*objects.checks, *checks_after_objects(
            inputs, objects, work, execution, lambda: patch_checks(inputs, work))]
        # the kernel's own checkers on the patched tree (relgen.kernelcheck, which reads
        # this module's Check: imported here)
        from .kernelcheck import check_output, not_run

        checks += check_output(inputs, required=require_kernel_checks) if kernel_checks \
            else [not_run("--no-kernel-checks was given", required=require_kernel_checks)]
    return Report(tuple(checks), objects.layout_text, objects.instructions_compared)
