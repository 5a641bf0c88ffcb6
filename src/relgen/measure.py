"""The input and its control page as the assembler sees it: read, assembled and mapped.

`load_source` reads and parses the .S once; `source_map` assembles it with the real
toolchain (in one configuration, at one page size) and maps its control page from the
object. `relgen rewrite` (pipeline) and `relgen verify` both measure through here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import kbuild, layout
from .configurations import AS_GIVEN, Configuration, Configurations, enumerate_configurations
from .elf import ObjectFile, load_object
from .errors import RelgenError
from .names import HEADER_INCLUDE, HEADER_NAME, RELOCATE_KERNEL_PATH
from .region import find_region
from .rewrite import includes_header
from .syntax import Module, parse, read_source


@dataclass(frozen=True)
class SourceFile:
    path: Path
    shown: str  # kernel-relative where it lies in the tree, else as given
    text: str
    module: Module

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_source(path: Path, tree: kbuild.KernelTree | None) -> SourceFile:
    shown = str(path)
    if tree is not None:
        try:
            shown = path.resolve().relative_to(tree.root).as_posix()
        except ValueError:
            pass
    text = read_source(path)
    return SourceFile(path, shown, text, parse(text, str(path)))


def require_regular_file(path: Path) -> None:
    """The assembler reads the source by its path: a pipe read once is gone."""
    if not path.is_file():
        raise RelgenError("not a regular file: relgen assembles the source by its path, so "
                          "save it to a file first", str(path))


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


def source_map(source: SourceFile, tree: kbuild.KernelTree, workdir: Path, *, entry: str,
               include_dirs: Sequence[Path] = (), page_size: int | None = None,
               extra_headers: dict[str, str] | None = None, fatal_warnings: bool = False,
               configuration: Configuration = AS_GIVEN, end_label: str | None = None,
               ) -> tuple[layout.ControlPageMap, kbuild.Assembled, ObjectFile]:
    """Assemble `source` and map its control page; which symbols are data, the tree says.
    `end_label` bounds the region where the file has no size word."""
    require_regular_file(source.path)
    region = find_region(source.module, entry, end_label)
    headers = extra_headers if extra_headers is not None else \
        companion_headers(source, include_dirs)
    assembled = kbuild.assemble(source.path, tree, workdir, page_size=page_size,
                                include_dirs=include_dirs, extra_headers=headers,
                                fatal_warnings=fatal_warnings,
                                cpp_flags=configuration.cpp_flags)
    obj = load_object(assembled.object_path)
    control_map = layout.build_map(obj, entry=entry, end_label=region.end_label,
                                   data_areas=[a.name for a in region.data_areas])
    return control_map, assembled, obj


def configurations_of(module: Module, entry: str, base: Configuration) -> Configurations:
    """The configurations the region's conditionals name, with the user's -D/-U fixed."""
    return enumerate_configurations(base, find_region(module, entry).switches)


def kernel_path(source: SourceFile) -> str:
    """The path the patch and header name: the kernel's, where the input is the kernel's."""
    shown = source.shown
    return shown if shown.startswith("arch/") else RELOCATE_KERNEL_PATH
