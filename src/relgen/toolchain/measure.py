"""The input and its control page as the assembler sees it: read, assembled and mapped.

`load_source` reads and parses the .S once; `source_map` assembles it with the real
toolchain (in one configuration, at one page size) and maps its control page from the
object. `relgen rewrite` (pipeline) and `relgen verify` both measure through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from relgen.errors import RelgenError
from relgen.names import HEADER_INCLUDE, HEADER_NAME
from relgen.rewrite import includes_header
from relgen.source.configurations import (
    AS_GIVEN,
    Configuration,
    Configurations,
    enumerate_configurations,
)
from relgen.source.files import SourceFile, require_regular_file
from relgen.source.nodes import Module
from relgen.source.region import find_region
from relgen.toolchain import layout
from relgen.toolchain.assemble import Assembled, assemble
from relgen.toolchain.elf import ObjectFile, load_object
from relgen.toolchain.tree import KernelTree


def companion_headers(source: SourceFile, include_dirs: Sequence[Path]) -> dict[str, str]:
    """The generated header an already regenerated file includes: found beside it or in -I."""
    if not includes_header(source.module):
        return {}
    for folder in (source.path.parent, *include_dirs):
        for candidate in (folder / HEADER_NAME, folder / HEADER_INCLUDE):
            if candidate.is_file():
                return {HEADER_INCLUDE: candidate.read_text(encoding="utf-8")}
    raise RelgenError(f"the file includes <{HEADER_INCLUDE}>, but no {HEADER_NAME} was found "
                      "beside it or in the -I folders", str(source.path))


def source_map(source: SourceFile, tree: KernelTree, workdir: Path, *, entry: str,
               include_dirs: Sequence[Path] = (), page_size: int | None = None,
               extra_headers: dict[str, str] | None = None, fatal_warnings: bool = False,
               configuration: Configuration = AS_GIVEN, end_label: str | None = None,
               ) -> tuple[layout.ControlPageMap, Assembled, ObjectFile]:
    """Assemble `source` and map its control page; which symbols are data, the tree says.
    `end_label` bounds the region where the file has no size word."""
    require_regular_file(source.path)
    region = find_region(source.module, entry, end_label)
    headers = extra_headers if extra_headers is not None else \
        companion_headers(source, include_dirs)
    assembled = assemble(source.path, tree, workdir, page_size=page_size,
                                include_dirs=include_dirs, extra_headers=headers,
                                fatal_warnings=fatal_warnings,
                                cpp_flags=configuration.cpp_flags)
    obj = load_object(assembled.object_path)
    control_map = layout.build_map(obj, entry=entry, end_label=region.end_label,
                                   data_areas=[a.name for a in region.data_areas])
    return control_map, assembled, obj


def configurations_of(module: Module, entry: str, base: Configuration,
                      also: Sequence[str] = ()) -> Configurations:
    """The configurations the region's conditionals name and the switches `also` (those
    under which a hypervisor calls the page), with the user's -D/-U fixed."""
    switches = find_region(module, entry).switches
    return enumerate_configurations(base, (*switches, *(s for s in also if s not in switches)))
