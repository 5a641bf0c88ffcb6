"""Twin objects, original and regenerated: load, correlate, compare, report.

`verify()` reads like kpatch's create-diff-object: the same named passes run on both
files, and every check of the design's "Verification" section comes out as a `Check` with
PASS/FAIL and the evidence a reviewer needs (the rewritten instructions side by side, the
control-page map, the header's numbers next to the object's).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import kbuild, layout
from .errors import RelgenError
from .pipeline import (
    HEADER_NAME,
    PATCH_NAME,
    SOURCE_NAME,
    SourceFile,
    kernel_path,
    load_source,
    source_map,
)
from .rewrite import HEADER_INCLUDE, RewriteResult, rewrite_control_page

NOP = re.compile(r"nop(\.[mifbx])?\b")


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


# ------------------------------------------------------------------------------- load


def load_inputs(out_dir: Path, tree: kbuild.KernelTree, *, original: Path | None,
                entry: str, include_dirs: Sequence[Path] = ()) -> Inputs:
    """The output folder of `relgen rewrite` and the original it was made from."""
    if not out_dir.is_dir():
        raise RelgenError("no such output folder (run `relgen rewrite` first)", str(out_dir))
    for name in (SOURCE_NAME, HEADER_NAME):
        if not (out_dir / name).is_file():
            raise RelgenError(f"the output folder has no {name}", str(out_dir))
    original_path = original if original is not None else tree.relocate_kernel
    source = load_source(original_path, tree)
    new = load_source(out_dir / SOURCE_NAME, None)
    patch = out_dir / PATCH_NAME
    return Inputs(source, new, (out_dir / HEADER_NAME).read_text(encoding="utf-8"),
                  patch if patch.is_file() else None, tree, entry, tuple(include_dirs),
                  rewrite_control_page(source.module, entry))


def assemble_twins(inputs: Inputs, work: Path, page_sizes: Sequence[int]
                   ) -> tuple[list[Twin], list[Check]]:
    twins: list[Twin] = []
    failures: list[Check] = []
    for page_size in page_sizes:
        try:
            before, original, _ = source_map(
                inputs.original, inputs.tree, work / f"original-{page_size}", entry=inputs.entry,
                include_dirs=inputs.include_dirs, page_size=page_size, fatal_warnings=True)
            after, new, obj = source_map(
                inputs.new, inputs.tree, work / f"new-{page_size}", entry=inputs.entry,
                include_dirs=inputs.include_dirs, page_size=page_size,
                extra_headers={HEADER_INCLUDE: inputs.header_text}, fatal_warnings=True)
        except RelgenError as error:
            failures.append(Check(f"assemble at {page_size // 1024} KiB pages", False,
                                  tuple(error.render().splitlines())))
            continue
        twins.append(Twin(page_size, before, after, original.object_path, new.object_path,
                          frozenset(s.name for s in obj.symbols)))
    return twins, failures


# -------------------------------------------------------------------------- correlate


@dataclass(frozen=True)
class ProcedurePair:
    """The instructions of one code piece in both objects, matched by its symbol."""

    name: str
    original: tuple[kbuild.Instruction, ...]
    new: tuple[kbuild.Instruction, ...]


def _piece_instructions(instructions: Sequence[kbuild.Instruction], control_map:
                        layout.ControlPageMap, piece: layout.MapSymbol
                        ) -> tuple[kbuild.Instruction, ...]:
    start = control_map.start + piece.offset
    return tuple(i for i in instructions if start <= i.bundle < start + piece.size)


def correlate(twin: Twin) -> list[ProcedurePair]:
    original = kbuild.disassemble_instructions(twin.original_object)
    new = kbuild.disassemble_instructions(twin.new_object)
    after_pieces = {s.name: s for s in twin.after.code_symbols}
    pairs = []
    for piece in twin.before.code_symbols:
        other = after_pieces.get(piece.name)
        pairs.append(ProcedurePair(
            piece.name, _piece_instructions(original, twin.before, piece),
            () if other is None else _piece_instructions(new, twin.after, other)))
    return pairs


# ---------------------------------------------------------------------------- compare


def _slot(i: kbuild.Instruction) -> str:
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


def _address_formed(old: kbuild.Instruction, before: Sequence[kbuild.Instruction],
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


def _address_from_argument(new: kbuild.Instruction, areas: AreaArguments
                           ) -> tuple[str, int] | None:
    """(area, offset) that `adds rD=imm,rN` or `mov rD=rN` forms from an area's register."""
    by_register = {register: name for name, register in areas.registers.items()}
    if (match := ADD_IMMEDIATE.match(new.text)) and match.group(3) in by_register:
        return by_register[match.group(3)], int(match.group(2))
    if (match := MOVE_REGISTER.match(new.text)) and match.group(2) in by_register:
        return by_register[match.group(2)], 0
    return None


def _same_address(old: kbuild.Instruction, new: kbuild.Instruction,
                  earlier: Sequence[kbuild.Instruction], areas: AreaArguments) -> str | None:
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
        for old, new in zip(pair.original, pair.new, strict=False):
            if old.comparable == new.comparable:
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


DEFINE = re.compile(r"^#define\s+(KEXEC_[A-Z0-9_]+)\s+(0x[0-9a-fA-F]+|[0-9]+)\s*$", re.M)


def check_header_numbers(header: str, twin: Twin, data_areas: Sequence[str]) -> Check:
    defined = {name: int(value, 0) for name, value in DEFINE.findall(header)}
    expected = {"KEXEC_CONTROL_CODE_SIZE": twin.after.size}
    sizes = {s.name: s.size for s in twin.before.symbols}
    for area in data_areas:
        expected[f"KEXEC_{area.upper()}_SIZE"] = sizes.get(area, -1)
    for symbol in twin.after.entry_points:
        expected[f"KEXEC_{symbol.name.upper()}_OFFSET"] = symbol.offset
    lines, good = [], True
    for name, value in expected.items():
        got = defined.get(name)
        ok = got == value
        good &= ok
        shown = "missing" if got is None else f"{got:#x}"
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {name:36} header {shown:>8}  "
                     f"object {value:#x}")
    return Check("the header's numbers equal the object's", good, tuple(lines))


def _run(command: list[str], cwd: Path | None = None, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True,
                          check=False)


def check_header_compiles(header: str, work: Path) -> Check:
    gcc = shutil.which("gcc")
    if gcc is None:
        return Check("the header compiles in C and in assembly", False,
                     ("  FAIL: gcc not found (install the Debian package gcc)",))
    include = work / "header-include" / "asm"
    include.mkdir(parents=True, exist_ok=True)
    (include / "kexec_control_page.h").write_text(header, encoding="utf-8")
    probe = f"#include <{HEADER_INCLUDE}>\n"
    c_mode = _run([gcc, "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror", "-x", "c",
                   "-I", str(include.parent), "-"], stdin=probe + "int kexec_probe;\n")
    asm_mode = _run([gcc, "-E", "-D__ASSEMBLY__", "-x", "assembler-with-cpp",
                     "-I", str(include.parent), "-"], stdin=probe)
    evidence = [f"  gcc -fsyntax-only -x c: exit {c_mode.returncode}",
                f"  gcc -E -D__ASSEMBLY__ -x assembler-with-cpp: exit {asm_mode.returncode}"]
    evidence += ["  " + line for line in (c_mode.stderr + asm_mode.stderr).splitlines()]
    return Check("the header compiles in C and in assembly",
                 c_mode.returncode == 0 and asm_mode.returncode == 0, tuple(evidence))


def check_patch(inputs: Inputs, work: Path) -> list[Check]:
    if inputs.patch_path is None:
        return [Check("the patch applies to the tree", False, ("  FAIL: no patch written",))]
    path = kernel_path(inputs.original)  # the path the patch names
    scratch = work / "apply"
    (scratch / path).parent.mkdir(parents=True, exist_ok=True)
    (scratch / path).write_bytes(inputs.original.text.encode("utf-8"))
    patch = str(inputs.patch_path.resolve())
    check = _run(["git", "apply", "--check", patch], scratch)
    applied = _run(["git", "apply", patch], scratch) if check.returncode == 0 else check
    result = (scratch / path).read_bytes() if (scratch / path).is_file() else b""
    same = result == inputs.new.text.encode("utf-8")
    applies = Check("the patch applies to the tree", check.returncode == 0 and
                    applied.returncode == 0 and same,
                    (f"  git apply --check: exit {check.returncode}",
                     f"  applied, {path} equals the regenerated file: {same}",
                     *("  " + line for line in check.stderr.splitlines())))
    script = inputs.tree.root / "scripts" / "checkpatch.pl"
    if not script.is_file():
        return [applies, Check("checkpatch.pl is clean", False,
                               (f"  FAIL: {script} not found",))]
    result_cp = _run(["perl", str(script), "--no-tree", "--show-types", patch], work)
    types = re.findall(r"^(ERROR|WARNING|CHECK):([A-Z_]+):", result_cp.stdout, re.M)
    errors = [t for kind, t in types if kind == "ERROR"]
    warnings = [t for kind, t in types if kind == "WARNING"]
    unexpected = [t for t in warnings if t != "FILE_PATH_CHANGES"]
    total = next((line for line in result_cp.stdout.splitlines()
                  if line.startswith("total:")), "total: ?")
    return [applies, Check("checkpatch.pl is clean", not errors and not unexpected,
                           (f"  {total}",
                            *(f"  {kind}:{t}" for kind, t in types),
                            "  (FILE_PATH_CHANGES is expected: a new file under arch/ia64/,"
                            " which MAINTAINERS covers)"))]


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


def verify(inputs: Inputs, page_sizes: Sequence[int] = kbuild.PAGE_SIZES, *,
           with_patch: bool = True, require_kernel_checks: bool = False) -> Report:
    """Every check, in order: the twins at each page size, then header and patch.

    `relgen rewrite` runs it without the patch checks before it writes the patch, so that
    the patch's commit message states only what was verified.
    """
    compared = None
    if inputs.tree.has_build:
        # a built tree is used as it is: only its own page size can be assembled
        page_sizes = (inputs.tree.configured_page_size or kbuild.DEFAULT_PAGE_SIZE,)
    with tempfile.TemporaryDirectory(prefix="relgen-verify-") as scratch:
        work = Path(scratch)
        twins, checks = assemble_twins(inputs, work, page_sizes)
        expected = inputs.expected
        areas = [a.name for a in expected.data_areas] if expected else []
        rewrites = len(expected.rewritten) if expected else 0
        if twins:
            sizes = ", ".join(f"{t.page_size // 1024} KiB: {t.before.size:#x} -> "
                              f"{t.after.size:#x}" for t in twins)
            checks.insert(0, Check("both files assemble with ia64-linux-gnu-as -x at every "
                                   "page size, without a dependency violation",
                                   len(twins) == len(page_sizes),
                                   (f"  control page {sizes}",)))
            same = all(t.after == twins[0].after and t.before == twins[0].before
                       for t in twins)
            checks.append(Check("the layout is the same at every page size", same))
            twin = twins[0]
            checks += check_region(twin, areas)
            arguments = AreaArguments(
                {s.name: s.offset for s in twin.before.data_symbols},
                {name: f"r{32 + int(reg[2:])}"
                 for name, reg in (expected.argument_registers if expected else {}).items()},
                twin.before.start)
            pairs = correlate(twin)
            allocs = 0 if expected is None or expected.already_code_first else 1
            checks.append(compare_instructions(pairs, rewrites, arguments, allocs)[0])
            compared = sum(len(pair.new) for pair in pairs)
            checks.append(check_header_numbers(inputs.header_text, twin, areas))
            layout_text = ("before:\n" + layout.render_text(twin.before, page_sizes)
                           + "\nafter:\n" + layout.render_text(twin.after, page_sizes))
        else:
            layout_text = ""
        checks.append(check_header_compiles(inputs.header_text, work))
        if with_patch:
            checks += check_patch(inputs, work)
            # --- kernel checks (Kbuild + sparse + gcc, Coccinelle): relgen.kernelcheck ---
            from .kernelcheck import check_output

            checks += check_output(inputs, required=require_kernel_checks)
            # --- end of kernel checks ---
    return Report(tuple(checks), layout_text, compared)
