"""relgen.callers: the semantic patches change the C callers whatever their formatting, and
the changed C compiles together with the generated header (host gcc on small stand-ins)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, require_tool
from host_compile import KERNEL_DEFINES, write_kernel_headers
from relgen.errors import RelgenError
from relgen.kernel import callers
from relgen.kernel.render import DataAreaFacts, HeaderFacts, read_typedef_arguments, render_header

AREAS = (
    DataAreaFacts("memory_stack", "KEXEC_MEMORY_STACK_SIZE", 8192, "in4", "memory_stack"),
    DataAreaFacts("register_stack", "KEXEC_REGISTER_STACK_SIZE", 8192, "in5", "register_stack"),
)
FIXTURE = callers.CallerSources((FIXTURES / "callers_kexec.h").read_text(),
                                (FIXTURES / "callers_machine_kexec.c").read_text())


def facts(sources: callers.CallerSources) -> HeaderFacts:
    return HeaderFacts(
        relgen_version="0.1.0", input_path="arch/ia64/kernel/relocate_kernel.S",
        input_sha256="0" * 64, entry="relocate_new_kernel", code_size=0x330, data_areas=AREAS,
        entry_points=(("relocate_new_kernel", 0, True),),
        existing_arguments=read_typedef_arguments(sources.machine_kexec_c))


# The kernel headers the fixture pair includes, reduced to what it uses.
LINUX_KEXEC_STANDIN = """#include <asm/kexec.h>
#define ENOMEM 12
#define KEXEC_ARCH_IA_64 50
#define TASK_SIZE 0
#define PAGE_SHIFT 14
#define __noreturn __attribute__((__noreturn__))
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
    write_kernel_headers(include)
    (tmp / "machine_kexec.c").write_text(sources.machine_kexec_c)
    command = ["gcc", "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror",
               "-Wdeclaration-after-statement", "-Wno-unused-variable", *KERNEL_DEFINES,
               "-I", str(include), str(tmp / "machine_kexec.c")]
    return subprocess.run(command, capture_output=True, text=True)


def test_semantic_patches_take_names_and_counts_from_the_facts() -> None:
    patches = callers.semantic_patches(facts(FIXTURE))
    kexec_h = patches[callers.KEXEC_H_PATH]
    assert "parameter list[4] existing;" in kexec_h
    assert "+\t, unsigned long, unsigned long\n" in kexec_h
    assert "+#include <asm/kexec_control_page.h>" in kexec_h
    machine = patches[callers.MACHINE_KEXEC_PATH]
    assert "get_order(KEXEC_CONTROL_STACKS_SIZE)" in machine
    assert ", page_to_phys(image->arch.stack_pages), page_to_phys(image->arch.stack_pages)" \
        " + KEXEC_MEMORY_STACK_SIZE\n" in machine


@pytest.mark.coccinelle
def test_fixture_pair_formatted_otherwise_is_changed_completely(tmp_path: Path) -> None:
    require_tool("spatch")
    new = callers.change_callers(FIXTURE, facts(FIXTURE))
    assert callers.caller_problems(new, facts(FIXTURE)) == []
    assert "#include <asm/kexec_control_page.h>" in new.kexec_h
    assert "KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE" in new.kexec_h
    assert callers.prototype_arguments(new.kexec_h, "relocate_new_kernel") == 6
    assert "typedef" not in new.machine_kexec_c
    assert callers.entry_call_arguments(new.machine_kexec_c) == [6]
    # allocated before the image is published, and never freed by the cleanup
    prepare = new.machine_kexec_c[new.machine_kexec_c.index("int machine_kexec_prepare"):]
    assert prepare.index("kimage_alloc_control_pages(image") < prepare.index("ia64_kimage")
    assert "return -ENOMEM;" in prepare
    assert "free" not in new.machine_kexec_c
    # in4 = memory_stack (the block's start), in5 = register_stack after it
    call = new.machine_kexec_c[new.machine_kexec_c.index("( *rnk )"):]
    assert call.index("page_to_phys(image->arch.stack_pages),") < \
        call.index("page_to_phys(image->arch.stack_pages) + KEXEC_MEMORY_STACK_SIZE")
    # lines spatch did not change keep their formatting
    assert "#define KEXEC_CONTROL_MEMORY_LIMIT  TASK_SIZE\n" in new.kexec_h
    assert "\tia64_kimage   =   image;\n" in new.machine_kexec_c


@pytest.mark.coccinelle
def test_changed_pair_compiles_with_the_header(tmp_path: Path) -> None:
    require_tool("spatch")
    header = render_header(facts(FIXTURE))
    # the old typedef and the header's clash: why the C must change in the same commit
    with_header = callers.CallerSources(
        FIXTURE.kexec_h, "#include <asm/kexec_control_page.h>\n" + FIXTURE.machine_kexec_c)
    before = compile_pair(tmp_path / "before", with_header, header)
    assert before.returncode != 0 and "conflicting types for" in before.stderr
    assert "relocate_new_kernel_t" in before.stderr
    after = compile_pair(tmp_path / "after", callers.change_callers(FIXTURE, facts(FIXTURE)),
                         header)
    assert after.returncode == 0, after.stderr


def test_problems_of_unchanged_callers_name_every_rule() -> None:
    problems = callers.caller_problems(FIXTURE, facts(FIXTURE))
    rules = [problem.split(":")[0] for problem in problems]
    assert rules == ["include_header", "control_page_size", "prototype", "prototype",
                     "local_typedef", "allocate_stacks", "pass_stacks"]
    assert callers.control_page_size(FIXTURE.kexec_h) == 20480
    assert callers.entry_call_arguments(FIXTURE.machine_kexec_c) == [4]


@pytest.mark.coccinelle
def test_a_rule_that_cannot_apply_is_named(tmp_path: Path) -> None:
    require_tool("spatch")
    no_publish = callers.CallerSources(
        FIXTURE.kexec_h, FIXTURE.machine_kexec_c.replace("\tia64_kimage   =   image;\n", ""))
    with pytest.raises(RelgenError, match="allocate_stacks: the stacks are not allocated"):
        callers.change_callers(no_publish, facts(no_publish))


@pytest.mark.upstream
@pytest.mark.coccinelle
def test_upstream_callers_are_changed(upstream_tree: Path) -> None:
    require_tool("spatch")
    sources = callers.read_callers(upstream_tree)
    assert sources is not None
    new = callers.change_callers(sources, facts(sources))
    assert callers.caller_problems(new, facts(sources)) == []
    assert callers.entry_call_arguments(new.machine_kexec_c) == [6]
    assert "GRANULEROUNDDOWN((unsigned long)pal_addr)," in new.machine_kexec_c


@pytest.mark.coccinelle
def test_typedef_names_and_order_come_from_the_tree(tmp_path: Path) -> None:
    # the 2006 machine_kexec.c passes start first and the page list second
    require_tool("spatch")
    order_2006 = FIXTURE.machine_kexec_c.replace(
        "(unsigned long indirection_page, unsigned long start_address,",
        "(unsigned long start_address, unsigned long indirection_page,")
    sources = callers.CallerSources(FIXTURE.kexec_h, order_2006)
    header = render_header(facts(sources))
    assert "relocate_new_kernel_t)(unsigned long start_address,\n" in header
    assert "\t\t\t\t      unsigned long indirection_page,\n" in header
    new = callers.change_callers(sources, facts(sources))
    assert compile_pair(tmp_path, new, header).returncode == 0

