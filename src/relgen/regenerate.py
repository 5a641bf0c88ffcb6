"""Rewrite the source, assemble both files in every configuration, and measure them.

`regenerate()` runs the rewrite passes for the tree's era (a Xen dom0 tree keeps the stacks
in the page under `CONFIG_XEN`, where the hypervisor calls it), assembles the original in
every configuration the control page's conditionals name, renders the header from the
stack sizes the objects hold, assembles the regenerated file with that header, and maps both
control pages. Nothing is written outside `workdir`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from relgen.errors import RelgenError
from relgen.kernel import callers
from relgen.kernel.header import DataAreaFacts, HeaderFacts, render_header
from relgen.kernel.message import stacks_apart_cost_no_more
from relgen.names import DEFAULT_ENTRY, HEADER_INCLUDE, PAGE_SIZES, SOURCE_NAME
from relgen.rewrite import RewriteResult, rewrite_control_page
from relgen.source.configurations import AS_GIVEN, Configuration, Configurations
from relgen.source.files import SourceFile, kernel_path, require_regular_file
from relgen.source.parser import unparse
from relgen.source.region import check_procedures_closed
from relgen.toolchain import layout
from relgen.toolchain.measure import companion_headers, configurations_of, source_map
from relgen.toolchain.tree import KernelTree


@dataclass(frozen=True)
class Variant:
    """One configuration: both control-page maps, and whether it keeps its stacks."""

    configuration: Configuration
    before: layout.ControlPageMap
    after: layout.ControlPageMap
    kept: bool  # a hypervisor calls the page in this configuration: the stacks stay


@dataclass(frozen=True)
class Regeneration:
    source: SourceFile
    tree: KernelTree
    result: RewriteResult
    new_text: str
    header_text: str
    header_facts: HeaderFacts | None  # None: the input is already in code-first layout
    configurations: Configurations
    variants: tuple[Variant, ...]  # every configuration, the first with every switch off
    standins: tuple[str, ...]
    caller_sources: callers.CallerSources | None = None  # the tree's C, as it was

    @property
    def changed(self) -> bool:
        return not self.result.already_code_first

    @property
    def native(self) -> Variant:
        """The first configuration the stacks leave the page in (all switches off)."""
        return next((v for v in self.variants if not v.kept), self.variants[0])

    @property
    def before(self) -> layout.ControlPageMap:
        return self.native.before

    @property
    def after(self) -> layout.ControlPageMap:
        return self.native.after


def _stack_sizes(result: RewriteResult, before: layout.ControlPageMap) -> tuple[int, ...]:
    """Each area's size as the object holds it (the source's where it is a literal)."""
    sizes = {s.name: s.size for s in before.symbols}
    found = []
    for area in result.data_areas:
        size = sizes.get(area.name, area.size)
        if area.size is not None and size != area.size:
            raise RelgenError(f"{area.name}: the source reserves {area.size} bytes but the "
                              f"object holds {size}")
        found.append(int(size or 0))
    return tuple(found)


def header_facts(result: RewriteResult, tree: KernelTree, source_path: str,
                 sizes: Sequence[int], every: Sequence[Sequence[int]] = ()) -> HeaderFacts:
    """What the header states for this rewrite in this tree, the stacks of `sizes` (those of
    every configuration are `every`). Each image gets its stacks in struct kimage_arch where
    the tree offers it and that costs no more control memory at any page size in any
    configuration; else they follow the code in its control pages."""
    apart = tree.era.kimage_arch and all(
        stacks_apart_cost_no_more(min(PAGE_SIZES), sum(each)) for each in (sizes, *every))
    return HeaderFacts(
        entry=result.region.entry, source_path=source_path,
        data_areas=tuple(DataAreaFacts(area.name, size, result.argument_registers[area.name])
                         for area, size in zip(result.data_areas, sizes, strict=True)),
        kimage_arch=apart, control_macro=tree.era.control_macro,
        kept=result.kept, entry_points=result.entry_points,
        spdx=tree.era.release >= (4, 14, 0))


def header_variants(variants: Sequence[tuple[Configuration, tuple[int, ...]]],
                    complete: bool) -> list[tuple[str | None, tuple[int, ...]]]:
    """The stack sizes under the conditions that give them: one set, or one per condition.

    All switches off (the first configuration) comes last, so that the header reads like the
    source: `#if defined(CONFIG_XEN)` ... `#else` ...; configurations with the same sizes
    share one condition, and the last is `#else` when every configuration was measured."""
    if len({sizes for _, sizes in variants}) == 1:
        return [(None, variants[0][1])]
    grouped: dict[tuple[int, ...], list[str]] = {}
    for each, sizes in reversed(variants):
        grouped.setdefault(sizes, []).append(f"({each.condition})")
    shown: list[tuple[str | None, tuple[int, ...]]] = [
        (" || ".join(conditions) if len(conditions) > 1 else conditions[0][1:-1], sizes)
        for sizes, conditions in grouped.items()]
    if complete:
        shown[-1] = (None, shown[-1][1])
    return shown


def regenerate(source: SourceFile, tree: KernelTree, workdir: Path, *,
               entry: str = DEFAULT_ENTRY, include_dirs: Sequence[Path] = (),
               configuration: Configuration = AS_GIVEN) -> Regeneration:
    """Rewrite, assemble both files in every configuration, and measure them."""
    require_regular_file(source.path)
    check_procedures_closed(source.module)
    era = tree.era
    result = rewrite_control_page(source.module, entry, era.hypervisor_switches)
    new_text = unparse(result.module)
    configurations = configurations_of(source.module, entry, configuration,
                                       era.hypervisor_switches)
    if result.already_code_first:
        headers = companion_headers(source, include_dirs)
        variants = []
        for each in configurations.each:
            mapped, assembled, _ = source_map(source, tree, workdir / "new" / each.folder,
                                              entry=entry, include_dirs=include_dirs,
                                              extra_headers=headers, configuration=each)
            variants.append(Variant(each, mapped, mapped, each.switched_on(result.kept)))
        return Regeneration(source, tree, result, new_text, headers[HEADER_INCLUDE], None,
                            configurations, tuple(variants), assembled.standins)

    if all(each.switched_on(result.kept) for each in configurations.each):
        # nothing of the change is assembled: the hypervisor's layout stays as it is
        kept = " and ".join(result.kept)
        raise RelgenError(f"with {kept} on, the hypervisor calls the control page and it "
                          f"keeps its stacks, so no configuration checked here changes: drop "
                          f"-D {result.kept[0]} to check the change with {kept} off and on",
                          source.shown)
    originals = []
    for each in configurations.each:
        before, original, _ = source_map(source, tree, workdir / "original" / each.folder,
                                         entry=entry, include_dirs=include_dirs,
                                         extra_headers={}, configuration=each)
        originals.append((each, before))
    native = [(each, _stack_sizes(result, before)) for each, before in originals
              if not each.switched_on(result.kept)]
    facts = header_facts(result, tree, kernel_path(source), native[0][1],
                         [sizes for _, sizes in native])
    header = render_header(facts, header_variants(
        native, configurations.complete and not result.kept))
    new_path = workdir / "new" / SOURCE_NAME
    new_path.parent.mkdir(parents=True, exist_ok=True)
    new_path.write_text(new_text, encoding="utf-8", newline="")
    new_source = SourceFile(new_path, SOURCE_NAME, new_text, result.module)
    variants = []
    for each, before in originals:
        after, _, _ = source_map(new_source, tree, workdir / "new" / each.folder, entry=entry,
                                 include_dirs=include_dirs,
                                 extra_headers={HEADER_INCLUDE: header}, configuration=each)
        variants.append(Variant(each, before, after, each.switched_on(result.kept)))
    return Regeneration(source, tree, result, new_text, header, facts, configurations,
                        tuple(variants), original.standins,
                        caller_sources=callers.read_callers(tree.root, era))
