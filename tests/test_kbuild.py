"""kbuild: page sizes, finding the tree and the tools, assembling with the real toolchain,
diagnostics positioned at the original source, and the parsed disassembly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES
from relgen import tools
from relgen.errors import RelgenError, ToolError
from relgen.names import PAGE_SIZES
from relgen.toolchain.assemble import Assembled, assemble
from relgen.toolchain.objdump import disassemble, disassemble_instructions
from relgen.toolchain.tree import KernelTree, find_kernel_tree, parse_page_sizes

STANDINS = ("include/generated/autoconf.h", "include/generated/asm-offsets.h")


def nm_symbols(object_path: Path) -> dict[str, int]:
    """Defined symbols and their values, as ia64-linux-gnu-nm prints them."""
    output = subprocess.run(
        ["ia64-linux-gnu-nm", str(object_path)], capture_output=True, text=True, check=True
    ).stdout
    symbols = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 3:
            symbols[fields[2]] = int(fields[0], 16)
    return symbols


def marked_line(path: Path) -> tuple[int, str]:
    """The 1-based number and text of the fixture line marked `relgen-test:`."""
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if "relgen-test:" in text:
            return number, text
    raise AssertionError(f"{path} has no relgen-test marker")


@pytest.fixture(scope="module")
def upstream_objects(
    upstream_tree: Path, toolchain: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, Assembled]:
    tree = KernelTree(upstream_tree)
    workdir = tmp_path_factory.mktemp("kbuild-upstream")
    return {
        size: assemble(tree.relocate_kernel, tree, workdir, page_size=size) for size in PAGE_SIZES
    }


@pytest.fixture(scope="module")
def tree(upstream_tree: Path) -> KernelTree:
    return KernelTree(upstream_tree)


# ---- page sizes ------------------------------------------------------------------------------


def test_page_sizes_in_kib_and_bytes() -> None:
    assert parse_page_sizes("4K,16K") == (4096, 16384)
    assert parse_page_sizes("64k, 4096,8K") == (4096, 8192, 65536)
    assert parse_page_sizes("16K,16384") == (16384,)
    assert parse_page_sizes("4KiB") == (4096,)


@pytest.mark.parametrize("text", ["3K", "", "big", "16K,", "32768", "-4K"])
def test_bad_page_sizes_are_errors(text: str) -> None:
    with pytest.raises(RelgenError, match="page size"):
        parse_page_sizes(text)


# ---- the tree --------------------------------------------------------------------------------


def test_explicit_tree_without_arch_ia64_is_named(tmp_path: Path) -> None:
    with pytest.raises(RelgenError) as caught:
        find_kernel_tree(tmp_path)
    assert f"{tmp_path} is not a Linux tree with arch/ia64" in caught.value.message


def test_tree_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "arch" / "ia64").mkdir(parents=True)
    monkeypatch.setenv("RELGEN_KERNEL_TREE", str(tmp_path))
    assert find_kernel_tree().root == tmp_path.resolve()
    monkeypatch.setenv("RELGEN_KERNEL_TREE", str(tmp_path / "nowhere"))
    with pytest.raises(RelgenError, match="RELGEN_KERNEL_TREE"):
        find_kernel_tree()


def test_cached_tree_found_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELGEN_KERNEL_TREE", raising=False)
    cached = tmp_path / ".cache" / "linux-source-6.1"
    (cached / "arch" / "ia64").mkdir(parents=True)
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_kernel_tree(start=tmp_path / "a" / "b").root == cached.resolve()


def test_no_tree_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELGEN_KERNEL_TREE", raising=False)
    with pytest.raises(RelgenError) as caught:
        find_kernel_tree(start=tmp_path)
    assert "make setup" in caught.value.message
    assert "--kernel-tree" in caught.value.message


def test_upstream_tree_paths(tree: KernelTree) -> None:
    assert tree.relocate_kernel.is_file()
    assert tree.relocate_kernel.relative_to(tree.root).as_posix() == (
        "arch/ia64/kernel/relocate_kernel.S"
    )


def test_a_built_tree_keeps_its_own_page_size(tmp_path: Path, toolchain: None) -> None:
    generated = tmp_path / "include" / "generated"
    generated.mkdir(parents=True)
    (tmp_path / "arch" / "ia64" / "include" / "asm").mkdir(parents=True)
    (tmp_path / "arch" / "ia64" / "include" / "asm" / "kexec.h").write_text(
        "#define KEXEC_CONTROL_PAGE_SIZE (8192 + 8192 + 4096)\n")
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    (generated / "autoconf.h").write_text("#define CONFIG_IA64_PAGE_SIZE_64KB 1\n")
    built = find_kernel_tree(tmp_path)
    assert built.has_build and built.configured_page_size == 65536
    with pytest.raises(RelgenError, match="configured for 64 KiB pages"):
        assemble(FIXTURES / "layout_page_crossing.S", built, tmp_path / "work", page_size=4096)


# ---- the tools -------------------------------------------------------------------------------


def test_missing_assembler_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No real tree needed: the tools are looked for before anything is read.
    (tmp_path / "tree" / "arch" / "ia64").mkdir(parents=True)
    tree = find_kernel_tree(tmp_path / "tree")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    expected = (
        "ia64-linux-gnu-as not found on PATH; install the Debian package binutils-ia64-linux-gnu"
    )
    with pytest.raises(ToolError) as caught:
        tools.find("ia64-linux-gnu-as")
    assert caught.value.message == expected
    with pytest.raises(ToolError) as caught:
        assemble(tree.relocate_kernel, tree, tmp_path / "work")
    assert caught.value.message == expected
    # PATH is read at call time: put the real one back and the tool is found again.
    monkeypatch.undo()
    if shutil.which("ia64-linux-gnu-as"):
        assert tools.find("ia64-linux-gnu-as").endswith("ia64-linux-gnu-as")


def test_upstream_assembles_at_every_page_size(
    upstream_objects: dict[int, Assembled], tree: KernelTree
) -> None:
    for size, assembled in upstream_objects.items():
        assert assembled.page_size == size
        assert assembled.object_path.is_file()
        assert assembled.preprocessed_path.is_file()
        assert assembled.standins == (() if tree.has_build else STANDINS)
        assert assembled.warnings == ()


def test_symbol_offsets_do_not_depend_on_the_page_size(
    upstream_objects: dict[int, Assembled],
) -> None:
    tables = {size: nm_symbols(a.object_path) for size, a in upstream_objects.items()}
    first = tables[PAGE_SIZES[0]]
    assert "relocate_new_kernel" in first and "memory_stack" in first
    for table in tables.values():
        assert table == first


def test_the_page_size_reaches_the_code(
    upstream_objects: dict[int, Assembled], tree: KernelTree
) -> None:
    if tree.has_build:
        pytest.skip("a built tree has its own page size")
    # `movl r14=PAGE_SIZE/8 - 1` in the copy loop: the immediate follows the stand-in config.
    for size, assembled in upstream_objects.items():
        texts = [i.text for i in disassemble_instructions(assembled.object_path)]
        assert f"movl r14={size // 8 - 1:#x}" in texts


def test_no_machine_path_in_objects_or_preprocessed_text(
    upstream_objects: dict[int, Assembled], tree: KernelTree
) -> None:
    for assembled in upstream_objects.values():
        workdir = str(assembled.object_path.parent).encode()
        for produced in (assembled.object_path, assembled.preprocessed_path):
            data = produced.read_bytes()
            assert workdir not in data, produced
            assert str(tree.root).encode() not in data, produced


def test_assembler_error_at_the_fixture_line(
    tree: KernelTree, toolchain: None, tmp_path: Path
) -> None:
    fixture = FIXTURES / "layout_assembler_error.S"
    line, text = marked_line(fixture)
    with pytest.raises(RelgenError) as caught:
        assemble(fixture, tree, tmp_path)
    error = caught.value
    assert (error.path, error.line, error.source_line) == (str(fixture), line, text)
    assert "14-bit integer" in error.message
    assert error.render().startswith(f"{fixture}:{line}: error: ")


def test_preprocessor_error_at_the_fixture_line_and_column(
    tree: KernelTree, toolchain: None, tmp_path: Path
) -> None:
    fixture = FIXTURES / "layout_preprocessor_error.S"
    line, text = marked_line(fixture)
    with pytest.raises(RelgenError) as caught:
        assemble(fixture, tree, tmp_path)
    error = caught.value
    assert (error.path, error.line, error.source_line) == (str(fixture), line, text)
    assert error.column == text.index("<") + 1
    assert "relgen_no_such_header.h" in error.message


def test_dependency_violations_are_warnings_or_errors(
    tree: KernelTree, toolchain: None, tmp_path: Path
) -> None:
    fixture = FIXTURES / "layout_dependency_violation.S"
    line, text = marked_line(fixture)
    assembled = assemble(fixture, tree, tmp_path)
    assert any(
        w.startswith(f"{fixture}:{line}: warning: ") and "RAW dependency" in w
        for w in assembled.warnings
    )
    with pytest.raises(RelgenError) as caught:
        assemble(fixture, tree, tmp_path, fatal_warnings=True)
    assert (caught.value.line, caught.value.source_line) == (line, text)


def test_extra_headers_come_first(tree: KernelTree, toolchain: None, tmp_path: Path) -> None:
    fixture = FIXTURES / "layout_extra_header.S"
    header = "asm/relgen_layout_test.h"
    user_dir = tmp_path / "user-include"
    (user_dir / "asm").mkdir(parents=True)
    (user_dir / header).write_text("#define RELGEN_TEST_AREA_SIZE 2048\n")

    from_user_dir = assemble(fixture, tree, tmp_path / "a", include_dirs=[user_dir])
    from_both = assemble(
        fixture,
        tree,
        tmp_path / "b",
        include_dirs=[user_dir],
        extra_headers={header: "#define RELGEN_TEST_AREA_SIZE 4096\n"},
    )
    for assembled, size in ((from_user_dir, 2048), (from_both, 4096)):
        symbols = nm_symbols(assembled.object_path)
        assert symbols["sized_end"] - symbols["sized_area"] == size
    assert str(tmp_path).encode() not in from_both.preprocessed_path.read_bytes()
    # Again in the same workdir without the extra header: the one written before is gone.
    again = assemble(fixture, tree, tmp_path / "b", include_dirs=[user_dir])
    symbols = nm_symbols(again.object_path)
    assert symbols["sized_end"] - symbols["sized_area"] == 2048


def test_extra_header_names_must_stay_inside(
    tree: KernelTree, toolchain: None, tmp_path: Path
) -> None:
    with pytest.raises(RelgenError, match="relative include path"):
        assemble(
            FIXTURES / "layout_extra_header.S",
            tree,
            tmp_path,
            extra_headers={"../escape.h": ""},
        )


# ---- disassembly -----------------------------------------------------------------------------


def test_disassembly_names_no_folder(upstream_objects: dict[int, Assembled]) -> None:
    assembled = upstream_objects[16384]
    text = disassemble(assembled.object_path)
    assert f"{assembled.object_path.name}:     file format elf64-ia64-little" in text
    assert str(assembled.object_path.parent) not in text


def test_instructions_of_upstream(upstream_objects: dict[int, Assembled]) -> None:
    object_path = upstream_objects[16384].object_path
    instructions = disassemble_instructions(object_path)
    first = instructions[0]
    assert (first.symbol, first.symbol_offset, first.slot, first.template) == (
        "relocate_new_kernel",
        0,
        0,
        "MII",
    )
    assert first.text == "alloc r31=ar.pfs,4,4,0"
    assert first.unit == "M"
    # Every slot line objdump printed is one instruction (the second line of an MLX long
    # immediate carries no text of its own).
    raw = disassemble(object_path)
    slot_lines = [line for line in raw.splitlines() if line.count("\t") >= 2 and ":\t" in line]
    assert len(instructions) == len(slot_lines)
    movl = next(i for i in instructions if i.text.startswith("movl "))
    assert (movl.template, movl.slot, movl.unit) == ("MLX", 1, "L")
    assert {i.symbol for i in instructions} >= {"relocate_new_kernel", "ia64_dump_cpu_regs"}
    dump = [i for i in instructions if i.symbol == "ia64_dump_cpu_regs"]
    assert dump[0].symbol_offset == 0
    assert dump[0].bundle == nm_symbols(object_path)["ia64_dump_cpu_regs"]
    assert all(i.bundle % 16 == 0 and i.address == i.bundle + i.slot for i in instructions)
    branch = next(i for i in instructions if i.text.startswith("(p07) br.cond"))
    assert branch.comparable.startswith("(p07) br.cond.dpnt.few <relocate_new_kernel+0x")
    assert any(i.stop for i in instructions) and not any(";;" in i.text for i in instructions)
