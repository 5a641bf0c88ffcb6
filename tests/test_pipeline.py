"""relgen rewrite / verify / diff end to end, with the real assembler on real files."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES
from relgen import kbuild
from relgen.cli import main
from relgen.elf import load_object
from relgen.outputs import MARKER

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"


def nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["ia64-linux-gnu-nm", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (line.split() for line in out.splitlines())
            if len(parts) == 3}


@pytest.fixture(scope="module")
def upstream_out(upstream_tree: Path, toolchain: None,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("upstream") / "out"
    assert main(["rewrite", "--kernel-tree", str(upstream_tree), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def fixture_out(upstream_tree: Path, toolchain: None,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shape2006") / "out"
    assert main(["rewrite", str(FIXTURE_2006), "--kernel-tree", str(upstream_tree),
                 "-o", str(out)]) == 0
    return out


def assemble_new(out: Path, tree: Path, work: Path, page_size: int = 16384) -> Path:
    header = (out / "kexec_control_page.h").read_text()
    assembled = kbuild.assemble(out / "relocate_kernel.S", kbuild.KernelTree(tree), work,
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
    for page_size in kbuild.PAGE_SIZES:
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
    ]


def test_upstream_disassembly_differs_only_where_rewritten(
        upstream_out: Path, upstream_tree: Path, tmp_path: Path) -> None:
    original = kbuild.assemble(upstream_tree / "arch/ia64/kernel/relocate_kernel.S",
                               kbuild.KernelTree(upstream_tree), tmp_path / "old").object_path
    new = assemble_new(upstream_out, upstream_tree, tmp_path / "new")

    def slots(path: Path) -> list[str]:
        return [i.comparable for i in kbuild.disassemble_instructions(path)
                if i.symbol == "relocate_new_kernel"]

    old_slots, new_slots = slots(original), slots(new)
    differing = [(a, b) for a, b in zip(old_slots, new_slots, strict=False) if a != b]
    assert differing == [("alloc r31=ar.pfs,4,4,0", "alloc r31=ar.pfs,6,6,0"),
                         ("addl r12=8992,r2", "adds r12=8176,r36"),
                         ("addl r8=9008,r2", "mov r8=r37")]
    padding = old_slots[len(new_slots):]
    assert padding and all(s.startswith("nop") for s in padding)


def test_header_numbers_come_from_the_object(upstream_out: Path, upstream_tree: Path,
                                             tmp_path: Path) -> None:
    header = (upstream_out / "kexec_control_page.h").read_text()
    defined = dict(re.findall(r"#define\s+(KEXEC_\w+)\s+(\S+)", header))
    obj = load_object(assemble_new(upstream_out, upstream_tree, tmp_path))
    values = {s.name: s.value for s in obj.symbols}
    assert int(defined["KEXEC_CONTROL_CODE_SIZE"], 0) == \
        values["relocate_new_kernel_end"] - values["relocate_new_kernel"]
    assert int(defined["KEXEC_RELOCATE_NEW_KERNEL_OFFSET"], 0) == 0
    assert int(defined["KEXEC_MEMORY_STACK_SIZE"], 0) == 8192
    assert int(defined["KEXEC_REGISTER_STACK_SIZE"], 0) == 8192
    assert header.startswith("/* SPDX-License-Identifier: GPL-2.0-only */\n")
    assert "Generated by relgen" in header and "Do not edit" in header


def test_header_compiles_in_c_and_assembly(upstream_out: Path, tmp_path: Path) -> None:
    asm = tmp_path / "asm"
    asm.mkdir()
    (asm / "kexec_control_page.h").write_bytes((upstream_out / "kexec_control_page.h")
                                               .read_bytes())
    probe = tmp_path / "probe.c"
    probe.write_text("#include <asm/kexec_control_page.h>\n"
                     "static relocate_new_kernel_t rnk;\n"
                     "void *probe(void) { return (void *)rnk; }\n")
    subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-I", str(tmp_path),
                    str(probe)], check=True)
    out = subprocess.run(["cpp", "-D__ASSEMBLY__", "-I", str(tmp_path)],
                         input="#include <asm/kexec_control_page.h>\nKEXEC_CONTROL_CODE_SIZE\n",
                         capture_output=True, text=True, check=True).stdout
    assert "typedef" not in out and out.rstrip().endswith("0x0330")


def test_verify_passes_on_upstream(upstream_out: Path, upstream_tree: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(upstream_out), "--kernel-tree", str(upstream_tree)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "addl r12=8992,r2             -> adds r12=8176,r36" in out
    # one of them: the kernel checks say why they did not run (no C change yet)
    assert out.rstrip().endswith("11 passed, 0 failed")
    assert "not run: the output has no C change" in out


def test_rewrite_of_its_own_output_changes_nothing(upstream_out: Path, upstream_tree: Path,
                                                   tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["rewrite", str(upstream_out / "relocate_kernel.S"),
                 "--kernel-tree", str(upstream_tree), "-o", str(again)]) == 0
    for name in ("relocate_kernel.S", "kexec_control_page.h"):
        assert (again / name).read_bytes() == (upstream_out / name).read_bytes()
    assert not (again / "relocate_kernel.patch").exists()


def test_diff_check(upstream_out: Path, upstream_tree: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--check", "--kernel-tree", str(upstream_tree)]) == 1
    assert main(["diff", "--check", str(upstream_out / "relocate_kernel.S")]) == 0
    assert capsys.readouterr().out == ""
    assert main(["diff", "--kernel-tree", str(upstream_tree)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("diff --git a/arch/ia64/kernel/relocate_kernel.S")
    assert "+\tmov r8=in5\n" in out


def test_same_input_same_bytes(upstream_out: Path, upstream_tree: Path, tmp_path: Path) -> None:
    second = tmp_path / "second"
    assert main(["rewrite", "--kernel-tree", str(upstream_tree), "-o", str(second)]) == 0
    for path in upstream_out.iterdir():
        data = (second / path.name).read_bytes()
        assert data == path.read_bytes(), path.name
        assert str(upstream_tree).encode() not in data and str(tmp_path).encode() not in data


def test_2006_shape(fixture_out: Path, upstream_tree: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    text = (fixture_out / "relocate_kernel.S").read_text()
    order = [text.index(f"GLOBAL_ENTRY({n})") for n in
             ("relocate_new_kernel", "kexec_fake_sal_rendez", "kexec_fake_sal_spin")]
    assert order == sorted(order) and ".fill" not in text
    symbols = nm(assemble_new(fixture_out, upstream_tree, tmp_path))
    start = symbols["relocate_new_kernel"]
    for name in ("relocate_new_kernel", "kexec_fake_sal_rendez", "kexec_fake_sal_spin"):
        assert symbols[name] - start < 4096
    header = (fixture_out / "kexec_control_page.h").read_text()
    for name in ("RELOCATE_NEW_KERNEL", "KEXEC_FAKE_SAL_RENDEZ", "KEXEC_FAKE_SAL_SPIN"):
        symbol = name.lower()
        match = re.search(rf"#define KEXEC_{name}_OFFSET\s+(\S+)", header)
        assert match and int(match.group(1), 0) == symbols[symbol] - start
    assert main(["verify", str(fixture_out), "--original", str(FIXTURE_2006),
                 "--kernel-tree", str(upstream_tree)]) == 0
    assert "0 failed" in capsys.readouterr().out


def broken_copy(out: Path, tmp_path: Path, name: str, old: str, new: str) -> Path:
    copy = tmp_path / "broken"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / name
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize(("name", "old", "new", "failing"), [
    ("relocate_kernel.S", "\tmov r8=in5\n", "\tmov r8=in4\n",
     "FAIL  disassembly matches but for the alloc, the rewrites and padding"),
    ("relocate_kernel.S", "relocate_new_kernel_end:\n",
     "memory_stack:\n\t.fill 64, 1, 0\nrelocate_new_kernel_end:\n",
     "FAIL  the control page holds only code"),
    ("kexec_control_page.h", "#define KEXEC_CONTROL_CODE_SIZE\t\t\t0x0330",
     "#define KEXEC_CONTROL_CODE_SIZE\t\t\t0x0320",
     "FAIL  the header's numbers equal the object's"),
])
def test_verify_fails_on_broken_outputs(upstream_out: Path, upstream_tree: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str], name: str, old: str,
                                        new: str, failing: str) -> None:
    broken = broken_copy(upstream_out, tmp_path, name, old, new)
    assert main(["verify", str(broken), "--kernel-tree", str(upstream_tree)]) == 1
    out = capsys.readouterr().out
    assert failing in out


def test_patch_applies_and_passes_checkpatch(upstream_out: Path, upstream_tree: Path,
                                             tmp_path: Path) -> None:
    patch = upstream_out / "relocate_kernel.patch"
    text = patch.read_text()
    assert "Subject: [PATCH] ia64/kexec:" in text
    assert "must now" in text and "kimage_alloc_control_pages" in text
    assert "@@ -38,8 +39,8 @@ .reloc_entry:" in text  # hunk headers name the nearest label
    work = tmp_path / "tree"
    target = work / "arch/ia64/kernel/relocate_kernel.S"
    target.parent.mkdir(parents=True)
    target.write_bytes((upstream_tree / "arch/ia64/kernel/relocate_kernel.S").read_bytes())
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=work, check=True)
    assert target.read_bytes() == (upstream_out / "relocate_kernel.S").read_bytes()
    result = subprocess.run(["perl", str(upstream_tree / "scripts/checkpatch.pl"), "--no-tree",
                             "--show-types", str(patch)], capture_output=True, text=True)
    assert "total: 0 errors, 1 warnings" in result.stdout
    assert re.findall(r"^(?:WARNING|ERROR|CHECK):(\w+)", result.stdout, re.M) == \
        ["FILE_PATH_CHANGES"]


def test_refuses_foreign_folder_and_writes_nothing_on_error(upstream_tree: Path,
                                                           tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    assert main(["rewrite", "--kernel-tree", str(upstream_tree), "-o", str(foreign)]) == 2
    assert "not written by relgen" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    bad = tmp_path / "bad.S"
    bad.write_text((FIXTURE_2006.read_text()).replace("\talloc r31=ar.pfs,4,0,0,0\n", "", 1))
    out = tmp_path / "out"
    assert main(["rewrite", str(bad), "--kernel-tree", str(upstream_tree), "-o", str(out)]) == 2
    assert "has no alloc instruction" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.S", "foreign"]


def test_layout_of_an_object_classified_by_its_source(upstream_tree: Path, toolchain: None,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    source = upstream_tree / "arch/ia64/kernel/relocate_kernel.S"
    obj = kbuild.assemble(source, kbuild.KernelTree(upstream_tree), tmp_path).object_path
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
