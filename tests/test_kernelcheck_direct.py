"""The kernel checks' direct route, on the skeleton trees of tests/fixtures/trees.

These trees have no Kbuild (and the real trees of their eras have one today's make refuses),
so the checkers run on the changed units with the flags that Kbuild of the tree's era would
give, against the pristine tree: a change that adds a gcc error and a sparse warning fails
both checks, each naming what is new; a clean change passes; relgen's own change passes
every kernel check; and neither rewrite nor verify writes a byte of the tree.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, KERNEL_CHECK_CACHE, require_tool
from relgen.checks import kernel
from relgen.checks.cocci import cocci_scripts
from relgen.checks.report import Check
from relgen.progress import Progress
from relgen.toolchain.tree import KernelTree

pytestmark = [pytest.mark.toolchain, pytest.mark.coccinelle, pytest.mark.slow]

TREES = FIXTURES / "trees"
MACHINE_KEXEC_C = "arch/ia64/kernel/machine_kexec.c"
RELOCATE_KERNEL_S = "arch/ia64/kernel/relocate_kernel.S"
UNITS = ("arch/ia64/kernel/machine_kexec.o", "arch/ia64/kernel/relocate_kernel.o")
CLEANUP = "void machine_kexec_cleanup(struct kimage *image)\n{\n"
# a gcc error (an undeclared function, under -Werror-implicit-function-declaration) and a
# sparse warning gcc does not give (0 for a pointer: "Using plain integer as NULL pointer")
BROKEN = "\timage->control_code_page = 0;\n\tundeclared_function();\n"
GCC_ERROR = "implicit declaration of function 'undeclared_function'"
SPARSE_WARNING = "Using plain integer as NULL pointer"
GCC, SPARSE = "kernel checks: gcc", "kernel checks: sparse"


@pytest.fixture(autouse=True)
def checkers() -> None:
    for program in ("gcc", "sparse", "spatch", "ia64-linux-gnu-as"):
        require_tool(program)


def _machine_kexec_c(tree: Path, inserted: str) -> dict[str, bytes]:
    text = (tree / MACHINE_KEXEC_C).read_text()
    assert text.count(CLEANUP) == 1
    return {MACHINE_KEXEC_C: text.replace(CLEANUP, CLEANUP + inserted).encode()}


def _both_units(tree: Path, inserted: str) -> dict[str, bytes]:
    """`inserted` in machine_kexec.c, and a comment more in relocate_kernel.S: a change that
    both units read."""
    return {**_machine_kexec_c(tree, inserted),
            RELOCATE_KERNEL_S: (tree / RELOCATE_KERNEL_S).read_bytes() + b"/* changed */\n"}


def _named(run: kernel.KernelCheckRun, prefix: str) -> Check:
    (found,) = [c for c in run.checks if c.name.startswith(prefix)]
    return found


@pytest.mark.parametrize("era", ["linux-2.6.18-xen", "linux-2.6.24", "linux-3.4"])
def test_a_gcc_error_and_a_sparse_warning_are_both_caught(era: str) -> None:
    tree = KernelTree(TREES / era)
    run = kernel.kernel_checks(tree, _machine_kexec_c(tree.root, BROKEN),
                               cache=KERNEL_CHECK_CACHE)
    gcc, sparse = _named(run, GCC), _named(run, SPARSE)
    assert not gcc.passed and not sparse.passed
    assert any(line.startswith("  FAIL: new: ") and GCC_ERROR in line for line in gcc.evidence)
    assert any(line.startswith("  FAIL: new: ") and SPARSE_WARNING in line
               for line in sparse.evidence)
    assert not any(SPARSE_WARNING in line for line in gcc.evidence)


@pytest.mark.parametrize("era", ["linux-2.6.18-xen", "linux-2.6.24", "linux-3.4"])
def test_a_clean_change_passes_and_says_which_route_and_units(era: str) -> None:
    tree = KernelTree(TREES / era)
    run = kernel.kernel_checks(tree, _both_units(tree.root, "\t/* nothing */\n"),
                               cache=KERNEL_CHECK_CACHE)
    version = tree.era.version
    assert run.not_run is None and run.cocci_scripts == len(cocci_scripts())
    assert run.route == (f"direct, with the flags Kbuild of {version} would give (the tree "
                         "has no Kbuild to run)")
    assert run.units[:2] == UNITS
    for check in (_named(run, GCC), _named(run, SPARSE)):
        assert check.passed, check.evidence
        assert check.evidence[0].startswith(f"  route: direct, with the flags Kbuild of {version}")
        assert " ".join(UNITS) in " ".join(check.evidence)


class Phases(Progress):
    """Every phase a run says it is in."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def phase(self, text: str) -> None:
        self.said.append(text)


def test_the_progress_counts_the_units(tmp_path: Path) -> None:
    tree = KernelTree(TREES / "linux-2.6.24")
    phases = Phases()
    kernel.kernel_checks(tree, _both_units(tree.root, BROKEN), cache=tmp_path / "cache",
                         progress=phases)
    assert "kernel checks: the pristine tree: sparse and gcc 2/2 units" in phases.said
    prefix = "kernel checks: sparse and gcc "
    counts = [text.removeprefix(prefix) for text in phases.said if text.startswith(prefix)]
    done = [int(count.split("/")[0]) for count in counts]
    assert all(count.endswith("/2 units") for count in counts)
    assert done[0] == 0 and done[-1] == 2 and done == sorted(done)


def test_a_change_replays_only_the_units_that_read_a_changed_file() -> None:
    tree = KernelTree(TREES / "linux-2.6.24")
    run = kernel.kernel_checks(tree, {RELOCATE_KERNEL_S: (tree.root / RELOCATE_KERNEL_S)
                                      .read_bytes() + b"\n"}, cache=KERNEL_CHECK_CACHE)
    assert run.units == ("arch/ia64/kernel/relocate_kernel.o",)
    gcc, sparse = _named(run, GCC), _named(run, SPARSE)
    assert gcc.passed and sparse.passed
    assert "  1 more read no file the change touches: their pristine results stand" \
        in gcc.evidence
    assert any(line.startswith("  no unit sparse checks reads") for line in sparse.evidence)


def test_the_xen_tree_is_checked_with_the_hypervisors_switch_on_too() -> None:
    tree = KernelTree(TREES / "linux-2.6.18-xen")
    run = kernel.kernel_checks(tree, _both_units(tree.root, "\t/* nothing */\n"),
                               cache=KERNEL_CHECK_CACHE)
    assert run.units == (*UNITS, *(f"{unit}[CONFIG_XEN=y]" for unit in UNITS))


def test_a_tree_whose_kbuild_todays_make_refuses_goes_direct(tmp_path: Path) -> None:
    tree = tmp_path / "linux-2.6.24"
    shutil.copytree(TREES / "linux-2.6.24", tree)
    with (tree / "Makefile").open("a") as makefile:  # as the 2.6.x top Makefile has it
        makefile.write("\nconfig %config: scripts_basic outputmakefile FORCE\n")
    run = kernel.kernel_checks(KernelTree(tree), _machine_kexec_c(tree, BROKEN),
                               cache=tmp_path / "cache")
    assert run.route == ("direct, with the flags Kbuild of 2.6.24 would give (today's make "
                         "refuses its top Makefile: mixed implicit and normal rules)")
    assert not _named(run, GCC).passed


@pytest.mark.parametrize(("remove", "write", "reason"), [
    ("arch/ia64/defconfig", None, "has none of arch/ia64/configs/generic_defconfig"),
    (None, ("arch/ia64/defconfig", "CONFIG_IA64=y\n"), "no unit that includes <asm/kexec.h> "
     "is enabled by arch/ia64/defconfig"),
    ("Makefile", None, "top Makefile"),
], ids=["no defconfig", "kexec not configured", "no version lines"])
def test_what_the_direct_route_cannot_check_it_says_in_one_line(
        tmp_path: Path, remove: str | None, write: tuple[str, str] | None, reason: str) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "linux-2.6.24", tree)
    if remove:
        (tree / remove).unlink()
    if write:
        (tree / write[0]).write_text(write[1])
    run = kernel.kernel_checks(KernelTree(tree), _machine_kexec_c(tree, ""),
                               cache=tmp_path / "cache")
    (check,) = run.checks
    assert check.status == "not run" and len(check.evidence) == 1
    assert reason in check.evidence[0] and run.route is None and run.units == ()
    (required,) = kernel.kernel_checks(KernelTree(tree), _machine_kexec_c(tree, ""),
                                       cache=tmp_path / "cache", required=True).checks
    assert required.status == "fail"


# ---------------------------------------------------------- relgen's own change, end to end


def _contents(tree: Path) -> dict[str, str]:
    """Every file of the tree by its sha256, and every link by its target."""
    found = {}
    for path in sorted(tree.rglob("*")):
        name = path.relative_to(tree).as_posix()
        if path.is_symlink():
            found[name] = "-> " + str(path.readlink())
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "folder"
    return found


@pytest.mark.parametrize("era", ["linux-2.6.18-xen", "linux-2.6.24"])
def test_relgens_change_passes_and_the_tree_is_not_written(era: str, tmp_path: Path) -> None:
    from relgen.cli import main

    tree = TREES / era
    before = _contents(tree)
    out = tmp_path / "out"
    assert main(["rewrite", "--kernel-tree", str(tree), "-o", str(out), "-q"]) == 0
    assert main(["verify", str(out), "--kernel-tree", str(tree), "--require-kernel-checks",
                 "-q"]) == 0
    assert _contents(tree) == before


def test_a_header_edited_in_the_tree_is_read_again(tmp_path: Path) -> None:
    """The cache is untrusted: a file a unit reads, changed in the tree since the pristine
    tree was prepared, prepares it again instead of answering from the results kept."""
    root = tmp_path / "linux-2.6.32"
    shutil.copytree(TREES / "linux-2.6.32", root)
    change = _machine_kexec_c(root, "\t(void)get_order(4096);\n")
    cache = tmp_path / "cache"
    assert _named(kernel.kernel_checks(KernelTree(root), change, cache=cache), GCC).passed
    page_h = root / "arch/ia64/include/asm/page.h"
    edited = page_h.read_text().replace("extern int get_order(unsigned long size);\n", "")
    page_h.unlink()  # a new file, as an editor writes one: the cache's copy keeps the old
    page_h.write_text(edited)
    gcc = _named(kernel.kernel_checks(KernelTree(root), change, cache=cache), GCC)
    assert not gcc.passed, gcc.evidence
    assert any("implicit declaration of function 'get_order'" in line for line in gcc.evidence)
