"""Reading assembled ia64 objects: symbols, sections, relocations and section contents.

This is the only module that imports pyelftools; everything else sees the plain frozen
dataclasses defined here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import Section as ElfSection
from elftools.elf.sections import Symbol as ElfSymbol
from elftools.elf.sections import SymbolTableSection

from relgen.errors import RelgenError

# pyelftools decodes no IA-64 relocation types, so here is our own table. The numbers are those
# of the IA-64 psABI, as Linux lists them in arch/ia64/include/asm/elf.h and binutils in
# include/elf/ia64.h.
IA64_RELOCATION_NAMES: dict[int, str] = {
    0x00: "R_IA64_NONE",
    0x21: "R_IA64_IMM14",
    0x22: "R_IA64_IMM22",
    0x23: "R_IA64_IMM64",
    0x24: "R_IA64_DIR32MSB",
    0x25: "R_IA64_DIR32LSB",
    0x26: "R_IA64_DIR64MSB",
    0x27: "R_IA64_DIR64LSB",
    0x2A: "R_IA64_GPREL22",
    0x2B: "R_IA64_GPREL64I",
    0x2C: "R_IA64_GPREL32MSB",
    0x2D: "R_IA64_GPREL32LSB",
    0x2E: "R_IA64_GPREL64MSB",
    0x2F: "R_IA64_GPREL64LSB",
    0x32: "R_IA64_LTOFF22",
    0x33: "R_IA64_LTOFF64I",
    0x3A: "R_IA64_PLTOFF22",
    0x3B: "R_IA64_PLTOFF64I",
    0x3E: "R_IA64_PLTOFF64MSB",
    0x3F: "R_IA64_PLTOFF64LSB",
    0x43: "R_IA64_FPTR64I",
    0x44: "R_IA64_FPTR32MSB",
    0x45: "R_IA64_FPTR32LSB",
    0x46: "R_IA64_FPTR64MSB",
    0x47: "R_IA64_FPTR64LSB",
    0x48: "R_IA64_PCREL60B",
    0x49: "R_IA64_PCREL21B",
    0x4A: "R_IA64_PCREL21M",
    0x4B: "R_IA64_PCREL21F",
    0x4C: "R_IA64_PCREL32MSB",
    0x4D: "R_IA64_PCREL32LSB",
    0x4E: "R_IA64_PCREL64MSB",
    0x4F: "R_IA64_PCREL64LSB",
    0x52: "R_IA64_LTOFF_FPTR22",
    0x53: "R_IA64_LTOFF_FPTR64I",
    0x54: "R_IA64_LTOFF_FPTR32MSB",
    0x55: "R_IA64_LTOFF_FPTR32LSB",
    0x56: "R_IA64_LTOFF_FPTR64MSB",
    0x57: "R_IA64_LTOFF_FPTR64LSB",
    0x5C: "R_IA64_SEGREL32MSB",
    0x5D: "R_IA64_SEGREL32LSB",
    0x5E: "R_IA64_SEGREL64MSB",
    0x5F: "R_IA64_SEGREL64LSB",
    0x64: "R_IA64_SECREL32MSB",
    0x65: "R_IA64_SECREL32LSB",
    0x66: "R_IA64_SECREL64MSB",
    0x67: "R_IA64_SECREL64LSB",
    0x6C: "R_IA64_REL32MSB",
    0x6D: "R_IA64_REL32LSB",
    0x6E: "R_IA64_REL64MSB",
    0x6F: "R_IA64_REL64LSB",
    0x74: "R_IA64_LTV32MSB",
    0x75: "R_IA64_LTV32LSB",
    0x76: "R_IA64_LTV64MSB",
    0x77: "R_IA64_LTV64LSB",
    0x79: "R_IA64_PCREL21BI",
    0x7A: "R_IA64_PCREL22",
    0x7B: "R_IA64_PCREL64I",
    0x80: "R_IA64_IPLTMSB",
    0x81: "R_IA64_IPLTLSB",
    0x84: "R_IA64_COPY",
    0x85: "R_IA64_SUB",
    0x86: "R_IA64_LTOFF22X",
    0x87: "R_IA64_LDXMOV",
    0x91: "R_IA64_TPREL14",
    0x92: "R_IA64_TPREL22",
    0x93: "R_IA64_TPREL64I",
    0x96: "R_IA64_TPREL64MSB",
    0x97: "R_IA64_TPREL64LSB",
    0x9A: "R_IA64_LTOFF_TPREL22",
    0xA6: "R_IA64_DTPMOD64MSB",
    0xA7: "R_IA64_DTPMOD64LSB",
    0xAA: "R_IA64_LTOFF_DTPMOD22",
    0xB1: "R_IA64_DTPREL14",
    0xB2: "R_IA64_DTPREL22",
    0xB3: "R_IA64_DTPREL64I",
    0xB4: "R_IA64_DTPREL32MSB",
    0xB5: "R_IA64_DTPREL32LSB",
    0xB6: "R_IA64_DTPREL64MSB",
    0xB7: "R_IA64_DTPREL64LSB",
    0xBA: "R_IA64_LTOFF_DTPREL22",
}

# Section flag bits (ELF gABI) and the letters readelf shows for them.
_SECTION_FLAG_LETTERS = (
    (0x1, "W"),
    (0x2, "A"),
    (0x4, "X"),
    (0x10, "M"),
    (0x20, "S"),
    (0x40, "I"),
    (0x80, "L"),
    (0x200, "G"),
    (0x400, "T"),
)


def relocation_name(number: int) -> str:
    """The R_IA64_* name of a relocation type; numbers we do not know print as R_IA64_0x.."""
    return IA64_RELOCATION_NAMES.get(number, f"R_IA64_0x{number:02x}")


@dataclass(frozen=True)
class SymbolEntry:
    """A symbol table entry. `section` is the section's name, or UND/ABS/COMMON."""

    name: str
    value: int
    size: int
    section: str
    binding: str  # LOCAL, GLOBAL or WEAK
    type: str  # NOTYPE, FUNC, OBJECT, SECTION, FILE ...

    @property
    def is_defined(self) -> bool:
        return self.section not in ("UND", "COMMON")


@dataclass(frozen=True)
class Section:
    """A section header: name, type (PROGBITS, NOBITS, RELA ...), size, flags, alignment."""

    name: str
    type: str
    size: int
    flags: int
    alignment: int

    @property
    def flag_letters(self) -> str:
        """The flags as readelf writes them, e.g. "AX" for .text."""
        return "".join(letter for bit, letter in _SECTION_FLAG_LETTERS if self.flags & bit)

    @property
    def is_executable(self) -> bool:
        return bool(self.flags & 0x4)


@dataclass(frozen=True)
class Relocation:
    """A RELA entry: where in `section` it applies (for code, bundle address + slot), its type,
    the symbol it refers to (a section symbol is named after its section, like readelf does)."""

    section: str
    offset: int
    type: str
    symbol: str
    addend: int


@dataclass(frozen=True)
class ObjectFile:
    """What relgen needs of an assembled object."""

    path: Path
    symbols: tuple[SymbolEntry, ...]
    sections: tuple[Section, ...]
    relocations: tuple[Relocation, ...]
    _contents: Mapping[str, bytes] = field(repr=False, compare=False, hash=False)

    @property
    def text_relocations(self) -> tuple[Relocation, ...]:
        """The relocations of .text (from .rela.text)."""
        return tuple(r for r in self.relocations if r.section == ".text")

    def section_data(self, name: str) -> bytes:
        """The bytes of section `name` (zeros for NOBITS such as .bss)."""
        if name not in self._contents:
            raise RelgenError(f"{self.path} has no section {name}")
        return self._contents[name]

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise RelgenError(f"{self.path} has no section {name}")

    def symbol(self, name: str) -> SymbolEntry:
        """The defined symbol `name` (or the first of that name when there are several)."""
        found = [s for s in self.symbols if s.name == name]
        defined = [s for s in found if s.is_defined]
        if not (defined or found):
            raise RelgenError(f"{self.path} has no symbol {name}")
        return (defined or found)[0]

    def has_symbol(self, name: str) -> bool:
        return any(s.name == name for s in self.symbols)


def load_object(path: Path) -> ObjectFile:
    """Read an IA-64 ELF object. Anything else is a RelgenError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            elf = ELFFile(stream)
            if elf["e_machine"] != "EM_IA_64":
                raise RelgenError(
                    f"an ELF object for {elf['e_machine']}, not IA-64", path=str(path)
                )
            return _read(path, elf)
    except OSError as error:
        raise RelgenError(f"cannot read the object: {error.strerror}", path=str(path)) from error
    except ELFError as error:
        raise RelgenError(f"not an ELF object ({error})", path=str(path)) from error


def _read(path: Path, elf: ELFFile) -> ObjectFile:
    sections = tuple(elf.iter_sections())
    symbol_table = next((s for s in sections if isinstance(s, SymbolTableSection)), None)
    symbols: list[SymbolEntry] = []
    if symbol_table is not None:
        # Entry 0 is the null symbol every symbol table opens with.
        for entry in list(symbol_table.iter_symbols())[1:]:
            symbols.append(_symbol(elf, entry))
    relocations: list[Relocation] = []
    for section in sections:
        if isinstance(section, RelocationSection) and section.is_RELA():
            relocations += _relocations(elf, section, symbol_table)
    contents: dict[str, bytes] = {}
    headers: list[Section] = []
    for section in sections[1:]:
        size = section["sh_size"]
        headers.append(
            Section(
                name=section.name,
                type=str(section["sh_type"]).removeprefix("SHT_"),
                size=size,
                flags=section["sh_flags"],
                alignment=section["sh_addralign"],
            )
        )
        is_nobits = section["sh_type"] == "SHT_NOBITS"
        contents[section.name] = bytes(size) if is_nobits else section.data()
    return ObjectFile(
        path=path,
        symbols=tuple(symbols),
        sections=tuple(headers),
        relocations=tuple(relocations),
        _contents=MappingProxyType(contents),
    )


def _section_name(elf: ELFFile, index: int | str) -> str:
    if isinstance(index, int):
        return elf.get_section(index).name
    # pyelftools names the special indexes SHN_UNDEF, SHN_ABS, SHN_COMMON.
    return {"SHN_UNDEF": "UND", "SHN_ABS": "ABS", "SHN_COMMON": "COMMON"}.get(index, index)


def _symbol(elf: ELFFile, entry: ElfSymbol) -> SymbolEntry:
    info = entry["st_info"]
    section = _section_name(elf, entry["st_shndx"])
    kind = str(info["type"]).removeprefix("STT_")
    name = entry.name
    if kind == "SECTION" and not name:
        name = section
    return SymbolEntry(
        name=name,
        value=entry["st_value"],
        size=entry["st_size"],
        section=section,
        binding=str(info["bind"]).removeprefix("STB_"),
        type=kind,
    )


def _relocations(
    elf: ELFFile, section: RelocationSection, symbol_table: SymbolTableSection | None
) -> list[Relocation]:
    target: ElfSection = elf.get_section(section["sh_info"])
    table = elf.get_section(section["sh_link"]) if section["sh_link"] else symbol_table
    found: list[Relocation] = []
    for entry in section.iter_relocations():
        symbol_name = ""
        if isinstance(table, SymbolTableSection) and entry["r_info_sym"]:
            symbol_name = _symbol(elf, table.get_symbol(entry["r_info_sym"])).name
        found.append(
            Relocation(
                section=target.name,
                offset=entry["r_offset"],
                type=relocation_name(entry["r_info_type"]),
                symbol=symbol_name,
                addend=entry["r_addend"],
            )
        )
    return found
