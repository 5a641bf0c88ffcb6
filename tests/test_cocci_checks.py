"""The Coccinelle report-mode scripts on small callers written for these tests.

Four correct callers pass every script: one block through a field, two fields through
locals, relgen's shape for trees with struct kimage_arch (after the code in the control page
where one page holds all, else control pages of their own) and its shape for older trees
(after the code in the image's control pages, at their offsets); each variant broken on
purpose is reported by the script that checks its property.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXTURES, require_tool
from relgen.checks.cocci import cocci_checks, cocci_scripts

pytestmark = pytest.mark.slow

GOOD = FIXTURES / "cocci" / "good.c"
GOOD_LOCAL = FIXTURES / "cocci" / "good_local.c"
GOOD_CONTROL_PAGE = FIXTURES / "cocci" / "good_control_page.c"
GOOD_CODE_PAGE = FIXTURES / "cocci" / "good_code_page.c"
#: The title of the script that checks where the stacks come from.
FROM_CONTROL_PAGES = "comes from the image's control pages"
STACK = "page_to_phys(image->arch.stacks)"
STACK_OFFSET = "page_to_phys(image->arch.stacks) + KEXEC_MEMORY_STACK_SIZE"
ALLOCATION = """\timage->arch.stacks = kimage_alloc_control_pages(image,
			get_order(KEXEC_MEMORY_STACK_SIZE + KEXEC_REGISTER_STACK_SIZE));
	if (!image->arch.stacks)
		return -ENOMEM;
"""
CLEANUP = "void machine_kexec_cleanup(struct kimage *image)\n{\n"
FREE = "\t__free_pages(image->arch.stacks, 1);\n"

# (name, base fixture, [(old, new) edits], the check that must fail)
BROKEN = [
    ("swapped", GOOD, [(f"{STACK},\n", "@5@,\n"), (f"{STACK_OFFSET});", f"{STACK});"),
                       ("@5@", STACK_OFFSET)], "argument 5"),
    ("swapped fields", GOOD_LOCAL,
     [("arch.memory_stack),", "@5@,"), ("arch.register_stack));", "arch.memory_stack));"),
      ("@5@", "arch.register_stack)")], "argument 5"),
    ("alloc_pages", GOOD, [("kimage_alloc_control_pages(image,", "alloc_pages(GFP_KERNEL,")],
     "kimage_alloc_control_pages(), not another allocator"),
    ("alloc_pages through a local", GOOD_LOCAL,
     [("registers = kimage_alloc_control_pages(image,", "registers = alloc_pages(GFP_KERNEL,")],
     "kimage_alloc_control_pages(), not another allocator"),
    ("freed in cleanup", GOOD, [(CLEANUP, CLEANUP + FREE)], "not freed"),
    ("never allocated", GOOD, [(ALLOCATION, "")], FROM_CONTROL_PAGES),
    ("one field never set", GOOD_LOCAL,
     [("\timage->arch.register_stack = registers;\n", "")], FROM_CONTROL_PAGES),
    ("a 4-argument call", GOOD, [(f",\n\t       {STACK},\n\t       {STACK_OFFSET})", ")")],
     "argument 5"),
    # the stacks beside the code: from a page of their own that no allocator gave the image
    ("control page: the field never set", GOOD_CONTROL_PAGE,
     [("\timage->arch.stacks = page_to_phys(stacks) + offset;\n", "")], FROM_CONTROL_PAGES),
    ("control page: alloc_pages", GOOD_CONTROL_PAGE,
     [("stacks = kimage_alloc_control_pages(image, order);",
       "stacks = alloc_pages(GFP_KERNEL, order);")],
     "kimage_alloc_control_pages(), not another allocator"),
    ("control page: swapped", GOOD_CONTROL_PAGE,
     [("\t       image->arch.stacks,\n\t       image->arch.stacks + KEXEC_MEMORY_STACK_SIZE);",
       "\t       image->arch.stacks + KEXEC_MEMORY_STACK_SIZE,\n\t       image->arch.stacks);")],
     "argument 5"),
    # older trees: the stacks at their offsets after the code
    ("code page: a static", GOOD_CODE_PAGE,
     [("__pa(code_addr) + KEXEC_MEMORY_STACK_OFFSET", "__pa(kexec_stacks)")],
     FROM_CONTROL_PAGES),
    ("code page: swapped", GOOD_CODE_PAGE,
     [("__pa(code_addr) + KEXEC_MEMORY_STACK_OFFSET,\n", "@5@,\n"),
      ("__pa(code_addr) + KEXEC_REGISTER_STACK_OFFSET);",
       "__pa(code_addr) + KEXEC_MEMORY_STACK_OFFSET);"),
      ("@5@", "__pa(code_addr) + KEXEC_REGISTER_STACK_OFFSET")], "argument 5"),
    ("code page: one stack for both", GOOD_CODE_PAGE,
     [("__pa(code_addr) + KEXEC_REGISTER_STACK_OFFSET);",
       "__pa(code_addr) + KEXEC_MEMORY_STACK_OFFSET);")], "argument 5"),
]


@pytest.fixture(scope="module", autouse=True)
def spatch() -> None:
    require_tool("spatch")


def _checks(text: str, tmp_path: Path) -> dict[str, tuple[bool, tuple[str, ...]]]:
    path = tmp_path / "machine_kexec.c"
    path.write_text(text, encoding="utf-8")
    return {c.name: (c.passed, c.evidence)
            for c in cocci_checks({"arch/ia64/kernel/machine_kexec.c": path}, tmp_path)}


def test_there_is_a_script_for_each_property() -> None:
    assert [p.name for p in cocci_scripts()] == [
        "stacks_allocated.cocci", "stacks_allocator.cocci", "stacks_not_freed.cocci",
        "stacks_order.cocci"]


@pytest.mark.parametrize("fixture", [GOOD, GOOD_LOCAL, GOOD_CONTROL_PAGE, GOOD_CODE_PAGE],
                         ids=["one block", "two fields", "control page", "code page"])
def test_correct_callers_pass_every_script(fixture: Path, tmp_path: Path) -> None:
    checks = _checks(fixture.read_text(encoding="utf-8"), tmp_path)
    assert len(checks) == 4
    assert {name: passed for name, (passed, _) in checks.items()} == dict.fromkeys(checks, True)


@pytest.mark.parametrize(("base", "edits", "failing"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])
def test_broken_callers_fail_their_check(base: Path, edits: list[tuple[str, str]],
                                         failing: str, tmp_path: Path) -> None:
    text = base.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    checks = _checks(text, tmp_path)
    failed = [name for name, (passed, _) in checks.items() if not passed]
    assert any(failing in name for name in failed), failed
    evidence = [line for name in failed for line in checks[name][1]]
    # the report names the kernel path, not the scratch folder
    assert all(str(tmp_path) not in line for line in evidence)
    assert any("FAIL: machine_kexec.c:" in line or "no call with 6 arguments" in line
               for line in evidence)


def test_a_change_without_c_files_fails_every_script() -> None:
    checks = cocci_checks({}, Path("/nonexistent"))
    assert checks and not any(c.passed for c in checks)
