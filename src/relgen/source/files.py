"""An input file: read once, parsed once, and named the way the kernel names it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from relgen.errors import RelgenError
from relgen.names import RELOCATE_KERNEL_PATH
from relgen.source.nodes import Module
from relgen.source.parser import parse_module
from relgen.source.reading import read_source
from relgen.toolchain.tree import KernelTree


@dataclass(frozen=True)
class SourceFile:
    path: Path
    shown: str  # kernel-relative where it lies in the tree, else as given
    text: str
    module: Module

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def load_source(path: Path, tree: KernelTree | None) -> SourceFile:
    shown = str(path)
    if tree is not None:
        try:
            shown = path.resolve().relative_to(tree.root).as_posix()
        except ValueError:
            pass
    text = read_source(path)
    return SourceFile(path, shown, text, parse_module(text, str(path)))


def require_regular_file(path: Path) -> None:
    """The assembler reads the source by its path: a pipe read once is gone."""
    if not path.is_file():
        raise RelgenError("not a regular file: relgen assembles the source by its path, so "
                          "save it to a file first", str(path))



def kernel_path(source: SourceFile) -> str:
    """The path the patch and header name: the kernel's, where the input is the kernel's."""
    shown = source.shown
    return shown if shown.startswith("arch/") else RELOCATE_KERNEL_PATH
