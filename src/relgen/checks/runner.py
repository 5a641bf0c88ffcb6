"""One runner for every check: a `Plan` says which checks run, `run_checks` runs them.

`relgen verify` runs one plan with everything; `relgen rewrite` runs one plan before it
makes the mail (the objects, execution, the header and the kernel checks on the changed
files) and one after (the patch's checks on the mail). `run_checks` reads like kpatch's
create-diff-object: a flat list of named passes, run alike on both objects, each adding its
`Check`s to the report in that order. This is the one place where checks run side by side:
programs that only wait (gcc, git, checkpatch.pl, the kernel checkers) start first in the
background, the Python passes run meanwhile, and the report keeps the plan's order whatever
finishes first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from relgen.checks import kernel, patch
from relgen.checks.execution.evidence import FULL, ExecutionPlan, execution_evidence
from relgen.checks.header import check_header_compiles
from relgen.checks.inputs import Inputs
from relgen.checks.kexec_units import RELOCATE_KERNEL_UNIT
from relgen.checks.objects import ObjectChecks, check_objects
from relgen.checks.report import Check, Report
from relgen.names import DEFAULT_PAGE_SIZE, MACHINE_KEXEC_PATH, PAGE_SIZES
from relgen.progress import QUIET, Progress
from relgen.scratch import scratch_folder
from relgen.source.files import kernel_path
from relgen.toolchain.tree import KernelTree

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """Which checks run. `changed` gives the kernel checks the changed files directly
    (rewrite, before the mail exists); without it they take the files the patch gives."""

    page_sizes: tuple[int, ...] = PAGE_SIZES
    objects: bool = True  # the twins assembled, compared, their header numbers
    execution: ExecutionPlan | None = FULL  # both pages run on kexec images
    header: bool = True  # the header compiles in C and in assembly
    patch: bool = True  # the patch applies, its callers, checkpatch.pl
    kernel: bool = True  # sparse, gcc and Coccinelle on the changed tree
    kernel_skipped: str | None = None  # why not, when the user said so
    require_kernel: bool = False  # a kernel check that cannot run is a failure
    changed: Mapping[str, bytes] | None = None


def page_sizes_for(tree: KernelTree) -> tuple[int, ...]:
    """The page sizes the twins are made at: a built tree is used as it is, so only its own
    page size can be assembled there."""
    if tree.has_build:
        return (tree.configured_page_size or DEFAULT_PAGE_SIZE,)
    return PAGE_SIZES


class Background:
    """The one pool that runs checks side by side; `run` starts a job, `map` many."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def run(self, job: Callable[..., T], *args: object) -> Future[T]:
        return self._pool.submit(job, *args)

    def map(self, job: Callable[[T], object], items: list[T]) -> list[object]:
        return list(self._pool.map(job, items))


@contextmanager
def background() -> Iterator[Background]:
    # an exception (or Ctrl-C) waits for the programs already started: the scratch folder
    # they write in is removed only after them
    pool = ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 2)
    try:
        yield Background(pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_execution(inputs: Inputs, objects: ObjectChecks, plan: ExecutionPlan
                    ) -> list[Check]:
    """Both pages run on synthetic kexec images, in each configuration, at ia64's default
    page size where it was assembled."""
    expected = inputs.expected
    if expected is None or expected.already_code_first:
        return []
    checks: list[Check] = []
    for each in objects.configurations.each:
        group = [t for t in objects.twins if t.configuration == each]
        if not group:
            continue
        twin = next((t for t in group if t.page_size == DEFAULT_PAGE_SIZE), group[0])
        # where a hypervisor calls the page it keeps its stacks, and takes no arguments more
        registers = {} if each.switched_on(expected.kept) else expected.argument_registers
        evidence = execution_evidence(
            twin.original_object, twin.new_object, twin.before, twin.after,
            registers, plan, page_size=twin.page_size)
        checks += [Check(name + objects.named(each), passed, lines)
                   for name, passed, lines in evidence.checks]
    return checks


def _kernel_checks(inputs: Inputs, plan: Plan, changed: Mapping[str, bytes] | str,
                   progress: Progress) -> kernel.KernelCheckRun:
    """sparse, gcc and Coccinelle on the tree with `changed` (or why they cannot run)."""
    required = plan.require_kernel
    if plan.kernel_skipped is not None:
        return kernel.did_not_run(plan.kernel_skipped, required,
                                  said=f"not asked for ({plan.kernel_skipped})")
    if isinstance(changed, str):
        return kernel.did_not_run(changed, required)
    own = inputs.tree.relocate_kernel
    if not own.is_file() or own.read_bytes() != inputs.original.text.encode("utf-8"):
        return kernel.did_not_run(f"the input is not the tree's own "
                                  f"{kernel_path(inputs.original)}", required)
    if not {inputs.tree.era.kexec_h, MACHINE_KEXEC_PATH} <= set(changed):
        return kernel.did_not_run("the change has no C side (it changes "
                                  + ", ".join(sorted(changed)) + ")", required)
    return kernel.kernel_checks(inputs.tree, changed, required=required, progress=progress)


def kernel_clause(run: kernel.KernelCheckRun | None) -> str | None:
    """The kernel checks as the commit message states them: what ran, or why nothing did."""
    if run is None:
        return None
    if run.not_run is not None:
        return f"sparse, gcc and Coccinelle did not run: {run.not_run}"
    # a unit checked in a hypervisor's configuration too is named `unit[CONFIG_XEN=y]`
    names = sorted({unit.split("[")[0] for unit in run.units})
    also = sorted({unit[unit.index("[") + 1:-1] for unit in run.units if "[" in unit})
    including = [name for name in names if name != RELOCATE_KERNEL_UNIT]
    checked = (f"the {len(including)} unit{'s' if len(including) != 1 else ''} that "
               f"include{'s' if len(including) == 1 else ''} <asm/kexec.h>" if including
               else "the changed units")
    if RELOCATE_KERNEL_UNIT in names:
        checked += " and relocate_kernel.S"
    if also:
        checked += f" (also with {' and '.join(also)})"
    return (f"sparse and gcc's syntax check (through a check-only ia64 compiler) on {checked}"
            " report nothing the unpatched tree does not, and the "
            f"{run.cocci_scripts} Coccinelle checks of where the stacks come from, who frees "
            "them and their order report nothing")


def run_checks(inputs: Inputs, plan: Plan, work: Path, progress: Progress = QUIET) -> Report:
    """Every check of `plan`, as a flat list of passes (see the module's docstring)."""
    checks: list[Check] = []
    already = inputs.expected is not None and inputs.expected.already_code_first
    with background() as jobs:
        # the programs that only wait start first
        flag_sets = [c.cpp_flags for c in inputs.configurations.each]
        header = jobs.run(check_header_compiles, inputs.header_text, work, flag_sets) \
            if plan.header else None
        applied = patch.apply_patch(inputs, work) if plan.patch and not already else None
        changed: Mapping[str, bytes] | str = plan.changed if plan.changed is not None else \
            applied.changed if applied is not None and applied.changed is not None else \
            "the patch does not apply"
        kernel_job = jobs.run(_kernel_checks, inputs, plan, changed, progress) \
            if plan.kernel and not already else None
        checkpatch = jobs.run(patch.checkpatch, inputs, work) \
            if applied is not None else None

        # the Python passes, on both objects alike
        objects = None
        if plan.objects:
            progress.phase("assembling and comparing the twin objects")
            objects = check_objects(inputs, work, plan.page_sizes, jobs.map)
            checks += objects.checks
        if plan.execution is not None and objects is not None and objects.twins:
            progress.phase("running both pages on kexec images")
            checks += check_execution(inputs, objects, plan.execution)

        # the programs' results, in the plan's order
        progress.phase("waiting for gcc, git and checkpatch.pl")
        if header is not None:
            checks.append(header.result())
        if plan.patch and already:
            checks.append(patch.no_patch_needed(inputs))
        if applied is not None:
            checks.append(applied.check)
            if applied.changed is not None:
                checks += patch.check_changed_callers(inputs, applied.changed)
        if checkpatch is not None:
            checks.append(checkpatch.result())
        kernel_run = None
        if kernel_job is not None:
            progress.phase("kernel checks")
            kernel_run = kernel_job.result()
            checks += kernel_run.checks
    progress.done()
    return Report(tuple(checks), objects.layout_text if objects else "",
                  objects.instructions_compared if objects else None,
                  kernel_clause(kernel_run))


def verify(inputs: Inputs, plan: Plan | None = None, progress: Progress = QUIET) -> Report:
    """`relgen verify`: every check, at the page sizes the tree can be assembled at."""
    plan = plan or Plan(page_sizes=page_sizes_for(inputs.tree))
    with scratch_folder("relgen-verify-") as scratch:
        return run_checks(inputs, plan, Path(scratch), progress)
