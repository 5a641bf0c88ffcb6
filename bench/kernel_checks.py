"""bench section (h): the kernel checks, warm, against their floor.

The floor is what no implementation of the kernel checks can go below on this machine: the
recorded sparse and gcc command lines of the same units (what the tree's Kbuild runs for
them), run directly by this file in a pool as wide as the cores, on the tree with the same
change. Against it: relgen's kernel checks in process (`kernel_checks`, the Coccinelle
scripts included), and `relgen verify` with the kernel checks as a whole process. Warm means
the pristine tree is prepared in the kernel checks' cache (this section prepares it first
where it is not); each run checks a change not seen before (relgen's own change with a
comment of its own in asm/kexec.h, which every unit includes), so no result comes from the
cache of earlier changes.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from relgen.checks import kernel, replay, treecopy
from relgen.toolchain.tree import KernelTree

BIN = Path(sys.executable).parent
RELGEN = BIN / "relgen"
PATCH, SOURCE, HEADER = "relocate_kernel.patch", "relocate_kernel.S", "kexec_control_page.h"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, cwd=cwd, capture_output=True, check=False)


def relgens_change(tree: KernelTree, work: Path) -> tuple[Path, dict[str, bytes]]:
    """relgen's output folder for `tree` and its change as files (kernel path -> bytes)."""
    out = work / "out"
    made = _run([str(RELGEN), "rewrite", "--kernel-tree", str(tree.root), "-o", str(out),
                 "--no-kernel-checks", "-q"])
    if made.returncode != 0:
        raise RuntimeError("relgen rewrite failed: " + made.stderr.decode(errors="replace"))
    applied = work / "applied"
    names = [line.split(" b/", 1)[1] for line in (out / PATCH).read_text().splitlines()
             if line.startswith("diff --git ")]
    for name in names:
        (applied / name).parent.mkdir(parents=True, exist_ok=True)
        if (tree.root / name).is_file():
            (applied / name).write_bytes((tree.root / name).read_bytes())
    _run(["git", "apply", str(out / PATCH)], applied).check_returncode()
    return out, {name: (applied / name).read_bytes() for name in names}


def unseen(change: dict[str, bytes], tree: KernelTree, number: int) -> dict[str, bytes]:
    """The change with a comment of its own in asm/kexec.h: a change no cache has seen."""
    kexec_h = tree.era.kexec_h
    marked = f"/* bench {os.getpid()} {time.time_ns()} {number} */\n".encode()
    return {**change, kexec_h: change[kexec_h] + marked}


def output_folder(out: Path, change: dict[str, bytes], tree: KernelTree, work: Path) -> Path:
    """A copy of relgen's output folder whose patch makes `change` (git diff of a/ and b/)."""
    folder = work / f"verify-{time.time_ns()}"
    for side, files in (("a", {n: (tree.root / n).read_bytes() for n in change
                               if (tree.root / n).is_file()}), ("b", change)):
        for name, data in files.items():
            (folder / side / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / side / name).write_bytes(data)
    diff = _run(["git", "diff", "--no-index", "--no-prefix", "a", "b"], folder).stdout
    result = folder / "out"
    result.mkdir()
    for name in (SOURCE, HEADER):
        (result / name).write_bytes((out / name).read_bytes())
    (result / PATCH).write_bytes(diff)
    return result


def floor(recording: replay.Recording) -> None:
    """Every recorded command, run directly in a pool as wide as the cores."""
    jobs = [argv for unit in recording.units for _, _, argv in unit.jobs()]
    with ThreadPoolExecutor(max_workers=cores()) as pool:
        list(pool.map(lambda argv: _run(list(argv), recording.cwd), jobs))


def _cpu() -> float:
    """The processor time of this process and of its children so far, user and system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(job: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, processor seconds) of `job`, its programs included."""
    start, cpu = time.perf_counter(), _cpu()
    job()
    return time.perf_counter() - start, _cpu() - cpu


def report_kernel_checks(tree: KernelTree, repeat: int) -> None:
    print()
    reason = kernel.why_not(tree)
    if reason is not None or kernel.route_of(tree) != kernel.KBUILD:
        print(f"(h) skipped: the kernel checks' Kbuild route cannot run here ({reason})")
        return
    cache = kernel.cache_root()
    already = (cache / kernel.tree_key(tree, kernel.KBUILD) / "prepared.json").is_file()
    start = time.perf_counter()
    with kernel.prepared_tree(tree, cache) as prepared:
        recording = prepared.recording
    prepared_in = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="relgen-bench-") as scratch:
        work = Path(scratch)
        out, change = relgens_change(tree, work)
        first = kernel.kernel_checks(tree, unseen(change, tree, -1), cache=cache)
        if first.not_run is not None or not all(c.passed for c in first.checks):
            print("(h) relgen's own change does not pass its kernel checks: the times below "
                  "are not meaningful")

        def floor_run(number: int) -> tuple[float, float]:
            # the same change in the same copy, held as a kernel check holds it
            with kernel.prepared_tree(tree, cache) as held, treecopy.changed_files(
                    tree.root, held.copy, unseen(change, tree, number)):
                return timed(lambda: floor(recording))

        def relgen_run(number: int) -> tuple[float, float]:
            return timed(lambda: kernel.kernel_checks(tree, unseen(change, tree, number),
                                                      cache=cache))

        def verify_run(number: int, *options: str) -> tuple[float, float]:
            folder = output_folder(out, unseen(change, tree, number), tree, work)
            return timed(lambda: _run([str(RELGEN), "verify", str(folder), "--kernel-tree",
                                       str(tree.root), "-q", *options]))

        # one of each per round, so that the other jobs of a shared machine weigh on all alike
        rounds = [(floor_run(n), relgen_run(n), verify_run(n, "--require-kernel-checks"),
                   verify_run(n, "--no-kernel-checks")) for n in range(repeat)]
        # each row's best wall time, and the least processor time of its runs
        floor_s, relgen_s, verify_s, without_s = (
            (min(wall for wall, _ in column), min(cpu for _, cpu in column))
            for column in zip(*rounds, strict=True))
    commands = sum(len(unit.jobs()) for unit in recording.units)
    print(f"(h) kernel checks, warm, on a change not seen before each run ({first.route})")
    print(f"    {len(recording.units)} units, {commands} sparse and gcc commands, "
          f"{first.cocci_scripts} Coccinelle scripts, {cores()} cores; the pristine tree "
          + ("was prepared already" if already else f"prepared now, in {prepared_in:.1f} s"))
    print(f"    {'':<62} {'wall s':>7} {'/floor':>7} {'cpu s':>7} {'/floor':>7}")
    for label, (seconds, cpu) in (
            ("floor: the recorded commands, run directly on all cores", floor_s),
            ("relgen's kernel checks (kernel_checks, Coccinelle included)", relgen_s),
            ("relgen verify with the kernel checks, a process", verify_s),
            ("  relgen verify --no-kernel-checks, for comparison", without_s)):
        print(f"    {label:<62} {seconds:>7.2f} {seconds / floor_s[0]:>7.2f} {cpu:>7.2f} "
              f"{cpu / floor_s[1]:>7.2f}")
