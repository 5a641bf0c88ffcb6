"""The instructions of an object as `ia64-linux-gnu-objdump -d` decodes them, slot by slot."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from relgen import tools
from relgen.errors import ToolError

_OBJDUMP_SYMBOL = re.compile(r"^(?P<address>[0-9a-f]+) <(?P<name>[^>]+)>:$")
_OBJDUMP_SECTION = re.compile(r"^Disassembly of section (?P<name>\S+):$")
# "     4c:\t00 f8 10 08 80 05 \t[MII]       alloc r31=ar.pfs,4,4,0"; the text part is absent on
# the continuation line of a long bundle (the second half of an MLX movl).
_OBJDUMP_SLOT = re.compile(
    r"^\s*(?P<address>[0-9a-f]+):\t(?P<bytes>(?:[0-9a-f]{2} )+)\s*(?:\t(?P<text>.*))?$"
)
_TEMPLATE = re.compile(r"^\[(?P<template>[A-Z]+)\]\s*(?P<rest>.*)$")
_BRANCH_TARGET = re.compile(r"\b[0-9a-f]+ (<[^>]+>)")


def disassemble(object_path: Path) -> str:
    """`objdump -d` of the object, run beside it so that the text names it without a folder."""
    objdump = tools.IA64_PREFIX + "objdump"
    object_path = Path(object_path).resolve()
    result = tools.run([objdump, "-d", tools.operand(object_path.name)], object_path.parent)
    if result.returncode != 0:
        raise ToolError(
            f"{objdump} failed:\n{result.stderr.strip()}", path=str(object_path)
        )
    return result.stdout


@dataclass(frozen=True)
class DecodedSlot:
    """One instruction slot of a bundle, as objdump shows it."""

    section: str
    symbol: str
    # Where the bundle begins, from the start of `symbol`; ia64 code moves by whole bundles.
    symbol_offset: int
    bundle: int
    slot: int
    template: str
    text: str
    stop: bool

    @property
    def address(self) -> int:
        """The slot's address in the ia64 convention (bundle address + slot number), which is
        also how relocation offsets name a slot."""
        return self.bundle + self.slot

    @property
    def unit(self) -> str:
        """The execution unit of the slot (M, I, F, B, or L for the long immediate of MLX)."""
        return self.template[self.slot] if self.slot < len(self.template) else "?"

    @property
    def comparable(self) -> str:
        """The text without absolute branch addresses ("br.few 160 <x+0x160>" -> "br.few
        <x+0x160>"), so that code that moved as a whole compares equal."""
        return _BRANCH_TARGET.sub(r"\1", self.text)


def disassemble_instructions(object_path: Path) -> list[DecodedSlot]:
    """Every instruction slot of the object's executable sections, in address order."""
    return parse_disassembly(disassemble(object_path))


def parse_disassembly(text: str) -> list[DecodedSlot]:
    """The instructions of `objdump -d` text (see disassemble_instructions)."""
    instructions: list[DecodedSlot] = []
    section = ""
    symbol, symbol_address = "", 0
    template, bundle, slot = "", 0, 0
    for line in text.splitlines():
        if match := _OBJDUMP_SECTION.match(line):
            section = match.group("name")
            continue
        if match := _OBJDUMP_SYMBOL.match(line):
            symbol, symbol_address = match.group("name"), int(match.group("address"), 16)
            continue
        match = _OBJDUMP_SLOT.match(line)
        if match is None or match.group("text") is None:
            continue  # headers, "..." for skipped zeros, the second line of an MLX long slot
        body = match.group("text").strip()
        if template_match := _TEMPLATE.match(body):
            template = template_match.group("template")
            bundle = int(match.group("address"), 16)
            slot = 0
            body = template_match.group("rest")
        elif int(match.group("address"), 16) & ~0xF != bundle:
            # a symbol in the middle of a bundle of data (a data8 word after another):
            # objdump goes on with no template, and the line is no instruction
            continue
        else:
            slot += 1
        stop = body.endswith(";;")
        body = body.removesuffix(";;").strip()
        instructions.append(
            DecodedSlot(
                section=section,
                symbol=symbol,
                symbol_offset=bundle - symbol_address,
                bundle=bundle,
                slot=slot,
                template=template,
                text=body,
                stop=stop,
            )
        )
    return instructions
