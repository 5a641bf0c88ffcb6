"""elf: what load_object reads from real ia64 objects, checked against binutils' own readers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES
from relgen.errors import RelgenError
from relgen.toolchain.assemble import assemble
from relgen.toolchain.elf import IA64_RELOCATION_NAMES, ObjectFile, load_object, relocation_name
from relgen.toolchain.tree import KernelTree


def run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def upstream_object(
    upstream_tree: Path, toolchain: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    tree = KernelTree(upstream_tree)
    workdir = tmp_path_factory.mktemp("elf-upstream")
    return assemble(tree.relocate_kernel, tree, workdir).object_path


@pytest.fixture(scope="module")
def relocations_object(
    upstream_tree: Path, toolchain: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    workdir = tmp_path_factory.mktemp("elf-relocations")
    fixture = FIXTURES / "layout_relocations.S"
    return assemble(fixture, KernelTree(upstream_tree), workdir).object_path


def nm_table(object_path: Path) -> tuple[dict[str, tuple[int, str]], set[str]]:
    """Defined symbols (value, nm's letter) and undefined names, from ia64-linux-gnu-nm."""
    defined: dict[str, tuple[int, str]] = {}
    undefined: set[str] = set()
    for line in run("ia64-linux-gnu-nm", str(object_path)).splitlines():
        fields = line.split()
        if len(fields) == 3:
            defined[fields[2]] = (int(fields[0], 16), fields[1])
        elif fields[:1] == ["U"]:
            undefined.add(fields[1])
    return defined, undefined


def readelf_relocations(object_path: Path) -> list[tuple[str, int, str, str]]:
    """(target section, offset, type, symbol) for every RELA entry, from readelf -rW.

    readelf names the target by the relocation section (.rela.text -> .text)."""
    found = []
    target = ""
    for line in run("ia64-linux-gnu-readelf", "-rW", str(object_path)).splitlines():
        if header := re.match(r"Relocation section '\.rela(\S+)'", line):
            target = header.group(1)
            continue
        fields = line.split()
        if len(fields) >= 5 and fields[2].startswith("R_IA64_"):
            found.append((target, int(fields[0], 16), fields[2], fields[4]))
    return found


def test_symbols_equal_nm(upstream_object: Path) -> None:
    obj = load_object(upstream_object)
    defined, undefined = nm_table(upstream_object)
    # nm without -a leaves out section and file symbols.
    ours = {s.name: s for s in obj.symbols if s.type not in ("SECTION", "FILE")}
    assert {name for name, s in ours.items() if s.is_defined} == set(defined)
    assert {name for name, s in ours.items() if not s.is_defined} == undefined
    for name, (value, letter) in defined.items():
        symbol = ours[name]
        assert symbol.value == value, name
        # nm's letter: upper case for global, t/T for .text.
        assert (symbol.binding == "LOCAL") == letter.islower(), name
        assert (symbol.section == ".text") == (letter.lower() == "t"), name


def test_symbol_sizes_and_types_equal_readelf(upstream_object: Path) -> None:
    obj = load_object(upstream_object)
    ours = {s.name: (s.size, s.type, s.binding) for s in obj.symbols
            if s.type not in ("SECTION", "FILE")}
    theirs = {}
    for line in run("ia64-linux-gnu-readelf", "-sW", str(upstream_object)).splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[0][:-1].isdigit() and fields[3] not in ("SECTION", "FILE"):
            theirs[fields[7]] = (int(fields[2]), fields[3], fields[4])
    # every named symbol of both, not only those a filter let through
    assert "relocate_new_kernel" in theirs and ours == theirs


def test_sections_equal_readelf(upstream_object: Path) -> None:
    obj = load_object(upstream_object)
    expected = {}
    header = re.compile(
        r"\s*\[\s*\d+\]\s+(?P<name>\S+)\s+(?P<type>[A-Z_]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+"
        r"(?P<size>[0-9a-f]+)\s+[0-9a-f]+\s+(?P<flags>[A-Za-z]*)\s+\d+\s+\d+\s+\d+$"
    )
    for line in run("ia64-linux-gnu-readelf", "-SW", str(upstream_object)).splitlines():
        if match := header.match(line):
            expected[match["name"]] = (match["type"], int(match["size"], 16), match["flags"])
    assert {".text", ".rela.text", ".symtab"} <= set(expected)
    ours = {s.name: (s.type, s.size, s.flag_letters) for s in obj.sections}
    assert ours == expected
    assert obj.section(".text").is_executable


def test_section_data_is_the_code(upstream_object: Path) -> None:
    obj = load_object(upstream_object)
    text = obj.section_data(".text")
    assert len(text) == obj.section(".text").size
    # The first bundle's bytes, as objdump shows them in two lines of 6 and one of 4.
    lines = run("ia64-linux-gnu-objdump", "-d", str(upstream_object)).splitlines()
    slot_lines = [line for line in lines if re.match(r"\s+[0-9a-f]+:\t", line)][:3]
    first_bundle = bytes.fromhex("".join(line.split("\t")[1] for line in slot_lines))
    assert text[:16] == first_bundle
    assert obj.section_data(".bss") == bytes(obj.section(".bss").size)
    with pytest.raises(RelgenError, match="no section"):
        obj.section_data(".nothing")


def test_upstream_relocation_equals_readelf(upstream_object: Path) -> None:
    obj = load_object(upstream_object)
    ours = [(r.section, r.offset, r.type, r.symbol) for r in obj.relocations]
    assert ours == readelf_relocations(upstream_object)
    assert [(r.type, r.symbol) for r in obj.text_relocations] == [("R_IA64_IMM22", "ia64_cpu_info")]


def test_relocation_names_equal_readelf(relocations_object: Path) -> None:
    obj = load_object(relocations_object)
    ours = [(r.section, r.offset, r.type, r.symbol) for r in obj.relocations]
    assert ours == readelf_relocations(relocations_object)
    # The fixture's point: many types, each named by our table and not by the fallback.
    assert len({r.type for r in obj.relocations}) >= 15
    assert all(r.type in IA64_RELOCATION_NAMES.values() for r in obj.relocations)
    # A reference to a local label goes through the section symbol, named like readelf does.
    assert any(r.symbol == ".text" for r in obj.relocations)


def test_relocation_table_numbers() -> None:
    assert relocation_name(0x22) == "R_IA64_IMM22"
    assert relocation_name(0x86) == "R_IA64_LTOFF22X"
    assert relocation_name(0x4B) == "R_IA64_PCREL21F"
    assert relocation_name(0xFE) == "R_IA64_0xfe"


def test_not_an_object(tmp_path: Path) -> None:
    text = tmp_path / "not-elf.o"
    text.write_text("hello\n")
    with pytest.raises(RelgenError, match="not an ELF object"):
        load_object(text)
    with pytest.raises(RelgenError, match="cannot read"):
        load_object(tmp_path / "missing.o")


def test_an_object_of_another_machine() -> None:
    # Any ELF program of this host will do; it is not an IA-64 one.
    host_program = shutil.which("true")
    if host_program is None or Path(host_program).read_bytes()[:4] != b"\x7fELF":
        pytest.skip("no ELF program of the host at hand")
    with pytest.raises(RelgenError, match="not IA-64"):
        load_object(Path(host_program))


def test_objects_are_values(upstream_object: Path) -> None:
    first, second = load_object(upstream_object), load_object(upstream_object)
    assert isinstance(first, ObjectFile)
    assert first == second and hash(first) == hash(second)
    assert first.symbol("relocate_new_kernel").binding == "GLOBAL"
    assert first.has_symbol("memory_stack") and not first.has_symbol("nothing_here")
