"""The control-page map: what lies where in the copied region, and how it falls on pages.

The map is built from an assembled object (never from a size model), and shown three ways:
a text table like the one in the 2006 linux-ia64 mail and JSON for tools (here), and a
picture of the page to scale (`layout_svg`). Which symbols are data areas is the caller's
knowledge (it comes from the syntax tree); this module never guesses it from names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from relgen.errors import RelgenError
from relgen.toolchain.elf import ObjectFile, SymbolEntry, load_object

SymbolKind = Literal["code", "data"]

# Symbol types that name places in code or data; section and file symbols are bookkeeping.
_PLACE_TYPES = frozenset({"NOTYPE", "FUNC", "OBJECT"})


@dataclass(frozen=True)
class MapSymbol:
    """One piece of the control page: from `offset` (relative to the entry) for `size` bytes.

    `aliases` are the local labels at the same offset that were folded into this one
    (memory_stack_end is where register_stack begins).
    """

    name: str
    offset: int
    size: int
    kind: SymbolKind
    is_global: bool
    aliases: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def is_entry_point(self) -> bool:
        """A global code symbol: something outside the page may jump to it."""
        return self.is_global and self.kind == "code"


@dataclass(frozen=True)
class ControlPageMap:
    """The region [start, end) of `section` that is copied into the control page, and its pieces
    in address order. `start` and `end` are section addresses; symbol offsets count from start."""

    entry: str
    start: int
    end: int
    symbols: tuple[MapSymbol, ...]
    end_label: str = ""
    section: str = ".text"

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def code_symbols(self) -> tuple[MapSymbol, ...]:
        return tuple(s for s in self.symbols if s.kind == "code")

    @property
    def data_symbols(self) -> tuple[MapSymbol, ...]:
        return tuple(s for s in self.symbols if s.kind == "data")

    @property
    def entry_points(self) -> tuple[MapSymbol, ...]:
        return tuple(s for s in self.symbols if s.is_entry_point)

    @property
    def code_size(self) -> int:
        """Bytes of code (the padding an .align puts before a data area counts as code)."""
        return sum(s.size for s in self.code_symbols)

    @property
    def data_size(self) -> int:
        return sum(s.size for s in self.data_symbols)

    @property
    def code_end(self) -> int:
        """The offset just past the last byte of code: what must fit in the first page."""
        return max((s.end for s in self.code_symbols), default=0)

    def symbol(self, name: str) -> MapSymbol:
        for symbol in self.symbols:
            if symbol.name == name or name in symbol.aliases:
                return symbol
        raise KeyError(name)


def build_map(
    obj: ObjectFile, *, entry: str, end_label: str, data_areas: Collection[str]
) -> ControlPageMap:
    """The map of the region from `entry` to `end_label` in `obj`.

    Every symbol inside the region is a piece of it, its size the distance to the next one.
    Local labels that share an offset with another symbol are folded into it as aliases;
    global symbols and data areas are never folded. `data_areas` names the data pieces,
    everything else is code.
    """
    start_symbol = _region_label(obj, entry, "entry")
    end_symbol = _region_label(obj, end_label, "end label")
    if end_symbol.section != start_symbol.section:
        raise RelgenError(
            f"{entry} is in {start_symbol.section} but {end_label} is in "
            f"{end_symbol.section}", str(obj.path)
        )
    start, end = start_symbol.value, end_symbol.value
    if end < start:
        raise RelgenError(f"{end_label} (0x{end:x}) lies before {entry} (0x{start:x})",
                          str(obj.path))
    inside = [
        s
        for s in obj.symbols
        if s.section == start_symbol.section
        and s.type in _PLACE_TYPES
        and s.name
        and start <= s.value < end
    ]
    by_offset: dict[int, list[SymbolEntry]] = {}
    for symbol in inside:
        by_offset.setdefault(symbol.value - start, []).append(symbol)
    offsets = sorted(by_offset)
    pieces: list[MapSymbol] = []
    for index, offset in enumerate(offsets):
        following = offsets[index + 1] if index + 1 < len(offsets) else end - start
        pieces += _pieces_at(offset, following - offset, by_offset[offset], data_areas)
    return ControlPageMap(
        entry=entry,
        start=start,
        end=end,
        symbols=tuple(pieces),
        end_label=end_label,
        section=start_symbol.section,
    )


def _region_label(obj: ObjectFile, name: str, role: str) -> SymbolEntry:
    defined = [s for s in obj.symbols if s.name == name and s.is_defined]
    if not defined:
        raise RelgenError(f"the {role} {name} is not defined in the object", str(obj.path))
    return defined[0]


def _pieces_at(
    offset: int, size: int, symbols: list[SymbolEntry], data_areas: Collection[str]
) -> list[MapSymbol]:
    """The map symbols for the symbols that share one offset, taking `size` bytes together."""

    def is_kept(symbol: SymbolEntry) -> bool:
        return symbol.name in data_areas or symbol.binding != "LOCAL"

    kept = sorted((s for s in symbols if is_kept(s)), key=lambda s: s.name)
    folded = sorted((s for s in symbols if not is_kept(s)), key=lambda s: s.name)
    if not kept:
        # Only plain labels here: one stands for the place, the others are its aliases. The
        # symbol table does not keep source order, so the choice is by name, to be stable.
        kept, folded = folded[:1], folded[1:]
    pieces = []
    for position, symbol in enumerate(kept):
        is_last = position == len(kept) - 1
        pieces.append(
            MapSymbol(
                name=symbol.name,
                offset=offset,
                # Symbols kept side by side at one offset: the last one owns the bytes.
                size=size if is_last else 0,
                kind="data" if symbol.name in data_areas else "code",
                is_global=symbol.binding != "LOCAL",
                aliases=tuple(s.name for s in folded) if is_last else (),
            )
        )
    return pieces


def map_object_file(
    object_path: Path, *, entry: str, end_label: str, data_areas: Collection[str]
) -> ControlPageMap:
    """The map of an object file on disk (for `relgen layout --object FILE.o`)."""
    return build_map(
        load_object(Path(object_path)), entry=entry, end_label=end_label, data_areas=data_areas
    )


def page_size_name(page_size: int) -> str:
    """16384 -> "16 KiB"."""
    return f"{page_size // 1024} KiB" if page_size % 1024 == 0 else f"{page_size}-byte"


@dataclass(frozen=True)
class PageReport:
    """How the region falls on pages of one size, the region's start being page-aligned
    (the control page is allocated a page at a time)."""

    page_size: int
    count: int
    page_starts: tuple[int, ...]
    warnings: tuple[str, ...]

    @property
    def boundaries(self) -> tuple[int, ...]:
        """The offsets inside the region where a new page begins."""
        return self.page_starts[1:]


def page_report(control_map: ControlPageMap, page_sizes: Iterable[int]) -> tuple[PageReport, ...]:
    """One report per page size, in the order given."""
    reports = []
    for page_size in page_sizes:
        if page_size <= 0:
            raise RelgenError(f"page size must be positive, not {page_size}")
        count = -(-control_map.size // page_size)
        starts = tuple(page * page_size for page in range(count))
        reports.append(
            PageReport(page_size, count, starts, _entry_warnings(control_map, page_size))
        )
    return tuple(reports)


def _entry_warnings(control_map: ControlPageMap, page_size: int) -> tuple[str, ...]:
    name = page_size_name(page_size)
    warnings = []
    for symbol in control_map.entry_points:
        first_page = symbol.offset // page_size
        last_page = (symbol.end - 1) // page_size if symbol.size else first_page
        if first_page > 0:
            warnings.append(
                f"entry point {symbol.name} at 0x{symbol.offset:04x} is beyond the first "
                f"{name} page (it is in page {first_page + 1}, "
                f"from 0x{first_page * page_size:04x})"
            )
        if last_page != first_page:
            warnings.append(
                f"entry point {symbol.name} at 0x{symbol.offset:04x} crosses the {name} page "
                f"boundary at 0x{(first_page + 1) * page_size:04x} "
                f"(it ends at 0x{symbol.end:04x})"
            )
    return tuple(warnings)


def render_text(control_map: ControlPageMap, page_sizes: Sequence[int]) -> str:
    """The map as a table, a line where each page begins, then the warnings."""
    reports = page_report(control_map, page_sizes)
    width = max([len("symbol"), *(len(_shown_name(s)) for s in control_map.symbols)])
    lines = [
        f"control page: {control_map.entry} .. {control_map.end_label or '(end)'} "
        f"in {control_map.section}, 0x{control_map.size:04x} bytes "
        f"(code 0x{control_map.code_size:04x}, data 0x{control_map.data_size:04x})",
        "",
        f"{'offset':<8}{'symbol':<{width + 2}}{'kind':<6}{'size':<8}end",
    ]
    boundary_lines = _boundary_lines(reports)
    pending = sorted(boundary_lines)
    for symbol in control_map.symbols:
        while pending and pending[0] <= symbol.offset:
            lines.append(boundary_lines[pending.pop(0)])
        flags = "  global" if symbol.is_global else ""
        lines.append(
            f"0x{symbol.offset:04x}  {_shown_name(symbol):<{width + 2}}{symbol.kind:<6}"
            f"0x{symbol.size:04x}  0x{symbol.end:04x}{flags}".rstrip()
        )
    lines += [boundary_lines[offset] for offset in pending]
    lines.append(f"0x{control_map.size:04x}  {control_map.end_label or '(end)'}")
    lines.append("")
    for report in reports:
        plural = "page" if report.count == 1 else "pages"
        lines.append(
            f"{page_size_name(report.page_size)} pages: the region spans {report.count} {plural}"
        )
    for report in reports:
        lines += [f"warning: {warning}" for warning in report.warnings]
    return "\n".join(lines) + "\n"


def _shown_name(symbol: MapSymbol) -> str:
    return symbol.name + (f" (= {', '.join(symbol.aliases)})" if symbol.aliases else "")


def _boundary_lines(reports: Sequence[PageReport]) -> dict[int, str]:
    """One line per offset where a page of some chosen size begins, naming every such page."""
    at: dict[int, list[str]] = {}
    for report in sorted(reports, key=lambda r: r.page_size):
        for offset in report.boundaries:
            page = offset // report.page_size + 1  # counted from 1, as a reader counts
            at.setdefault(offset, []).append(f"{page_size_name(report.page_size)} page {page}")
    return {
        offset: f"---- {', '.join(names)} {'begins' if len(names) == 1 else 'begin'} "
        f"at 0x{offset:04x} ----"
        for offset, names in at.items()
    }


def to_json(control_map: ControlPageMap, page_sizes: Sequence[int]) -> dict[str, Any]:
    """The map as plain data (integers for offsets and sizes), keys in a fixed order."""
    return {
        "region": {
            "entry": control_map.entry,
            "end_label": control_map.end_label,
            "section": control_map.section,
            "start": control_map.start,
            "end": control_map.end,
            "size": control_map.size,
            "code_size": control_map.code_size,
            "code_end": control_map.code_end,
            "data_size": control_map.data_size,
        },
        "symbols": [
            {
                "name": s.name,
                "offset": s.offset,
                "size": s.size,
                "end": s.end,
                "kind": s.kind,
                "global": s.is_global,
                "aliases": list(s.aliases),
            }
            for s in control_map.symbols
        ],
        "pages": {
            str(report.page_size): {
                "count": report.count,
                "boundaries": list(report.boundaries),
                "warnings": list(report.warnings),
            }
            for report in page_report(control_map, page_sizes)
        },
    }
