"""relgen rewrite / verify / diff end to end, with the real assembler on real files."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FIXTURES, QUICK_OPTIONS, SharedRuns, broken_copy
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.names import HEADER_INCLUDE, PAGE_SIZES
from relgen.outputs import MARKER
from relgen.toolchain.assemble import assemble
from relgen.toolchain.elf import load_object
from relgen.toolchain.objdump import disassemble_instructions
from relgen.toolchain.tree import KernelTree

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"
#: What every rewrite here is given: an author, a date (two runs give the same bytes), and
#: no kernel checks, which tests/test_kernelcheck.py and test_maintainer_patch.py run.
OPTIONS = QUICK_OPTIONS


def nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["ia64-linux-gnu-nm", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (line.split() for line in out.splitlines())
            if len(parts) == 3}


@pytest.fixture(scope="module")
def upstream_out(upstream_tree: Path, toolchain: None, shared_runs: SharedRuns) -> Path:
    """`relgen rewrite --kernel-tree TREE -o OUT` with OPTIONS, made once per session."""
    made = shared_runs.rewrite("--kernel-tree", upstream_tree, *OPTIONS)
    assert made.status == 0, made.stdout
    return made.out


def assemble_new(out: Path, tree: Path, work: Path, page_size: int = 16384) -> Path:
    header = (out / "kexec_control_page.h").read_text()
    assembled = assemble(out / "relocate_kernel.S", KernelTree(tree), work,
                                page_size=page_size,
                                extra_headers={"asm/kexec_control_page.h": header})
    return assembled.object_path


def test_upstream_outputs(upstream_out: Path) -> None:
    names = sorted(p.name for p in upstream_out.iterdir())
    assert names == sorted([MARKER, "kexec_control_page.h", "layout-after.svg",
                            "layout-before.svg", "layout.json", "layout.txt",
                            "relocate_kernel.S", "relocate_kernel.patch"])


def test_upstream_regenerated_file_at_every_page_size(upstream_out: Path, upstream_tree: Path,
                                                      tmp_path: Path) -> None:
    offsets = []
    for page_size in PAGE_SIZES:
        obj = assemble_new(upstream_out, upstream_tree, tmp_path / str(page_size), page_size)
        symbols = nm(obj)
        assert "memory_stack" not in symbols and "register_stack" not in symbols
        size = symbols["relocate_new_kernel_end"] - symbols["relocate_new_kernel"]
        assert size == 816 and size <= 4096
        offsets.append(symbols)
    assert all(o == offsets[0] for o in offsets)


def test_upstream_diff_shows_only_the_rewrite(upstream_out: Path, upstream_tree: Path) -> None:
    diff = subprocess.run(
        ["git", "diff", "--no-index", "--no-prefix", "-U0",
         str(upstream_tree / "arch/ia64/kernel/relocate_kernel.S"),
         str(upstream_out / "relocate_kernel.S")], capture_output=True, text=True).stdout
    changed = [line for line in diff.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == [
        "+#include <asm/kexec_control_page.h>",
        "+/*",
        "+ * The stacks are not in the control page; the caller passes them in:",
        "+ * in4: physical address of memory_stack (KEXEC_MEMORY_STACK_SIZE bytes)",
        "+ * in5: physical address of register_stack (KEXEC_REGISTER_STACK_SIZE bytes)",
        "+ */",
        "-\talloc r31=ar.pfs,4,0,0,0",
        "+\talloc r31=ar.pfs,6,0,0,0",
        "-\tadd sp=(memory_stack_end - 16 - .reloc_entry),r2",
        "-\tadd r8=(register_stack - .reloc_entry),r2",
        "+\tadd sp=KEXEC_MEMORY_STACK_SIZE - 16,in4",
        "+\tmov r8=in5",
        "-.align  32",
        "-memory_stack:",
        "-\t.fill           8192, 1, 0",
        "-memory_stack_end:",
        "-register_stack:",
        "-\t.fill           8192, 1, 0",
        "-register_stack_end:",
        "+\t.if (relocate_new_kernel_end - relocate_new_kernel) \\",
        "+\t    > KEXEC_CONTROL_CODE_PAGE_SIZE",
        '+\t.error "relocate_new_kernel outgrew KEXEC_CONTROL_CODE_PAGE_SIZE"',
        "+\t.endif",
    ]


def test_upstream_disassembly_differs_only_where_rewritten(
        upstream_out: Path, upstream_tree: Path, tmp_path: Path) -> None:
    original = assemble(upstream_tree / "arch/ia64/kernel/relocate_kernel.S",
                               KernelTree(upstream_tree), tmp_path / "old").object_path
    new = assemble_new(upstream_out, upstream_tree, tmp_path / "new")

    def slots(path: Path) -> list[str]:
        return [i.comparable for i in disassemble_instructions(path)
                if i.symbol == "relocate_new_kernel"]

    old_slots, new_slots = slots(original), slots(new)
    differing = [(a, b) for a, b in zip(old_slots, new_slots, strict=False) if a != b]
    assert differing == [("alloc r31=ar.pfs,4,4,0", "alloc r31=ar.pfs,6,6,0"),
                         ("addl r12=8992,r2", "adds r12=8176,r36"),
                         ("addl r8=9008,r2", "mov r8=r37")]
    padding = old_slots[len(new_slots):]
    assert padding and all(s.startswith("nop") for s in padding)


def test_header_numbers_are_the_sources_stacks(upstream_out: Path, upstream_tree: Path,
                                                tmp_path: Path) -> None:
    """The header states the stacks as the original object holds them and the code page;
    nothing the assembler measures of the new file (its code size) is in it."""
    header = (upstream_out / "kexec_control_page.h").read_text()
    defined = dict(re.findall(r"#define\s+(KEXEC_\w+)\s+(\S+)", header))
    original = load_object(assemble(upstream_tree / "arch/ia64/kernel/relocate_kernel.S",
                                    KernelTree(upstream_tree), tmp_path / "old").object_path)
    for area in ("memory_stack", "register_stack"):
        size = original.symbol(f"{area}_end").value - original.symbol(area).value
        assert int(defined[f"KEXEC_{area.upper()}_SIZE"]) == size == 8192
    assert int(defined["KEXEC_CONTROL_CODE_PAGE_SIZE"]) == 4096
    new = load_object(assemble_new(upstream_out, upstream_tree, tmp_path / "new"))
    code = new.symbol("relocate_new_kernel_end").value - new.symbol("relocate_new_kernel").value
    assert code == 0x330 and str(code) not in header and "0x0330" not in header.lower()
    assert header.startswith("/* SPDX-License-Identifier: GPL-2.0-only */\n")
    assert "generated" not in header.lower() and "do not edit" not in header.lower()


def test_header_compiles_in_c_and_assembly(upstream_out: Path, tmp_path: Path) -> None:
    asm = tmp_path / "asm"
    asm.mkdir()
    (asm / "kexec_control_page.h").write_bytes((upstream_out / "kexec_control_page.h")
                                               .read_bytes())
    probe = tmp_path / "probe.c"
    probe.write_text("#include <asm/kexec_control_page.h>\n"
                     "unsigned long probe(void);\n"
                     "unsigned long probe(void) { return KEXEC_CONTROL_STACKS_SIZE; }\n")
    subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-I", str(tmp_path),
                    str(probe)], check=True)
    out = subprocess.run(["cpp", "-P", "-D__ASSEMBLY__", "-I", str(tmp_path)],
                         input="#include <asm/kexec_control_page.h>\n"
                         "KEXEC_CONTROL_STACKS_SIZE\n",
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(8192 + 8192)"


@pytest.mark.kbuild
def test_verify_passes_on_upstream(upstream_out: Path, upstream_tree: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(upstream_out), "--kernel-tree", str(upstream_tree),
                 "--no-kernel-checks"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "addl r12=8992,r2             -> adds r12=8176,r36" in out
    assert "the input is the tree's own arch/ia64/kernel/relocate_kernel.S" in out
    assert "DEFINE_ARCH_HAS (expected: ARCH_HAS_KIMAGE_ARCH is the hook include/linux/kexec.h " \
        "offers for struct kimage_arch, used by 8 architectures)" in out
    assert "FILE_PATH_CHANGES (expected: a new file; F: arch/ia64/ in MAINTAINERS covers it " \
        "already)" in out
    assert "PASS  the patched C passes the stacks to relocate_new_kernel" in out
    # a check that did not run is said to have not run, and is not counted as passed
    assert "NOT RUN  kernel checks (sparse and gcc, Coccinelle)\n" \
        "  not run: --no-kernel-checks was given\n" in out
    assert out.rstrip().endswith("17 passed, 0 failed, 1 not run")


def test_rewrite_of_its_own_output_changes_nothing(upstream_out: Path, upstream_tree: Path,
                                                   tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["rewrite", str(upstream_out / "relocate_kernel.S"),
                 "--kernel-tree", str(upstream_tree), "-o", str(again), *OPTIONS]) == 0
    for name in ("relocate_kernel.S", "kexec_control_page.h"):
        assert (again / name).read_bytes() == (upstream_out / name).read_bytes()
    assert not (again / "relocate_kernel.patch").exists()


@pytest.mark.usefixtures("pipeline_once")  # diff and diff --check: one computation
def test_diff_check(upstream_out: Path, upstream_tree: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    quick = "--no-kernel-checks"
    assert main(["diff", "--check", "--kernel-tree", str(upstream_tree), quick]) == 1
    assert main(["diff", "--check", str(upstream_out / "relocate_kernel.S"), quick]) == 0
    assert capsys.readouterr().out == ""
    assert main(["diff", "--kernel-tree", str(upstream_tree), quick]) == 0
    out = capsys.readouterr().out
    assert "diff --git a/arch/ia64/kernel/relocate_kernel.S" in out
    assert "+\tmov r8=in5\n" in out


def test_same_input_same_bytes(upstream_out: Path, upstream_tree: Path,
                               shared_runs: SharedRuns) -> None:
    second = shared_runs.rewrite("--kernel-tree", upstream_tree, *OPTIONS, again=True)
    assert second.status == 0, second.stdout
    assert second.out != upstream_out
    for path in upstream_out.iterdir():
        data = (second.out / path.name).read_bytes()
        assert data == path.read_bytes(), path.name
        assert str(upstream_tree).encode() not in data and str(second.out).encode() not in data


def test_2006_shape(shape: Callable[[str], tuple[Path, str]], upstream_tree: Path,
                    tmp_path: Path) -> None:
    fixture_out, out = shape(FIXTURE_2006.name)
    text = (fixture_out / "relocate_kernel.S").read_text()
    order = [text.index(f"GLOBAL_ENTRY({n})") for n in
             ("relocate_new_kernel", "kexec_fake_sal_rendez", "kexec_fake_sal_spin")]
    assert order == sorted(order) and ".fill" not in text
    symbols = nm(assemble_new(fixture_out, upstream_tree, tmp_path))
    start = symbols["relocate_new_kernel"]
    for name in ("relocate_new_kernel", "kexec_fake_sal_rendez", "kexec_fake_sal_spin"):
        assert symbols[name] - start < 4096
    # each other entry point's offset reaches C through a word of the .S, not the header
    header = (fixture_out / "kexec_control_page.h").read_text()
    assert "KEXEC_KEXEC_" not in header and "_OFFSET" not in header
    for name in ("kexec_fake_sal_rendez", "kexec_fake_sal_spin"):
        assert f"extern const unsigned long {name}_offset;\n" in header
        assert f"\t.global {name}_offset\n{name}_offset:\n\tdata8\t{name} - " \
            "relocate_new_kernel\n" in text
    # verify --original FIXTURE_2006 --no-kernel-checks passed (`shape`); it says
    assert "the input is not the tree's own arch/ia64/kernel/relocate_kernel.S" in out
    assert "PASS  the entry point offsets the .S defines are where the map says\n" \
        "  ok   kexec_fake_sal_rendez_offset" in out
    assert "0 failed" in out


@pytest.mark.parametrize(("name", "old", "new", "failing"), [
    ("relocate_kernel.S", "\tmov r8=in5\n", "\tmov r8=in4\n",
     "FAIL  disassembly matches but for the alloc, the rewrites and padding"),
    ("relocate_kernel.S", "relocate_new_kernel_end:\n",
     "memory_stack:\n\t.fill 64, 1, 0\nrelocate_new_kernel_end:\n",
     "FAIL  the control page holds only code"),
    # the immediate comes from the relocation: the disassembly alone cannot see this
    ("relocate_kernel.S", "GET_THIS_PADDR(r2, ia64_cpu_info)",
     "GET_THIS_PADDR(r2, ia64_cpu_info + 8)",
     "FAIL  the relocations in the control page are the same, piece by piece"),
    ("kexec_control_page.h", "#define KEXEC_MEMORY_STACK_SIZE\t\t8192",
     "#define KEXEC_MEMORY_STACK_SIZE\t\t4096",
     "FAIL  the header's stack sizes are the object's"),
    # the same number of lines, so that the hunks still apply: a call with 4 arguments
    ("relocate_kernel.patch",
     "+\t\t     GRANULEROUNDDOWN((unsigned long)pal_addr),\n"
     "+\t\t     image->arch.stacks,\n",
     "+\t\t     GRANULEROUNDDOWN((unsigned long)pal_addr));\n"
     "+\t/* no stacks */ (void)(image->arch.stacks,\n",
     "  FAIL: pass_stacks: the call of relocate_new_kernel passes 4 arguments, not 6"),
    ("relocate_kernel.patch",
     "+#define KEXEC_CONTROL_PAGE_SIZE KEXEC_CONTROL_CODE_PAGE_SIZE\n",
     "+#define KEXEC_CONTROL_PAGE_SIZE (8192 + 8192 + 4096)\n",
     "  FAIL: control_size: KEXEC_CONTROL_PAGE_SIZE is (8192 + 8192 + 4096), not "
     "KEXEC_CONTROL_CODE_PAGE_SIZE"),
])
def test_verify_fails_on_broken_outputs(upstream_out: Path, upstream_tree: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str], name: str, old: str,
                                        new: str, failing: str) -> None:
    broken = broken_copy(upstream_out, tmp_path, name, old, new)
    # these checks need no kernel build: tests/test_kernelcheck.py runs that on broken C
    assert main(["verify", str(broken), "--kernel-tree", str(upstream_tree),
                 "--no-kernel-checks"]) == 1
    out = capsys.readouterr().out
    assert failing in out
    assert "  not run: --no-kernel-checks was given" in out


PATCHED = ["arch/ia64/include/asm/kexec.h", "arch/ia64/include/asm/kexec_control_page.h",
           "arch/ia64/kernel/machine_kexec.c", "arch/ia64/kernel/relocate_kernel.S"]


def test_patch_is_the_whole_change_and_applies_to_the_pristine_tree(
        upstream_out: Path, upstream_tree: Path, tmp_path: Path) -> None:
    patch = upstream_out / "relocate_kernel.patch"
    text = patch.read_text()
    assert text.count("\nFrom 0000000000000000000000000000000000000000 ") == 0  # one mail
    assert "\nSubject: [PATCH] ia64: kexec: take the stacks out of the control page\n" in text
    assert re.findall(r"^diff --git a/(\S+) b/", text, re.M) == PATCHED
    assert " 4 files changed, " in text
    assert re.search(r"^@@ -\d+,\d+ \+\d+,\d+ @@ \.reloc_entry:$", text, re.M)  # nearest label
    assert re.search(r"^@@ .* @@ int machine_kexec_prepare\(struct kimage \*image\)$", text,
                     re.M)  # diff=cpp, as the kernel's .gitattributes says
    for before, after in ((32, 20), (32, 24), (32, 32), (64, 64)):
        assert re.search(rf"KiB +{before} KiB +{after} KiB\n", text)
    work = tmp_path / "tree"
    for path in PATCHED:
        if (upstream_tree / path).is_file():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes((upstream_tree / path).read_bytes())
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=work, check=True)
    for name, path in (("relocate_kernel.S", PATCHED[3]), ("kexec_control_page.h", PATCHED[1])):
        assert (work / path).read_bytes() == (upstream_out / name).read_bytes()
    machine_kexec = (work / PATCHED[2]).read_text()
    assert "kimage_alloc_control_pages(image" in machine_kexec
    # the typedef stays with its one user and gains the two parameters
    assert "\t\t\t\t\tunsigned long memory_stack,\n\t\t\t\t\tunsigned long register_stack) " \
        "__noreturn;\n" in machine_kexec
    assert "typedef" not in (work / PATCHED[0]).read_text()
    result = subprocess.run(["perl", str(upstream_tree / "scripts/checkpatch.pl"), "--no-tree",
                             "--strict", "--show-types", str(patch)],
                            capture_output=True, text=True)
    assert "total: 1 errors, 1 warnings, 0 checks" in result.stdout
    assert sorted(re.findall(r"^(?:WARNING|ERROR|CHECK):(\w+)", result.stdout, re.M)) == \
        ["DEFINE_ARCH_HAS", "FILE_PATH_CHANGES"]


def test_regenerated_file_fails_to_assemble_when_its_code_outgrows_the_page(
        upstream_out: Path, upstream_tree: Path, tmp_path: Path) -> None:
    header = (upstream_out / "kexec_control_page.h").read_text()
    small = re.sub(r"(#define KEXEC_CONTROL_CODE_PAGE_SIZE\s+)4096", r"\g<1>256", header)
    assert small != header
    with pytest.raises(RelgenError, match="relocate_new_kernel outgrew "
                       "KEXEC_CONTROL_CODE_PAGE_SIZE") as caught:
        assemble(upstream_out / "relocate_kernel.S", KernelTree(upstream_tree),
                 tmp_path, extra_headers={HEADER_INCLUDE: small})
    assert caught.value.path == str(upstream_out / "relocate_kernel.S")


def test_from_and_date_set_author_signoff_and_date(upstream_tree: Path, toolchain: None,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["rewrite", "--kernel-tree", str(upstream_tree), "-o", str(out),
                 "--from", "Bob Dev <bob@example.org>", "--date", "2026-11-25 05:00 +0000",
                 "--no-kernel-checks"]) == 0
    text = (out / "relocate_kernel.patch").read_text()
    assert "\nFrom: Bob Dev <bob@example.org>\nDate: Wed, 25 Nov 2026 05:00:00 +0000\n" in text
    assert "\nSigned-off-by: Bob Dev <bob@example.org>\n---\n" in text
    assert "warning" not in capsys.readouterr().err
    assert main(["rewrite", "--kernel-tree", str(upstream_tree), "-o", str(out),
                 "--date", "not a date", "--no-kernel-checks"]) == 2
    assert "git does not take this date" in capsys.readouterr().err


def test_placeholder_author_is_a_warning(upstream_tree: Path, toolchain: None, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    out = tmp_path / "out"
    assert main(["rewrite", "--kernel-tree", str(upstream_tree), "-o", str(out),
                 "--no-kernel-checks"]) == 0
    assert "warning: no --from and no git config" in capsys.readouterr().err
    assert "\nFrom: relgen <relgen@localhost>\n" in (out / "relocate_kernel.patch").read_text()


def test_writes_nothing_on_error(upstream_tree: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text((FIXTURE_2006.read_text()).replace("\talloc r31=ar.pfs,4,0,0,0\n", "", 1))
    out = tmp_path / "out"
    assert main(["rewrite", str(bad), "--kernel-tree", str(upstream_tree), "-o", str(out)]) == 2
    assert "has no alloc instruction" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.S"]


def test_layout_of_an_object_classified_by_its_source(upstream_tree: Path, toolchain: None,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    source = upstream_tree / "arch/ia64/kernel/relocate_kernel.S"
    obj = assemble(source, KernelTree(upstream_tree), tmp_path).object_path
    symbols = nm(obj)
    assert main(["layout", "--object", str(obj), str(source), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = {s["name"]: (s["offset"], s["kind"]) for s in data["symbols"]}
    base = symbols["relocate_new_kernel"]
    assert kinds["memory_stack"] == (symbols["memory_stack"] - base, "data")
    assert kinds["register_stack"] == (symbols["register_stack"] - base, "data")
    assert kinds["relocate_new_kernel"] == (0, "code")
    # without PATH, --data names the areas and the end label defaults to ENTRY_end
    assert main(["layout", "--object", str(obj), "--data", "memory_stack", "--format",
                 "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["symbols"] if s["kind"] == "data"] == ["memory_stack"]
    assert data["region"]["end"] - data["region"]["start"] == \
        symbols["relocate_new_kernel_end"] - base


SHAPES = ("shape_xen_conditional.S", "shape_code_between_stacks.S",
          "shape_code_after_stacks.S", "shape_code_after_stacks_unbranched.S",
          "shape_second_procedure.S")


def rewrite_and_verify(source: Path, out: Path, tree: Path, *options: str) -> str:
    """`relgen rewrite` then `relgen verify` with the same options; both must pass. Returns
    what verify printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["rewrite", str(source), "--kernel-tree", str(tree), "-o", str(out),
                     *OPTIONS, *options]) == 0, printed.getvalue()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["verify", str(out), "--original", str(source), "--kernel-tree", str(tree),
                     "--no-kernel-checks", *options]) == 0, printed.getvalue()
    return printed.getvalue()


@pytest.fixture(scope="module")
def shape(upstream_tree: Path, toolchain: None,
          shared_runs: SharedRuns) -> Callable[[str], tuple[Path, str]]:
    """rewrite_and_verify of a fixture (a shape or the 2006 fixture), without options: its
    output folder and verify's report, made once per session (the rewrite is
    `SharedRuns.rewrite`'s, which test_cli.py and test_execution_checks.py share)."""
    def made(name: str) -> tuple[Path, str]:
        source = FIXTURES / name
        rewritten = shared_runs.rewrite(source, "--kernel-tree", upstream_tree, *OPTIONS)
        assert rewritten.status == 0, rewritten.stdout
        argv = ["verify", str(rewritten.out), "--original", str(source),
                "--kernel-tree", str(upstream_tree), "--no-kernel-checks"]

        def verify(folder: Path) -> dict:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                status = main(argv)
            return {"status": status, "report": printed.getvalue()}

        verified = shared_runs.once(json.dumps(argv), verify)[1]
        assert verified["status"] == 0, verified["report"]
        return rewritten.out, verified["report"]
    return made


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_rewrites_and_verifies(name: str,
                                           shape: Callable[[str], tuple[Path, str]]) -> None:
    out, report = shape(name)
    assert "0 failed" in report and "FAIL" not in report
    text = (out / "relocate_kernel.S").read_text()
    assert ".fill" not in text and "KEXEC_KEXEC_" not in (out / "kexec_control_page.h").read_text()


def test_conditional_shape_in_both_configurations(shape: Callable[[str], tuple[Path, str]],
                                                  tmp_path: Path) -> None:
    out, report = shape("shape_xen_conditional.S")
    for each in ("CONFIG_XEN off", "CONFIG_XEN on"):
        assert f"PASS  the header's stack sizes are the object's [{each}]" in report
        assert f"PASS  disassembly matches but for the alloc, the rewrites and padding [{each}]" \
            in report
    checked = "configurations checked: 2 configurations: CONFIG_XEN each on and off"
    assert checked in report and checked in (out / "layout.txt").read_text()
    patch = " ".join((out / "relocate_kernel.patch").read_text().split())
    assert "at 4, 8, 16 and 64 KiB pages, with CONFIG_XEN off and on, and their disassembly" \
        in patch
    header = (out / "kexec_control_page.h").read_text()
    xen, other = header.split("#if defined(CONFIG_XEN)\n")[1].split("#else")[:2]
    assert re.search(r"KEXEC_MEMORY_STACK_SIZE\s+4096\n", xen)
    assert re.search(r"KEXEC_MEMORY_STACK_SIZE\s+8192\n", other)
    include = tmp_path / "include" / "asm"
    include.mkdir(parents=True)
    (include / "kexec_control_page.h").write_text(header)
    for flags in ([], ["-DCONFIG_XEN"]):
        for mode in (["-fsyntax-only", "-x", "c"],
                     ["-E", "-D__ASSEMBLY__", "-x", "assembler-with-cpp"]):
            subprocess.run(["gcc", *mode, "-Wall", "-Werror", *flags, "-I",
                            str(include.parent), "-"],
                           input="#include <asm/kexec_control_page.h>\n", text=True,
                           check=True, capture_output=True)


def test_a_switch_given_with_d_is_not_varied(upstream_tree: Path, toolchain: None,
                                              tmp_path: Path) -> None:
    source, out = FIXTURES / "shape_xen_conditional.S", tmp_path / "out"
    report = rewrite_and_verify(source, out, upstream_tree, "-D", "CONFIG_XEN")
    assert "one configuration (-DCONFIG_XEN)" in report
    header = (out / "kexec_control_page.h").read_text()
    assert "#if defined(CONFIG_XEN)" not in header
    assert re.search(r"KEXEC_MEMORY_STACK_SIZE\s+4096\n", header)


def test_diff_keeps_the_code_label_between_the_stacks(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert main(["diff", str(FIXTURES / "shape_code_between_stacks.S")]) == 0
    diff = capsys.readouterr().out
    assert "-.helper2:" not in diff and "-\tmov r8=r0" not in diff


def test_verify_fails_when_a_branch_no_longer_reaches_its_code(
        upstream_tree: Path, shape: Callable[[str], tuple[Path, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = FIXTURES / "shape_code_after_stacks.S"
    out, _ = shape(source.name)
    broken = broken_copy(out, tmp_path, "relocate_kernel.S", "b0=.helper3\n",
                         "b0=.reloc_entry\n")
    assert main(["verify", str(broken), "--original", str(source),
                 "--kernel-tree", str(upstream_tree)]) == 1
    report = capsys.readouterr().out
    assert "no longer branches to the same instruction" in report


def test_two_switches_and_an_elif_share_conditions_by_numbers(
        upstream_tree: Path, toolchain: None, tmp_path: Path) -> None:
    source = tmp_path / "two_switches.S"
    source.write_text((FIXTURES / "shape_xen_conditional.S").read_text().replace(
        "memory_stack:\n#ifdef CONFIG_XEN\n\t.fill 4096, 1, 0\n#else\n\t.fill 8192, 1, 0\n",
        "memory_stack:\n#if defined(CONFIG_XEN)\n\t.fill 4096, 1, 0\n"
        "#elif defined(CONFIG_BIG) /* big */\n\t.fill 8192, 1, 0\n#else\n\t.fill 2048, 1, 0\n"))
    report = rewrite_and_verify(source, tmp_path / "out", upstream_tree)
    assert "4 configurations: CONFIG_XEN, CONFIG_BIG each on and off" in report
    header = (tmp_path / "out" / "kexec_control_page.h").read_text()
    sizes = re.findall(r"^#(if|elif|else) ?(.*)\n(?:.*\n)*?#define KEXEC_MEMORY_STACK_SIZE\s+(\d+)",
                       header.split("#define _ASM_IA64_KEXEC_CONTROL_PAGE_H")[1], re.M)
    assert sizes == [
        ("if", "(defined(CONFIG_XEN) && defined(CONFIG_BIG)) || "
         "(defined(CONFIG_XEN) && !defined(CONFIG_BIG))", "4096"),
        ("elif", "!defined(CONFIG_XEN) && defined(CONFIG_BIG)", "8192"),
        ("else", "", "2048")]
