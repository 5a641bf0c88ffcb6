"""The facts relgen's modules share, each said once: page sizes, kernel paths, output names,
the entry's name, and the one rule for the header's macro names."""

from __future__ import annotations

#: The page sizes an ia64 kernel can be built with (CONFIG_IA64_PAGE_SIZE_*).
PAGE_SIZES: tuple[int, ...] = (4096, 8192, 16384, 65536)
#: arch/ia64/Kconfig's default (CONFIG_IA64_PAGE_SIZE_16KB).
DEFAULT_PAGE_SIZE = 16384

#: The entry procedure whose region is the control page.
DEFAULT_ENTRY = "relocate_new_kernel"

# The four files of the change, by their paths from the kernel root.
RELOCATE_KERNEL_PATH = "arch/ia64/kernel/relocate_kernel.S"
HEADER_PATH = "arch/ia64/include/asm/kexec_control_page.h"
KEXEC_H_PATH = "arch/ia64/include/asm/kexec.h"
MACHINE_KEXEC_PATH = "arch/ia64/kernel/machine_kexec.c"
#: How the .S and asm/kexec.h include the header.
HEADER_INCLUDE = "asm/kexec_control_page.h"

# The files of rewrite's output folder.
SOURCE_NAME = "relocate_kernel.S"
HEADER_NAME = "kexec_control_page.h"
PATCH_NAME = "relocate_kernel.patch"
LAYOUT_TEXT_NAME = "layout.txt"
LAYOUT_JSON_NAME = "layout.json"
LAYOUT_BEFORE_SVG_NAME = "layout-before.svg"
LAYOUT_AFTER_SVG_NAME = "layout-after.svg"
#: Every file `relgen rewrite` may write, and so the only names it may ever replace or remove.
REWRITE_OUTPUT_NAMES: frozenset[str] = frozenset({
    SOURCE_NAME, HEADER_NAME, PATCH_NAME, LAYOUT_TEXT_NAME, LAYOUT_JSON_NAME,
    LAYOUT_BEFORE_SVG_NAME, LAYOUT_AFTER_SVG_NAME})

#: The header's macros that the C callers and the .S use by name: the code page, the block of
#: the stacks (trees with struct kimage_arch), the code page and the stacks after it (older).
CODE_PAGE_MACRO = "KEXEC_CONTROL_CODE_PAGE_SIZE"
STACKS_SIZE_MACRO = "KEXEC_CONTROL_STACKS_SIZE"
PAGES_SIZE_MACRO = "KEXEC_CONTROL_PAGES_SIZE"

MACRO_PREFIX = "KEXEC_"


def kexec_macro(symbol: str, what: str) -> str:
    """memory_stack, SIZE -> KEXEC_MEMORY_STACK_SIZE; kexec_fake_sal_rendez, OFFSET ->
    KEXEC_FAKE_SAL_RENDEZ_OFFSET (a symbol that already starts with kexec_ is not prefixed
    twice)."""
    stem = symbol.lstrip(".").upper()
    if not stem.startswith(MACRO_PREFIX):
        stem = MACRO_PREFIX + stem
    return f"{stem}_{what}"


def size_macro(area: str) -> str:
    return kexec_macro(area, "SIZE")


def offset_macro(entry_point: str) -> str:
    return kexec_macro(entry_point, "OFFSET")
