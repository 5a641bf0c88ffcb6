"""The rewrite passes on syntax trees alone (the assembled checks are in test_pipeline.py)."""

from __future__ import annotations

import pytest

from conftest import FIXTURES
from relgen import rewrite as rw
from relgen import source
from relgen.errors import RelgenError
from relgen.source import region as rg

# Shaped after Linux 6.1's relocate_kernel.S: one procedure, then the two stacks.
LINUX61_SHAPE = """\
#include <asm/asmmacro.h>
#include <asm/page.h>

GLOBAL_ENTRY(relocate_new_kernel)
\t.prologue
\talloc r31=ar.pfs,4,0,0,0
        .body
.reloc_entry:
{
\trsm psr.i| psr.ic
\tmov r2=ip
}
\t;;
\tdep r2=0,r2,61,3\t\t//to physical address
\t;;
\tadd sp=(memory_stack_end - 16 - .reloc_entry),r2
\tadd r8=(register_stack - .reloc_entry),r2
\t;;
\tmov ar.bspstore=r8
\tbr.call.sptk.many b0=b6;;

.align  32
memory_stack:
\t.fill           8192, 1, 0
memory_stack_end:
register_stack:
\t.fill           8192, 1, 0
register_stack_end:
relocate_new_kernel_end:
END(relocate_new_kernel)

.global relocate_new_kernel_size
relocate_new_kernel_size:
\tdata8\trelocate_new_kernel_end - relocate_new_kernel
"""


def statements_text(module: source.Module) -> list[str]:
    return [item.text for _, item in module.items() if item.kind != "comment"]


def test_region_and_areas_of_the_linux61_shape() -> None:
    module = source.parse_module(LINUX61_SHAPE)
    region = rg.find_region(module)
    assert region.end_label == "relocate_new_kernel_end"
    assert [a.name for a in region.data_areas] == ["memory_stack", "register_stack"]
    memory, register = region.data_areas
    assert memory.end_labels == ("memory_stack_end",) and memory.size == 8192
    assert register.end_labels == ("register_stack_end",)
    # the .align serves the first area and is part of its chunk
    assert module.lines[memory.lines.start].items[0].text == ".align  32"
    assert [c.kind for c in region.chunks] == ["code", "data", "data"]


def test_rewrite_of_the_linux61_shape() -> None:
    module = source.parse_module(LINUX61_SHAPE)
    result = rw.rewrite_control_page(module)
    assert result.argument_registers == {"memory_stack": "in4", "register_stack": "in5"}
    assert [(r.old, r.new) for r in result.rewritten] == [
        ("add sp=(memory_stack_end - 16 - .reloc_entry),r2",
         "add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4"),
        ("add r8=(register_stack - .reloc_entry),r2", "mov r8=in5"),
    ]
    assert (result.alloc_before, result.alloc_after) == ("alloc r31=ar.pfs,4,0,0,0",
                                                         "alloc r31=ar.pfs,6,0,0,0")
    text = source.unparse(result.module)
    assert "memory_stack:" not in text and ".fill" not in text and ".align  32" not in text
    assert text.count("#include <asm/kexec_control_page.h>\n") == 1
    # rewritten lines keep the file's own indentation
    assert "\n\tadd sp=KEXEC_MEMORY_STACK_SIZE - 16,in4\n\tmov r8=in5\n" in text
    # every line that was not rewritten is byte-identical and in order
    old_lines = LINUX61_SHAPE.splitlines(keepends=True)
    new_lines = text.splitlines(keepends=True)
    kept = [line for line in new_lines if line in old_lines]
    assert kept == [line for line in old_lines if line in kept]
    # 7 lines of data areas gone; the include, 5 lines of argument comment and 4 of guard new
    assert len(new_lines) == len(old_lines) - 7 + 1 + 5 + 4
    entry = text.index("GLOBAL_ENTRY(relocate_new_kernel)")
    assert text.rindex(" * in4: physical address of memory_stack", 0, entry) < \
        text.rindex(" * in5: physical address of register_stack", 0, entry)
    # after the size word, the guard: the code measured by the assembler, a message in words
    size_word = text.index("data8\trelocate_new_kernel_end - relocate_new_kernel\n")
    assert text[size_word:].startswith(
        "data8\trelocate_new_kernel_end - relocate_new_kernel\n"
        "\t.if (relocate_new_kernel_end - relocate_new_kernel) \\\n"
        "\t    > KEXEC_CONTROL_CODE_PAGE_SIZE\n"
        '\t.error "relocate_new_kernel outgrew KEXEC_CONTROL_CODE_PAGE_SIZE"\n'
        "\t.endif\n")
    # nothing moves on this shape, and the page has no other entry point
    assert (result.moved, result.entry_points, result.kept) == ((), (), ())


def test_guard_and_comment_are_parsed_syntax() -> None:
    text = source.unparse(rw.rewrite_control_page(source.parse_module(LINUX61_SHAPE)).module)
    module = source.parse_module(text)
    kinds = {item.text.split()[0]: item.kind for _, item in module.items()
             if item.text.startswith((".if", ".error", ".endif"))}
    assert kinds == {".if": "directive", ".error": "directive", ".endif": "directive"}


def test_rewrite_is_idempotent_on_its_output() -> None:
    first = rw.rewrite_control_page(source.parse_module(LINUX61_SHAPE))
    text = source.unparse(first.module)
    second = rw.rewrite_control_page(source.parse_module(text))
    assert second.already_code_first and source.unparse(second.module) == text
    assert second.rewritten == ()


def test_2006_shape_moves_all_procedures_before_the_stacks() -> None:
    text = (FIXTURES / "layout_2006_shape.S").read_text()
    module = source.parse_module(text)
    region = rg.find_region(module)
    assert [c.kind for c in region.chunks] == ["code", "data", "data", "code"]
    moved = rw.move_code_ahead(module, region)
    moved_region = rg.find_region(moved)
    assert [c.kind for c in moved_region.chunks] == ["code", "data", "data"]
    assert sorted(source.unparse(moved).splitlines()) == sorted(text.splitlines())
    result = rw.rewrite_control_page(module)
    out = source.unparse(result.module)
    order = [out.index(f"GLOBAL_ENTRY({name})") for name in
             ("relocate_new_kernel", "kexec_fake_sal_rendez", "kexec_fake_sal_spin")]
    assert order == sorted(order)
    assert out.index("END(relocate_new_kernel)") < order[1]
    assert "memory_stack:" not in out and "register_stack:" not in out
    assert out.index("relocate_new_kernel_end:") > order[2]
    # the procedures that stood after the stacks moved, and each entry point has an offset
    # word after the size word that C can read
    assert result.moved == result.entry_points == ("kexec_fake_sal_rendez",
                                                   "kexec_fake_sal_spin")
    size_word = out.index("\tdata8\trelocate_new_kernel_end - relocate_new_kernel\n")
    for name in result.entry_points:
        word = f"\t.global {name}_offset\n{name}_offset:\n\tdata8\t{name} - relocate_new_kernel\n"
        assert size_word < out.index(word)
    # a label before END(x) stays with its procedure, whatever moves around it
    assert "register_stack_end:\nEND(relocate_new_kernel)\n" in out
    assert "relocate_new_kernel_end:\nEND(kexec_fake_sal_spin)\n" in out


def test_the_guard_counts_each_alignment_for_its_largest_padding() -> None:
    """GAS cannot subtract labels across an .align in `.if`: each run between alignments is
    measured apart, and each GLOBAL_ENTRY (`.align 32`) adds 31 bytes to the bound."""
    text = (FIXTURES / "layout_2006_shape.S").read_text()
    out = source.unparse(rw.rewrite_control_page(source.parse_module(text)).module)
    guard = out[out.index("\t.if "):out.index("\t.endif\n")]
    assert guard == (
        "\t.if (register_stack_end - relocate_new_kernel) + 31 + \\\n"
        "\t    (.Lkexec_code_1 - kexec_fake_sal_rendez) + 31 + \\\n"
        "\t    (relocate_new_kernel_end - kexec_fake_sal_spin) \\\n"
        "\t    > KEXEC_CONTROL_CODE_PAGE_SIZE\n"
        '\t.error "relocate_new_kernel outgrew KEXEC_CONTROL_CODE_PAGE_SIZE"\n')
    # a run without a label of its own gets a local one, right before the alignment
    assert ".Lkexec_code_1:\nGLOBAL_ENTRY(kexec_fake_sal_spin)\n" in out


def test_under_a_hypervisor_switch_the_page_keeps_its_layout() -> None:
    """Where a hypervisor calls the page (CONFIG_XEN in the Xen dom0 trees) it passes no
    stacks: there the changed instructions keep their old form and the stacks stay after the
    code; natively the page is the one of every other tree."""
    result = rw.rewrite_control_page(source.parse_module(LINUX61_SHAPE),
                                     hypervisor_switches=("CONFIG_XEN",))
    assert result.kept == ("CONFIG_XEN",)
    text = source.unparse(result.module)
    assert ("#ifdef CONFIG_XEN\n\talloc r31=ar.pfs,4,0,0,0\n#else\n"
            "\talloc r31=ar.pfs,6,0,0,0\n#endif /* CONFIG_XEN */\n") in text
    assert ("#ifdef CONFIG_XEN\n\tadd sp=(memory_stack_end - 16 - .reloc_entry),r2\n"
            "\tadd r8=(register_stack - .reloc_entry),r2\n#else\n"
            "\tadd sp=KEXEC_MEMORY_STACK_SIZE - 16,in4\n\tmov r8=in5\n"
            "#endif /* CONFIG_XEN */\n") in text
    # the stacks, after the code, only under the switch; the guard measures the code alone
    code_end = text.index(".Lkexec_code_end:\n#ifdef CONFIG_XEN\n")
    assert code_end < text.index("memory_stack:\n") < text.index(
        "register_stack_end:\n#endif /* CONFIG_XEN */\nrelocate_new_kernel_end:\n")
    assert "\t.if (.Lkexec_code_end - relocate_new_kernel) \\\n" in text
    assert " * Under CONFIG_XEN the hypervisor calls the page with the arguments\n" in text
    # and its output is code-first for the next run: the stacks it keeps are conditional
    again = rw.rewrite_control_page(source.parse_module(text), hypervisor_switches=("CONFIG_XEN",))
    assert again.already_code_first and source.unparse(again.module) == text


def check_error(text: str, line: int, *words: str) -> RelgenError:
    with pytest.raises(RelgenError) as caught:
        rw.rewrite_control_page(source.parse_module(text, "case.S"))
    error = caught.value
    assert error.path == "case.S"
    assert error.line == line, error.render()
    for word in words:
        assert word in error.message, error.message
    return error


def test_region_without_size_word() -> None:
    text = LINUX61_SHAPE.replace("\tdata8\trelocate_new_kernel_end - relocate_new_kernel\n", "")
    with pytest.raises(RelgenError, match="no size word"):
        rw.rewrite_control_page(source.parse_module(text))


def test_entry_without_alloc() -> None:
    check_error(LINUX61_SHAPE.replace("\talloc r31=ar.pfs,4,0,0,0\n", ""), 4, "has no alloc")


def test_offset_beyond_the_immediate() -> None:
    text = LINUX61_SHAPE.replace("\t.fill           8192, 1, 0\nmemory_stack_end:",
                                 "\t.fill           16384, 1, 0\nmemory_stack_end:")
    check_error(text, 16, "offset 16368 into memory_stack", "14-bit immediate")


def test_reference_no_rule_covers() -> None:
    text = LINUX61_SHAPE.replace("\tmov ar.bspstore=r8\n", "\tmovl r9=memory_stack\n")
    check_error(text, 19, "movl refers to memory_stack", "no rule covers")


def test_early_version_that_advanced_its_base_first() -> None:
    text = LINUX61_SHAPE.replace(
        "\tadd sp=(memory_stack_end - 16 - .reloc_entry),r2\n",
        "\tadd r2=(memory_stack - .reloc_entry),r2\n\t;;\n"
        "\tadd sp=(memory_stack_end - .reloc_entry),r2\n")
    error = check_error(text, 18, "this computes memory_stack_end + (memory_stack - .reloc_entry)",
                        "r2 holds memory_stack, set at line 16",
                        "memory_stack - .reloc_entry bytes past the end of memory_stack")
    assert error.render().splitlines()[1] == "\tadd sp=(memory_stack_end - .reloc_entry),r2"


def test_no_data_area() -> None:
    text = LINUX61_SHAPE.replace("\t.fill           8192, 1, 0\n", "\tnop 0\n")
    text = text.replace("\tadd sp=(memory_stack_end - 16 - .reloc_entry),r2\n", "")
    text = text.replace("\tadd r8=(register_stack - .reloc_entry),r2\n", "")
    check_error(text, 4, "no data area")


def test_procedure_without_end() -> None:
    text = LINUX61_SHAPE.replace("END(relocate_new_kernel)\n", "")
    with pytest.raises(RelgenError, match="never closed") as caught:
        rg.check_procedures_closed(source.parse_module(text, "case.S"))
    assert caught.value.line == 4


def test_anchor_read_without_an_explicit_bundle() -> None:
    bundle = "{\n\trsm psr.i| psr.ic\n\tmov r2=ip\n}\n"
    assert bundle in LINUX61_SHAPE
    plain = LINUX61_SHAPE.replace(bundle, "\tmov r2=ip\n\trsm psr.i| psr.ic\n")
    result = rw.rewrite_control_page(source.parse_module(plain))
    assert [r.new for r in result.rewritten] == ["add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4",
                                                 "mov r8=in5"]
    # after another instruction, ip is no longer known to be the label's address
    late = LINUX61_SHAPE.replace(bundle, "\trsm psr.i| psr.ic\n\tmov r2=ip\n")
    check_error(late, 14, "register r2, whose value relgen cannot tell here")


def test_area_without_a_label() -> None:
    text = LINUX61_SHAPE.replace("register_stack:\n\t.fill", "\tnop 0\n\t.fill")
    check_error(text, 27, "the data area reserved by .fill has no label")


def shape(name: str) -> source.Module:
    path = FIXTURES / name
    return source.parse_module(path.read_text(), str(path))


def test_conditional_stacks_are_one_area_each_and_leave_with_their_conditionals() -> None:
    module = shape("shape_xen_conditional.S")
    region = rg.find_region(module)
    assert [(a.name, a.end_labels, a.sizes, a.size, a.conditional)
            for a in region.data_areas] == [
        ("memory_stack", ("memory_stack_end",), (4096, 8192), None, True),
        ("register_stack", ("register_stack_end",), (4096, 8192), None, True)]
    assert region.switches == ("CONFIG_XEN",)
    text = source.unparse(rw.rewrite_control_page(module).module)
    # the code's conditional stays, balanced; the areas' conditionals are gone with them
    assert text.count("\n#ifdef CONFIG_XEN\n") == 1 and text.count("\n#else\n") == 1
    assert text.count("\n#endif\n") == 1 and ".fill" not in text
    assert "\tmov r9=1\t\t\t// under Xen\n#else\n\tmov r9=2\n#endif\n" in text


@pytest.mark.parametrize(("name", "code_label"), [
    ("shape_code_between_stacks.S", ".helper2"),
    ("shape_code_after_stacks.S", ".helper3"),
])
def test_a_label_that_code_follows_is_code_wherever_it_stands(name: str,
                                                            code_label: str) -> None:
    module = shape(name)
    region = rg.find_region(module)
    assert all(code_label not in area.labels for area in region.data_areas)
    text = source.unparse(rw.rewrite_control_page(module).module)
    # the code label and its code come before the end of the region, stacks gone
    assert text.index(f"{code_label}:\n\tmov r8=r0") < text.index("relocate_new_kernel_end:")
    assert "memory_stack:" not in text and "register_stack:" not in text


def test_code_after_the_stacks_without_a_label_moves_ahead() -> None:
    result = rw.rewrite_control_page(shape("shape_code_after_stacks_unbranched.S"))
    text = source.unparse(result.module)
    assert "register_stack_end:\n\tmov r8=r0\n" in text and ".fill" not in text


def test_second_procedure_after_the_stacks_moves_ahead() -> None:
    text = source.unparse(rw.rewrite_control_page(shape("shape_second_procedure.S")).module)
    assert text.index("END(relocate_new_kernel)") < text.index("GLOBAL_ENTRY(kexec_after_"
                                                                "stacks)")
    assert ".fill" not in text


@pytest.mark.parametrize(("line", "message"), [
    ("#endif\n", "closes a conditional opened before the control-page region"),
    ("#ifdef CONFIG_XEN\n", "is not closed before relocate_new_kernel_end"),
])
def test_conditionals_must_balance_in_the_region(line: str, message: str) -> None:
    text = LINUX61_SHAPE.replace("\tbr.call.sptk.many b0=b6;;\n",
                                 f"\tbr.call.sptk.many b0=b6;;\n{line}")
    with pytest.raises(RelgenError, match=message) as caught:
        rw.rewrite_control_page(source.parse_module(text, "x.S"))
    assert caught.value.line == 21


def test_a_data_area_inside_a_conditional_with_code_is_refused() -> None:
    text = LINUX61_SHAPE.replace(".align  32\n", "#ifdef CONFIG_XEN\n.align  32\n").replace(
        "relocate_new_kernel_end:\n", "#endif\nrelocate_new_kernel_end:\n")
    with pytest.raises(RelgenError, match="lies inside a preprocessor conditional"):
        rw.rewrite_control_page(source.parse_module(text, "x.S"))


def test_each_conditional_size_must_fit_the_immediate() -> None:
    text = shape("shape_xen_conditional.S")
    changed = source.unparse(text).replace(".fill 8192, 1, 0", ".fill 16384, 1, 0", 1)
    with pytest.raises(RelgenError, match="16368 into memory_stack does not fit") as caught:
        rw.rewrite_control_page(source.parse_module(changed, "x.S"))
    assert caught.value.line == 22


def test_registers_known_in_one_branch_are_unknown_after_the_conditional() -> None:
    text = LINUX61_SHAPE.replace("\tdep r2=0,r2,61,3", "#ifdef CONFIG_XEN\n\tmov r2=r0\n"
                                 "#endif\n\tdep r2=0,r2,61,3")
    with pytest.raises(RelgenError, match="whose value relgen cannot tell"):
        rw.rewrite_control_page(source.parse_module(text, "x.S"))


def test_an_area_end_that_code_follows_is_code_and_cannot_form_the_area_address() -> None:
    text = LINUX61_SHAPE.replace("\tadd r8=(register_stack - .reloc_entry),r2\n",
                                 "\tadd r8=(register_stack_end - .reloc_entry),r2\n").replace(
        "register_stack_end:\nrelocate_new_kernel_end:\n",
        "register_stack_end:\n\tmov r8=r0\nrelocate_new_kernel_end:\n")
    module = source.parse_module(text, "x.S")
    (_, register_stack) = rg.find_region(module).data_areas
    assert register_stack.code_labels_after == ("register_stack_end",)
    with pytest.raises(RelgenError, match="register_stack_end, which ends the data area "
                       "register_stack but is a code label") as caught:
        rw.rewrite_control_page(module)
    assert caught.value.line == 17


def test_rebased_instructions_are_parsed_not_spliced() -> None:
    """The new operand is the grammar's expression (a Binary of the size macro and 16), not
    a name that happens to hold spaces; the predicate-free head and spacing stay."""
    from relgen.source import expressions as ex

    module = source.parse_module((FIXTURES / "layout_2006_shape.S").read_text(), "2006.S")
    result = rw.rewrite_control_page(module)
    items = {item.text: item for _, item in result.module.items()
             if isinstance(item, source.Instruction) and "in4" in item.text}
    stack = items["add sp=KEXEC_MEMORY_STACK_SIZE - 16,in4"]
    offset, register = stack.sources
    assert isinstance(offset, ex.Binary) and isinstance(register, ex.Symbol)
    assert ex.linear_form(offset) == ex.LinearForm({"KEXEC_MEMORY_STACK_SIZE": 1}, -16)
    original = next(item for _, item in module.items() if item.line == stack.line
                    and isinstance(item, source.Instruction))
    assert (stack.column, stack.raw[:1]) == (original.column, original.raw[:1])
