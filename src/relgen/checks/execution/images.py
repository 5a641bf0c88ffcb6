"""Synthetic kexec images, the same for the same seed: what relocate_new_kernel is given.

An image is physical memory as `machine_kexec()` leaves it when it calls the control page:
source pages with random contents, destination runs of several pages (filled with other
random bytes, so that a page left uncopied shows), a page list in more than one indirection
page with the entry flags of `include/linux/kexec.h`, a per-CPU area holding the
`cpuinfo_ia64` fields the TLB purge reads, and the arguments of
`relocate_new_kernel(image->head, image->start, ia64_boot_param, pal_base)`; for the
regenerated page also one block for the stacks the caller passes in (clear of every
destination, as `kimage_alloc_control_pages()` keeps control pages).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from relgen.names import DEFAULT_PAGE_SIZE

# include/linux/kexec.h
IND_DESTINATION = 0x1
IND_INDIRECTION = 0x2
IND_DONE = 0x4
IND_SOURCE = 0x8

KERNEL_REGION_BASE = 0xE000_0000_0000_0000  # region 7: __va() of a physical address
GRANULE = 1 << 24  # CONFIG_IA64_GRANULE_16MB
# The struct cpuinfo_ia64 fields the purge loop reads, at the LP64 offsets of the stand-in
# asm-offsets.h that kbuild writes for a tree without a build (a test keeps them equal).
CPUINFO_PTCE_BASE = 72
CPUINFO_PTCE_COUNT = 80
CPUINFO_PTCE_STRIDE = 88
FIRST_FRAME = 0x100  # keep the low memory free, like firmware does


@dataclass(frozen=True)
class KexecImage:
    """Memory and arguments for one call of relocate_new_kernel."""

    seed: int
    page_size: int
    pages: dict[int, bytes]  # physical page address -> contents before the call
    copies: tuple[tuple[int, int], ...]  # (destination page, source page), in list order
    head: int  # in0: the first page-list entry (an IND_INDIRECTION entry)
    start: int  # in1: the new kernel's entry
    boot_param: int  # in2: ia64_boot_param, a region-7 address
    pal_base: int  # in3: GRANULEROUNDDOWN(pal_addr)
    control_page: int  # where machine_kexec_prepare() copied the code
    control_pages: int  # how many pages it spans
    stack_block: int  # the caller's block for the stacks of the regenerated page
    per_cpu: int  # ar.k3: the physical per-CPU base, ia64_cpu_info at offset 0
    current_stack: int  # ar.k4: the granule of the current stack
    indirection_pages: int
    ptce: tuple[int, int, int, int, int]  # base, count[0], count[1], stride[0], stride[1]

    @property
    def destinations(self) -> tuple[int, ...]:
        return tuple(destination for destination, _ in self.copies)

    def arguments(self, stack_areas: tuple[int, ...] = ()) -> tuple[int, ...]:
        return (self.head, self.start, self.boot_param, self.pal_base, *stack_areas)


def make_image(seed: int, *, pages: int = 8, runs: int = 3, indirection_pages: int = 2,
               page_size: int = DEFAULT_PAGE_SIZE, control_bytes: int = 0x4400,
               stack_bytes: int = 0x4000) -> KexecImage:
    """An image of `pages` source pages copied to `runs` destination runs (each of more than
    one page when pages allow), listed over `indirection_pages` indirection pages."""
    rng = random.Random(seed)
    runs = max(1, min(runs, pages // 2 or 1))
    control_pages = -(-control_bytes // page_size)
    stack_pages = -(-stack_bytes // page_size)
    # run lengths: at least two pages each where there are enough pages
    lengths = [pages // runs] * runs
    for index in range(pages % runs):
        lengths[index] += 1
    # the control pages, the stack block and the per-CPU page sit below the image
    control_page = FIRST_FRAME * page_size
    stack_block = control_page + control_pages * page_size
    per_cpu = stack_block + stack_pages * page_size
    lowest = FIRST_FRAME + control_pages + stack_pages + 1
    destination_runs, free = _frames(rng, lengths, pages + indirection_pages, lowest)
    sources, indirection = free[:pages], free[pages:]
    memory: dict[int, bytes] = {}
    copies: list[tuple[int, int]] = []
    entries: list[int] = []
    source_pages = iter(sources)
    for run in destination_runs:
        entries.append(run[0] * page_size | IND_DESTINATION)
        for frame in run:
            source = next(source_pages) * page_size
            memory[source] = rng.randbytes(page_size)
            memory[frame * page_size] = rng.randbytes(page_size)
            copies.append((frame * page_size, source))
            entries.append(source | IND_SOURCE)
    entries.append(IND_DONE)
    memory.update(_page_list(entries, indirection, page_size))
    ptce = (KERNEL_REGION_BASE + rng.randrange(1 << 20) * page_size, rng.randrange(1, 4),
            rng.randrange(1, 4), page_size * rng.randrange(1, 8), page_size * rng.randrange(1, 8))
    cpu_info = bytearray(page_size)
    cpu_info[CPUINFO_PTCE_BASE:CPUINFO_PTCE_BASE + 8] = ptce[0].to_bytes(8, "little")
    for index, value in enumerate(ptce[1:3]):
        place = CPUINFO_PTCE_COUNT + 4 * index
        cpu_info[place:place + 4] = value.to_bytes(4, "little")
    for index, value in enumerate(ptce[3:5]):
        place = CPUINFO_PTCE_STRIDE + 4 * index
        cpu_info[place:place + 4] = value.to_bytes(4, "little")
    memory[per_cpu] = bytes(cpu_info)
    return KexecImage(
        seed=seed, page_size=page_size, pages=memory, copies=tuple(copies),
        head=indirection[0] * page_size | IND_INDIRECTION,
        start=copies[0][0] + 0x100, boot_param=KERNEL_REGION_BASE + rng.randrange(1 << 28) * 8,
        pal_base=KERNEL_REGION_BASE + rng.randrange(1, 64) * GRANULE,
        control_page=control_page, control_pages=control_pages, stack_block=stack_block,
        per_cpu=per_cpu, current_stack=rng.randrange(1, 256),
        indirection_pages=indirection_pages, ptce=ptce)


FRAME_SPAN = 0x4000  # frames the image is drawn from (256 MiB at 16 KiB pages)


def _frames(rng: random.Random, lengths: list[int], others: int, lowest: int
            ) -> tuple[list[list[int]], list[int]]:
    """Destination runs of consecutive frames, then `others` free frames, all distinct."""
    taken: set[int] = set()
    runs: list[list[int]] = []
    for length in lengths:
        while True:
            first = rng.randrange(lowest, FRAME_SPAN - length)
            run = list(range(first, first + length))
            # a free frame between runs keeps them separate runs, as a loader's segments are
            if not taken & set(range(first - 1, first + length + 1)):
                break
        taken.update(run)
        runs.append(run)
    free: list[int] = []
    while len(free) < others:
        frame = rng.randrange(lowest, FRAME_SPAN)
        if frame not in taken:
            taken.add(frame)
            free.append(frame)
    return runs, free


def _page_list(entries: list[int], indirection: list[int], page_size: int) -> dict[int, bytes]:
    """The entries spread over the indirection pages, each but the last ending with an
    IND_INDIRECTION entry to the next (the kernel links a page when it is full; here the
    pages are linked early so that a short list still crosses pages)."""
    count = len(indirection)
    per_page = -(-len(entries) // count)
    pages: dict[int, bytes] = {}
    for index, frame in enumerate(indirection):
        chunk = entries[index * per_page:(index + 1) * per_page]
        if index + 1 < count:
            chunk = [*chunk, indirection[index + 1] * page_size | IND_INDIRECTION]
        words = b"".join(entry.to_bytes(8, "little") for entry in chunk)
        pages[frame * page_size] = words + bytes(page_size - len(words))
    return pages
