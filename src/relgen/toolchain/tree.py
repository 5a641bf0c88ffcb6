"""The Linux tree relgen works on: where it is, its era, and the page sizes ia64 builds it
with."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from relgen.errors import RelgenError
from relgen.names import PAGE_SIZES, RELOCATE_KERNEL_PATH
from relgen.toolchain.era import Era, place

TREE_ENVIRONMENT_VARIABLE = "RELGEN_KERNEL_TREE"
# Where `make setup` extracts the Debian linux-source-6.1 tarball, relative to the checkout.
CACHED_TREE = Path(".cache") / "linux-source-6.1"
RELOCATE_KERNEL = Path(RELOCATE_KERNEL_PATH)
_PAGE_SIZE_CONFIG = re.compile(r"^#define\s+CONFIG_IA64_PAGE_SIZE_(\d+)KB\s+1\s*$", re.MULTILINE)


def parse_page_sizes(text: str) -> tuple[int, ...]:
    """Page sizes from "4K,16K" or "4096,65536": sorted, without repeats, each one ia64 supports."""
    sizes: set[int] = set()
    for item in text.split(","):
        word = item.strip()
        size = _parse_one_page_size(word)
        if size not in PAGE_SIZES:
            raise RelgenError(
                f"unknown page size {word!r}: ia64 pages are 4K, 8K, 16K or 64K "
                "(or 4096, 8192, 16384, 65536 bytes)"
            )
        sizes.add(size)
    return tuple(sorted(sizes))


def _parse_one_page_size(word: str) -> int | None:
    match = re.fullmatch(r"(\d+)\s*(k|kb|kib)?", word, re.IGNORECASE)
    if match is None:
        return None
    number = int(match.group(1))
    return number * 1024 if match.group(2) else number


def page_size_text(page_size: int) -> str:
    return f"{page_size // 1024} KiB" if page_size % 1024 == 0 else f"{page_size} bytes"


@dataclass(frozen=True)
class KernelTree:
    """A Linux source tree with arch/ia64, built or not, of any era relgen knows."""

    root: Path

    @property
    def relocate_kernel(self) -> Path:
        """The kexec relocation code this tool regenerates."""
        return self.root / RELOCATE_KERNEL

    @cached_property
    def era(self) -> Era:
        """Where this tree keeps what relgen reads; RelgenError for a tree it cannot place."""
        return place(self.root)

    @property
    def has_build(self) -> bool:
        """True when a kernel build has written the configuration (no stand-ins needed)."""
        return (self.root / self.era.config_header).is_file()

    @property
    def configured_page_size(self) -> int | None:
        """The page size a built tree is configured for; None for a tree without a build."""
        if not self.has_build:
            return None
        autoconf = (self.root / self.era.config_header).read_text(encoding="utf-8",
                                                                  errors="replace")
        match = _PAGE_SIZE_CONFIG.search(autoconf)
        return int(match.group(1)) * 1024 if match else None


def find_kernel_tree(explicit: Path | None = None, *, start: Path | None = None) -> KernelTree:
    """The tree to work on: `explicit`, else $RELGEN_KERNEL_TREE, else .cache/linux-source-6.1
    in `start` (the current directory by default) or any of its parents."""
    if explicit is not None:
        return _checked_tree(Path(explicit), "")
    from_environment = os.environ.get(TREE_ENVIRONMENT_VARIABLE)
    if from_environment:
        return _checked_tree(Path(from_environment), f" (from ${TREE_ENVIRONMENT_VARIABLE})")
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CACHED_TREE
        if candidate.is_dir():
            return _checked_tree(candidate, "")
    raise RelgenError(
        "no Linux kernel tree found: run `make setup` to extract linux-source-6.1 into "
        f"{CACHED_TREE}, or pass --kernel-tree DIR (or set ${TREE_ENVIRONMENT_VARIABLE})"
    )


def _checked_tree(path: Path, origin: str) -> KernelTree:
    if not path.is_dir():
        raise RelgenError(f"no such directory{origin}", str(path))
    if not (path / "arch" / "ia64").is_dir():
        raise RelgenError(f"{path}{origin} is not a Linux tree with arch/ia64")
    return KernelTree(path.resolve())


