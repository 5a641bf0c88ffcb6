"""What `relgen verify` checks: the original, the regenerated file, its header and patch."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from relgen.errors import RelgenError
from relgen.kernel.header import HeaderFacts
from relgen.kernel.review import recorded_input_sha256
from relgen.names import HEADER_NAME, PATCH_NAME, SOURCE_NAME, size_macro
from relgen.regenerate import header_facts
from relgen.rewrite import RewriteResult, rewrite_control_page
from relgen.source.configurations import AS_GIVEN, Configuration, Configurations
from relgen.source.files import SourceFile, kernel_path, load_source
from relgen.toolchain.measure import configurations_of
from relgen.toolchain.tree import KernelTree


@dataclass(frozen=True)
class Inputs:
    original: SourceFile
    new: SourceFile
    header_text: str
    patch_path: Path | None
    tree: KernelTree
    entry: str
    include_dirs: tuple[Path, ...] = ()
    expected: RewriteResult | None = field(default=None, compare=False)
    configuration: Configuration = AS_GIVEN  # the user's -D/-U
    # what the header says, where relgen wrote it in this run (None: read from a folder)
    header_facts: HeaderFacts | None = field(default=None, compare=False)

    @cached_property
    def configurations(self) -> Configurations:
        """Every configuration the original's conditionals name, the user's -D/-U fixed."""
        return configurations_of(self.original.module, self.entry, self.configuration)

def load_inputs(out_dir: Path, tree: KernelTree, *, original: Path | None,
                entry: str, include_dirs: Sequence[Path] = (),
                configuration: Configuration = AS_GIVEN) -> Inputs:
    """The output folder of `relgen rewrite` and the original it was made from."""
    if not out_dir.is_dir():
        raise RelgenError("no such output folder (run `relgen rewrite` first)", str(out_dir))
    for name in (SOURCE_NAME, HEADER_NAME):
        if not (out_dir / name).is_file():
            raise RelgenError(f"the output folder has no {name}", str(out_dir))
    original_path = original if original is not None else tree.relocate_kernel
    source = load_source(original_path, tree)
    return inputs_from(out_dir, source, load_source(out_dir / SOURCE_NAME, None), tree,
                       rewrite_control_page(source.module, entry,
                                            tree.era.hypervisor_switches), entry=entry,
                       include_dirs=include_dirs, original_given=original is not None,
                       configuration=configuration)

def inputs_from(out_dir: Path, source: SourceFile, new: SourceFile, tree: KernelTree,
                expected: RewriteResult, *, entry: str, include_dirs: Sequence[Path] = (),
                original_given: bool = True, configuration: Configuration = AS_GIVEN
                ) -> Inputs:
    """The Inputs of files already read: `relgen rewrite` checks what it is about to write."""
    header = (out_dir / HEADER_NAME).read_text(encoding="utf-8")
    patch = out_dir / PATCH_NAME
    recorded = recorded_input_sha256(patch) if patch.is_file() else None
    if recorded is not None and not expected.already_code_first and recorded != source.sha256:
        how = "pass --original with that file" if not original_given else \
            "this is not the file it was made from"
        raise RelgenError(
            f"{PATCH_NAME} was made from an input with sha256 {recorded[:16]}..., but "
            f"{source.shown} has sha256 {source.sha256[:16]}...; {how}", str(out_dir))
    facts = None
    if not expected.already_code_first:
        # the header gives the sizes of each configuration in a group of its own, the one
        # of every switch off last (#else)
        found = [[int(n) for n in re.findall(
            rf"^#define\s+{re.escape(size_macro(area.name))}\s+(\d+)\s*$", header, re.M)]
            or [area.size or 0] for area in expected.data_areas]  # then the header check fails
        groups = [tuple(sizes) for sizes in zip(*found, strict=False)]
        facts = header_facts(expected, tree, kernel_path(source), groups[-1], groups)
    return Inputs(source, new, header, patch if patch.is_file() else None, tree, entry,
                  tuple(include_dirs), expected, configuration, facts)
