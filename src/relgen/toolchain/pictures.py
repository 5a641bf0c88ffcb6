"""The control-page map as a picture (SVG), to scale, where no line crosses a label.

One horizontal bar is the region, each piece drawn to scale. Names of code, the region's end,
and data areas too narrow to hold their own name stand above the bar, in rows, each with a
leader line down to its offset; a data area wide enough is named inside the bar, between the
page boundaries. The boundaries cross the bar and run down to one lane per page size, where
the pages are numbered. The page report's warnings are written under the title.

Every text's box comes from one character-width model (`text_box`), so the placement here and
the geometric checks in the tests agree on what a label covers. Before and after are only
comparable at one scale: `shared_extent()` gives the bytes the bar stands for across several
maps, and `render_svg(..., extent=...)` draws each map at it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from relgen.toolchain.layout import (
    ControlPageMap,
    MapSymbol,
    PageReport,
    page_report,
    page_size_name,
)

SVG_NAMESPACE = "http://www.w3.org/2000/svg"

# Geometry in SVG user units (pixels when opened in a browser).
MIN_WIDTH = 1024
LEFT = 40
BAR_WIDTH = 870  # the bar stands for `extent` bytes; right of it are the lane captions
BAR_HEIGHT = 48
LABEL_ROW = 18
LANE_HEIGHT = 20
MIN_MARK_WIDTH = 3  # pieces narrower than this get a mark this wide
LABEL_GAP = 6  # room kept between a label and a neighbouring label or line
TEXT_SIZE = 12
SMALL_TEXT_SIZE = 10
TITLE_SIZE = 14

# The character-width model. "monospace" is DejaVu Sans Mono on Debian, whose glyphs advance
# 1233/2048 = 0.602 em; other monospace faces are within a hair of 0.6 em. The model errs wide
# (a test holds it against what rsvg-convert draws).
FONT_FAMILY = "DejaVu Sans Mono, monospace"
CHAR_EM = 0.61
ASCENT_EM = 0.8  # how far glyphs reach above the baseline ...
DESCENT_EM = 0.25  # ... and below it

_CODE_FILLS = ("#d95f02", "#f08a3c")  # neighbouring pieces of a kind alternate shades,
_DATA_FILLS = ("#7570b3", "#9a96cc")  # so two stacks side by side stay two
_WARNING_FILL = "#c00000"
_STYLE = """
.page-boundary { stroke: #111; stroke-width: 1; stroke-dasharray: 4 3; }
.leader { stroke: #555; stroke-width: 1; }
.page-cell { fill: #f4f4f4; stroke: #bbb; stroke-width: 1; }
"""

Anchor = Literal["start", "middle", "end"]


@dataclass(frozen=True)
class Box:
    """The rectangle a text covers, from the character-width model."""

    left: float
    top: float
    right: float
    bottom: float


def text_width(text: str, font_size: float) -> float:
    return len(text) * font_size * CHAR_EM


def text_box(text: str, x: float, y: float, font_size: float, anchor: Anchor = "start") -> Box:
    """The box of `text` drawn at (x, y), y being the baseline, as SVG's text-anchor places it."""
    width = text_width(text, font_size)
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return Box(left, y - ASCENT_EM * font_size, left + width, y + DESCENT_EM * font_size)


def shared_extent(maps: Iterable[ControlPageMap], page_sizes: Sequence[int]) -> int:
    """The bytes the bar stands for: whole pages of the smallest size chosen, enough for the
    largest map. Pictures drawn at one extent share one scale and can be laid side by side."""
    sizes = [m.size for m in maps]
    largest = max(sizes, default=0)
    if not page_sizes:
        return max(largest, 1)
    smallest = min(page_sizes)
    return max(1, -(-largest // smallest)) * smallest


def render_svg(
    control_map: ControlPageMap, page_sizes: Sequence[int], *, extent: int | None = None
) -> str:
    """The control page to scale as a standalone SVG document; the bar stands for `extent`
    bytes (default: whole pages of the smallest page size covering the region)."""
    if extent is None:
        extent = shared_extent([control_map], page_sizes)
    if extent < control_map.size:
        raise ValueError(f"extent 0x{extent:x} is smaller than the region (0x{control_map.size:x})")
    return _Picture(control_map, page_sizes, extent).document()


def render_before_after(
    before: ControlPageMap, after: ControlPageMap, page_sizes: Sequence[int]
) -> tuple[str, str]:
    """The two pictures at one scale, so that the same code is as wide in both: a reader sees
    the bytes that moved, and how many pages each needs, by laying one beside the other."""
    extent = shared_extent([before, after], page_sizes)
    return (render_svg(before, page_sizes, extent=extent),
            render_svg(after, page_sizes, extent=extent))


class _Elements:
    """A list of SVG elements built with ElementTree: attributes in the order given, numbers
    with two decimals at most, so the same map gives the same bytes."""

    def __init__(self) -> None:
        self.items: list[ElementTree.Element] = []
        self.text_boxes: list[Box] = []

    def add(self, tag: str, text: str | None = None, tooltip: str | None = None,
            **attributes: str | float) -> ElementTree.Element:
        attrib = {_attribute(name): _value(value) for name, value in attributes.items()}
        element = ElementTree.Element(tag, attrib)
        element.text = text
        if tooltip is not None:
            ElementTree.SubElement(element, "title").text = tooltip
        self.items.append(element)
        return element

    def text(self, text: str, x: float, y: float, font_size: float = TEXT_SIZE,
             anchor: Anchor = "start", **attributes: str | float) -> ElementTree.Element:
        self.text_boxes.append(text_box(text, x, y, font_size, anchor))
        return self.add("text", text, x=x, y=y, **{"font-size": font_size,
                                                   "text-anchor": anchor}, **attributes)


def _attribute(name: str) -> str:
    """Python keyword arguments to SVG attribute names: class_ -> class, data_size -> data-size."""
    return name.rstrip("_").replace("_", "-")


def _value(value: str | float) -> str:
    if isinstance(value, str):
        return value
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class _Label:
    """A text above the bar with a leader line down to `x`, the offset it names."""

    x: float
    text: str
    class_: str
    symbol: str
    fill: str


@dataclass(frozen=True)
class _NameInBar:
    """A data area's name written on the area itself, centred at `centre`."""

    symbol: str
    centre: float
    font_size: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _PlacedLabel:
    label: _Label
    row: int  # 0 is the row next to the bar

    @property
    def left(self) -> float:
        return self.label.x + 3

    @property
    def right(self) -> float:
        return self.left + text_width(self.label.text, TEXT_SIZE)


def _place_in_rows(labels: Sequence[_Label]) -> list[_PlacedLabel]:
    """Each label in the row nearest the bar where its box clears every other label and every
    leader line passing through that row.

    Labels start just right of their leader and are placed from right to left, so a leader
    only ever runs down past boxes that start right of it: going up a row always helps, and
    the search ends.
    """
    placed: list[_PlacedLabel] = []
    for label in sorted(labels, key=lambda item: -item.x):
        row = 0
        while True:
            candidate = _PlacedLabel(label, row)
            if not any(_conflict(candidate, other) for other in placed):
                break
            row += 1
        placed.append(candidate)
    return placed


def _conflict(new: _PlacedLabel, old: _PlacedLabel) -> bool:
    if new.row == old.row:
        return new.left < old.right + LABEL_GAP and old.left < new.right + LABEL_GAP
    if new.row < old.row:  # the old label's leader runs down through the new one's row
        return new.left - LABEL_GAP <= old.label.x <= new.right + LABEL_GAP
    return False


class _Picture:
    """One rendering: the vertical bands are worked out first, then drawn top to bottom."""

    def __init__(self, control_map: ControlPageMap, page_sizes: Sequence[int], extent: int):
        self.map = control_map
        self.reports = sorted(page_report(control_map, page_sizes), key=lambda r: r.page_size)
        self.extent = extent
        self.scale = BAR_WIDTH / extent
        self.warnings = [f"warning: {w}" for r in self.reports for w in r.warnings]
        # The warnings name their entry point ("entry point NAME at ..."): it is drawn in red.
        self.warned = {s.name for s in control_map.entry_points
                       if any(f"entry point {s.name} at " in w for w in self.warnings)}
        inside, outside = self._area_labels()
        self.inside = inside
        self.labels = _place_in_rows(self._labels_above(outside))
        rows = max((p.row for p in self.labels), default=-1) + 1
        self.bar_top = 40 + 16 * len(self.warnings) + rows * LABEL_ROW + 14
        self.bar_bottom = self.bar_top + BAR_HEIGHT
        self.lanes_top = self.bar_bottom + 6
        self.legend_top = self.lanes_top + len(self.reports) * LANE_HEIGHT + 14

    def x_of(self, offset: int) -> float:
        return LEFT + offset * self.scale

    # ---- what goes where ------------------------------------------------------------------

    def _boundaries(self) -> set[int]:
        return {offset for report in self.reports for offset in report.boundaries}

    def _area_labels(self) -> tuple[list[_NameInBar], list[MapSymbol]]:
        """Data areas named inside the bar, and those too narrow, whose names go above it.
        Inside, a name keeps clear of the page boundaries: it goes in the widest gap between
        them, on one line ("memory_stack 8 KiB") or, where that is too narrow, on two lines,
        smaller if need be; all names inside are written the same way, so that two stacks of
        one size look alike."""
        boundaries = self._boundaries()
        gaps = {}
        for area in self.map.data_symbols:
            cuts = sorted({area.offset, area.end} | {b for b in boundaries
                                                      if area.offset < b < area.end})
            # A zero-size area has one cut and no gap: its name goes above the bar.
            gaps[area.name] = max(zip(cuts, cuts[1:], strict=False),
                                  key=lambda pair: pair[1] - pair[0],
                                  default=(area.offset, area.offset))

        def ways(area: MapSymbol) -> list[tuple[int, tuple[str, ...]]]:
            size = _size_text(area.size)
            return [(TEXT_SIZE, (f"{area.name} {size}",)), (TEXT_SIZE, (area.name, size)),
                    (SMALL_TEXT_SIZE, (area.name, size))]

        def fits(area: MapSymbol, way: int) -> bool:
            font_size, lines = ways(area)[way]
            start, end = gaps[area.name]
            room = (end - start) * self.scale - 2 * LABEL_GAP
            return max(text_width(line, font_size) for line in lines) <= room

        # The ways go from widest to narrowest: the narrowest any area needs fits them all.
        needed = [next((w for w in range(3) if fits(a, w)), None) for a in self.map.data_symbols]
        way = max((w for w in needed if w is not None), default=0)
        inside, outside = [], []
        for area in self.map.data_symbols:
            if fits(area, way):
                start, end = gaps[area.name]
                centre = (self.x_of(start) + self.x_of(end)) / 2
                inside.append(_NameInBar(area.name, centre, *ways(area)[way]))
            else:
                outside.append(area)
        return inside, outside

    def _labels_above(self, areas_outside: Sequence[MapSymbol]) -> list[_Label]:
        labels = []
        for symbol in self.map.symbols:
            if symbol.kind == "code":
                fill = _WARNING_FILL if symbol.name in self.warned else "#111"
                class_ = "entry-label" if symbol.is_entry_point else "code-label"
                text = f"{symbol.name} 0x{symbol.offset:04x}"
            elif symbol in areas_outside:
                fill, class_ = "#111", "area-label"
                text = f"{symbol.name} 0x{symbol.offset:04x} {_size_text(symbol.size)}"
            else:
                continue
            labels.append(_Label(self.x_of(symbol.offset), text, class_, symbol.name, fill))
        end_name = self.map.end_label or "(end)"
        labels.append(_Label(self.x_of(self.map.size), f"{end_name} 0x{self.map.size:04x}",
                             "end-label", end_name, "#111"))
        return labels

    # ---- drawing --------------------------------------------------------------------------

    def document(self) -> str:
        out = _Elements()
        self._draw_header(out)
        self._draw_bar(out)
        self._draw_lanes(out)
        self._draw_labels(out)
        self._draw_legend(out)
        # Labels near the bar's right end may run past it: the picture widens, the scale stays.
        width = max(MIN_WIDTH, math.ceil(max(box.right for box in out.text_boxes) + 12))
        height = self.legend_top + 30
        root = ElementTree.Element("svg", {
            "xmlns": SVG_NAMESPACE, "width": str(width), "height": str(height),
            "viewBox": f"0 0 {width} {height}", "font-family": FONT_FAMILY,
        })
        ElementTree.SubElement(root, "title").text = _title(self.map)
        ElementTree.SubElement(root, "style").text = _STYLE
        ElementTree.SubElement(root, "rect", {"width": str(width), "height": str(height),
                                              "fill": "#fff"})
        root.extend(out.items)
        ElementTree.indent(root, space="  ")
        body = ElementTree.tostring(root, encoding="unicode")
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"

    def _draw_header(self, out: _Elements) -> None:
        out.text(_title(self.map), LEFT, 24, TITLE_SIZE, class_="title")
        for index, warning in enumerate(self.warnings):
            out.text(warning, LEFT, 46 + 16 * index, fill=_WARNING_FILL, class_="warning")

    def _draw_bar(self, out: _Elements) -> None:
        top = self.bar_top
        out.add("rect", class_="extent", data_size=self.extent, x=LEFT, y=top, width=BAR_WIDTH,
                height=BAR_HEIGHT, fill="none", stroke="#ddd")
        smallest = self.reports[0].page_size if self.reports else self.extent
        pages = max(1, -(-self.map.size // smallest)) * smallest
        out.add("rect", class_="pages", data_size=pages, x=LEFT, y=top,
                width=min(pages, self.extent) * self.scale, height=BAR_HEIGHT, fill="#f3f3f3",
                stroke="#999")
        shade = {"code": 0, "data": 0}
        marks = []
        for symbol in self.map.symbols:
            fill = (_CODE_FILLS if symbol.kind == "code" else _DATA_FILLS)[shade[symbol.kind] % 2]
            shade[symbol.kind] += 1
            width = symbol.size * self.scale
            out.add("rect", tooltip=_tooltip(symbol), class_=symbol.kind,
                    data_symbol=symbol.name, data_offset=symbol.offset, data_size=symbol.size,
                    x=self.x_of(symbol.offset), y=top, width=width, height=BAR_HEIGHT, fill=fill)
            if 0 < width < MIN_MARK_WIDTH:
                marks.append((symbol, fill, self.x_of(symbol.offset) + width / 2))
        # A piece a pixel or two wide vanishes beside its neighbours: a mark a little wider
        # than the piece, over it, says it is there (its tooltip gives the true size).
        for symbol, fill, centre in marks:
            out.add("rect", tooltip=f"{_tooltip(symbol)}, drawn wider to be seen",
                    class_="narrow-mark", data_symbol=symbol.name, x=centre - MIN_MARK_WIDTH / 2,
                    y=top, width=MIN_MARK_WIDTH, height=BAR_HEIGHT, fill=fill)
        out.add("rect", class_="region", data_size=self.map.size, x=LEFT, y=top,
                width=self.map.size * self.scale, height=BAR_HEIGHT, fill="none", stroke="#333")
        for name in self.inside:
            pitch = name.font_size + 3
            first = top + BAR_HEIGHT / 2 + name.font_size / 3 - (len(name.lines) - 1) * pitch / 2
            for index, line in enumerate(name.lines):
                out.text(line, name.centre, first + index * pitch, name.font_size, "middle",
                         fill="#fff", class_="area-label", data_symbol=name.symbol)

    def _draw_lanes(self, out: _Elements) -> None:
        for lane, report in enumerate(self.reports):
            self._draw_lane(out, report, self.lanes_top + lane * LANE_HEIGHT)

    def _draw_lane(self, out: _Elements, report: PageReport, top: float) -> None:
        """The pages of one size the region spans, numbered, and where each begins."""
        height = LANE_HEIGHT - 4
        baseline = top + 12
        for number, start in enumerate(report.page_starts, 1):
            end = min(start + report.page_size, self.extent)
            left, right = self.x_of(start), self.x_of(end)
            out.add("rect", class_="page-cell", data_page_size=report.page_size, x=left, y=top,
                    width=right - left, height=height)
            for text in (f"page {number}", str(number)):
                if text_width(text, SMALL_TEXT_SIZE) + 2 * LABEL_GAP <= right - left:
                    out.text(text, (left + right) / 2, baseline, SMALL_TEXT_SIZE, "middle",
                             fill="#444", class_="page-number")
                    break
        plural = "page" if report.count == 1 else "pages"
        out.text(f"{page_size_name(report.page_size)}: {report.count} {plural}",
                 LEFT + BAR_WIDTH + 8, baseline, SMALL_TEXT_SIZE, fill="#444", class_="caption")
        for offset in report.boundaries:
            x = self.x_of(offset)
            out.add("line", tooltip=f"{page_size_name(report.page_size)} page "
                    f"{offset // report.page_size + 1} begins at 0x{offset:04x}",
                    class_="page-boundary", data_page_size=report.page_size, data_offset=offset,
                    x1=x, y1=self.bar_top, x2=x, y2=top + height)

    def _draw_labels(self, out: _Elements) -> None:
        for placed in self.labels:
            label = placed.label
            baseline = self.bar_top - 8 - placed.row * LABEL_ROW
            out.add("line", class_="leader", x1=label.x, y1=baseline - ASCENT_EM * TEXT_SIZE,
                    x2=label.x, y2=self.bar_top)
            out.text(label.text, placed.left, baseline, fill=label.fill, class_=label.class_,
                     data_symbol=label.symbol)

    def _draw_legend(self, out: _Elements) -> None:
        top = self.legend_top
        out.add("rect", class_="swatch code", x=LEFT, y=top, width=14, height=14,
                fill=_CODE_FILLS[0])
        out.text("code", LEFT + 20, top + 11)
        out.add("rect", class_="swatch data", x=LEFT + 80, y=top, width=14, height=14,
                fill=_DATA_FILLS[0])
        out.text("data area", LEFT + 100, top + 11)
        out.add("line", class_="page-boundary legend", x1=LEFT + 200, y1=top, x2=LEFT + 200,
                y2=top + 14)
        out.text("page boundary", LEFT + 208, top + 11)
        smallest = self.reports[0].page_size if self.reports else 0
        across = f"0x{self.extent:04x} bytes"
        if smallest:
            pages = self.extent // smallest
            across += f", {pages} {'page' if pages == 1 else 'pages'} of {page_size_name(smallest)}"
        out.text(f"to scale: the bar is {across}", LEFT + 330, top + 11, SMALL_TEXT_SIZE,
                 fill="#444", class_="caption")


def _title(control_map: ControlPageMap) -> str:
    return (
        f"control page {control_map.entry}: 0x{control_map.size:04x} bytes, "
        f"code 0x{control_map.code_size:04x}, data 0x{control_map.data_size:04x}"
    )


def _tooltip(symbol: MapSymbol) -> str:
    aliases = f" (= {', '.join(symbol.aliases)})" if symbol.aliases else ""
    scope = ", global" if symbol.is_global else ""
    return (
        f"{symbol.name}{aliases}: {symbol.kind}{scope}, 0x{symbol.offset:04x}..0x{symbol.end:04x}"
        f" ({symbol.size} bytes)"
    )


def _size_text(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 and size else f"{size} bytes"
