"""relgen.kernel.header: the header a kernel developer could have written by hand.

It holds the sizes the `.S` and the C share and nothing the assembler measures: the code
page, each stack, and by era the block of both stacks (trees with `struct kimage_arch`) or
where the stacks follow the code in the control pages (older trees); an entry point's offset
reaches C through a symbol the `.S` defines. It builds in C and in assembly, and its sums
assemble as ia64 immediates. Host tools (gcc, cpp) are part of `make setup`: missing, they
skip locally and fail under CI=true. The header of a whole rewrite is in test_pipeline.py
and test_maintainer_patch.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from relgen.errors import RelgenError
from relgen.kernel.header import DataAreaFacts, HeaderFacts, render_header

AREAS = (DataAreaFacts("memory_stack", 8192, "in4"),
         DataAreaFacts("register_stack", 8192, "in5"))
#: Linux 6.1 (and every tree with the hook): each image keeps its stacks in struct kimage_arch.
HOOK_TREE = HeaderFacts(entry="relocate_new_kernel",
                        source_path="arch/ia64/kernel/relocate_kernel.S", data_areas=AREAS,
                        kimage_arch=True, control_macro="KEXEC_CONTROL_PAGE_SIZE")
#: The 2006 shape of a 2.6.18 vendor tree: no hook, another entry point in the page.
TREE_2006 = dataclasses.replace(HOOK_TREE, kimage_arch=False,
                                control_macro="KEXEC_CONTROL_CODE_SIZE",
                                entry_points=("kexec_fake_sal_rendez",), spdx=False)
#: A Xen dom0 tree: no hook, and under CONFIG_XEN the hypervisor calls the page.
XEN_TREE = dataclasses.replace(TREE_2006, entry_points=(), kept=("CONFIG_XEN",))
SHAPES = {"hook": HOOK_TREE, "2006": TREE_2006, "xen": XEN_TREE}
GUARD = "_ASM_IA64_KEXEC_CONTROL_PAGE_H"


def defines(text: str) -> dict[str, str]:
    """Each macro the header defines and its value, continuation lines joined."""
    joined = text.replace("\\\n\t", "")
    return dict(re.findall(r"^#define (\w+)(?:[ \t]+(.*?))?[ \t]*$", joined, re.M))


def prose(text: str) -> str:
    """The header's comments as one line of words, without their ` * ` leaders."""
    return " ".join(re.sub(r"^ ?\*(?!/) ?", "", line) for line in text.splitlines()
                    if not line.startswith("#")).replace("  ", " ")


def code_lines(text: str) -> str:
    """The header without its comments."""
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def test_a_tree_with_struct_kimage_arch_gets_the_stack_block() -> None:
    text = render_header(HOOK_TREE)
    assert text.startswith("/* SPDX-License-Identifier: GPL-2.0-only */\n/*\n")
    assert f"#ifndef {GUARD}\n#define {GUARD}\n" in text
    assert text.endswith(f"#endif /* {GUARD} */\n")
    assert defines(text) == {
        GUARD: "",
        "KEXEC_CONTROL_CODE_PAGE_SIZE": "4096",
        "KEXEC_MEMORY_STACK_SIZE": "8192",
        "KEXEC_REGISTER_STACK_SIZE": "8192",
        "KEXEC_CONTROL_STACKS_SIZE": "(KEXEC_MEMORY_STACK_SIZE + KEXEC_REGISTER_STACK_SIZE)",
    }
    flat = prose(text)
    assert "machine_kexec_prepare() gives each image its own, allocated with " \
        "kimage_alloc_control_pages()" in flat
    assert "extern" not in text and "typedef" not in text
    assert max(len(line.expandtabs()) for line in text.splitlines()) <= 80


def test_an_older_tree_gets_the_offsets_after_the_code() -> None:
    text = render_header(TREE_2006)
    assert text.startswith("/*\n * The ia64 kexec control page")  # no SPDX before 4.14
    assert defines(text) == {
        GUARD: "",
        "KEXEC_CONTROL_CODE_PAGE_SIZE": "4096",
        "KEXEC_MEMORY_STACK_SIZE": "8192",
        "KEXEC_REGISTER_STACK_SIZE": "8192",
        "KEXEC_MEMORY_STACK_OFFSET": "KEXEC_CONTROL_CODE_PAGE_SIZE",
        "KEXEC_REGISTER_STACK_OFFSET": "(KEXEC_MEMORY_STACK_OFFSET + KEXEC_MEMORY_STACK_SIZE)",
        "KEXEC_CONTROL_PAGES_SIZE": "(KEXEC_REGISTER_STACK_OFFSET + KEXEC_REGISTER_STACK_SIZE)",
    }
    flat = prose(text)
    assert "they follow the code in the image's own control pages, KEXEC_CONTROL_PAGES_SIZE " \
        "bytes that kimage_alloc_control_pages() allocates for each image as " \
        "KEXEC_CONTROL_CODE_SIZE" in flat


def test_another_entry_point_reaches_c_through_the_symbol_the_s_defines() -> None:
    text = render_header(TREE_2006)
    assert ("#ifndef __ASSEMBLY__\n"
            "/* kexec_fake_sal_rendez's offset in the control page, for a hypervisor */\n"
            "extern const unsigned long kexec_fake_sal_rendez_offset;\n#endif\n") in text
    assert "KEXEC_FAKE_SAL_RENDEZ_OFFSET" not in text


def test_a_hypervisors_switch_is_named_in_the_comment() -> None:
    flat = prose(render_header(XEN_TREE))
    assert "Under CONFIG_XEN the hypervisor calls the page itself with the arguments before " \
        "these; there the stacks stay in the page, after the code." in flat


@pytest.mark.parametrize("shape", SHAPES)
def test_it_reads_as_written_by_hand(shape: str) -> None:
    """No 'generated', no checksum, no number the assembler measures, no assertion that
    compares literals of its own: every number is a page or a stack size of the source."""
    text = render_header(SHAPES[shape])
    lowered = text.lower()
    for word in ("generated", "do not edit", "regenerate", "sha256", "relgen"):
        assert word not in lowered, word
    assert not re.search(r"[0-9a-f]{40}", text)
    code = code_lines(text)
    assert {int(n) for n in re.findall(r"\b\d+\b", code)} == {4096, 8192}
    assert not re.search(r"static_assert|BUILD_BUG|#\s*error|#\s*(el)?if\b", code)


def test_stack_sizes_per_configuration_under_their_conditions() -> None:
    text = render_header(HOOK_TREE, [("defined(CONFIG_XEN)", (4096, 4096)),
                                     (None, (8192, 8192))])
    xen, native = text.split("#if defined(CONFIG_XEN)\n")[1].split("#endif\n")[0].split("#else\n")
    assert re.search(r"^#define KEXEC_MEMORY_STACK_SIZE\s+4096$", xen, re.M)
    assert re.search(r"^#define KEXEC_REGISTER_STACK_SIZE\s+8192$", native, re.M)
    # where not every configuration was measured, an unmeasured one fails in words
    partial = render_header(HOOK_TREE, [("defined(CONFIG_XEN)", (4096, 4096)),
                                        ("defined(CONFIG_BIG)", (8192, 8192))])
    assert "#elif defined(CONFIG_BIG)\n" in partial
    assert '#else\n#error "the kexec stack sizes of this configuration are not known"\n' \
        "#endif\n" in partial


@pytest.mark.parametrize("areas", [(), (dataclasses.replace(AREAS[0], size=8200), AREAS[1]),
                                   (dataclasses.replace(AREAS[0], size=0), AREAS[1])],
                         ids=["no stack", "not a multiple of 16", "empty"])
def test_facts_that_are_no_stacks_are_refused(areas: tuple[DataAreaFacts, ...]) -> None:
    with pytest.raises(RelgenError, match="data area|stack size"):
        dataclasses.replace(HOOK_TREE, data_areas=areas)


def test_macro_names_follow_the_areas() -> None:
    assert AREAS[0].macro == "KEXEC_MEMORY_STACK_SIZE"
    assert AREAS[1].offset_macro == "KEXEC_REGISTER_STACK_OFFSET"
    assert DataAreaFacts("kexec_stack", 16, "in4").macro == "KEXEC_STACK_SIZE"
    assert HOOK_TREE.stacks_size == 16384


# ------------------------------------------------------------------- it builds


def compile_c(tmp: Path, header: str, body: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`gcc -fsyntax-only -Wall -Wextra -Werror` on a C file that includes the header."""
    require_tool("gcc")
    (tmp / "asm").mkdir(exist_ok=True)
    (tmp / "asm" / "kexec_control_page.h").write_text(header)
    source = tmp / "use.c"
    source.write_text("#include <asm/kexec_control_page.h>\n" + body)
    return subprocess.run(["gcc", "-fsyntax-only", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                           "-I", str(tmp), *flags, str(source)], capture_output=True, text=True)


#: What C makes of each shape's macros (the test asserts them, not the header).
VALUES = {
    "hook": "_Static_assert(KEXEC_CONTROL_STACKS_SIZE == 16384, \"block\");\n",
    "2006": "_Static_assert(KEXEC_REGISTER_STACK_OFFSET == 12288, \"register\");\n"
            "_Static_assert(KEXEC_CONTROL_PAGES_SIZE == 20480, \"pages\");\n"
            "unsigned long where(void);\n"
            "unsigned long where(void) { return kexec_fake_sal_rendez_offset; }\n",
    "xen": "_Static_assert(KEXEC_CONTROL_PAGES_SIZE == 20480, \"pages\");\n",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_it_compiles_as_c_with_the_values_of_its_sums(shape: str, tmp_path: Path) -> None:
    result = compile_c(tmp_path, render_header(SHAPES[shape]), VALUES[shape])
    assert result.returncode == 0, result.stderr
    # included twice, it is still one definition of each
    result = compile_c(tmp_path, render_header(SHAPES[shape]),
                       "#include <asm/kexec_control_page.h>\n" + VALUES[shape])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("shape", SHAPES)
def test_in_assembly_it_leaves_nothing_for_the_assembler(shape: str, tmp_path: Path) -> None:
    require_tool("cpp")
    (tmp_path / "kexec_control_page.h").write_text(render_header(SHAPES[shape]))
    result = subprocess.run(["cpp", "-P", "-D__ASSEMBLY__", "-I", str(tmp_path)],
                            input="#include <kexec_control_page.h>\n", capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # macros and guards only, no C declaration


@pytest.mark.toolchain
def test_its_sums_are_ia64_immediates(tmp_path: Path, toolchain: None) -> None:
    # the regenerated .S writes these in instructions: they must assemble as they are
    (tmp_path / "kexec_control_page.h").write_text(render_header(TREE_2006))
    (tmp_path / "use.S").write_text(
        '#include "kexec_control_page.h"\n'
        "\t.text\n"
        "\tadds r12=KEXEC_MEMORY_STACK_SIZE - 16,r36\n"
        "\tmovl r9=KEXEC_CONTROL_PAGES_SIZE\n"
        "\t;;\n"
        "\taddl r10=KEXEC_REGISTER_STACK_OFFSET,r0\n"
        "\t;;\n"
    )
    cpp = ["cpp", "-P", "-D__ASSEMBLY__", "-x", "assembler-with-cpp", str(tmp_path / "use.S")]
    (tmp_path / "use.s").write_text(subprocess.run(cpp, capture_output=True, text=True,
                                                   check=True).stdout)
    assembled = subprocess.run(["ia64-linux-gnu-as", "-x", "-o", str(tmp_path / "use.o"),
                                str(tmp_path / "use.s")], capture_output=True, text=True)
    assert assembled.returncode == 0, assembled.stderr
    dump = subprocess.run(["ia64-linux-gnu-objdump", "-d", str(tmp_path / "use.o")],
                          capture_output=True, text=True, check=True).stdout
    assert "adds r12=8176,r36" in dump
    assert "movl r9=0x5000" in dump
    assert "mov r10=12288" in dump  # addl from r0, as objdump writes it


def test_rendering_is_the_same_in_another_process() -> None:
    """Same facts, same bytes, also where set and dict order could differ (another hash
    seed): each shape's header rendered again in a child process."""
    program = ("import sys; sys.path.insert(0, sys.argv[1]); import test_header as t; "
               "from relgen.kernel.header import render_header; "
               "sys.stdout.write('\\0'.join(render_header(f) for f in t.SHAPES.values()))")
    child = subprocess.run([sys.executable, "-c", program, str(Path(__file__).parent)],
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert child.stdout == "\0".join(render_header(f) for f in SHAPES.values())
