"""The kernel checks' Kbuild route, on the whole Linux 6.1 tree: sparse, gcc and Coccinelle.

A hand-made correct change (tests/kexec_change.py, made at test time from the tree's own
files) passes `relgen verify` with its kernel checks; each change broken on purpose fails and
names its check. One prepared pristine tree (the copy, defconfig, prepare, the recorded
command lines, the pristine outcomes) serves the whole session, cached in the kernel checks'
cache of the tests; the user's tree is never written. Every test here runs Kbuild, so the
module is marked `kbuild`: `-m "not kbuild"` leaves it out.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import kexec_change as kc
from conftest import KERNEL_CHECK_CACHE, missing, require_tool
from relgen import pipeline
from relgen.checks import kbuild, kernel
from relgen.checks.cocci import cocci_scripts
from relgen.checks.inputs import Inputs, load_inputs
from relgen.checks.report import Check
from relgen.checks.runner import Plan, verify
from relgen.source.files import load_source
from relgen.toolchain.tree import KernelTree

pytestmark = pytest.mark.kbuild

MACHINE_KEXEC_UNIT = ("arch/ia64/kernel/machine_kexec.o",)
GCC = "kernel checks: gcc"
SPARSE = "kernel checks: sparse"


@pytest.fixture(scope="session")
def full_tree(upstream_tree: Path, toolchain: None) -> KernelTree:
    """The whole extracted tree (Kbuild needs it all) and the programs Kbuild runs."""
    for program in kbuild.PROGRAMS:
        require_tool(program)
    tree = KernelTree(upstream_tree.resolve())
    if kbuild.missing_files(tree) or kernel.why_not(tree) is not None:
        missing(f"a tree Kbuild can use ({kbuild.missing_files(tree) or kernel.why_not(tree)})")
    return tree


@pytest.fixture(scope="session")
def check_cache(full_tree: KernelTree) -> Path:
    """The prepared pristine tree, shared by every test of the session (and later runs)."""
    with kernel.prepared_tree(full_tree, KERNEL_CHECK_CACHE) as prepared:
        assert prepared.recording.units
    return KERNEL_CHECK_CACHE


@pytest.fixture(scope="session")
def regenerated(full_tree: KernelTree) -> dict[str, bytes]:
    """relgen's own regenerated .S and header for the tree."""
    with tempfile.TemporaryDirectory() as work:
        source = load_source(full_tree.relocate_kernel, full_tree)
        outputs = pipeline.primary_outputs(pipeline.regenerate(source, full_tree, Path(work)))
    return {kc.SOURCE: outputs[pipeline.SOURCE_NAME], kc.HEADER: outputs[pipeline.HEADER_NAME]}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def four_file_patch(tree: Path, change: dict[str, bytes], work: Path) -> str:
    """The change as one git diff with a/ b/ paths from the kernel root."""
    repository = work / "repository"
    repository.mkdir()
    _git(repository, "init", "-q")
    for name in change:
        if (tree / name).is_file():
            (repository / name).parent.mkdir(parents=True, exist_ok=True)
            (repository / name).write_bytes((tree / name).read_bytes())
    _git(repository, "add", "-A")
    _git(repository, "commit", "-qm", "pristine")
    for name, data in change.items():
        (repository / name).parent.mkdir(parents=True, exist_ok=True)
        (repository / name).write_bytes(data)
    _git(repository, "add", "-A")
    return _git(repository, "diff", "--cached")


def kernel_checks_of(inputs: Inputs) -> list[Check]:
    """What verify's kernel checks say of an output folder (required: not run fails)."""
    plan = Plan(objects=False, execution=None, header=False, require_kernel=True)
    return [check for check in verify(inputs, plan).checks
            if check.name.startswith(("kernel checks", "coccinelle"))]


def _named(checks: list[Check], prefix: str) -> Check:
    (found,) = [c for c in checks if c.name.startswith(prefix)]
    return found


def test_correct_change_passes_verify_with_kernel_checks(
        full_tree: KernelTree, check_cache: Path, regenerated: dict[str, bytes],
        tmp_path: Path) -> None:
    change = kc.correct_change(full_tree.root, regenerated)
    out = tmp_path / "out"
    out.mkdir()
    (out / pipeline.SOURCE_NAME).write_bytes(regenerated[kc.SOURCE])
    (out / pipeline.HEADER_NAME).write_bytes(regenerated[kc.HEADER])
    (out / pipeline.PATCH_NAME).write_text(four_file_patch(full_tree.root, change, tmp_path))
    inputs = load_inputs(out, full_tree, original=None, entry="relocate_new_kernel")
    report = verify(inputs, Plan(require_kernel=True))
    checks = list(report.checks)
    found = [c for c in checks if c.name.startswith(("kernel checks", "coccinelle"))]
    assert [c.name for c in found if not c.passed] == []
    assert len(found) == 6  # gcc, sparse and the four Coccinelle scripts
    gcc = _named(checks, GCC)
    assert gcc.evidence[0].startswith("  route: Kbuild of Linux 6.1")
    # every unit that includes <asm/kexec.h>, the ones the issue names among them
    for unit in ("arch/ia64/kernel/machine_kexec.o", "arch/ia64/kernel/crash.o",
                 "arch/ia64/kernel/crash_dump.o", "kernel/kexec.o", "kernel/kexec_core.o",
                 "arch/ia64/kernel/relocate_kernel.o"):
        assert any(unit in line.split() for line in gcc.evidence)


def test_the_run_says_what_the_commit_message_states(full_tree: KernelTree, check_cache: Path,
                                                    regenerated: dict[str, bytes]) -> None:
    run = kernel.kernel_checks(full_tree, kc.correct_change(full_tree.root, regenerated),
                               cache=check_cache)
    assert run.not_run is None and run.route is not None
    assert run.route.startswith("Kbuild of Linux 6.1")
    assert len(run.units) == 32 and "arch/ia64/kernel/relocate_kernel.o" in run.units
    assert run.cocci_scripts == len(cocci_scripts()) == 4


# (name, kexec.h edit, machine_kexec.c edit, failing check, text in its evidence)
BROKEN: list[tuple[str, Callable[[str], str] | None, Callable[[str], str] | None, str, str]] = [
    ("4-argument call", None, lambda t: kc.change_machine_kexec_c(t, arguments=None),
     GCC, "too few arguments"),
    ("misspelt field", None, lambda t: kc.change_machine_kexec_c(t).replace(
        "arch.stacks + KEXEC", "arch.stack + KEXEC"), GCC, "has no member named 'stack'"),
    ("old typedef kept", None, lambda t: kc.change_machine_kexec_c(t, typedef=False),
     GCC, "too many arguments"),
    ("struct page * for a physical address", None, lambda t: kc.change_machine_kexec_c(
        t, allocation=kc.ALLOCATION.replace("page_to_phys(stacks)", "stacks")),
     GCC, "integer from pointer"),
    ("ARCH_HAS_KIMAGE_ARCH missing", lambda t: kc.change_kexec_h(t, arch_hook=False), None,
     GCC, "has no member named 'arch'"),
    ("header not included", lambda t: kc.change_kexec_h(t, include=False), None,
     GCC, "KEXEC_MEMORY_STACK_SIZE"),
    ("stacks swapped", None, lambda t: kc.change_machine_kexec_c(
        t, arguments=(kc.REGISTER_STACK, kc.MEMORY_STACK)),
     "coccinelle: the memory stack is argument 5", "swapped"),
    ("alloc_pages", None, lambda t: kc.change_machine_kexec_c(t, allocation=kc.ALLOCATION.replace(
        "kimage_alloc_control_pages(image,", "alloc_pages(GFP_KERNEL,")),
     "coccinelle: the stacks come from kimage_alloc_control_pages()", "alloc_pages()"),
    ("stacks freed in cleanup", None, lambda t: kc.change_machine_kexec_c(
        t, cleanup="\t__free_pages(pfn_to_page(image->arch.stacks >> PAGE_SHIFT),\n"
                   f"\t\t     {kc.STACKS_ORDER});\n"),
     "coccinelle: the stacks are not freed", "__free_pages()"),
    ("stack never allocated", None, lambda t: kc.change_machine_kexec_c(t, allocation=""),
     "coccinelle: every stack passed to relocate_new_kernel comes from", ""),
]


@pytest.mark.parametrize(("kexec_h", "machine_kexec_c", "failing", "evidence"),
                         [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_change_fails_and_names_its_check(
        full_tree: KernelTree, check_cache: Path, regenerated: dict[str, bytes],
        kexec_h: Callable[[str], str] | None, machine_kexec_c: Callable[[str], str] | None,
        failing: str, evidence: str) -> None:
    change = kc.broken(full_tree.root, regenerated, kexec_h=kexec_h,
                       machine_kexec_c=machine_kexec_c)
    # machine_kexec.o alone: every break here shows there, and the session stays short
    checks = list(kernel.kernel_checks(full_tree, change, cache=check_cache,
                                       units=MACHINE_KEXEC_UNIT).checks)
    failed = [c for c in checks if not c.passed]
    named = [c for c in failed if c.name.startswith(failing)]
    assert named, [c.name for c in failed]
    assert any(evidence in line for line in named[0].evidence), named[0].evidence
    if failing.startswith("coccinelle"):
        # what types cannot see: sparse and gcc pass it
        assert _named(checks, GCC).passed and _named(checks, SPARSE).passed


def _stat_of_every_file(tree: Path) -> dict[str, tuple[int, int, int]]:
    found = {}
    for folder, _, names in os.walk(tree):
        for name in names:
            status = os.lstat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (status.st_ino, status.st_size,
                                                 status.st_mtime_ns)
    return found


def test_the_users_tree_is_not_written(full_tree: KernelTree, check_cache: Path,
                                       regenerated: dict[str, bytes], tmp_path: Path) -> None:
    """Neither rewrite nor verify writes the tree. The copy in the cache shares every file's
    inode with it, so a write through the copy would change the tree's file: the folders of
    the files a change touches are compared by content, and every file of the tree by inode,
    size and time, before and after a rewrite, a verify, and a check of a change no earlier
    run made (which writes into the copy)."""
    from relgen.cli import main

    change = kc.correct_change(full_tree.root, regenerated)
    touched = [path for name in change for path in (full_tree.root / name).parent.iterdir()]
    contents = {path: path.read_bytes() for path in touched if path.is_file()}
    stats = _stat_of_every_file(full_tree.root)
    out = tmp_path / "out"
    assert main(["rewrite", "--kernel-tree", str(full_tree.root), "-o", str(out), "-q"]) == 0
    assert main(["verify", str(out), "--kernel-tree", str(full_tree.root),
                 "--require-kernel-checks", "-q"]) == 0
    change[kc.MACHINE_KEXEC_C] += f"/* not checked before: {time.time_ns()} */\n".encode()
    run = kernel.kernel_checks(full_tree, change, cache=check_cache, units=MACHINE_KEXEC_UNIT)
    assert run.units == MACHINE_KEXEC_UNIT and run.not_run is None
    assert not any("checked earlier" in line for c in run.checks for line in c.evidence)
    assert {path: path.read_bytes() for path in touched if path.is_file()} == contents
    assert _stat_of_every_file(full_tree.root) == stats


def test_kbuild_refuses_a_tree_configured_in_place(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for name in kbuild.KBUILD_FILES:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("")
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    (tree / kc.KEXEC_H).parent.mkdir(parents=True)
    (tree / kc.KEXEC_H).write_text("#define KEXEC_CONTROL_PAGE_SIZE (8192 + 8192 + 4096)\n")
    (tree / ".config").write_text("")
    assert kernel.route_of(KernelTree(tree)) == kernel.KBUILD
    (check,) = kernel.kernel_checks(KernelTree(tree), {}).checks
    assert check.status == "not run" and "configured in place" in check.evidence[0]


def test_changed_paths_must_be_kernel_relative(full_tree: KernelTree) -> None:
    with pytest.raises(ValueError, match="kernel-relative"):
        kernel.kernel_checks(full_tree, {"../etc/passwd": b""})


def test_relgens_own_output_passes_the_kernel_checks(full_tree: KernelTree,
                                                    tmp_path: Path) -> None:
    """The whole change as `relgen rewrite` writes it: Kbuild with sparse and gcc report
    nothing new and the Coccinelle checks nothing at all, with the checks required."""
    from relgen.cli import main

    out = tmp_path / "out"
    assert main(["rewrite", "--kernel-tree", str(full_tree.root), "-o", str(out)]) == 0
    inputs = load_inputs(out, full_tree, original=None, entry="relocate_new_kernel")
    checks = kernel_checks_of(inputs)
    assert len(checks) >= 2 and all(check.passed for check in checks), \
        [line for check in checks for line in check.evidence]
    assert not any("not run" in line for check in checks for line in check.evidence)
    assert main(["verify", str(out), "--kernel-tree", str(full_tree.root),
                 "--require-kernel-checks"]) == 0
    # the commit message says what ran, in numbers (issue 19.5)
    message = " ".join((out / "relocate_kernel.patch").read_text().split("\n---\n")[0].split())
    clause = re.search(r"- sparse and gcc's syntax check \(through a check-only ia64 compiler\) "
                       r"on the (\d+) units that include <asm/kexec\.h> and relocate_kernel\.S "
                       r"report nothing the unpatched tree does not, and the 4 Coccinelle checks "
                       r"of where the stacks come from, who frees them and their order report "
                       r"nothing\.", message)
    assert clause is not None, message
    assert int(clause.group(1)) >= 20


def test_verify_does_not_run_them_on_another_input(full_tree: KernelTree,
                                                   tmp_path: Path) -> None:
    from relgen.cli import main

    other = tmp_path / "relocate_kernel.S"
    other.write_bytes(full_tree.relocate_kernel.read_bytes() + b"/* edited by hand */\n")
    out = tmp_path / "out"
    assert main(["rewrite", str(other), "--kernel-tree", str(full_tree.root), "-o", str(out)]) == 0
    inputs = load_inputs(out, full_tree, original=other, entry="relocate_new_kernel")
    (check,) = kernel_checks_of(inputs)
    assert not check.passed and "is not the tree's own" in check.evidence[0]


# ------------------------------------- relgen's own patch, broken on purpose, through verify

CALL_TAIL = ("\t\t     image->arch.stacks,\n"
             "\t\t     image->arch.stacks + KEXEC_MEMORY_STACK_SIZE);\n")
ALLOCATOR = "stacks = kimage_alloc_control_pages(image, order);"
# (file, text of relgen's patch, its replacement, the failure verify names, kernel checks on)
BROKEN_C = {
    "4-argument call": ("arch/ia64/kernel/machine_kexec.c",
                        "(unsigned long)pal_addr),\n" + CALL_TAIL,
                        "(unsigned long)pal_addr));\n",
                        "FAIL: pass_stacks: the call of relocate_new_kernel passes 4 arguments, "
                        "not 6", False),
    "stacks swapped": ("arch/ia64/kernel/machine_kexec.c", CALL_TAIL,
                       "\t\t     image->arch.stacks + KEXEC_MEMORY_STACK_SIZE,\n"
                       "\t\t     image->arch.stacks);\n",
                       "FAIL  coccinelle: the memory stack is argument 5 and the register stack "
                       "argument 6", True),
    "alloc_pages": ("arch/ia64/kernel/machine_kexec.c", ALLOCATOR,
                    "stacks = alloc_pages(GFP_KERNEL, order);",
                    "FAIL  coccinelle: the stacks come from kimage_alloc_control_pages(), not "
                    "another allocator", True),
    "freed in cleanup": ("arch/ia64/kernel/machine_kexec.c",
                         "void machine_kexec_cleanup(struct kimage *image)\n{\n",
                         "void machine_kexec_cleanup(struct kimage *image)\n{\n"
                         "\t__free_pages(pfn_to_page(image->arch.stacks >> PAGE_SHIFT),\n"
                         "\t\t     get_order(KEXEC_CONTROL_STACKS_SIZE));\n",
                         "FAIL  coccinelle: the stacks are not freed in machine_kexec_cleanup()",
                         True),
    "page size left at 20480": ("arch/ia64/include/asm/kexec.h",
                                "#define KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE",
                                "#define KEXEC_CONTROL_PAGE_SIZE (8192 + 8192 + 4096)",
                                "FAIL: control_size: KEXEC_CONTROL_PAGE_SIZE is (8192 + 8192 + "
                                "4096), not KEXEC_CONTROL_CODE_PAGE_SIZE", False),
}


@pytest.fixture(scope="module")
def relgen_output(full_tree: KernelTree, check_cache: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    from relgen.cli import main

    out = tmp_path_factory.mktemp("own") / "out"
    assert main(["rewrite", "--kernel-tree", str(full_tree.root), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("case", list(BROKEN_C))
def test_relgens_patch_broken_on_purpose_fails_verify(
        case: str, full_tree: KernelTree, relgen_output: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from relgen.cli import main

    path, old, new, failing, kernel_checks = BROKEN_C[case]
    # the four files as the patch leaves them, one C file broken, the diff made again by git
    before, after = tmp_path / "a", tmp_path / "b"
    paths = ["arch/ia64/kernel/relocate_kernel.S", "arch/ia64/include/asm/kexec.h",
             "arch/ia64/kernel/machine_kexec.c"]
    for side in (before, after):
        for name in paths:
            (side / name).parent.mkdir(parents=True, exist_ok=True)
            (side / name).write_bytes((full_tree.root / name).read_bytes())
    subprocess.run(["git", "apply", str(relgen_output / "relocate_kernel.patch")], cwd=after,
                   check=True)
    text = (after / path).read_text()
    assert old in text, case
    (after / path).write_text(text.replace(old, new, 1))
    # the folders a/ and b/ are the diff's a/ and b/ prefixes: paths from the kernel root
    diff = subprocess.run(["git", "diff", "--no-index", "--no-prefix", "a", "b"], cwd=tmp_path,
                          capture_output=True, check=False).stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("relocate_kernel.S", "kexec_control_page.h"):
        (broken / name).write_bytes((relgen_output / name).read_bytes())
    (broken / "relocate_kernel.patch").write_bytes(diff)
    capsys.readouterr()
    # the patch's own checks catch two of them: the kernel checks need not run for those
    assert main(["verify", str(broken), "--kernel-tree", str(full_tree.root),
                 "--require-kernel-checks" if kernel_checks else "--no-kernel-checks"]) == 1
    out = capsys.readouterr().out
    assert failing in out, out
