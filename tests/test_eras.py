"""Issue 18: the whole change for a tree of every era, on the skeleton trees of
tests/fixtures/trees (2.6.18 RHEL5 with the 2006 shape, 2.6.18 Xen dom0, 2.6.24, 2.6.28,
2.6.32, 3.4; see their README).

Each tree is rewritten and verified once here (`relgen rewrite --kernel-tree TREE`, then
`relgen verify OUT --kernel-tree TREE`), with the sha256 of every file of the tree taken
before and after. The tests check that relgen places each tree in its era, writes the four
files at the era's paths, that the mail applies to a copy of the tree and, applied, the
tree still assembles and compiles (check-trees.sh on the patched copies), that verify passes
and says which checks did not run and why, that the tree is never written, that a tree
relgen cannot place is refused in one line, the Xen dom0 tree's two configurations, and the
2006 shape's kexec_fake_sal_rendez_offset.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import AUTHOR, DATE, FIXTURES, SharedRuns, require_tool
from relgen.cli import main
from relgen.kernel import callers
from relgen.names import HEADER_INCLUDE, MACHINE_KEXEC_PATH, RELOCATE_KERNEL_PATH
from relgen.toolchain.assemble import assemble
from relgen.toolchain.elf import load_object
from relgen.toolchain.era import place
from relgen.toolchain.objdump import disassemble_instructions
from relgen.toolchain.tree import KernelTree

TREES = FIXTURES / "trees"
#: Each skeleton tree and the line relgen says it took it for.
ERA_LINES = {
    "linux-2.6.18-rhel5": "Linux 2.6.18-prep, the 2.6.18 vendor era: asm headers in "
    "include/asm-ia64, KEXEC_CONTROL_CODE_SIZE, config in include/linux/autoconf.h, no struct "
    "kimage_arch",
    "linux-2.6.18-xen": "Linux 2.6.18.8, the 2.6.18-xen dom0 era: asm headers in "
    "include/asm-ia64, KEXEC_CONTROL_CODE_SIZE, config in include/linux/autoconf.h, no struct "
    "kimage_arch, the hypervisor calls the control page under CONFIG_XEN",
    "linux-2.6.24": "Linux 2.6.24, the 2.6.20-2.6.26 era: asm headers in include/asm-ia64, "
    "KEXEC_CONTROL_CODE_SIZE, config in include/linux/autoconf.h, no struct kimage_arch",
    "linux-2.6.28": "Linux 2.6.28, the 2.6.27-2.6.32 era: asm headers in arch/ia64/include/asm, "
    "KEXEC_CONTROL_PAGE_SIZE, config in include/linux/autoconf.h, no struct kimage_arch",
    "linux-2.6.32": "Linux 2.6.32, the 2.6.27-2.6.32 era: asm headers in arch/ia64/include/asm, "
    "KEXEC_CONTROL_PAGE_SIZE, config in include/linux/autoconf.h, struct kimage_arch",
    "linux-3.4": "Linux 3.4.0, the 2.6.33-6.6 era: asm headers in arch/ia64/include/asm, "
    "KEXEC_CONTROL_PAGE_SIZE, config in include/generated/autoconf.h, struct kimage_arch",
}
NAMES = tuple(ERA_LINES)
EACH_TREE = pytest.mark.parametrize("name", NAMES)


def sha256_of_every_file(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() or path.is_symlink()}


def run(*argv: str | Path) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main([str(a) for a in argv])
    return status, printed.getvalue()


@dataclass(frozen=True)
class EraRun:
    """`relgen rewrite` and `relgen verify` of one skeleton tree, and the tree around them."""

    tree: Path
    out: Path
    rewrite_status: int
    rewrite_stdout: str
    verify_status: int
    verify_stdout: str
    files_before: dict[str, str]
    files_after: dict[str, str]

    @property
    def patch(self) -> str:
        return (self.out / "relocate_kernel.patch").read_text()

    @property
    def message(self) -> str:
        return self.patch.split("\n---\n")[0]


class EraRuns:
    """One rewrite and one verify per tree for the whole session, made when first asked."""

    def __init__(self, request: pytest.FixtureRequest, shared: SharedRuns) -> None:
        self.request, self.shared = request, shared

    def __call__(self, name: str) -> EraRun:
        self.request.getfixturevalue("toolchain")
        tree = TREES / name

        def make(folder: Path) -> dict:
            out = folder / "out"
            before = sha256_of_every_file(tree)
            status, stdout = run("rewrite", "--kernel-tree", tree, "-o", out, "--from", AUTHOR,
                                 "--date", DATE)
            verified, report = run("verify", out, "--kernel-tree", tree) if status == 0 \
                else (None, "")
            return {"rewrite": [status, stdout], "verify": [verified, report],
                    "before": before, "after": sha256_of_every_file(tree)}

        folder, made = self.shared.once(f"era {name}", make)
        return EraRun(tree, folder / "out", *made["rewrite"], *made["verify"], made["before"],
                      made["after"])


@pytest.fixture(scope="module")
def era_runs(request: pytest.FixtureRequest, shared_runs: SharedRuns) -> EraRuns:
    return EraRuns(request, shared_runs)


@pytest.fixture
def made(name: str, era_runs: EraRuns) -> EraRun:
    return era_runs(name)


# ------------------------------------------------------------------- the era


@EACH_TREE
def test_relgen_says_which_era_it_took_the_tree_for(name: str) -> None:
    assert place(TREES / name).describe() == ERA_LINES[name]


@pytest.mark.parametrize(("change", "reason"), [
    ({"Makefile": "# no version lines\nall:\n"},
     "cannot tell which Linux the tree at {tree} is: its top Makefile has no VERSION, "
     "PATCHLEVEL and SUBLEVEL lines"),
    ({"Makefile": "VERSION = 2\nPATCHLEVEL = 6\nSUBLEVEL = 17\n"},
     "the tree at {tree} is Linux 2.6.17: ia64 kexec came in 2.6.20 (2.6.18 in vendor and Xen "
     "dom0 trees), so there is nothing to rewrite"),
    ({"Makefile": "VERSION = 6\nPATCHLEVEL = 7\nSUBLEVEL = 0\n"},
     "the tree at {tree} is Linux 6.7.0: mainline dropped ia64 after 6.6"),
    ({"include/asm-ia64/kexec.h": None},
     "the tree at {tree} has no include/asm-ia64/kexec.h: it has no ia64 kexec"),
], ids=["no version lines", "2.6.17", "6.7", "no asm/kexec.h"])
def test_a_tree_relgen_cannot_place_is_refused_with_its_reason(
        change: dict[str, str | None], reason: str, era_runs: EraRuns, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "linux-2.6.24", tree)
    for path, text in change.items():
        if text is None:
            (tree / path).unlink()
        else:
            (tree / path).write_text(text)
    made = era_runs("linux-2.6.24")  # an output folder for verify to read
    before = {**sha256_of_every_file(tmp_path), **sha256_of_every_file(made.out)}
    for argv in (["rewrite", "--kernel-tree", tree, "-o", tmp_path / "out", "--from", AUTHOR],
                 ["verify", made.out, "--kernel-tree", tree]):
        capsys.readouterr()
        status = main([str(a) for a in argv])
        captured = capsys.readouterr()
        # one line, exit 2, nothing written
        assert (status, captured.out) == (2, ""), argv
        assert captured.err == "error: " + reason.format(tree=tree) + "\n", argv
    assert {**sha256_of_every_file(tmp_path), **sha256_of_every_file(made.out)} == before
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------ the whole change, applied


@EACH_TREE
def test_rewrite_writes_the_whole_change_at_the_eras_paths(name: str, made: EraRun) -> None:
    assert made.rewrite_status == 0, made.rewrite_stdout
    era = place(made.tree)
    paths = sorted(re.findall(r"^diff --git a/(\S+) b/", made.patch, re.M))
    assert paths == sorted([RELOCATE_KERNEL_PATH, era.header, era.kexec_h, MACHINE_KEXEC_PATH])
    assert f"create mode 100644 {era.header}\n" in made.patch
    assert made.patch.count("\nFrom 0000000000000000000000000000000000000000 ") == 0
    names = sorted(p.name for p in made.out.iterdir() if not p.name.startswith("."))
    assert names == ["kexec_control_page.h", "layout-after.svg", "layout-before.svg",
                     "layout.json", "layout.txt", "relocate_kernel.S", "relocate_kernel.patch"]
    # the subject in the era's idiom, and the home of the stacks the tree supports
    prefix = "ia64: kexec: " if name == "linux-3.4" else "[IA64] kexec: "
    assert f"\nSubject: [PATCH] {prefix}" in made.patch
    if era.kimage_arch:
        assert "+#define ARCH_HAS_KIMAGE_ARCH\n+struct kimage_arch {\n" in made.patch
        assert "kimage_alloc_control_pages(image, order)" in made.patch
    else:
        assert "kimage_arch {" not in made.patch
        assert "This tree's include/linux/kexec.h offers no struct kimage_arch" in \
            " ".join(made.message.split())
        assert "+\t\t     __pa(code_addr) + KEXEC_MEMORY_STACK_OFFSET,\n" in made.patch


@pytest.fixture(scope="module")
def patched_trees(era_runs: EraRuns, shared_runs: SharedRuns) -> Path:
    """Copies of every skeleton tree with its mail applied by `git apply`, made once."""
    require_tool("git")

    def make(folder: Path) -> dict:
        for name in NAMES:
            made = era_runs(name)
            assert made.rewrite_status == 0, made.rewrite_stdout
            copy = folder / name
            shutil.copytree(made.tree, copy)
            patch = made.out / "relocate_kernel.patch"
            subprocess.run(["git", "apply", "--check", str(patch)], cwd=copy, check=True)
            subprocess.run(["git", "apply", str(patch)], cwd=copy, check=True)
        return {}

    return shared_runs.once("era patched trees", make)[0]


@EACH_TREE
def test_the_mail_applies_to_a_copy_of_the_tree(name: str, made: EraRun,
                                                 patched_trees: Path) -> None:
    copy, era = patched_trees / name, place(TREES / name)
    assert (copy / RELOCATE_KERNEL_PATH).read_bytes() == \
        (made.out / "relocate_kernel.S").read_bytes()
    assert (copy / era.header).read_bytes() == (made.out / "kexec_control_page.h").read_bytes()
    assert callers.entry_call_arguments((copy / MACHINE_KEXEC_PATH).read_text()) == [6]
    assert callers.prototype_arguments((copy / era.kexec_h).read_text(),
                                       "relocate_new_kernel") == 6


@EACH_TREE
def test_the_typedef_keeps_its_form_and_gains_two_parameters_like_its_own(
        name: str, patched_trees: Path) -> None:
    """NORET_TYPE ... ATTRIB_NORET, unnamed parameters, __noreturn: the typedef stays in
    machine_kexec.c as the era wrote it, with two parameters named or unnamed like the
    others; asm/kexec.h gets no typedef."""
    era = place(TREES / name)
    old_text = (TREES / name / MACHINE_KEXEC_PATH).read_text()
    new_text = (patched_trees / name / MACHINE_KEXEC_PATH).read_text()
    old = callers.read_typedef_arguments(old_text)
    named = all(" " in p and not p.endswith("*") for p in old)
    added = ("unsigned long memory_stack", "unsigned long register_stack") if named else \
        ("unsigned long", "unsigned long")
    assert callers.read_typedef_arguments(new_text) == (*old, *added)
    before, after = (re.search(r"typedef[^;]*relocate_new_kernel_t[^;]*;", text).group(0)
                     for text in (old_text, new_text))
    assert before.split("(")[0] == after.split("(")[0]  # typedef [NORET_TYPE] void
    assert before.rsplit(")", 1)[1] == after.rsplit(")", 1)[1]  # [ATTRIB_NORET|__noreturn];
    assert "typedef" not in (patched_trees / name / era.kexec_h).read_text()


@pytest.fixture(scope="module")
def checked_patched_trees(patched_trees: Path, shared_runs: SharedRuns) -> str:
    """check-trees.sh (cpp and `ia64-linux-gnu-as -x` on the .S, the host gcc's syntax check
    on machine_kexec.c, every configuration, every page size) on the patched copies, once."""
    for tool in ("cpp", "gcc", "ia64-linux-gnu-as"):
        require_tool(tool)

    def make(folder: Path) -> dict:
        result = subprocess.run(["bash", str(TREES / "check-trees.sh"), str(patched_trees)],
                                capture_output=True, text=True)
        return {"status": result.returncode, "stdout": result.stdout, "stderr": result.stderr}

    checked = shared_runs.once("era patched trees checked", make)[1]
    assert checked["status"] in (0, 1), checked["stderr"]
    return checked["stdout"]


@EACH_TREE
def test_applied_the_tree_still_assembles_and_compiles(name: str,
                                                       checked_patched_trees: str) -> None:
    lines = [line for line in checked_patched_trees.splitlines() if f" {name} " in line]
    configurations = 3 if name == "linux-2.6.18-xen" else 1
    assert len(lines) == 2 * 4 * configurations  # as and gcc, at 4 page sizes
    assert all(line.startswith("ok ") and "warning" not in line for line in lines), \
        checked_patched_trees


# ------------------------------------------------------------------- verify


@EACH_TREE
def test_verify_passes_and_says_what_did_not_run(name: str, made: EraRun) -> None:
    assert made.verify_status == 0, made.verify_stdout
    report = made.verify_stdout
    assert "FAIL" not in report
    summary = re.search(r"^(\d+) passed, 0 failed, (\d+) not run$", report, re.M)
    assert summary is not None and int(summary.group(2)) == 1
    # a check that did not run is named with its reason, never counted as passed: no
    # skeleton carries scripts/checkpatch.pl
    assert re.search(r"^NOT RUN  checkpatch\.pl --strict: nothing but FILE_PATH_CHANGES.*\n"
                     r"  not run: the tree has no scripts/checkpatch\.pl$", report, re.M)
    assert "PASS  the patch applies to the tree" in report
    assert "PASS  the patched C passes the stacks to relocate_new_kernel" in report
    for check in ("both files assemble with ia64-linux-gnu-as -x at every page size",
                  "disassembly matches but for the alloc, the rewrites and padding",
                  "execution: every destination page equals its source, in both versions",
                  "the header compiles in C and in assembly"):
        assert f"PASS  {check}" in report, check


@EACH_TREE
def test_the_kernel_checks_run_by_the_direct_route(name: str, made: EraRun) -> None:
    """No skeleton has a Kbuild to run: sparse and gcc get the flags Kbuild of the tree's
    era would give, on the units that include <asm/kexec.h>, and the message says so."""
    report = made.verify_stdout
    version = place(made.tree).version
    for checker in ("gcc -fsyntax-only with the ia64 predefines", "sparse (C=2 CF=-Wsparse-error)"):
        check = re.search(rf"^PASS  kernel checks: {re.escape(checker)} reports nothing new\n"
                          r"((?:  .*\n)+)", report, re.M)
        assert check is not None, report
        assert f"  route: direct, with the flags Kbuild of {version} would give (the tree has " \
            "no Kbuild to run)" in check.group(1)
        assert "arch/ia64/kernel/machine_kexec.o" in check.group(1)
    assert report.count("PASS  coccinelle: ") == 4
    also = " (also with CONFIG_XEN=y)" if name == "linux-2.6.18-xen" else ""
    assert "sparse and gcc's syntax check (through a check-only ia64 compiler) on the 1 unit " \
        f"that includes <asm/kexec.h> and relocate_kernel.S{also} report nothing the " \
        "unpatched tree does not" in " ".join(made.message.split())


@EACH_TREE
def test_the_tree_is_never_written(name: str, made: EraRun) -> None:
    assert made.rewrite_status == 0 and made.verify_status is not None
    assert made.files_after == made.files_before


# ------------------------------------------------------------- the Xen dom0 tree


XEN = "linux-2.6.18-xen"


def objects(made: EraRun, folder: Path, flags: list[str]) -> tuple[Path, Path]:
    """The original and the regenerated .S assembled in one configuration."""
    tree = KernelTree(made.tree)
    header = (made.out / "kexec_control_page.h").read_text()
    original = assemble(tree.relocate_kernel, tree, folder / "original", cpp_flags=flags)
    new = assemble(made.out / "relocate_kernel.S", tree, folder / "new", cpp_flags=flags,
                   extra_headers={HEADER_INCLUDE: header})
    return original.object_path, new.object_path


def test_both_xen_configurations_assemble_and_verify(era_runs: EraRuns) -> None:
    made = era_runs(XEN)
    assert made.verify_status == 0, made.verify_stdout
    report = made.verify_stdout
    assert "2 configurations: CONFIG_XEN each on and off" in report
    for each in ("CONFIG_XEN off", "CONFIG_XEN on"):
        for check in ("disassembly matches but for the alloc, the rewrites and padding",
                      "the code fits in one 4 KiB page",
                      "execution: the same branch target and registers handed to the new "
                      "kernel"):
            assert f"PASS  {check} [{each}]" in report, (check, each)
    # under CONFIG_XEN the stacks stay in the page, after the code
    assert "PASS  the code comes first; the stacks stay in the page after it [CONFIG_XEN on]" \
        in report


def test_under_config_xen_the_object_is_the_originals(era_runs: EraRuns,
                                                      tmp_path: Path) -> None:
    made = era_runs(XEN)
    original, new = objects(made, tmp_path, ["-DCONFIG_XEN"])
    assert [s.comparable for s in disassemble_instructions(new)] == \
        [s.comparable for s in disassemble_instructions(original)]
    assert load_object(new).section_data(".text") == load_object(original).section_data(".text")


def test_natively_the_xen_tree_passes_the_stacks(era_runs: EraRuns, tmp_path: Path) -> None:
    made = era_runs(XEN)
    original, new = objects(made, tmp_path, [])

    def entry(path: Path) -> list[str]:
        return [s.comparable for s in disassemble_instructions(path)
                if s.symbol == "relocate_new_kernel"]

    changed = [(a, b) for a, b in zip(entry(original), entry(new), strict=False) if a != b]
    assert [b for _, b in changed] == ["alloc r31=ar.pfs,6,6,0", "adds r12=8176,r36",
                                       "mov r8=r37"]
    assert [a.split("=")[0] for a, _ in changed] == ["alloc r31", "addl r12", "addl r8"]
    # and the native C passes them: the call under #ifndef CONFIG_XEN takes six arguments
    assert "+\t\t     __pa(code_addr) + KEXEC_REGISTER_STACK_OFFSET);\n" in made.patch


def test_the_message_says_what_the_hypervisor_must_pass(era_runs: EraRuns) -> None:
    message = " ".join(era_runs(XEN).message.split())
    assert "Under CONFIG_XEN the hypervisor, not Linux, calls the control page " \
        "(machine_kexec_setup_load_arg() hands it the page) with four inputs of its own and " \
        "no stacks." in message
    # what was checked, per configuration: under CONFIG_XEN no instruction changes
    assert "with CONFIG_XEN off they differ in the alloc and the two rewritten instructions, " \
        "and with CONFIG_XEN on, where the page keeps its stacks, in no instruction;" in message
    assert "For the hypervisor to take the native layout too, it must allocate the two " \
        "stacks (KEXEC_MEMORY_STACK_SIZE and KEXEC_REGISTER_STACK_SIZE bytes) and enter the " \
        "page with their machine addresses as the fifth and sixth inputs of its frame (in4 " \
        "and in5); until it does, the CONFIG_XEN layout stays as it is." in message


def test_the_hypervisors_configuration_alone_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Under CONFIG_XEN the page keeps its stacks: with only that configuration nothing the
    change makes would be assembled, so rewrite and diff say so, and write nothing."""
    for argv in (["rewrite", "-o", tmp_path / "out"], ["diff"]):
        status = main([str(a) for a in [*argv, "--kernel-tree", TREES / XEN, "-D", "CONFIG_XEN",
                                        "--no-kernel-checks"]])
        captured = capsys.readouterr()
        assert status == 2 and captured.out == ""
        assert captured.err == (
            "arch/ia64/kernel/relocate_kernel.S: error: with CONFIG_XEN on, the hypervisor calls "
            "the control page and it keeps its stacks, so no configuration checked here "
            "changes: drop -D CONFIG_XEN to check the change with CONFIG_XEN off and on\n")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------- the 2006 shape


def test_kexec_fake_sal_rendez_offset_is_where_the_entry_point_lies(era_runs: EraRuns,
                                                                    tmp_path: Path) -> None:
    made = era_runs("linux-2.6.18-rhel5")
    _, path = objects(made, tmp_path, [])
    new = load_object(path)
    word = new.symbol("kexec_fake_sal_rendez_offset")
    assert (word.binding, word.section) == ("GLOBAL", ".text")
    value = int.from_bytes(new.section_data(".text")[word.value:word.value + 8], "little")
    offset = new.symbol("kexec_fake_sal_rendez").value - new.symbol("relocate_new_kernel").value
    assert value == offset and 0 < offset < 4096
    # measured by the assembler, not a relocation the linker would fill in
    assert not [r for r in new.relocations if word.value <= r.offset < word.value + 8]
    # C reads it through the header's declaration
    header = (made.out / "kexec_control_page.h").read_text()
    assert "extern const unsigned long kexec_fake_sal_rendez_offset;\n" in header
