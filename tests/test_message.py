"""relgen.kernel.message: a commit message true to its input, and the notes below its `---`.

Every sentence follows from the facts: nothing moves on 6.1 and the message says so; in the
2006 shape kexec_fake_sal_rendez moves; where each image keeps its stacks depends on the
tree; the control memory table shows that no page size pays more; the closing paragraph
says exactly what was checked and never that the change builds or boots. relgen's name,
version and the input's sha256 go below the `---`, with what checkpatch.pl still reports and
why. The messages of whole rewrites are in test_maintainer_patch.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from relgen.kernel.header import DataAreaFacts, HeaderFacts
from relgen.kernel.mail import PLACEHOLDER_IDENTITY
from relgen.kernel.message import (
    ControlMemory,
    Evidence,
    PatchFacts,
    control_memory,
    history_prefix,
    render_commit_message,
    render_notes,
    stacks_apart_cost_no_more,
    subject,
)
from relgen.kernel.templates import reflow
from relgen.names import PAGE_SIZES

AREAS = (DataAreaFacts("memory_stack", 8192, "in4"),
         DataAreaFacts("register_stack", 8192, "in5"))
HOOK_HEADER = HeaderFacts(entry="relocate_new_kernel",
                          source_path="arch/ia64/kernel/relocate_kernel.S", data_areas=AREAS,
                          kimage_arch=True, control_macro="KEXEC_CONTROL_PAGE_SIZE")
OLD_HEADER = dataclasses.replace(HOOK_HEADER, kimage_arch=False,
                                 control_macro="KEXEC_CONTROL_CODE_SIZE",
                                 entry_points=("kexec_fake_sal_rendez",), spdx=False)
EVIDENCE = Evidence(page_sizes=PAGE_SIZES, configurations=None, instructions_compared=148,
                    images=1, pages=4,
                    kernel="sparse and gcc's syntax check on the 32 units that include "
                    "<asm/kexec.h> report nothing the unpatched tree does not")
SIGNED = "Ann Dev <ann@example.org>"
BEFORE = 8192 + 8192 + 4096
#: Linux 6.1: one procedure, then the stacks; struct kimage_arch offered.
LINUX_61 = PatchFacts(entry="relocate_new_kernel", header=HOOK_HEADER, before_bytes=BEFORE,
                      after_bytes=4096, code_size=0x330, moved=(), padding=True,
                      instructions_rewritten=2, existing_arguments=4,
                      control_memory=control_memory(BEFORE, HOOK_HEADER), evidence=EVIDENCE,
                      signed_off_by=SIGNED)
#: The 2006 shape of a 2.6.18 vendor tree: kexec_fake_sal_rendez after the stacks, no hook.
SHAPE_2006 = dataclasses.replace(
    LINUX_61, header=OLD_HEADER, after_bytes=BEFORE, code_size=0x530,
    moved=("kexec_fake_sal_rendez",), padding=False,
    control_memory=control_memory(BEFORE, OLD_HEADER),
    evidence=dataclasses.replace(EVIDENCE, instructions_compared=240,
                                 kernel="sparse, gcc and Coccinelle did not run: the tree "
                                 "has no Kbuild that runs under today's make"))
XEN = dataclasses.replace(
    SHAPE_2006, header=dataclasses.replace(OLD_HEADER, entry_points=(), kept=("CONFIG_XEN",)),
    moved=(), evidence=dataclasses.replace(
        SHAPE_2006.evidence, configurations="with CONFIG_XEN off and on"))
FACTS = {"6.1": LINUX_61, "2006": SHAPE_2006, "xen": XEN}


def flat(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------- control memory


def kib(*values: int) -> tuple[int, ...]:
    return tuple(value * 1024 for value in values)


def test_control_memory_of_a_tree_with_struct_kimage_arch() -> None:
    """Each image: the code page, and the stacks apart (in the code page where one page
    holds all). kimage_alloc_control_pages() takes a power of two pages."""
    rows = control_memory(BEFORE, HOOK_HEADER)
    assert [(r.page_size, r.before, r.after) for r in rows] == [
        (4096, *kib(32, 20)), (8192, *kib(32, 24)), (16384, *kib(32, 32)),
        (65536, *kib(64, 64))]


def test_control_memory_of_an_older_tree() -> None:
    """The code page and the stacks after it in one allocation: what the page took before."""
    rows = control_memory(BEFORE, OLD_HEADER)
    assert [(r.page_size, r.before, r.after) for r in rows] == [
        (4096, *kib(32, 32)), (8192, *kib(32, 32)), (16384, *kib(32, 32)),
        (65536, *kib(64, 64))]


@pytest.mark.parametrize("header", [HOOK_HEADER, OLD_HEADER], ids=["hook", "older"])
@pytest.mark.parametrize("stacks", [(8192, 8192), (4096, 4096), (16384, 16384)],
                         ids=["8+8 KiB", "4+4 KiB (Xen)", "16+16 KiB"])
def test_no_page_size_pays_more(header: HeaderFacts, stacks: tuple[int, int]) -> None:
    areas = tuple(dataclasses.replace(a, size=s) for a, s in zip(AREAS, stacks, strict=True))
    facts = dataclasses.replace(header, data_areas=areas)
    rows = control_memory(4096 + sum(stacks), facts)
    assert [r.page_size for r in rows] == [4096, 8192, 16384, 65536]
    assert all(r.after <= r.before for r in rows), rows


def test_no_page_size_pays_more_with_stacks_of_unequal_size() -> None:
    """8 KiB + 4 KiB apart from the code page would pay more at 4 and 8 KiB pages (4 + 16
    against 16 KiB, 8 + 16 against 16): such stacks follow the code in its control pages."""
    areas = (dataclasses.replace(AREAS[0], size=8192), dataclasses.replace(AREAS[1], size=4096))
    apart = stacks_apart_cost_no_more(4096, 8192 + 4096)
    assert not apart
    rows = control_memory(4096 + 8192 + 4096, dataclasses.replace(
        HOOK_HEADER, data_areas=areas, kimage_arch=apart))
    assert all(r.after <= r.before for r in rows), rows


# ---------------------------------------------------------------- subject and notes


@pytest.mark.parametrize(("facts", "prefix", "expected"), [
    (LINUX_61, "ia64: kexec: ", "ia64: kexec: take the stacks out of the control page"),
    (SHAPE_2006, "[IA64] ", "[IA64] kexec: move all code first, pass the stacks in"),
    (SHAPE_2006, "ia64/kexec: ", "ia64/kexec: move all code first, pass the stacks in"),
    (LINUX_61, "[IA64] kexec: ", "[IA64] kexec: take the stacks out of the control page"),
])
def test_the_subject_says_what_the_change_does_for_this_input(facts: PatchFacts, prefix: str,
                                                              expected: str) -> None:
    assert subject(facts, prefix) == expected
    assert len(f"Subject: [PATCH] {expected}") <= 75


@pytest.mark.parametrize(("subjects", "expected"), [
    (["[IA64] kexec: fix", "[IA64] kexec: more", "ia64: kexec: other"], "[IA64] kexec: "),
    (["ia64/kexec: a", "[IA64] b", "ia64/kexec: c"], "ia64/kexec: "),
    (["Merge branch 'x'", "Revert everything"], None),
    ([], None),
])
def test_the_prefix_most_used_in_a_history(subjects: list[str], expected: str | None) -> None:
    assert history_prefix(subjects) == expected


def test_notes_name_relgen_the_input_and_what_checkpatch_still_reports() -> None:
    notes = render_notes("0.1.0", "arch/ia64/kernel/relocate_kernel.S", "ab" * 32, [
        ("WARNING FILE_PATH_CHANGES", "a new file; F: arch/ia64/ in MAINTAINERS covers it"),
        ("ERROR DEFINE_ARCH_HAS", "the hook include/linux/kexec.h offers, used by 8 "
         "architectures")])
    assert notes.startswith("relgen 0.1.0 made this patch from "
                            "arch/ia64/kernel/relocate_kernel.S\n(sha256 " + "ab" * 32 + ").\n")
    assert "checkpatch.pl --strict reports only what the change cannot avoid:\n" \
        "- WARNING FILE_PATH_CHANGES: a new file; F: arch/ia64/ in MAINTAINERS\n" \
        "  covers it\n" in notes
    assert "- ERROR DEFINE_ARCH_HAS: the hook include/linux/kexec.h offers, used by 8\n" \
        "  architectures\n" in notes
    assert max(len(line) for line in notes.splitlines()) <= 75
    assert render_notes("0.1.0", "x.S", "0" * 64, []).endswith(
        "checkpatch.pl --strict reports nothing.\n")
    assert "no checkpatch.pl ran" in render_notes("0.1.0", "x.S", "0" * 64,
                                                  "This tree has no checkpatch.pl: no "
                                                  "checkpatch.pl ran.")


# ------------------------------------------------------------------ the message


@pytest.mark.parametrize("name", FACTS)
def test_every_message_is_kernel_prose(name: str) -> None:
    message = render_commit_message(FACTS[name])
    assert max(len(line) for line in message.splitlines()) <= 75
    assert message.endswith(f"\n\nSigned-off-by: {SIGNED}\n")
    words = set(re.findall(r"[a-z]+", message.lower()))
    assert not {"boots", "builds", "booted", "tested"} & words  # "boot parameters" may be
    assert "relgen 0." not in message and "sha256" not in message and "generated" not in words


def test_on_61_nothing_moves_and_the_message_says_so() -> None:
    text = flat(render_commit_message(LINUX_61))
    assert "relocate_new_kernel already comes first and is the only code in the page, so no " \
        "code moves: take the stacks out of it." in text
    assert "Move " not in text and "follows the stacks" not in text
    assert "Each image keeps the physical address of its stacks in struct kimage_arch, under " \
        "ARCH_HAS_KIMAGE_ARCH" in text
    assert "KEXEC_CONTROL_PAGE_SIZE becomes KEXEC_CONTROL_CODE_PAGE_SIZE. ia64_machine_kexec() " \
        "passes the stacks' physical addresses" in text
    assert "its alloc grows from 4 to 6 inputs" in text
    assert "as arguments 5 and 6, in the order relocate_new_kernel reads them" in text


def test_in_the_2006_shape_kexec_fake_sal_rendez_moves() -> None:
    text = flat(render_commit_message(SHAPE_2006))
    assert "the code of relocate_new_kernel and kexec_fake_sal_rendez, and its two stacks" in text
    assert "kexec_fake_sal_rendez follows the stacks." in text
    assert "Take the stacks out of the page: kexec_fake_sal_rendez then follows " \
        "relocate_new_kernel directly, so that all code lies in the first 0x530 bytes of the " \
        "page" in text
    assert "Nothing in this tree reads it yet: it is for a hypervisor's port" in text
    assert "kexec_fake_sal_rendez_offset, a word relocate_kernel.S now defines as it does " \
        "relocate_new_kernel_size" in text
    # no struct kimage_arch: another home for the stacks, and why
    assert "This tree's include/linux/kexec.h offers no struct kimage_arch" in text
    assert "KEXEC_CONTROL_CODE_SIZE becomes KEXEC_CONTROL_PAGES_SIZE" in text
    assert "already comes first" not in text


def test_under_a_hypervisor_the_message_says_what_it_must_pass() -> None:
    text = flat(render_commit_message(XEN))
    assert "Under CONFIG_XEN the hypervisor, not Linux, calls the control page " \
        "(machine_kexec_setup_load_arg() hands it the page)" in text
    assert "it must allocate the two stacks (KEXEC_MEMORY_STACK_SIZE and " \
        "KEXEC_REGISTER_STACK_SIZE bytes) and enter the page with their machine addresses as " \
        "the fifth and sixth inputs of its frame (in4 and in5)" in text
    assert "(machine_kexec_setup_load_arg() hands it the page) with four inputs of its own " \
        "and no stacks" in text
    # what differs, per configuration; the sizes are the native ones
    assert "at 4, 8, 16 and 64 KiB pages, with CONFIG_XEN off and on, and their disassembly " \
        "compared instruction for instruction (240 compared): with CONFIG_XEN off they differ " \
        "in the alloc and the two rewritten instructions, and with CONFIG_XEN on, where the " \
        "page keeps its stacks, in no instruction;" in text
    assert "8192 bytes each natively," in text and "bytes now, natively)" in text


@pytest.mark.parametrize("name", FACTS)
def test_the_table_shows_control_memory_per_page_size(name: str) -> None:
    facts = FACTS[name]
    message = render_commit_message(facts)
    rows = re.findall(r"^ +(\d+) KiB +(\d+) KiB +(\d+) KiB$", message, re.M)
    assert [tuple(int(v) * 1024 for v in row) for row in rows] == [
        (r.page_size, r.before, r.after) for r in facts.control_memory]
    assert all(int(after) <= int(before) for _, before, after in rows)


@pytest.mark.parametrize("name", FACTS)
def test_the_closing_paragraph_says_exactly_what_was_checked(name: str) -> None:
    facts = FACTS[name]
    checked = flat(render_commit_message(facts).split("\nChecked:\n")[1])
    assert "assembled with ia64-linux-gnu-as -x at 4, 8, 16 and 64 KiB pages" in checked
    assert f"({facts.evidence.instructions_compared} compared)" in checked
    assert "they differ in the alloc" in checked and "the two rewritten instructions" in checked
    assert ("the nop padding that aligned the stacks" in checked) == facts.padding
    assert "run in relgen's ia64 model on 1 kexec image of 4 pages" in checked
    assert f"- {facts.evidence.kernel}." in checked


def test_reflow_keeps_tables_lists_and_trailers() -> None:
    text = (
        "A paragraph " + "that goes on " * 10 + "\nand ends.\n\n"
        "The map:\n  0x0000 relocate_new_kernel\n  0x0330 end\n\n"
        "- an item " + "with words " * 10 + "\n- another\n\n"
        "Signed-off-by: " + PLACEHOLDER_IDENTITY + "\n"
    )
    out = reflow(text)
    assert max(len(line) for line in out.split("\n")) <= 75
    assert "The map:\n  0x0000 relocate_new_kernel\n  0x0330 end\n" in out
    assert "\n  with words" in out and "\n- another\n" in out
    assert out.endswith(f"\n\nSigned-off-by: {PLACEHOLDER_IDENTITY}\n")
    assert reflow(out) == out


def test_rendering_is_the_same_in_another_process() -> None:
    """Same facts, same bytes, also where set and dict order could differ (another hash
    seed)."""
    program = ("import sys; sys.path.insert(0, sys.argv[1]); import test_message as t; "
               "sys.stdout.write('\\0'.join(t.render_commit_message(f) "
               "for f in t.FACTS.values()))")
    child = subprocess.run([sys.executable, "-c", program, str(Path(__file__).parent)],
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert child.stdout == "\0".join(render_commit_message(f) for f in FACTS.values())


def test_control_memory_rows_are_the_named_tuple_of_three() -> None:
    row = ControlMemory(4096, 32768, 20480)
    assert (row.page_size, row.before, row.after) == (4096, 32768, 20480)
