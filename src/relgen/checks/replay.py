"""sparse and gcc on the units, from command lines recorded once: run on all cores, compared.

Both routes of the kernel checks end here. A route records, once per pristine tree, the
exact command lines that tree's Kbuild runs (or would run) for each unit: the compiler
(the check-only stand-in `relgen.checks.checkcc`, which assembles `.S` units with the real
ia64 assembler) and sparse. A check replays them: every command is a job of one pool as
wide as the machine's cores, the longest first (the pristine run measured them), with the
Coccinelle scripts as one more job. Each command's output is read on its own, so whose
diagnostic it is is never guessed.

gcc and sparse pass when they report nothing the pristine tree does not, compared by file
and message, not by line (moved code compares), and when no command gives up where the
pristine one did not. A unit whose pristine compile stops at a fatal error (a header the
tree lacks) says nothing past that point: it is named as not checked, and when no unit is
left the check did not run.
"""

from __future__ import annotations

import os
import re
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from relgen import tools
from relgen.checks.report import Check
from relgen.progress import QUIET, Progress

T = TypeVar("T")

COMPILER = "gcc"
SPARSE = "sparse"
TOOLS = (COMPILER, SPARSE)
CHECK_NAMES = {COMPILER: "kernel checks: gcc -fsyntax-only with the ia64 predefines reports "
                         "nothing new",
               SPARSE: "kernel checks: sparse (C=2 CF=-Wsparse-error) reports nothing new"}

_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
                         r"(?P<kind>(?:fatal )?(?:error|warning)|Error|Warning): "
                         r"(?P<message>.*)$")


def cores() -> int:
    """The cores this process may run on (what `nproc` prints)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1


@dataclass(frozen=True)
class UnitCommands:
    """What Kbuild runs for one unit: the compiler, and sparse (None for assembly)."""

    unit: str  # "arch/ia64/kernel/machine_kexec.o"
    compiler: tuple[str, ...]
    sparse: tuple[str, ...] | None

    def jobs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        found = [(self.unit, COMPILER, self.compiler)]
        if self.sparse is not None:
            found.append((self.unit, SPARSE, self.sparse))
        return found


@dataclass(frozen=True)
class Recording:
    """A pristine tree's commands: the folder they run in and each unit's command lines."""

    cwd: Path
    units: tuple[UnitCommands, ...]

    def to_json(self) -> dict[str, object]:
        return {"cwd": str(self.cwd), "units": [
            {"unit": u.unit, "compiler": list(u.compiler),
             "sparse": None if u.sparse is None else list(u.sparse)} for u in self.units]}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Recording:
        """What `to_json` wrote; KeyError, TypeError or ValueError for anything else."""
        units = data["units"]
        if not isinstance(units, list):
            raise ValueError("no list of units")
        return cls(Path(str(data["cwd"])), tuple(
            UnitCommands(str(u["unit"]), tuple(map(str, u["compiler"])),
                         None if u["sparse"] is None else tuple(map(str, u["sparse"])))
            for u in units))

    def narrowed(self, units: Iterable[str]) -> Recording:
        wanted = set(units)
        return Recording(self.cwd, tuple(u for u in self.units if u.unit in wanted))


@dataclass(frozen=True)
class Diagnostic:
    """One message of gcc, the assembler or sparse, keyed without its line."""

    tool: str
    path: str  # as the tree knows it: kernel-relative where it is the tree's file
    line: int
    kind: str  # "error", "warning", "fatal error"
    message: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.tool, self.path, self.kind, self.message)

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.message} ({self.tool})"


@dataclass(frozen=True)
class Outcome:
    """What one command did: its exit status, its diagnostics, its time."""

    unit: str
    tool: str
    status: int
    diagnostics: tuple[Diagnostic, ...]
    seconds: float
    last_line: str  # what it said last, for a command that gave up without a diagnostic

    @property
    def fatal(self) -> Diagnostic | None:
        return next((d for d in self.diagnostics if d.kind == "fatal error"), None)

    def to_json(self) -> dict[str, object]:
        return {"unit": self.unit, "tool": self.tool, "status": self.status,
                "seconds": round(self.seconds, 3), "last_line": self.last_line,
                "diagnostics": [[d.path, d.line, d.kind, d.message] for d in self.diagnostics]}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Outcome:
        """What `to_json` wrote; KeyError, TypeError or ValueError for anything else."""
        tool = str(data["tool"])
        found = data["diagnostics"]
        if not isinstance(found, list):
            raise ValueError("no list of diagnostics")
        return cls(str(data["unit"]), tool, int(str(data["status"])),
                   tuple(Diagnostic(tool, p, int(n), k, m) for p, n, k, m in found),
                   float(str(data["seconds"])), str(data["last_line"]))


def parse_diagnostics(tool: str, output: str, prefixes: Sequence[str]) -> list[Diagnostic]:
    """The diagnostics of one command's output, with the cache's folders (`prefixes`, e.g.
    the copy of the tree) taken off their paths."""
    found = []
    for line in output.splitlines():
        match = _DIAGNOSTIC.match(line)
        if match is None:
            continue
        path, message = match.group("file"), match.group("message")
        for prefix in prefixes:
            path = path.removeprefix(prefix)
            message = message.replace(prefix, "")
        found.append(Diagnostic(tool, path.removeprefix("./"), int(match.group("line")),
                                match.group("kind").lower(), message))
    return found


def _run_one(cwd: Path, unit: str, tool: str, argv: Sequence[str],
             prefixes: Sequence[str]) -> Outcome:
    start = time.perf_counter()
    result = tools.run(argv, cwd, merge_output=True)
    seconds = time.perf_counter() - start
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return Outcome(unit, tool, result.returncode,
                   tuple(parse_diagnostics(tool, result.stdout, prefixes)), seconds,
                   lines[-1] if lines else "")


def replay(recording: Recording, prefixes: Sequence[str], *,
           durations: Mapping[tuple[str, str], float] | None = None,
           also: Callable[[], T] | None = None, progress: Progress = QUIET,
           what: str = "kernel checks: sparse and gcc") -> tuple[list[Outcome], T | None]:
    """Every command of `recording` in one pool of `cores()` workers, the longest first
    (by `durations`, the pristine run's times), with `also` (the Coccinelle scripts) as one
    more job started first. Returns the outcomes in the recording's order and what `also`
    returned."""
    jobs = [job for unit in recording.units for job in unit.jobs()]
    order = sorted(range(len(jobs)),
                   key=lambda i: -(durations or {}).get((jobs[i][0], jobs[i][1]), 0.0))
    remaining = Counter(unit for unit, _, _ in jobs)
    total = len(remaining)
    lock = threading.Lock()
    progress.phase(f"{what} 0/{total} units")

    def run(index: int) -> Outcome:
        unit, tool, argv = jobs[index]
        outcome = _run_one(recording.cwd, unit, tool, argv, prefixes)
        with lock:
            remaining[unit] -= 1
            done = sum(1 for left in remaining.values() if left == 0)
            progress.phase(f"{what} {done}/{total} units")
        return outcome

    with ThreadPoolExecutor(max_workers=cores()) as pool:
        extra = pool.submit(also) if also is not None else None
        futures = {index: pool.submit(run, index) for index in order}
        outcomes = [futures[index].result() for index in range(len(jobs))]
        return outcomes, extra.result() if extra is not None else None


# ------------------------------------------------------------------------ the verdict


def new_diagnostics(pristine: Iterable[Diagnostic], changed: Iterable[Diagnostic]
                    ) -> list[Diagnostic]:
    """What `changed` reports and `pristine` does not (by tool, file, kind and message)."""
    before = Counter(d.key for d in pristine)
    new = []
    for diagnostic in changed:
        if before[diagnostic.key] > 0:
            before[diagnostic.key] -= 1
        else:
            new.append(diagnostic)
    return new


def unit_listing(units: Sequence[str], header: str) -> list[str]:
    lines = [f"  {len(units)} units ({header}):"]
    lines += textwrap.wrap(" ".join(units), 96, initial_indent="    ",
                           subsequent_indent="    ", break_on_hyphens=False)
    return lines


def verdicts(pristine: Sequence[Outcome], changed: Sequence[Outcome], preamble: Sequence[str],
             *, required: bool = False) -> list[Check]:
    """One check for gcc and one for sparse: nothing new against the pristine tree, no
    command given up that the pristine one finished, and at least one unit checked."""
    before = {(o.unit, o.tool): o for o in pristine}
    checks = []
    for tool in TOOLS:
        mine = [o for o in changed if o.tool == tool]
        if not mine:  # each unit it checks compiles as in the pristine tree
            checks.append(Check(CHECK_NAMES[tool], True, (
                *preamble, f"  no unit {tool} checks reads a file the change touches: each "
                "reports what it reports in the pristine tree")))
            continue
        stopped = {o.unit: o.fatal for o in mine
                   if (o.unit, tool) in before and before[o.unit, tool].fatal is not None}
        if len(stopped) == len(mine):
            reason = (f"{tool} stops at a fatal error in every unit of the pristine tree, so "
                      "it can say nothing of the change: "
                      + next(iter(stopped.values())).render())  # type: ignore[union-attr]
            not_run = Check.not_run(CHECK_NAMES[tool], reason, required=required)
            checks.append(Check(not_run.name, not_run.passed, (*preamble, *not_run.evidence),
                                not_run.ran))
            continue
        evidence = list(preamble)
        evidence += [f"  not checked past a fatal error of the pristine tree: {unit}: "
                     f"{fatal.render()}" for unit, fatal in sorted(stopped.items())
                     if fatal is not None]
        new_in: dict[Diagnostic, list[str]] = {}  # each new diagnostic once, with its units
        gave_up = []
        for outcome in mine:
            old = before.get((outcome.unit, tool))
            new = new_diagnostics(old.diagnostics if old else (), outcome.diagnostics)
            for diagnostic in new:
                new_in.setdefault(diagnostic, []).append(outcome.unit)
            if outcome.status != 0 and not new and (old is None or old.status == 0):
                gave_up.append(f"  FAIL: {tool} gave up on {outcome.unit}: "
                               f"{outcome.last_line or 'exit status ' + str(outcome.status)}")
        problems = [f"  FAIL: new: {d.render()}, in {_units_text(found)}"
                    for d, found in new_in.items()] + gave_up
        evidence += problems or ["  nothing new against the pristine tree"]
        checks.append(Check(CHECK_NAMES[tool], not problems, tuple(evidence)))
    return checks


def _units_text(units: Sequence[str]) -> str:
    return units[0] if len(units) == 1 else f"{len(units)} units ({units[0]} ...)"


def by_job(outcomes: Iterable[Outcome]) -> dict[tuple[str, str], float]:
    """Each command's time, to start the longest first next time."""
    return {(o.unit, o.tool): o.seconds for o in outcomes}


def relative_prefixes(*folders: Path) -> list[str]:
    """The folders' paths as prefixes to take off the diagnostics' file names."""
    return [f"{folder}/" for folder in folders]


def dependencies(recording: Recording, copy: Path) -> dict[str, list[str]]:
    """Each unit's files, as its compiler's dependency file (`-Wp,-MMD,` or `-Wp,-MD,`)
    lists them after a run: kernel-relative where they are the copy's files (links, such
    as the `include/asm` of the old trees, resolved), as written elsewhere. A unit whose
    compiler wrote no such file is left out."""
    found = {}
    inside = f"{os.path.realpath(copy)}/"
    for unit in recording.units:
        option = next((a for a in unit.compiler if a.startswith(("-Wp,-MMD,", "-Wp,-MD,"))),
                      None)
        if option is None:
            continue
        try:
            text = (recording.cwd / option.split(",", 2)[2]).read_text(errors="replace")
        except OSError:
            continue
        names = set()
        for name in text.replace("\\\n", " ").split(":", 1)[-1].split():
            real = os.path.realpath(recording.cwd / name)
            names.add(real.removeprefix(inside) if real.startswith(inside) else name)
        found[unit.unit] = sorted(names)
    return found
