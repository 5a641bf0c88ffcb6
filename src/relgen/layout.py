"""The control-page map: what lies where in the copied region, and how it falls on pages.

The map is built from an assembled object (never from a size model), and shown three ways:
a text table like the one in the 2006 linux-ia64 mail, JSON for tools, and an SVG picture of
the page to scale. Which symbols are data areas is the caller's knowledge (it comes from the
syntax tree); this module never guesses it from names.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from relgen.elf import ObjectFile, Symbol, load_object
from relgen.errors import RelgenError

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
    by_offset: dict[int, list[Symbol]] = {}
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


def _region_label(obj: ObjectFile, name: str, role: str) -> Symbol:
    defined = [s for s in obj.symbols if s.name == name and s.is_defined]
    if not defined:
        raise RelgenError(f"the {role} {name} is not defined in the object", str(obj.path))
    return defined[0]


def _pieces_at(
    offset: int, size: int, symbols: list[Symbol], data_areas: Collection[str]
) -> list[MapSymbol]:
    """The map symbols for the symbols that share one offset, taking `size` bytes together."""

    def is_kept(symbol: Symbol) -> bool:
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


# The picture: a horizontal bar for the region, an offset scale under it, then one lane per page
# size with its boundaries, entry points labelled above the bar. Sizes are SVG user units
# (pixels when opened in a browser).
_SVG_WIDTH = 960
_LEFT = 40
_RIGHT = 130  # room for the lane captions ("16 KiB: 2 pages") right of the bar
_BAR_HEIGHT = 48
_LABEL_ROW = 18
_LANE_HEIGHT = 22
_CHAR_WIDTH = 7.2  # about the width of one character of the 12px monospace labels
_COLOURS = {"code": "#d95f02", "data": "#7570b3"}


def _number(value: float) -> str:
    """Coordinates with two decimals at most, so the text is the same on every run."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def render_svg(control_map: ControlPageMap, page_sizes: Sequence[int]) -> str:
    """The control page to scale as a standalone SVG document."""
    reports = sorted(page_report(control_map, page_sizes), key=lambda r: r.page_size)
    bar_width = _SVG_WIDTH - _LEFT - _RIGHT
    # The bar spans whole pages of the smallest size chosen: the page is what gets allocated,
    # and a region that shrank shows as what it is, a part of one page.
    smallest = reports[0].page_size if reports else 0
    pages_drawn = -(-control_map.size // smallest) if smallest else 0
    extent = max(pages_drawn * smallest, control_map.size)
    scale = bar_width / extent if extent else 0.0
    region_width = control_map.size * scale

    def x_of(offset: int) -> float:
        return _LEFT + offset * scale

    label_places = _label_places(control_map.entry_points, x_of)
    row_count = max((place.row for place in label_places.values()), default=-1) + 1
    bar_top = 48 + row_count * _LABEL_ROW + 8
    bar_bottom = bar_top + _BAR_HEIGHT
    lanes_top = bar_bottom + 18  # under the offset scale
    legend_top = lanes_top + len(reports) * _LANE_HEIGHT + 18
    height = legend_top + 30
    title = _svg_title(control_map)

    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_SVG_WIDTH} {height}" font-family="monospace" font-size="12">',
        f"<title>{escape(title)}</title>",
        "<style>",
        f"  .code {{ fill: {_COLOURS['code']}; }}",
        f"  .data {{ fill: {_COLOURS['data']}; }}",
        "  rect.code, rect.data { stroke: #fff; stroke-width: 1; }",
        "  .region { fill: none; stroke: #333; stroke-width: 1; }",
        "  .pages { fill: #f3f3f3; stroke: #999; stroke-width: 1; }",
        "  .page-boundary { stroke: #111; stroke-width: 1; stroke-dasharray: 4 3; }",
        "  .entry-tick { stroke: #333; stroke-width: 1; }",
        "  .area-label { fill: #fff; }",
        "  .caption { fill: #444; font-size: 10px; }",
        "</style>",
        f'<rect width="{_SVG_WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="{_LEFT}" y="24" font-size="14">{escape(title)}</text>',
    ]
    out.append(
        f'<rect class="pages" data-size="{extent}" x="{_LEFT}" y="{bar_top}" '
        f'width="{bar_width}" height="{_BAR_HEIGHT}"/>'
    )
    for symbol in control_map.symbols:
        out.append(
            f'<rect class="{symbol.kind}" data-symbol={quoteattr(symbol.name)} '
            f'data-offset="{symbol.offset}" data-size="{symbol.size}" '
            f'x="{_number(x_of(symbol.offset))}" y="{bar_top}" '
            f'width="{_number(symbol.size * scale)}" height="{_BAR_HEIGHT}">'
            f"<title>{escape(_symbol_tooltip(symbol))}</title></rect>"
        )
    out.append(
        f'<rect class="region" data-size="{control_map.size}" x="{_LEFT}" y="{bar_top}" '
        f'width="{_number(region_width)}" height="{_BAR_HEIGHT}"/>'
    )
    for lane, report in enumerate(reports):
        lane_bottom = lanes_top + (lane + 1) * _LANE_HEIGHT
        plural = "page" if report.count == 1 else "pages"
        out.append(
            f'<text class="caption" x="{_LEFT + bar_width + 8}" y="{lane_bottom - 6}">'
            f"{page_size_name(report.page_size)}: {report.count} {plural}</text>"
        )
        for offset in report.boundaries:
            x = _number(x_of(offset))
            out.append(
                f'<line class="page-boundary" data-page-size="{report.page_size}" '
                f'data-offset="{offset}" x1="{x}" y1="{bar_top}" x2="{x}" y2="{lane_bottom}">'
                f"<title>{page_size_name(report.page_size)} page "
                f"{offset // report.page_size + 1} begins at 0x{offset:04x}</title></line>"
            )
    for symbol in control_map.data_symbols:
        # Named inside the bar where the area is wide enough; the tooltip names it anyway.
        label = f"{symbol.name} {_size_text(symbol.size)}"
        if len(label) * _CHAR_WIDTH < symbol.size * scale - 8:
            centre = x_of(symbol.offset) + symbol.size * scale / 2
            out.append(
                f'<text class="area-label" x="{_number(centre)}" '
                f'y="{bar_top + _BAR_HEIGHT // 2 + 4}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    scale_y = bar_bottom + 13
    out.append(f'<text class="caption" x="{_LEFT}" y="{scale_y}">0x0000</text>')
    end_caption = f"0x{control_map.size:04x} {control_map.end_label}".rstrip()
    end_x = _LEFT + region_width
    fits_right = end_x + len(end_caption) * _CHAR_WIDTH <= _LEFT + bar_width
    out.append(
        f'<text class="caption" x="{_number(end_x)}" y="{scale_y}" '
        f'text-anchor="{"start" if fits_right else "end"}">{escape(end_caption)}</text>'
    )
    for symbol in control_map.entry_points:
        place = label_places[symbol.name]
        x = x_of(symbol.offset)
        text_y = 48 + (row_count - 1 - place.row) * _LABEL_ROW + 12
        text_x, anchor = (x - 3, "end") if place.right_aligned else (x + 3, "start")
        out.append(
            f'<line class="entry-tick" x1="{_number(x)}" y1="{text_y - 10}" '
            f'x2="{_number(x)}" y2="{bar_top}"/>'
        )
        out.append(
            f'<text class="entry-label" data-symbol={quoteattr(symbol.name)} '
            f'x="{_number(text_x)}" y="{text_y}" text-anchor="{anchor}">'
            f"{escape(_entry_label(symbol))}</text>"
        )
    out += _svg_legend(legend_top)
    if smallest:
        plural = "page" if pages_drawn == 1 else "pages"
        out.append(
            f'<text class="caption" x="{_LEFT + 360}" y="{legend_top + 11}">the bar: '
            f"{pages_drawn} {plural} of {page_size_name(smallest)} (0x{extent:04x} bytes)</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class _LabelPlace:
    row: int  # 0 is the row next to the bar
    right_aligned: bool  # ends at its tick, for labels that would run off the picture


def _label_places(
    entry_points: Sequence[MapSymbol], x_of: Callable[[int], float]
) -> dict[str, _LabelPlace]:
    """Where each entry label goes: the row nearest the bar where it overlaps no other label."""
    rows: list[list[tuple[float, float]]] = []
    places: dict[str, _LabelPlace] = {}
    for symbol in entry_points:
        x = x_of(symbol.offset)
        width = (len(_entry_label(symbol)) + 1) * _CHAR_WIDTH
        right_aligned = x + width > _SVG_WIDTH - 4
        span = (x - width, x) if right_aligned else (x, x + width)
        row = next(
            (
                index
                for index, taken in enumerate(rows)
                if all(span[1] + 8 <= left or right + 8 <= span[0] for left, right in taken)
            ),
            len(rows),
        )
        if row == len(rows):
            rows.append([])
        rows[row].append(span)
        places[symbol.name] = _LabelPlace(row, right_aligned)
    return places


def _entry_label(symbol: MapSymbol) -> str:
    return f"{symbol.name} 0x{symbol.offset:04x}"


def _svg_legend(top: int) -> list[str]:
    return [
        f'<rect class="swatch code" x="{_LEFT}" y="{top}" width="14" height="14"/>',
        f'<text x="{_LEFT + 20}" y="{top + 11}">code</text>',
        f'<rect class="swatch data" x="{_LEFT + 80}" y="{top}" width="14" height="14"/>',
        f'<text x="{_LEFT + 100}" y="{top + 11}">data area</text>',
        f'<line class="legend-boundary" x1="{_LEFT + 200}" y1="{top}" x2="{_LEFT + 200}" '
        f'y2="{top + 14}" stroke="#111" stroke-dasharray="4 3"/>',
        f'<text x="{_LEFT + 208}" y="{top + 11}">page boundary</text>',
    ]


def _svg_title(control_map: ControlPageMap) -> str:
    return (
        f"control page {control_map.entry}: 0x{control_map.size:04x} bytes, "
        f"code 0x{control_map.code_size:04x}, data 0x{control_map.data_size:04x}"
    )


def _symbol_tooltip(symbol: MapSymbol) -> str:
    aliases = f" (= {', '.join(symbol.aliases)})" if symbol.aliases else ""
    scope = ", global" if symbol.is_global else ""
    return (
        f"{symbol.name}{aliases}: {symbol.kind}{scope}, 0x{symbol.offset:04x}..0x{symbol.end:04x}"
        f" ({symbol.size} bytes)"
    )


def _size_text(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 and size else f"{size} bytes"
