"""The rewrite of the control page: all code first, the stacks out of it and passed in.

`rewrite_control_page` runs the passes in this order, each a function from tree to tree:

1. `rebase_area_references` (`addresses`): every instruction that forms a data-area address
   from the position anchor (`add sp=(memory_stack_end - 16 - .reloc_entry),r2`) is replaced,
   one for one and by an instruction of the same unit, by one that forms it from the area's
   new argument (`add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4`).
2. `widened_alloc`: the entry's `alloc` gains one input per area, in order of appearance.
3. `move_code_ahead`: inside the region, code keeps its order and goes before every area.
4. `lift_data_areas`: the areas (with their serving `.align`) leave the control page.
5. `include_header`: the file includes the header whose sizes it now uses.
6. `document_entry_arguments`: a comment at the entry names the new arguments.
7. `define_entry_offsets`: a word C can read for each other global entry point of the page
   (`kexec_fake_sal_rendez_offset` in the 2006 shape), as `relocate_new_kernel_size` is one
   for the size.
8. `guard_code_size`: after the size word, the build fails with a message if the code
   outgrows the page the header gives it.

Where a hypervisor calls the control page itself (`hypervisor_switches`, `CONFIG_XEN` in the
Xen dom0 trees), it passes no stacks: under those switches the page keeps its stacks, after
the code now, and the rebased instructions and the alloc keep their old form under `#ifdef`,
their new one under `#else`. Every pass walks the file once, so the work grows linearly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relgen.names import DEFAULT_ENTRY
from relgen.rewrite.addresses import RewrittenInstruction, rebase_area_references
from relgen.rewrite.lines import replace_items_unless
from relgen.rewrite.passes import (
    CODE_END_LABEL,
    argument_registers,
    define_entry_offsets,
    document_entry_arguments,
    find_alloc,
    global_entry_points,
    guard_code_size,
    include_header,
    includes_header,
    keep_data_areas,
    lift_data_areas,
    move_code_ahead,
    offset_symbol,
    procedures_after_data,
    widened_alloc,
)
from relgen.source.nodes import Module
from relgen.source.region import ControlPageRegion, DataArea, find_region, require_data_areas

__all__ = ["RewriteResult", "RewrittenInstruction", "includes_header", "offset_symbol",
           "rewrite_control_page"]


@dataclass(frozen=True)
class RewriteResult:
    module: Module
    region: ControlPageRegion  # of the input
    data_areas: tuple[DataArea, ...]
    argument_registers: Mapping[str, str]  # area name -> in4, in5, ...
    rewritten: tuple[RewrittenInstruction, ...]
    alloc_before: str
    alloc_after: str
    already_code_first: bool = False
    # switches under which the page keeps its stacks: a hypervisor calls it there
    kept: tuple[str, ...] = ()
    # other global entry points of the page, each with a word `<name>_offset` in the .S
    entry_points: tuple[str, ...] = ()
    # the procedures that stood after a data area and move ahead of them
    # (kexec_fake_sal_rendez in the 2006 shape; none on 6.1)
    moved: tuple[str, ...] = ()


def _already_code_first(module: Module, region: ControlPageRegion) -> bool:
    """The output of an earlier rewrite: the header included, and no area the page has in
    every configuration (those a hypervisor's configuration keeps stand under #ifdef)."""
    return includes_header(module) and all(area.optional for area in region.data_areas)


def rewrite_control_page(module: Module, entry: str = DEFAULT_ENTRY,
                         hypervisor_switches: Sequence[str] = ()) -> RewriteResult:
    """Run every pass. A file already in code-first layout comes back unchanged."""
    region = find_region(module, entry)
    alloc = find_alloc(module, region)
    if _already_code_first(module, region):
        return RewriteResult(module, region, (), {}, (), alloc.text, alloc.text,
                             already_code_first=True)
    require_data_areas(module, region)
    kept = tuple(hypervisor_switches)
    registers = argument_registers(module, region)
    rewritten = rebase_area_references(module, region, registers)
    old_alloc, new_alloc = widened_alloc(module, region, len(region.data_areas))
    replacements = {id(r.old_item): r.new_item for r in rewritten}
    replacements[id(old_alloc)] = new_alloc
    new = replace_items_unless(module, replacements, kept)
    region_now = find_region(new, entry)
    new = move_code_ahead(new, region_now)
    region_now = find_region(new, entry)
    if kept:
        new = keep_data_areas(new, region_now, kept)
        code_end = CODE_END_LABEL
    else:
        new = lift_data_areas(new, region_now)
        code_end = region_now.end_label
    new = include_header(new)
    new = document_entry_arguments(new, find_region(new, entry), region.data_areas,
                                   registers, kept)
    points = tuple(global_entry_points(new, find_region(new, entry)))
    new = define_entry_offsets(new, find_region(new, entry), points)
    new = guard_code_size(new, find_region(new, entry), code_end)
    return RewriteResult(new, region, region.data_areas, registers, rewritten, alloc.text,
                         new_alloc.text, kept=kept, entry_points=points,
                         moved=procedures_after_data(module, region))
