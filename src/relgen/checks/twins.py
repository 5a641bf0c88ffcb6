"""The twin objects: the original and the regenerated file assembled side by side, at every
page size, in every configuration the control page's conditionals name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relgen.checks.inputs import Inputs
from relgen.checks.report import Check
from relgen.errors import RelgenError
from relgen.names import HEADER_INCLUDE
from relgen.source.configurations import AS_GIVEN, Configuration
from relgen.toolchain import layout
from relgen.toolchain.measure import source_map

Job = tuple[Configuration, int]  # a configuration and a page size


@dataclass(frozen=True)
class Twin:
    """Both files assembled at one page size, with their control-page maps."""

    page_size: int
    before: layout.ControlPageMap
    after: layout.ControlPageMap
    original_object: Path
    new_object: Path
    new_symbols: frozenset[str]
    configuration: Configuration = AS_GIVEN

def assemble_twins(inputs: Inputs, work: Path, page_sizes: Sequence[int],
                   map_each: Callable[[Callable[[Job], Twin | Check], list[Job]], Iterable]
                   = map) -> tuple[list[Twin], list[Check]]:
    """Both files at each page size, in every configuration the conditionals name.

    `map_each` runs the pairs (the runner's pool runs them side by side: the work is in
    cpp and the assembler); the results come back in the order of the loops."""
    configurations = inputs.configurations
    jobs = [(each, page_size) for each in configurations.each for page_size in page_sizes]

    def assemble_pair(job: Job) -> Twin | Check:
        each, page_size = job
        place = f"{each.folder}-{page_size}"
        try:
            before, original, _ = source_map(
                inputs.original, inputs.tree, work / f"original-{place}",
                entry=inputs.entry, include_dirs=inputs.include_dirs,
                page_size=page_size, fatal_warnings=True, configuration=each)
            after, new, obj = source_map(
                inputs.new, inputs.tree, work / f"new-{place}", entry=inputs.entry,
                include_dirs=inputs.include_dirs, page_size=page_size,
                extra_headers={HEADER_INCLUDE: inputs.header_text}, fatal_warnings=True,
                configuration=each)
        except RelgenError as error:
            named = "" if len(configurations.each) == 1 else f", {each.describe()}"
            return Check(f"assemble at {page_size // 1024} KiB pages{named}", False,
                         tuple(error.render().splitlines()))
        return Twin(page_size, before, after, original.object_path, new.object_path,
                    frozenset(s.name for s in obj.symbols), each)

    results = list(map_each(assemble_pair, jobs))
    return ([r for r in results if isinstance(r, Twin)],
            [r for r in results if isinstance(r, Check)])
