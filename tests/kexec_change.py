"""A hand-written change of the ia64 kexec C side of Linux 6.1, made at test time from the
pristine tree.

It is the shape DESIGN.md "The C side" asks for (the header included, the code page as
KEXEC_CONTROL_PAGE_SIZE, the 6-parameter prototype, the typedef changed where its one user
is, `struct kimage_arch` holding the physical address of one block for both stacks,
allocated by kimage_alloc_control_pages() and passed as arguments 5 and 6), and its
broken-on-purpose variants. No kernel code is stored here: only the edits, applied to the
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
    "\tstacks = kimage_alloc_control_pages(image,\n"
    f"\t\t\t\t\t    {STACKS_ORDER});\n"
    "\tif (!stacks)\n"
    "\t\treturn -ENOMEM;\n"
    "\timage->arch.stacks = page_to_phys(stacks);\n\n"
)
MEMORY_STACK = "image->arch.stacks"
REGISTER_STACK = "image->arch.stacks + KEXEC_MEMORY_STACK_SIZE"
OLD_CALL_END = "GRANULEROUNDDOWN((unsigned long) pal_addr));"
OLD_TYPEDEF_END = "\t\t\t\t\tunsigned long pal_addr) __noreturn;"
PREPARE = "int machine_kexec_prepare(struct kimage *image)\n{\n"


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
    hook = "#define ARCH_HAS_KIMAGE_ARCH\n" if arch_hook else ""
    return replace_once(text, "extern struct kimage *ia64_kimage;\n",
                        f"{hook}struct kimage_arch {{\n\tunsigned long stacks;\n}};\n\n"
                        "extern struct kimage *ia64_kimage;\n")


def change_machine_kexec_c(text: str, *, typedef: bool = True, allocation: str = ALLOCATION,
                           arguments: tuple[str, str] | None = (MEMORY_STACK, REGISTER_STACK),
                           cleanup: str = "") -> str:
    if typedef:
        text = replace_once(text, OLD_TYPEDEF_END,
                            "\t\t\t\t\tunsigned long pal_addr,\n"
                            "\t\t\t\t\tunsigned long memory_stack,\n"
                            "\t\t\t\t\tunsigned long register_stack) __noreturn;")
    declaration = "\tstruct page *stacks;\n" if "stacks =" in allocation else ""
    text = replace_once(text, PREPARE, PREPARE + declaration)
    text = replace_once(text, "\tia64_kimage = image;\n", allocation + "\tia64_kimage = image;\n")
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
