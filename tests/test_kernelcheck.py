"""The kernel checks on the whole Linux 6.1 tree: Kbuild with sparse and gcc, and Coccinelle.

A hand-made correct change (tests/kexec_change.py, made at test time from the tree's own
files) passes `relgen verify` with its kernel checks; each change broken on purpose fails and
names its check. One prepared pristine build (defconfig, prepare, the pristine diagnostics)
serves the whole session, cached in .cache/kernel-checks; the user's tree is never written.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kexec_change as kc
from conftest import ROOT, missing, require_tool
from relgen import pipeline
from relgen.checks import kernel as kernelcheck
from relgen.checks.inputs import Inputs, load_inputs
from relgen.checks.report import Check
from relgen.checks.runner import Plan, verify
from relgen.source.files import load_source
from relgen.toolchain.tree import KernelTree

MACHINE_KEXEC_UNIT = ("arch/ia64/kernel/machine_kexec.o",)
GCC = "kernel checks: gcc"
SPARSE = "kernel checks: sparse"


@pytest.fixture(scope="session")
def full_tree(upstream_tree: Path, toolchain: None) -> KernelTree:
    """The whole extracted tree (Kbuild needs it all) and the programs Kbuild runs."""
    for program in kernelcheck.PROGRAMS:
        require_tool(program)
    tree = KernelTree(upstream_tree.resolve())
    reason = kernelcheck.missing_for_kbuild(tree)
    if reason is not None:
        missing(f"a tree Kbuild can use ({reason})")
    return tree


@pytest.fixture(scope="session")
def check_cache(full_tree: KernelTree, untouched_stamp: Path) -> Iterator[Path]:
    """The prepared pristine build, shared by every test of the session (and later runs)."""
    cache = ROOT / ".cache" / "kernel-checks"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(kernelcheck.CACHE_ENVIRONMENT_VARIABLE, str(cache))
        kernelcheck.prepare(full_tree, cache)
        yield cache


@pytest.fixture(scope="session")
def untouched_stamp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file older than anything the session's kernel checks could write."""
    stamp = tmp_path_factory.mktemp("stamp") / "stamp"
    stamp.write_text("")
    return stamp


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
        untouched_stamp: Path, tmp_path: Path) -> None:
    change = kc.correct_change(full_tree.root, regenerated)
    out = tmp_path / "out"
    out.mkdir()
    (out / pipeline.SOURCE_NAME).write_bytes(regenerated[kc.SOURCE])
    (out / pipeline.HEADER_NAME).write_bytes(regenerated[kc.HEADER])
    (out / pipeline.PATCH_NAME).write_text(four_file_patch(full_tree.root, change, tmp_path))
    inputs = load_inputs(out, full_tree, original=None, entry="relocate_new_kernel")
    report = verify(inputs, Plan(require_kernel=True))
    checks = list(report.checks)
    kernel = [c for c in checks if c.name.startswith(("kernel checks", "coccinelle"))]
    assert [c.name for c in kernel if not c.passed] == []
    assert len(kernel) == 6  # gcc, sparse and the four Coccinelle scripts
    gcc = _named(checks, GCC)
    # every unit that includes <asm/kexec.h>, the ones the issue names among them
    for unit in ("arch/ia64/kernel/machine_kexec.o", "arch/ia64/kernel/crash.o",
                 "arch/ia64/kernel/crash_dump.o", "kernel/kexec.o", "kernel/kexec_core.o",
                 "arch/ia64/kernel/relocate_kernel.o"):
        assert any(unit in line.split() for line in gcc.evidence)


# (name, kexec.h edit, machine_kexec.c edit, failing check, text in its evidence)
BROKEN: list[tuple[str, Callable[[str], str] | None, Callable[[str], str] | None, str, str]] = [
    ("4-argument call", None, lambda t: kc.change_machine_kexec_c(t, arguments=None),
     GCC, "too few arguments"),
    ("misspelt field", None, lambda t: kc.change_machine_kexec_c(t).replace(
        "arch.stacks) + KEXEC", "arch.stack) + KEXEC"), GCC, "has no member named 'stack'"),
    ("old typedef kept", None, lambda t: kc.change_machine_kexec_c(t, typedef=True),
     GCC, "conflicting types for 'relocate_new_kernel_t'"),
    ("struct page * for a physical address", None, lambda t: kc.change_machine_kexec_c(
        t, arguments=("image->arch.stacks", kc.REGISTER_STACK)), GCC, "integer from pointer"),
    ("ARCH_HAS_KIMAGE_ARCH missing", lambda t: kc.change_kexec_h(t, arch_hook=False), None,
     GCC, "has no member named 'arch'"),
    ("header not included", lambda t: kc.change_kexec_h(t, include=False), None,
     GCC, "relocate_new_kernel_t"),
    ("stacks swapped", None, lambda t: kc.change_machine_kexec_c(
        t, arguments=(kc.REGISTER_STACK, kc.MEMORY_STACK)),
     "coccinelle: the memory stack is argument 5", "swapped"),
    ("alloc_pages", None, lambda t: kc.change_machine_kexec_c(t, allocation=kc.ALLOCATION.replace(
        "kimage_alloc_control_pages(image,", "alloc_pages(GFP_KERNEL,")),
     "coccinelle: the stacks come from kimage_alloc_control_pages()", "alloc_pages()"),
    ("stacks freed in cleanup", None, lambda t: kc.change_machine_kexec_c(
        t, cleanup=f"\t__free_pages(image->arch.stacks, {kc.STACKS_ORDER});\n"),
     "coccinelle: the stacks are not freed", "__free_pages()"),
    ("stack never allocated", None, lambda t: kc.change_machine_kexec_c(t, allocation=""),
     "coccinelle: every stack passed to relocate_new_kernel is allocated", "does not allocate"),
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
    checks = kernelcheck.kernel_checks(full_tree, change, cache=check_cache,
                                       units=MACHINE_KEXEC_UNIT)
    failed = [c for c in checks if not c.passed]
    named = [c for c in failed if c.name.startswith(failing)]
    assert named, [c.name for c in failed]
    assert any(evidence in line for line in named[0].evidence), named[0].evidence
    if failing.startswith("coccinelle"):
        # what types cannot see: sparse and gcc pass it
        assert _named(checks, GCC).passed and _named(checks, SPARSE).passed


def test_the_users_tree_is_not_written(full_tree: KernelTree, check_cache: Path,
                                       regenerated: dict[str, bytes],
                                       untouched_stamp: Path) -> None:
    change = kc.correct_change(full_tree.root, regenerated)
    kernelcheck.kernel_checks(full_tree, change, cache=check_cache, units=MACHINE_KEXEC_UNIT)
    newer = subprocess.run(["find", str(full_tree.root), "-newer", str(untouched_stamp)],
                           capture_output=True, text=True, check=True).stdout.split()
    assert newer == []
    for name, data in change.items():
        path = full_tree.root / name
        assert not path.is_file() or path.read_bytes() != data


def test_a_partial_tree_says_which_checks_did_not_run(tmp_path: Path) -> None:
    (tmp_path / "arch" / "ia64" / "kernel").mkdir(parents=True)
    tree = KernelTree(tmp_path)
    (check,) = kernelcheck.kernel_checks(tree, {kc.KEXEC_H: b""})
    assert check.status == "not run" and check.evidence[0].startswith("  not run: ")
    assert "Makefile" in check.evidence[0]
    (required,) = kernelcheck.kernel_checks(tree, {kc.KEXEC_H: b""}, required=True)
    assert not required.passed


def test_a_tree_configured_in_place_is_not_used(tmp_path: Path, full_tree: KernelTree) -> None:
    copy = tmp_path / "tree"
    for name in kernelcheck.KBUILD_FILES:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("")
    (copy / ".config").write_text("")
    (check,) = kernelcheck.kernel_checks(KernelTree(copy), {})
    assert "configured in place" in check.evidence[0]


def test_changed_paths_must_be_kernel_relative(full_tree: KernelTree) -> None:
    with pytest.raises(ValueError, match="kernel-relative"):
        kernelcheck.kernel_checks(full_tree, {"../etc/passwd": b""})


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


def test_a_run_killed_halfway_is_put_right(full_tree: KernelTree, check_cache: Path,
                                           regenerated: dict[str, bytes]) -> None:
    change = kc.correct_change(full_tree.root, regenerated)
    prepared = kernelcheck.prepare(full_tree, check_cache)
    # what a run killed inside changed_files() leaves: its note and its files in the copy
    note = kernelcheck.changed_note(prepared.source)
    note.write_text(json.dumps(sorted(change)), encoding="utf-8")
    for name, data in change.items():
        (prepared.source / name).unlink(missing_ok=True)
        (prepared.source / name).write_bytes(data)
    kernelcheck.prepare(full_tree, check_cache)
    assert not note.exists()
    for name in change:
        copy = prepared.source / name
        assert copy.is_file() == (full_tree.root / name).is_file()
        if copy.is_file():
            assert copy.read_bytes() == (full_tree.root / name).read_bytes()


# ------------------------------------- relgen's own patch, broken on purpose, through verify

CALL_TAIL = ("\t\t     page_to_phys(image->arch.stack_pages),\n"
             "\t\t     page_to_phys(image->arch.stack_pages) + KEXEC_MEMORY_STACK_SIZE);\n")
BROKEN_C = {
    "4-argument call": ("arch/ia64/kernel/machine_kexec.c",
                        "(unsigned long)pal_addr),\n" + CALL_TAIL,
                        "(unsigned long)pal_addr));\n",
                        "FAIL  the call of relocate_new_kernel passes 6 arguments"),
    "stacks swapped": ("arch/ia64/kernel/machine_kexec.c", CALL_TAIL,
                       "\t\t     page_to_phys(image->arch.stack_pages) + "
                       "KEXEC_MEMORY_STACK_SIZE,\n"
                       "\t\t     page_to_phys(image->arch.stack_pages));\n",
                       "FAIL  coccinelle: the memory stack is argument 5 and the register stack "
                       "argument 6"),
    "alloc_pages": ("arch/ia64/kernel/machine_kexec.c", "kimage_alloc_control_pages(image,",
                    "alloc_pages(GFP_KERNEL,",
                    "FAIL  coccinelle: the stacks come from kimage_alloc_control_pages(), not "
                    "another allocator"),
    "freed in cleanup": ("arch/ia64/kernel/machine_kexec.c",
                         "void machine_kexec_cleanup(struct kimage *image)\n{\n",
                         "void machine_kexec_cleanup(struct kimage *image)\n{\n"
                         "\t__free_pages(image->arch.stack_pages,\n"
                         "\t\t     get_order(KEXEC_CONTROL_STACKS_SIZE));\n",
                         "FAIL  coccinelle: the stacks are not freed in machine_kexec_cleanup()"),
    "page size left at 20480": ("arch/ia64/include/asm/kexec.h",
                                "#define KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE",
                                "#define KEXEC_CONTROL_PAGE_SIZE (8192 + 8192 + 4096)",
                                "FAIL  KEXEC_CONTROL_PAGE_SIZE is no longer 20480"),
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

    path, old, new, failing = BROKEN_C[case]
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
    assert main(["verify", str(broken), "--kernel-tree", str(full_tree.root),
                 "--require-kernel-checks"]) == 1
    out = capsys.readouterr().out
    assert failing in out, out
