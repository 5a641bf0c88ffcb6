"""Twin objects, original and regenerated: load, correlate, compare, report.

`verify()` reads like kpatch's create-diff-object: the same named passes run on both
files, and every check of the design's "Verification" section comes out as a `Check` with
PASS/FAIL and the evidence a reviewer needs (the rewritten instructions side by side, the
control-page map, the header's numbers next to the object's). The twins are made in every
configuration that the control page's conditionals name, and each is checked on its own.
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
from .configurations import AS_GIVEN, Configuration
from .errors import RelgenError
from .names import offset_macro, size_macro
from .pipeline import (
    HEADER_NAME,
    PATCH_NAME,
    SOURCE_NAME,
    SourceFile,
    configurations_of,
    kernel_path,
    load_source,
    source_map,
)
from .rewrite import HEADER_INCLUDE, RewriteResult, rewrite_control_page

NOP = re.compile(r"nop(\.[mifbx])?\b")
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
    new = load_source(out_dir / SOURCE_NAME, None)
    patch = out_dir / PATCH_NAME
    return Inputs(source, new, (out_dir / HEADER_NAME).read_text(encoding="utf-8"),
                  patch if patch.is_file() else None, tree, entry, tuple(include_dirs),
                  rewrite_control_page(source.module, entry), configuration)


def assemble_twins(inputs: Inputs, work: Path, page_sizes: Sequence[int]
                   ) -> tuple[list[Twin], list[Check]]:
    """Both files at each page size, in every configuration the conditionals name."""
    twins: list[Twin] = []
    failures: list[Check] = []
    configurations = configurations_of(inputs.original.module, inputs.entry,
                                       inputs.configuration)
    for each in configurations.each:
        named = "" if len(configurations.each) == 1 else f", {each.describe()}"
        for page_size in page_sizes:
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
                failures.append(Check(f"assemble at {page_size // 1024} KiB pages{named}",
                                      False, tuple(error.render().splitlines())))
                continue
            twins.append(Twin(page_size, before, after, original.object_path,
                              new.object_path, frozenset(s.name for s in obj.symbols), each))
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
    code = [i for i in code if i.bundle not in padding]
    after = [i for i in new if twin.after.start <= i.bundle < twin.after.end]
    return [ProcedurePair(twin.before.entry, tuple(code), tuple(after))]


def _nop_bundles_before(code: Sequence[kbuild.Instruction], address: int) -> list[int]:
    """The bundles of nops that end right at `address`, nearest first."""
    bundles: dict[int, list[kbuild.Instruction]] = {}
    for instruction in code:
        bundles.setdefault(instruction.bundle, []).append(instruction)
    found, at = [], address - 16
    while at in bundles and all(NOP.match(i.text) for i in bundles[at]):
        found.append(at)
        at -= 16
    return found


def branch_target(instruction: kbuild.Instruction) -> int | None:
    """The absolute address a branch names in objdump's text (`br.few 160 <x+0x160>`)."""
    match = BRANCH_ADDRESS.search(instruction.text)
    return int(match.group(1), 16) if match else None


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


DEFINE = re.compile(r"^#define\s+(KEXEC_[A-Z0-9_]+)\s+(0x[0-9a-fA-F]+|[0-9]+)\s*$", re.M)


def check_header_numbers(header: str, twin: Twin, data_areas: Sequence[str],
                         macros: dict[str, str] | None = None) -> Check:
    """The header's numbers against the object's; `macros` are the header's macros as cpp
    sees them in the twin's configuration (by default, every #define of the text)."""
    if macros is None:
        defined = {name: int(value, 0) for name, value in DEFINE.findall(header)}
    else:
        defined = {name: int(value, 0) for name, value in macros.items()
                   if DEFINE.match(f"#define {name} {value}")}
    expected = {"KEXEC_CONTROL_CODE_SIZE": twin.after.size}
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


def _run(command: list[str], cwd: Path | None = None, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True,
                          check=False)


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
    probe = f"#include <{HEADER_INCLUDE}>\n"
    evidence: list[str] = []
    passed = True
    for flags in flag_sets:
        c_mode = _run([gcc, "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror", *flags,
                       "-x", "c", "-I", str(include.parent), "-"],
                      stdin=probe + "int kexec_probe;\n")
        asm_mode = _run([gcc, "-E", "-D__ASSEMBLY__", *flags, "-x", "assembler-with-cpp",
                         "-I", str(include.parent), "-"], stdin=probe)
        shown = "".join(f" {flag}" for flag in flags)
        evidence += [f"  gcc -fsyntax-only{shown} -x c: exit {c_mode.returncode}",
                     f"  gcc -E -D__ASSEMBLY__{shown} -x assembler-with-cpp: exit "
                     f"{asm_mode.returncode}"]
        evidence += ["  " + line for line in (c_mode.stderr + asm_mode.stderr).splitlines()]
        passed &= c_mode.returncode == 0 and asm_mode.returncode == 0
    return Check("the header compiles in C and in assembly", passed, tuple(evidence))


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


def _check_configuration(inputs: Inputs, twins: Sequence[Twin], work: Path,
                         page_sizes: Sequence[int]) -> tuple[int, list[Check], str]:
    """One configuration's instructions compared, its checks and its map text."""
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
    macros = kbuild.header_macros(inputs.header_text, work / f"header-{twin.configuration.folder}",
                                  twin.configuration.cpp_flags)
    checks.append(check_header_numbers(inputs.header_text, twin, areas, macros))
    text = ("before:\n" + layout.render_text(twin.before, page_sizes)
            + "\nafter:\n" + layout.render_text(twin.after, page_sizes))
    return sum(len(pair.new) for pair in pairs), checks, text


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
           with_patch: bool = True) -> Report:
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
        configurations = configurations_of(inputs.original.module, inputs.entry,
                                           inputs.configuration)
        layout_text = ""
        if twins:
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
                named = "" if len(configurations.each) == 1 else f" [{each.describe()}]"
                count, found, text = _check_configuration(inputs, group, work, page_sizes)
                checks += [Check(c.name + named, c.passed, c.evidence) for c in found]
                compared += count
                layout_text += (f"{named.strip(' []') + ': ' if named else ''}" + text)
        checks.append(check_header_compiles(inputs.header_text, work,
                                            [c.cpp_flags for c in configurations.each]))
        if with_patch:
            checks += check_patch(inputs, work)
    return Report(tuple(checks), layout_text, compared)
