"""Execution evidence: the original and the regenerated control page run on the same images.

Both objects are loaded at the same physical control page and called as
`ia64_machine_kexec()` calls them, the regenerated one with the caller's stack block as two
more arguments. Each run goes to the branch that leaves the page. Then, per image: every
destination page must equal its source, both versions must record the same events in the
same order and hand the same registers to the new kernel (a value inside a stack area is
compared as area + offset, since the areas moved on purpose), and every write outside the
destinations must fall in that version's own stacks, with sp and ar.bspstore in the same
area as before.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from relgen.checks.execution.images import KERNEL_REGION_BASE, KexecImage, make_image
from relgen.checks.execution.machine import (
    PSR_BN,
    PSR_DT,
    PSR_I,
    PSR_IC,
    PSR_IT,
    PSR_RT,
    ExecutionFault,
    Frame,
    Machine,
    Memory,
)
from relgen.checks.execution.run import Exit, Program, load_program, run
from relgen.names import DEFAULT_PAGE_SIZE
from relgen.toolchain import layout

NOT_COVERED = ("not modelled: real TLB, cache and PAL behaviour, eager RSE spills, "
               "interruptions, NaT bits; relocated immediates keep the unlinked object's 0")
ENTRY_PSR = PSR_IC | PSR_I | PSR_DT | PSR_RT | PSR_IT | PSR_BN
ENTRY_RSC = 3  # the kernel runs with the RSE in eager mode


@dataclass(frozen=True)
class ExecutionPlan:
    """How many images and how large: `relgen verify` runs more than `relgen rewrite`."""

    images: int = 3
    pages: int = 8
    entry_ec: int = 0  # ar.ec on entry (see the note on the copy loop)
    with_notes: bool = True  # one more run of the original for the note on ar.ec

    def __post_init__(self) -> None:
        if self.images < 1 or self.pages < 1:
            raise ValueError("an execution plan runs at least one image of one page")


FULL = ExecutionPlan()
QUICK = ExecutionPlan(images=1, pages=4, with_notes=False)


@dataclass(frozen=True)
class Side:
    """One version: its decoded region and its data areas (name -> size), and for the
    regenerated one the argument index each area arrives in."""

    name: str
    program: Program
    areas: Mapping[str, int]  # area name -> offset in the control page (original only)
    arguments: Mapping[str, int]  # area name -> argument index (regenerated only)


@dataclass(frozen=True)
class Outcome:
    """One run: how it ended (or the fault that stopped it), the machine and its areas."""

    side: Side
    image: KexecImage
    machine: Machine
    areas: Mapping[str, tuple[int, int]]  # area -> (physical address, size)
    exit: Exit | None
    fault: str | None
    seconds: float


def _stack_areas(image: KexecImage, side: Side, sizes: Mapping[str, int]
                 ) -> dict[str, tuple[int, int]]:
    if side.arguments:
        place, areas = image.stack_block, {}
        for name in sorted(side.arguments, key=side.arguments.__getitem__):
            areas[name] = (place, sizes[name])
            place += sizes[name]
        return areas
    return {name: (image.control_page + offset, sizes[name])
            for name, offset in side.areas.items()}


def _entry_state(image: KexecImage, side: Side, areas: Mapping[str, tuple[int, int]],
                 entry_ec: int) -> Machine:
    """The machine as ia64_machine_kexec() leaves it at the call."""
    memory = Memory()
    for address, data in image.pages.items():
        memory.define(address, data)
    memory.define(image.control_page, side.program.image)
    if side.arguments:
        total = sum(size for _, size in areas.values())
        memory.define(image.stack_block, bytes(total + -total % 8))
    machine = Machine(memory)
    rng = random.Random(image.seed)  # the caller's registers: anything, the same for both
    for register in range(1, 32):
        machine.gr[register] = rng.getrandbits(64)
    machine.br = [KERNEL_REGION_BASE + rng.getrandbits(32) * 16 for _ in range(8)]
    ordered = sorted(side.arguments, key=side.arguments.__getitem__)
    stack_arguments = tuple(areas[name][0] for name in ordered)
    arguments = image.arguments(stack_arguments)
    machine.frame = Frame(len(arguments), 0)
    machine.stacked[:len(arguments)] = list(arguments)
    machine.psr = ENTRY_PSR
    machine.ip = KERNEL_REGION_BASE + image.control_page
    machine.ar.update(rsc=ENTRY_RSC, ec=entry_ec, lc=rng.getrandbits(16),
                      pfs=rng.getrandbits(38), bspstore=KERNEL_REGION_BASE + rng.getrandbits(30)
                      * 8, rnat=rng.getrandbits(63), k3=image.per_cpu, k4=image.current_stack)
    return machine


def run_side(side: Side, image: KexecImage, sizes: Mapping[str, int], *,
             entry_ec: int = 0) -> Outcome:
    areas = _stack_areas(image, side, sizes)
    machine = _entry_state(image, side, areas, entry_ec)
    limit = 16 * len(image.copies) * image.page_size + 100_000
    started = time.perf_counter()
    try:
        exit_ = run(side.program, machine, image.control_page, max_slots=limit)
        fault = None
    except ExecutionFault as error:
        exit_, fault = None, str(error)
    return Outcome(side, image, machine, areas, exit_, fault, time.perf_counter() - started)


# ---------------------------------------------------------------------------- compare


def _shown(value: int, outcome: Outcome) -> str:
    """A value as the new kernel would see it: an area address as area + offset."""
    name = _area_of(value, outcome)
    if name is None:
        return f"{value:#x}"
    return f"{name}+{value - outcome.areas[name][0]:#x}"


def handed_over(outcome: Outcome) -> dict[str, str]:
    """The registers at the final branch, as comparable text."""
    m = outcome.machine
    state = {f"r{n}": _shown(m.gr[n], outcome) for n in range(1, 32)}
    for index in range(4):  # in0..in3, the arguments both versions have
        value = m.stacked[index]
        state[f"in{index}"] = "undefined" if value is None else _shown(value, outcome)
    # branch registers hold code addresses: b0, the call's return link, may point just past
    # the code, which in the original is where the stacks begin
    page = outcome.image.control_page
    state.update({f"b{n}": f"control page+{v - page:#x}"
                  if page <= v <= page + outcome.side.program.size else f"{v:#x}"
                  for n, v in enumerate(m.br)})
    state["pr"] = f"{sum(1 << n for n, bit in enumerate(m.pr) if bit):#x}"
    for name in ("lc", "ec", "rsc", "bspstore", "rnat", "k3", "k4"):
        state[f"ar.{name}"] = _shown(m.ar[name], outcome)
    state.update({f"cr.{name}": f"{v:#x}" for name, v in m.cr.items()})
    state["psr"] = f"{m.psr:#x}"
    assert outcome.exit is not None
    state["target"] = f"{outcome.exit.target:#x}"
    return state


def _area_of(value: int, outcome: Outcome) -> str | None:
    return next((name for name, (address, size) in outcome.areas.items()
                 if address <= value < address + size), None)


def _copy_problems(outcome: Outcome) -> list[str]:
    memory, image = outcome.machine.memory, outcome.image
    wrong = [destination for destination, source in image.copies
             if memory.read(destination, image.page_size) != image.pages[source]]
    return [f"{outcome.side.name}, image {image.seed}: destination page {page:#x} differs "
            "from its source" for page in wrong]


def _write_problems(outcome: Outcome) -> list[str]:
    image, page = outcome.image, outcome.image.page_size
    destinations = set(image.destinations)
    stray = sorted({address for address in outcome.machine.memory.stores
                    if address - address % page not in destinations
                    and _area_of(address, outcome) is None})
    problems = [f"{outcome.side.name}, image {image.seed}: {len(stray)} writes outside the "
                f"destinations and the stacks, first at {stray[0]:#x}"] if stray else []
    return problems


def _placement_problems(original: Outcome, new: Outcome) -> list[str]:
    problems = []
    for what, before, after in (
            ("sp", original.machine.gr[12], new.machine.gr[12]),
            ("ar.bspstore", original.machine.ar["bspstore"], new.machine.ar["bspstore"])):
        area_before, area_after = _area_of(before, original), _area_of(after, new)
        if area_before is None:
            problems.append(f"the original's {what} {before:#x} is in none of its stacks")
        elif area_after != area_before:
            problems.append(f"{what}: original in {area_before}, regenerated "
                            f"{_shown(after, new)}, not in the {area_before} passed in")
    return problems


@dataclass(frozen=True)
class ExecutionEvidence:
    """What the runs showed, as named verdicts with evidence lines."""

    checks: tuple[tuple[str, bool, tuple[str, ...]], ...]
    slots: int
    seconds: float


def compare_runs(pairs: Sequence[tuple[Outcome, Outcome]]) -> list[tuple[str, bool, list[str]]]:
    copies: list[str] = []
    events: list[str] = []
    registers: list[str] = []
    writes: list[str] = []
    for original, new in pairs:
        copies += _copy_problems(original) + _copy_problems(new)
        if original.machine.events != new.machine.events:
            first = next((i for i, (a, b) in enumerate(zip(original.machine.events,
                                                           new.machine.events, strict=False))
                          if a != b), min(len(original.machine.events),
                                          len(new.machine.events)))
            events.append(f"image {original.image.seed}: event {first} differs "
                          f"({len(original.machine.events)} vs {len(new.machine.events)} "
                          "events)")
        before, after = handed_over(original), handed_over(new)
        registers += [f"image {original.image.seed}: {name} {before[name]} -> {after[name]}"
                      for name in before if before[name] != after[name]]
        writes += _write_problems(original) + _write_problems(new)
        writes += _placement_problems(original, new)
    return [
        ("execution: every destination page equals its source, in both versions", not copies,
         copies),
        ("execution: the same events in the same order", not events, events),
        ("execution: the same branch target and registers handed to the new kernel",
         not registers, registers),
        ("execution: writes only to destinations and each version's own stacks; sp and "
         "ar.bspstore in the same stack as before", not writes, writes),
    ]


def execution_evidence(original_object: Path, new_object: Path,
                       before: layout.ControlPageMap, after: layout.ControlPageMap,
                       argument_registers: Mapping[str, str], plan: ExecutionPlan = FULL,
                       *, page_size: int = DEFAULT_PAGE_SIZE) -> ExecutionEvidence:
    """Run both objects, assembled for `page_size`, on `plan.images` images of that page size
    and compare (see the module's docstring)."""
    started = time.perf_counter()
    sizes = {s.name: s.size for s in before.data_symbols}
    original = Side("original", load_program(original_object, before),
                    {s.name: s.offset for s in before.data_symbols}, {})
    # the regenerated page takes its stacks as arguments, or keeps them where a hypervisor
    # calls it (no argument registers): then it runs on its own, like the original
    new = Side("regenerated", load_program(new_object, after),
               {} if argument_registers else {s.name: s.offset for s in after.data_symbols},
               {name: int(register.removeprefix("in")) for name, register in
                argument_registers.items()})
    images = [make_image(seed, pages=plan.pages, page_size=page_size,
                         control_bytes=max(before.size, after.size),
                         stack_bytes=max(sum(sizes.values()), 8)) for seed in range(plan.images)]
    pairs = [(run_side(original, image, sizes, entry_ec=plan.entry_ec),
              run_side(new, image, sizes, entry_ec=plan.entry_ec)) for image in images]
    faults = [f"{o.side.name}, image {o.image.seed}: {o.fault}"
              for pair in pairs for o in pair if o.fault]
    slots = sum(o.exit.slots_run for pair in pairs for o in pair if o.exit)
    run_seconds = sum(o.seconds for pair in pairs for o in pair)
    summary = [f"  {len(images)} images (seeds 0..{len(images) - 1}), {plan.pages} pages of "
               f"{images[0].page_size // 1024} KiB each in {images[0].indirection_pages} "
               "indirection pages; "
               f"{slots} slots run ({slots // (2 * len(images))} per run) in {run_seconds:.2f} s "
               f"({slots / run_seconds if run_seconds else 0:,.0f} slots/s)",
               f"  {NOT_COVERED}"]
    if faults and all(original.fault for original, _ in pairs):
        # The original itself stops on the model (code written only to assemble, or an
        # instruction the model leaves out): all that can be shown is that the regenerated
        # page stops at the same instruction, for the same reason, after the same events.
        alike = all(o.fault == n.fault and o.machine.events == n.machine.events
                    for o, n in pairs)
        checks = [("execution: the original does not run to its end on relgen's model; the "
                   "regenerated page stops alike (same instruction, fault and events)", alike,
                   summary + [f"  {'' if alike else 'FAIL: '}{f}" for f in faults]
                   + ["  so this shows only that both versions behave alike up to there"])]
        return ExecutionEvidence(tuple((n, p, tuple(e)) for n, p, e in checks), slots,
                                 time.perf_counter() - started)
    if faults:
        checks = [("execution: both versions run to the branch out of the page", False,
                   summary + [f"  FAIL: {f}" for f in faults])]
        return ExecutionEvidence(tuple((n, p, tuple(e)) for n, p, e in checks), slots,
                                 time.perf_counter() - started)
    exits = pairs[0][0].exit
    assert exits is not None
    kinds = Counter(str(event[0]) for event in pairs[0][0].machine.events)
    summary.insert(1, f"  both leave with `{exits.text}` at {before.entry}+{exits.offset:#x}; "
                   "events of image 0: " + ", ".join(f"{k} x{n}" for k, n in kinds.items()))
    if plan.with_notes:
        summary += _ec_note(original, images[0], sizes)
    checks = [("execution: both versions run to the branch out of the page", True, summary)]
    checks += [(name, passed, [f"  FAIL: {line}" for line in lines])
               for name, passed, lines in compare_runs(pairs)]
    return ExecutionEvidence(tuple((n, p, tuple(e)) for n, p, e in checks), slots,
                             time.perf_counter() - started)


def _ec_note(original: Side, image: KexecImage, sizes: Mapping[str, int]) -> list[str]:
    """An observation about the original, reported and not fixed: its copy loop closes with
    br.ctop after setting only ar.lc, so it copies correctly only when ar.ec <= 1 on entry."""
    outcome = run_side(original, image, sizes, entry_ec=2)
    wrong = [] if outcome.fault else _copy_problems(outcome)
    if not (outcome.fault or wrong):
        return []
    shown = (f"it stops: {outcome.fault}" if outcome.fault else
             f"{len(wrong)} of {len(image.copies)} destination pages of image {image.seed} "
             "differ from their sources")
    return ["  note: the original's copy loop ends with br.ctop after setting only ar.lc, so "
            "it relies on ar.ec <= 1 on entry (the regenerated page keeps the loop as it is); "
            f"run with ar.ec=2 its first page takes one more iteration, 8 bytes past the "
            f"page, and {shown}"]
