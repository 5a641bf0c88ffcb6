"""Execution evidence end to end: synthetic kexec images, both shapes run to the final branch
with identical copies, and regenerated outputs broken on purpose fail by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import FIXTURES, QUICK_OPTIONS, SharedRuns, broken_copy
from relgen.checks.execution.evidence import (
    ExecutionPlan,
    execution_evidence,
    handed_over,
    run_side,
)
from relgen.checks.execution.images import (
    IND_DESTINATION,
    IND_DONE,
    IND_INDIRECTION,
    IND_SOURCE,
    make_image,
)
from relgen.checks.inputs import load_inputs
from relgen.checks.twins import assemble_twins
from relgen.cli import main
from relgen.toolchain.assemble import assemble
from relgen.toolchain.tree import RELOCATE_KERNEL, KernelTree

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"
FIXTURE_2_6_20 = FIXTURES / "exec_2_6_20_shape.S"
PAGE = 16384


def page_list(image: object) -> list[int]:
    """The entries as relocate_new_kernel walks them, following IND_INDIRECTION."""
    pages = image.pages  # type: ignore[attr-defined]
    entries, entry = [], image.head  # type: ignore[attr-defined]
    place, index = None, 0
    while True:
        entries.append(entry)
        if entry & IND_DONE:
            return entries
        if entry & IND_INDIRECTION:
            place, index = entry & ~(PAGE - 1), 0
        assert place is not None
        entry = int.from_bytes(pages[place][index * 8:index * 8 + 8], "little")
        index += 1


def test_images_are_deterministic_and_shaped_like_the_kernels() -> None:
    image = make_image(7, pages=8)
    assert image == make_image(7, pages=8) and image != make_image(8, pages=8)
    entries = page_list(image)
    kinds = [e & 0xF for e in entries]
    assert kinds.count(IND_INDIRECTION) == image.indirection_pages == 2
    assert kinds.count(IND_SOURCE) == 8 and kinds[-1] == IND_DONE
    runs = [i for i, k in enumerate(kinds) if k == IND_DESTINATION]
    assert len(runs) == 3
    destinations = image.destinations
    # every run is of consecutive pages and spans more than one page
    starts = [e & ~0xF for e in entries if e & 0xF == IND_DESTINATION]
    for start in starts:
        assert start in destinations and start + PAGE in destinations
    sources = [s for _, s in image.copies]
    assert len(set(sources) | set(destinations)) == 16
    stacks = range(image.stack_block, image.stack_block + PAGE)
    control = range(image.control_page, image.control_page + image.control_pages * PAGE)
    for page in (*destinations, *sources):
        assert page not in stacks and page not in control
    assert all(image.pages[s] != image.pages[d] for d, s in image.copies)


def test_cpuinfo_offsets_are_those_of_the_standin(upstream_tree: Path, toolchain: None,
                                                  tmp_path: Path) -> None:
    from relgen.checks.execution import images as kexec_image
    assembled = assemble(upstream_tree / RELOCATE_KERNEL,
                                KernelTree(upstream_tree), tmp_path, page_size=PAGE)
    assert assembled.standins
    text = next(tmp_path.rglob("asm-offsets.h")).read_text()
    for name in ("BASE", "COUNT", "STRIDE"):
        value = re.search(rf"IA64_CPUINFO_PTCE_{name}_OFFSET (\d+)", text)
        assert value and int(value.group(1)) == getattr(kexec_image, f"CPUINFO_PTCE_{name}")


class Outputs:
    """`relgen rewrite` of each shape, made once per session when a test first asks for it
    (the same runs as tests/test_pipeline.py's upstream_out and shape): the output
    folder and the input, for --original."""

    def __init__(self, tree: Path, shared: SharedRuns) -> None:
        self.tree, self.shared = tree, shared

    def __getitem__(self, name: str) -> tuple[Path, Path]:
        source = {"6.1": self.tree / RELOCATE_KERNEL, "2006": FIXTURE_2006,
                  "2.6.20": FIXTURE_2_6_20}[name]
        # the tree's own file is the default input; the kernel checks say nothing of
        # execution: tests/test_kernelcheck.py runs them
        made = self.shared.rewrite(*([] if name == "6.1" else [source]), "--kernel-tree",
                                   self.tree, *QUICK_OPTIONS)
        assert made.status == 0, made.stdout
        return made.out, source


@pytest.fixture(scope="module")
def outputs(upstream_tree: Path, toolchain: None, shared_runs: SharedRuns) -> Outputs:
    return Outputs(upstream_tree, shared_runs)


def evidence_for(out: Path, source: Path, tree: Path, work: Path, plan: ExecutionPlan):
    inputs = load_inputs(out, KernelTree(tree), original=source,
                         entry="relocate_new_kernel")
    (twin,), failures = assemble_twins(inputs, work, (PAGE,))
    assert not failures and inputs.expected is not None
    return twin, inputs.expected.argument_registers, execution_evidence(
        twin.original_object, twin.new_object, twin.before, twin.after,
        inputs.expected.argument_registers, plan, page_size=PAGE)


@pytest.mark.parametrize("shape", ["6.1", "2006", "2.6.20"])
def test_both_shapes_run_to_the_final_branch_with_identical_copies(
        shape: str, outputs: Outputs, upstream_tree: Path,
        tmp_path: Path) -> None:
    out, source = outputs[shape]
    twin, registers, evidence = evidence_for(out, source, upstream_tree, tmp_path,
                                             ExecutionPlan(images=2, pages=5))
    verdicts = {name: passed for name, passed, _ in evidence.checks}
    assert len(verdicts) == 5 and all(verdicts.values()), evidence.checks
    summary = evidence.checks[0][2]
    assert "br.call.sptk.many b0=b6" in summary[1]
    assert any(line.startswith("  note: the original's copy loop ends with br.ctop") for line
               in summary)
    # the same image, run again here: the new kernel gets the same registers and copies
    from relgen.checks.execution.evidence import Side
    from relgen.checks.execution.run import load_program
    image = make_image(3, pages=4, control_bytes=twin.before.size)
    sizes = {s.name: s.size for s in twin.before.data_symbols}
    original = run_side(Side("original", load_program(twin.original_object, twin.before),
                             {s.name: s.offset for s in twin.before.data_symbols}, {}),
                        image, sizes)
    new = run_side(Side("regenerated", load_program(twin.new_object, twin.after), {},
                        {n: int(r[2:]) for n, r in registers.items()}), image, sizes)
    assert original.fault is None and new.fault is None
    assert handed_over(original) == handed_over(new)
    assert handed_over(new)["target"] == f"{image.start:#x}"
    for destination, source_page in image.copies:
        assert new.machine.memory.read(destination, PAGE) == image.pages[source_page]
    assert handed_over(new)["r12"] == "memory_stack+0x1ff0"
    assert handed_over(new)["ar.bspstore"] == "register_stack+0x0"
    assert new.machine.events == original.machine.events


def test_an_entry_ec_of_2_breaks_the_original_copy(outputs: Outputs,
                                                   upstream_tree: Path, tmp_path: Path) -> None:
    out, source = outputs["6.1"]
    _, _, evidence = evidence_for(out, source, upstream_tree, tmp_path,
                                  ExecutionPlan(images=1, pages=3, entry_ec=2))
    # the original's own copy goes wrong: the regenerated page does the same, no more
    ((name, passed, lines),) = evidence.checks
    assert name.startswith("execution: the original does not run to its end") and passed
    assert "  so this shows only that both versions behave alike up to there" in lines


@pytest.mark.parametrize(("shape", "old", "new", "failing"), [
    ("6.1", "add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4\n\tmov r8=in5",
     "add sp=KEXEC_MEMORY_STACK_SIZE - 16,in5\n\tmov r8=in4",
     "execution: writes only to destinations and each version's own stacks; sp and "
     "ar.bspstore in the same stack as before"),
    ("6.1", "add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4", "add sp=KEXEC_MEMORY_STACK_SIZE - 32,in4",
     "execution: the same branch target and registers handed to the new kernel"),
    ("6.1", "add r17=8, r17", "add r17=16, r17",
     "execution: every destination page equals its source, in both versions"),
    ("2006", "st8 [r17]=r14,8", "st8 [r17]=r14,16",
     "execution: every destination page equals its source, in both versions"),
    ("2.6.20", "mov r8=in5", "mov r8=in4",
     "execution: writes only to destinations and each version's own stacks; sp and "
     "ar.bspstore in the same stack as before"),
    ("6.1", "tbit.z p0, p6=r30, 2;;", "tbit.z p0, p6=r30, 3;;",
     "execution: every destination page equals its source, in both versions"),
    ("6.1", "ld8  r30=[in0], 8;;", "ld8  r30=[in0], 4;;",
     "execution: both versions run to the branch out of the page"),
])
def test_broken_outputs_fail_the_execution_check_by_name(
        shape: str, old: str, new: str, failing: str, outputs: Outputs,
        upstream_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, source = outputs[shape]
    copy = broken_copy(out, tmp_path, "relocate_kernel.S", old, new)
    assert main(["verify", str(copy), "--original", str(source),
                 "--kernel-tree", str(upstream_tree), "--no-kernel-checks"]) == 1
    report = capsys.readouterr().out
    assert f"FAIL  {failing}\n" in report
    if "[in0]" in old:
        assert "slot 0 `ld8 r30=[r32],4`: unaligned 8-byte load from" in report
    assert "PASS  execution: both versions run to the branch out of the page" in report \
        or failing.startswith("execution: both versions run")
