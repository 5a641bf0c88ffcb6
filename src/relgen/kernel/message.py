"""The commit message of the mail: what the change does for this input, why, what it costs
per page size, and exactly what was checked; and the notes below its `---`.

Every sentence is chosen by the input's facts (`PatchFacts`): whether code moves (nothing on
6.1, `kexec_fake_sal_rendez` in the 2006 shape), where the tree keeps each image's stacks
(`struct kimage_arch` where `include/linux/kexec.h` offers it, the image's control pages
before), what a hypervisor's configuration keeps, and what the checks before the mail found.
relgen's name, version and the input's sha256 go below the `---`, where `git am` drops them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from relgen.kernel.header import HeaderFacts
from relgen.kernel.templates import reflow, render_template
from relgen.names import PAGE_SIZES


@dataclass(frozen=True)
class ControlMemory:
    """Bytes of control pages one image takes at one page size, before and after."""

    page_size: int
    before: int
    after: int


@dataclass(frozen=True)
class Evidence:
    """What the checks before the mail established, as the message states it."""

    page_sizes: tuple[int, ...]
    configurations: str | None  # "with CONFIG_XEN off and on", or None
    instructions_compared: int | None
    images: int
    pages: int
    kernel: str  # one clause: the kernel checks that ran, or why they did not


@dataclass(frozen=True)
class PatchFacts:
    entry: str
    header: HeaderFacts
    before_bytes: int  # the control size before, e.g. 20480
    after_bytes: int  # the control size after
    code_size: int  # bytes of code in the regenerated control page
    moved: tuple[str, ...]  # procedures that followed the stacks and move ahead
    padding: bool  # nop bundles aligned the stacks (they go with them)
    instructions_rewritten: int
    existing_arguments: int  # the entry's inputs before
    control_memory: tuple[ControlMemory, ...]
    evidence: Evidence
    signed_off_by: str
    hook: bool = False  # the tree offers struct kimage_arch (used or not)


def _pages(size: int, page: int) -> int:
    """Bytes kimage_alloc_control_pages(image, get_order(size)) takes: a power of two pages."""
    pages = 1
    while pages * page < size:
        pages *= 2
    return pages * page


def stacks_apart_cost_no_more(code: int, stacks: int,
                               page_sizes: Sequence[int] = PAGE_SIZES) -> bool:
    """Whether stacks in control pages of their own (in the code's page where it holds them)
    cost no more than the code and the stacks in one allocation, at every page size:
    kimage_alloc_control_pages() takes a power of two pages, so two allocations can."""
    return all((_pages(code + stacks, page) if code + stacks <= page
                else _pages(code, page) + _pages(stacks, page)) <= _pages(code + stacks, page)
               for page in page_sizes)


def control_memory(before: int, header: HeaderFacts,
                   page_sizes: Sequence[int] = PAGE_SIZES) -> tuple[ControlMemory, ...]:
    """Control memory per image at each page size, as the change allocates it: the code page
    and, apart, the stacks (after the code where one page holds all) where each image has a
    struct kimage_arch; the code page and the stacks after it in one allocation before."""
    code, stacks = header.code_page_size, header.stacks_size
    rows = []
    for page in page_sizes:
        if not header.kimage_arch or code + stacks <= page:
            after = _pages(code + stacks, page)
        else:
            after = _pages(code, page) + _pages(stacks, page)
        rows.append(ControlMemory(page, _pages(before, page), after))
    return tuple(rows)


def subject(facts: PatchFacts, prefix: str) -> str:
    """`[IA64] kexec: ...` or `ia64: kexec: ...`: what the change does for this input, short
    enough for one `Subject: [PATCH] ` line."""
    what = "move all code first, pass the stacks in" if facts.moved else \
        "take the stacks out of the control page"
    topic = "" if "kexec" in prefix.lower() else "kexec: "
    return f"{prefix}{topic}{what}"


def history_prefix(subjects: Sequence[str]) -> str | None:
    """The subject prefix most used in a file's history (`[IA64] `, `ia64: kexec: `...)."""
    prefixes = Counter(m.group(0) for s in subjects
                       if (m := re.match(r"(\[[^\]]+\] )?([\w/.-]+: )*", s)) and m.group(0))
    return prefixes.most_common(1)[0][0] if prefixes else None


def render_commit_message(facts: PatchFacts) -> str:
    """The commit message body (everything after the subject), filled to 75 columns."""
    return reflow(render_template("patch_message.j2", facts=facts))


def render_notes(version: str, source_path: str, sha256: str,
                 checkpatch: Sequence[tuple[str, str]] | str) -> str:
    """What goes below the `---`: relgen, the input, and what checkpatch.pl still reports
    (each message with its reason), or why it did not run."""
    lines = [f"relgen {version} made this patch from {source_path}", f"(sha256 {sha256})."]
    if isinstance(checkpatch, str):
        lines.append(checkpatch)
    elif checkpatch:
        lines.append("checkpatch.pl --strict reports only what the change cannot avoid:")
        lines += [f"- {message}: {reason}" for message, reason in checkpatch]
    else:
        lines.append("checkpatch.pl --strict reports nothing.")
    return reflow("\n".join(lines), keep_fitting=True)
