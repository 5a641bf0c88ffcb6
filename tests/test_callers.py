"""relgen.kernel.callers: the semantic patches change the C callers whatever their formatting,
the typedef stays in machine_kexec.c (its one user) with the two new parameters, and the
changed C compiles with the header (host gcc on small stand-ins). Every era's callers, as
relgen rewrite changes them, are in test_eras.py."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, require_tool
from relgen.errors import RelgenError
from relgen.kernel import callers
from relgen.kernel.header import DataAreaFacts, HeaderFacts, render_header
from relgen.names import KEXEC_H_PATH, MACHINE_KEXEC_PATH
from relgen.toolchain.era import place

AREAS = (DataAreaFacts("memory_stack", 8192, "in4"),
         DataAreaFacts("register_stack", 8192, "in5"))
#: The two C files of 6.1's shape, formatted otherwise on purpose.
FIXTURE = callers.CallerSources(KEXEC_H_PATH, (FIXTURES / "callers_kexec.h").read_text(),
                                (FIXTURES / "callers_machine_kexec.c").read_text())
#: A tree with struct kimage_arch (late 2.6.x on): each image gets its stacks.
HOOK = HeaderFacts(entry="relocate_new_kernel", source_path="arch/ia64/kernel/relocate_kernel.S",
                   data_areas=AREAS, kimage_arch=True, control_macro="KEXEC_CONTROL_PAGE_SIZE")
#: A tree without it (2.6.27, 2.6.28 have the name KEXEC_CONTROL_PAGE_SIZE and no hook).
NO_HOOK = dataclasses.replace(HOOK, kimage_arch=False)
NAMED = ("unsigned long indirection_page", "unsigned long start_address",
         "struct ia64_boot_param *boot_param", "unsigned long pal_addr")


# The kernel headers the fixture pair includes, reduced to what it uses.
LINUX_KEXEC_STANDIN = """#include <asm/kexec.h>
#define ENOMEM 12
#define KEXEC_ARCH_IA_64 50
#define TASK_SIZE 0
#define PAGE_SHIFT 14
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define __noreturn __attribute__((__noreturn__))
#define __pa(x) ((unsigned long)(x) - 0xe000000000000000UL)
struct page;
struct unw_frame_info;
struct ia64_boot_param;
extern struct ia64_boot_param *ia64_boot_param;
struct kimage {
	unsigned long head, start;
	struct page *control_code_page;
#ifdef ARCH_HAS_KIMAGE_ARCH
	struct kimage_arch arch;
#endif
};
struct page *kimage_alloc_control_pages(struct kimage *image, unsigned int order);
unsigned long page_to_pfn(struct page *page);
#define page_to_phys(page) (page_to_pfn(page) << PAGE_SHIFT)
int get_order(unsigned long size);
void *page_address(struct page *page);
void *memcpy(void *to, const void *from, unsigned long n);
void *efi_get_pal_addr(void);
#define GRANULEROUNDDOWN(n) ((n) & ~0xffffffUL)
void BUG(void) __noreturn;
"""


def compile_pair(tmp: Path, sources: callers.CallerSources, header: str
                 ) -> subprocess.CompletedProcess[str]:
    """gcc -fsyntax-only on machine_kexec.c with kexec.h, the header and the stand-ins."""
    require_tool("gcc")
    include = tmp / "include"
    for path, text in {"asm/setup.h": "struct ia64_boot_param;\n", "asm/kexec.h": sources.kexec_h,
                       "asm/kexec_control_page.h": header,
                       "linux/kexec.h": LINUX_KEXEC_STANDIN}.items():
        (include / path).parent.mkdir(parents=True, exist_ok=True)
        (include / path).write_text(text)
    (tmp / "machine_kexec.c").write_text(sources.machine_kexec_c)
    command = ["gcc", "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror",
               "-Wdeclaration-after-statement", "-Wno-unused-variable",
               "-I", str(include), str(tmp / "machine_kexec.c")]
    return subprocess.run(command, capture_output=True, text=True)


def typedef_text(machine_kexec_c: str) -> str:
    match = re.search(r"typedef[^;]*relocate_new_kernel_t[^;]*;", machine_kexec_c)
    assert match is not None
    return match.group(0)


# ---------------------------------------------------------- the semantic patches


def test_semantic_patches_take_names_and_counts_from_the_facts() -> None:
    patches = callers.semantic_patches(HOOK, NAMED, KEXEC_H_PATH)
    kexec_h = patches[KEXEC_H_PATH]
    assert "parameter list[4] existing;" in kexec_h
    assert "+\t, unsigned long, unsigned long\n" in kexec_h
    assert "+#include <asm/kexec_control_page.h>" in kexec_h
    assert "+#define KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE" in kexec_h
    assert "+#define ARCH_HAS_KIMAGE_ARCH\n+struct kimage_arch {\n" in kexec_h
    machine = patches[MACHINE_KEXEC_PATH]
    assert "+\t, unsigned long memory_stack, unsigned long register_stack\n" in machine
    assert "get_order(KEXEC_CONTROL_STACKS_SIZE)" in machine
    assert ", image->arch.stacks, image->arch.stacks + KEXEC_MEMORY_STACK_SIZE\n" in machine


def test_semantic_patches_of_a_tree_without_the_hook() -> None:
    unnamed = ("unsigned long", "unsigned long", "struct ia64_boot_param *", "unsigned long")
    patches = callers.semantic_patches(
        dataclasses.replace(NO_HOOK, control_macro="KEXEC_CONTROL_CODE_SIZE"), unnamed,
        "include/asm-ia64/kexec.h")
    kexec_h = patches["include/asm-ia64/kexec.h"]
    assert "+#define KEXEC_CONTROL_CODE_SIZE KEXEC_CONTROL_PAGES_SIZE" in kexec_h
    assert "kimage_arch" not in kexec_h
    machine = patches[MACHINE_KEXEC_PATH]
    # the new parameters unnamed, like the existing ones
    assert "+\t, unsigned long, unsigned long\n" in machine
    assert ", __pa(code) + KEXEC_MEMORY_STACK_OFFSET, __pa(code) + " \
        "KEXEC_REGISTER_STACK_OFFSET\n" in machine
    assert "kimage_alloc_control_pages" not in machine and "arch." not in machine


def test_stack_arguments_are_in_the_order_the_s_reads_them() -> None:
    assert callers.stack_arguments(HOOK) == ["image->arch.stacks",
                                             "image->arch.stacks + KEXEC_MEMORY_STACK_SIZE"]
    assert callers.stack_arguments(NO_HOOK) == ["__pa(code) + KEXEC_MEMORY_STACK_OFFSET",
                                                "__pa(code) + KEXEC_REGISTER_STACK_OFFSET"]
    assert callers.control_size_value(HOOK) == "KEXEC_CONTROL_CODE_PAGE_SIZE"
    assert callers.control_size_value(NO_HOOK) == "KEXEC_CONTROL_PAGES_SIZE"


# ---------------------------------------------------------------- reading C


def test_problems_of_unchanged_callers_name_every_rule() -> None:
    rules = [problem.split(":")[0] for problem in callers.caller_problems(FIXTURE, HOOK, 4)]
    assert rules == ["include_header", "control_size", "prototype", "typedef_parameters",
                     "prototype", "allocate_stacks", "pass_stacks"]
    rules = [problem.split(":")[0] for problem in callers.caller_problems(FIXTURE, NO_HOOK, 4)]
    assert rules == ["include_header", "control_size", "prototype", "typedef_parameters",
                     "pass_stacks"]
    assert callers.control_size_bytes(FIXTURE.kexec_h, "KEXEC_CONTROL_PAGE_SIZE") == 20480
    assert callers.entry_call_arguments(FIXTURE.machine_kexec_c) == [4]
    assert callers.prototype_arguments(FIXTURE.kexec_h, "relocate_new_kernel") == 4


@pytest.mark.parametrize(("declaration", "expected"), [
    ("typedef void (* relocate_new_kernel_t)(unsigned long a,\n\tint b) __noreturn ;",
     ("unsigned long a", "int b")),
    ("typedef NORET_TYPE void (*relocate_new_kernel_t)(\n\t\t\t\tunsigned long indirection_page"
     ",\n\t\t\t\tunsigned long start_address) ATTRIB_NORET;",
     ("unsigned long indirection_page", "unsigned long start_address")),
    ("typedef void (*relocate_new_kernel_t)(unsigned long, unsigned long,\n\t\tstruct "
     "ia64_boot_param *, unsigned long);",
     ("unsigned long", "unsigned long", "struct ia64_boot_param *", "unsigned long")),
], ids=["__noreturn", "NORET_TYPE", "unnamed"])
def test_the_typedef_in_every_form_the_eras_wrote(declaration: str,
                                                   expected: tuple[str, ...]) -> None:
    assert callers.read_typedef_arguments(declaration) == expected


def test_no_typedef_is_an_error_that_names_it() -> None:
    with pytest.raises(RelgenError, match="relocate_new_kernel_t"):
        callers.read_typedef_arguments("int x;\n")


# ------------------------------------------------------------- changed by spatch


@pytest.fixture(scope="module")
def spatch() -> None:
    require_tool("spatch")


@pytest.fixture(scope="module")
def changed(spatch: None) -> dict[str, callers.CallerSources]:
    """The fixture pair changed for a tree with the hook and for one without."""
    return {"hook": callers.change_callers(FIXTURE, HOOK),
            "no hook": callers.change_callers(FIXTURE, NO_HOOK)}


@pytest.mark.coccinelle
def test_a_tree_with_the_hook_gets_the_whole_change(
        changed: dict[str, callers.CallerSources]) -> None:
    new = changed["hook"]
    assert callers.caller_problems(new, HOOK, 4) == []
    assert "#include <asm/kexec_control_page.h>" in new.kexec_h
    assert "KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE" in new.kexec_h
    assert callers.prototype_arguments(new.kexec_h, "relocate_new_kernel") == 6
    # the typedef stays with its one user, named like its parameters, and nowhere else
    assert "typedef" not in new.kexec_h
    assert callers.read_typedef_arguments(new.machine_kexec_c) == (
        *NAMED, "unsigned long memory_stack", "unsigned long register_stack")
    assert typedef_text(new.machine_kexec_c).endswith(")\n\t__noreturn ;")
    assert callers.entry_call_arguments(new.machine_kexec_c) == [6]
    # allocated before the image is published, and never freed by the cleanup
    prepare = new.machine_kexec_c[new.machine_kexec_c.index("int machine_kexec_prepare"):]
    assert prepare.index("kimage_alloc_control_pages(image") < prepare.index("ia64_kimage")
    assert "return -ENOMEM;" in prepare and "free" not in new.machine_kexec_c
    # after the code in the control page where one page holds all
    assert "struct page *stacks = image->control_code_page;" in prepare
    assert "if (offset + KEXEC_CONTROL_STACKS_SIZE > PAGE_SIZE) {" in prepare
    # in4 = memory_stack (the block's start), in5 = register_stack after it
    call = new.machine_kexec_c[new.machine_kexec_c.index("( *rnk )"):]
    assert call.index("image->arch.stacks,") < \
        call.index("image->arch.stacks + KEXEC_MEMORY_STACK_SIZE")
    # lines spatch did not change keep their formatting
    assert "#define KEXEC_CONTROL_MEMORY_LIMIT  TASK_SIZE\n" in new.kexec_h
    assert "\tia64_kimage   =   image;\n" in new.machine_kexec_c


@pytest.mark.coccinelle
def test_a_tree_without_the_hook_passes_the_stacks_after_the_code(
        changed: dict[str, callers.CallerSources]) -> None:
    new = changed["no hook"]
    assert callers.caller_problems(new, NO_HOOK, 4) == []
    assert "KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_PAGES_SIZE" in new.kexec_h
    assert "kimage_arch" not in new.kexec_h and "arch." not in new.machine_kexec_c
    # machine_kexec_prepare() is as it was: the stacks come with the control pages
    def prepare(text: str) -> str:
        return text[text.index("int machine_kexec_prepare"):text.index("void machine_kexec_")]

    assert prepare(new.machine_kexec_c) == prepare(FIXTURE.machine_kexec_c)
    call = new.machine_kexec_c[new.machine_kexec_c.index("( *rnk )"):]
    assert call.index("__pa(code_addr) + KEXEC_MEMORY_STACK_OFFSET") < \
        call.index("__pa(code_addr) + KEXEC_REGISTER_STACK_OFFSET")


@pytest.mark.coccinelle
@pytest.mark.parametrize("name", ["hook", "no hook"])
def test_the_changed_pair_compiles_with_the_header(
        name: str, changed: dict[str, callers.CallerSources], tmp_path: Path) -> None:
    facts = HOOK if name == "hook" else NO_HOOK
    result = compile_pair(tmp_path, changed[name], render_header(facts))
    assert result.returncode == 0, result.stderr
    # and a call that still passes four arguments does not
    four = changed[name].machine_kexec_c
    call = four.index("( *rnk )")
    four = four[:call] + "( *rnk )(image->head, image->start, ia64_boot_param, 0);\n\tBUG();\n}\n"
    result = compile_pair(tmp_path / "four", dataclasses.replace(changed[name],
                                                                 machine_kexec_c=four),
                          render_header(facts))
    assert result.returncode != 0 and "too few arguments" in result.stderr


@pytest.mark.coccinelle
def test_a_rule_that_cannot_apply_is_named(spatch: None) -> None:
    no_publish = dataclasses.replace(
        FIXTURE, machine_kexec_c=FIXTURE.machine_kexec_c.replace("\tia64_kimage   =   image;\n",
                                                                 ""))
    with pytest.raises(RelgenError, match="allocate_stacks: machine_kexec_prepare"):
        callers.change_callers(no_publish, HOOK)


@pytest.mark.upstream
@pytest.mark.coccinelle
def test_upstream_callers_are_changed(upstream_tree: Path, spatch: None) -> None:
    sources = callers.read_callers(upstream_tree, place(upstream_tree))
    assert sources is not None and sources.kexec_h_path == KEXEC_H_PATH
    new = callers.change_callers(sources, HOOK)
    assert callers.caller_problems(new, HOOK, 4) == []
    assert callers.entry_call_arguments(new.machine_kexec_c) == [6]
    assert "GRANULEROUNDDOWN((unsigned long)pal_addr)," in new.machine_kexec_c
    assert "typedef" not in new.kexec_h
