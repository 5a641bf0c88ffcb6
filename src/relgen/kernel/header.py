"""The header `asm/kexec_control_page.h`: the sizes the `.S` and the C share.

It holds the code page and each stack's size, and, by the tree's era, the block of both
stacks (a tree whose `include/linux/kexec.h` offers `struct kimage_arch`: each image gets
its stacks apart) or where they lie after the code in the image's control pages (older
trees). No number the assembler measures goes into it: the code's size and where another
entry point lies reach C through symbols the `.S` defines (`relocate_new_kernel_size`,
`kexec_fake_sal_rendez_offset`), so an edit of the `.S` cannot leave it stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relgen.errors import RelgenError
from relgen.kernel.templates import defines_at, render_template
from relgen.names import (
    CODE_PAGE_MACRO,
    PAGE_SIZES,
    PAGES_SIZE_MACRO,
    STACKS_SIZE_MACRO,
    kexec_macro,
)


@dataclass(frozen=True)
class DataAreaFacts:
    """A data area lifted out of the control page and passed in as an argument."""

    name: str  # the label in the source, e.g. "memory_stack"
    size: int  # bytes, e.g. 8192 (in the configuration the header states first)
    argument_register: str  # the input register it arrives in, e.g. "in4"

    @property
    def macro(self) -> str:
        """Its size: memory_stack -> KEXEC_MEMORY_STACK_SIZE."""
        return kexec_macro(self.name, "SIZE")

    @property
    def offset_macro(self) -> str:
        """Where it lies in the control pages, where they hold it: KEXEC_MEMORY_STACK_OFFSET."""
        return kexec_macro(self.name, "OFFSET")


@dataclass(frozen=True)
class HeaderFacts:
    """What the header states; the stack sizes are the source's, checked in the objects."""

    entry: str  # "relocate_new_kernel"
    source_path: str  # "arch/ia64/kernel/relocate_kernel.S"
    data_areas: tuple[DataAreaFacts, ...]
    kimage_arch: bool  # the tree offers struct kimage_arch: each image's stacks apart
    control_macro: str  # asm/kexec.h's name for the control size
    kept: tuple[str, ...] = ()  # switches under which a hypervisor calls the page
    entry_points: tuple[str, ...] = ()  # other entry points with an offset word in the .S
    code_page_size: int = min(PAGE_SIZES)
    spdx: bool = True  # the tree's files carry SPDX tags (4.14 and later)

    def __post_init__(self) -> None:
        if not self.data_areas:
            raise RelgenError("a header needs at least one data area")
        for area in self.data_areas:
            if area.size <= 0 or area.size % 16:
                raise RelgenError(f"{area.name}: {area.size} bytes is not a stack size (a "
                                  "positive multiple of 16)")

    @property
    def stacks_size(self) -> int:
        return sum(area.size for area in self.data_areas)


def render_header(facts: HeaderFacts,
                  variants: Sequence[tuple[str | None, tuple[int, ...]]] = ()) -> str:
    """The header, usable from C and from assembly. `variants` are the stack sizes of each
    configuration under its C condition (None for the last, `#else`) where the source's
    conditionals make them differ."""
    names = [CODE_PAGE_MACRO, STACKS_SIZE_MACRO, PAGES_SIZE_MACRO]
    names += [area.macro for area in facts.data_areas]
    names += [area.offset_macro for area in facts.data_areas]
    return render_template(
        "kexec_control_page.h.j2", facts=facts, define=defines_at(names),
        code_page_macro=CODE_PAGE_MACRO, stacks_size_macro=STACKS_SIZE_MACRO,
        pages_size_macro=PAGES_SIZE_MACRO, spdx=facts.spdx,
        variants=tuple(variants) or ((None, tuple(a.size for a in facts.data_areas)),))
