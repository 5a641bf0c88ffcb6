"""A hand-written change of the ia64 kexec C side, made at test time from the pristine tree.

It is the shape DESIGN.md "The C side" asks for (the header included, the code page as
KEXEC_CONTROL_PAGE_SIZE, the 6-parameter prototype, `struct kimage_arch` with one block for
both stacks, allocated by kimage_alloc_control_pages() and passed as arguments 5 and 6), and
its broken-on-purpose variants. No kernel code is stored here: only the edits, applied to the
tree's own files, each of which must find the text it edits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

KEXEC_H = "arch/ia64/include/asm/kexec.h"
MACHINE_KEXEC_C = "arch/ia64/kernel/machine_kexec.c"
HEADER = "arch/ia64/include/asm/kexec_control_page.h"
SOURCE = "arch/ia64/kernel/relocate_kernel.S"

STACKS_ORDER = "get_order(KEXEC_MEMORY_STACK_SIZE + KEXEC_REGISTER_STACK_SIZE)"
ALLOCATION = (
    "\timage->arch.stacks = kimage_alloc_control_pages(image,\n"
    f"\t\t\t\t\t\t\t{STACKS_ORDER});\n"
    "\tif (!image->arch.stacks)\n"
    "\t\treturn -ENOMEM;\n\n"
)
MEMORY_STACK = "page_to_phys(image->arch.stacks)"
REGISTER_STACK = "page_to_phys(image->arch.stacks) + KEXEC_MEMORY_STACK_SIZE"
OLD_CALL_END = "GRANULEROUNDDOWN((unsigned long) pal_addr));"


def replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"expected exactly one {old!r} in the pristine file")
    return text.replace(old, new)


def change_kexec_h(text: str, *, include: bool = True, arch_hook: bool = True) -> str:
    if include:
        text = replace_once(text, "#include <asm/setup.h>\n",
                            "#include <asm/setup.h>\n#include <asm/kexec_control_page.h>\n")
    text = replace_once(text, "#define KEXEC_CONTROL_PAGE_SIZE (8192 + 8192 + 4096)",
                        "#define KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE")
    text = replace_once(text, "struct ia64_boot_param *, unsigned long);",
                        "struct ia64_boot_param *, unsigned long,\n"
                        "\t\tunsigned long, unsigned long);")
    hook = "#define ARCH_HAS_KIMAGE_ARCH\n\n" if arch_hook else ""
    return replace_once(text, "extern struct kimage *ia64_kimage;\n",
                        f"{hook}struct kimage_arch {{\n\tstruct page *stacks;\n}};\n\n"
                        "extern struct kimage *ia64_kimage;\n")


def change_machine_kexec_c(text: str, *, typedef: bool = False, allocation: str = ALLOCATION,
                           arguments: tuple[str, str] | None = (MEMORY_STACK, REGISTER_STACK),
                           cleanup: str = "") -> str:
    if not typedef:
        start = text.index("typedef void (*relocate_new_kernel_t)(")
        end = text.index("__noreturn;\n", start) + len("__noreturn;\n\n")
        text = text[:start] + text[end:]
    text = replace_once(text, "\tfunc = (unsigned long *)&relocate_new_kernel;",
                        allocation + "\tfunc = (unsigned long *)&relocate_new_kernel;")
    if cleanup:
        text = replace_once(text, "void machine_kexec_cleanup(struct kimage *image)\n{\n",
                            "void machine_kexec_cleanup(struct kimage *image)\n{\n" + cleanup)
    if arguments is not None:
        text = replace_once(text, OLD_CALL_END,
                            "GRANULEROUNDDOWN((unsigned long) pal_addr),\n"
                            f"\t\t     {arguments[0]},\n\t\t     {arguments[1]});")
    return text


def correct_change(tree: Path, regenerated: dict[str, bytes]) -> dict[str, bytes]:
    """The four files: relgen's regenerated .S and header, and the hand-made C change."""
    return {
        SOURCE: regenerated[SOURCE],
        HEADER: regenerated[HEADER],
        KEXEC_H: change_kexec_h((tree / KEXEC_H).read_text()).encode(),
        MACHINE_KEXEC_C: change_machine_kexec_c((tree / MACHINE_KEXEC_C).read_text()).encode(),
    }


def broken(tree: Path, regenerated: dict[str, bytes], *,
           kexec_h: Callable[[str], str] | None = None,
           machine_kexec_c: Callable[[str], str] | None = None) -> dict[str, bytes]:
    """The correct change with kexec.h and/or machine_kexec.c made differently."""
    change = correct_change(tree, regenerated)
    if kexec_h is not None:
        change[KEXEC_H] = kexec_h((tree / KEXEC_H).read_text()).encode()
    if machine_kexec_c is not None:
        change[MACHINE_KEXEC_C] = machine_kexec_c((tree / MACHINE_KEXEC_C).read_text()).encode()
    return change
