"""layout: the control-page map of real objects (upstream, the 2006 shape, a page-crossing
entry), its page report, and the text, JSON and SVG views. Expected offsets come from nm; the
pictures are checked geometrically, with the renderer's character-width model."""

from __future__ import annotations

import json
import struct
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from conftest import FIXTURES, require_tool
from relgen.errors import RelgenError
from relgen.names import PAGE_SIZES
from relgen.pipeline import Regeneration, layout_report, regenerate
from relgen.source.files import load_source
from relgen.toolchain.assemble import assemble
from relgen.toolchain.elf import load_object
from relgen.toolchain.layout import (
    ControlPageMap,
    MapSymbol,
    build_map,
    map_object_file,
    page_report,
    render_text,
    to_json,
)
from relgen.toolchain.pictures import FONT_FAMILY, Box, render_svg, shared_extent, text_box
from relgen.toolchain.tree import KernelTree

SVG = "{http://www.w3.org/2000/svg}"
STACKS = frozenset({"memory_stack", "register_stack"})
ENTRY, END = "relocate_new_kernel", "relocate_new_kernel_end"


def nm_values(object_path: Path) -> dict[str, int]:
    output = subprocess.run(
        ["ia64-linux-gnu-nm", str(object_path)], capture_output=True, text=True, check=True
    ).stdout
    return {
        f[2]: int(f[0], 16) for f in (line.split() for line in output.splitlines()) if len(f) == 3
    }


@pytest.fixture(scope="module")
def objects(
    upstream_tree: Path, toolchain: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The objects of upstream relocate_kernel.S and of the layout fixtures, assembled once."""
    tree = KernelTree(upstream_tree)
    workdir = tmp_path_factory.mktemp("layout")
    sources = {
        "upstream": tree.relocate_kernel,
        "2006": FIXTURES / "layout_2006_shape.S",
        "crossing": FIXTURES / "layout_page_crossing.S",
    }
    made = {}
    for name, source in sources.items():
        assembled = assemble(source, tree, workdir / name, fatal_warnings=True)
        made[name] = assembled.object_path
    return made


@pytest.fixture(scope="module")
def upstream_map(objects: dict[str, Path]) -> ControlPageMap:
    return map_object_file(objects["upstream"], entry=ENTRY, end_label=END, data_areas=STACKS)


@pytest.fixture(scope="module")
def shape_2006_map(objects: dict[str, Path]) -> ControlPageMap:
    return map_object_file(objects["2006"], entry=ENTRY, end_label=END, data_areas=STACKS)


# ---- the map ---------------------------------------------------------------------------------


def test_upstream_map(objects: dict[str, Path], upstream_map: ControlPageMap) -> None:
    nm = nm_values(objects["upstream"])
    rows = [(s.name, s.offset, s.size, s.kind, s.is_global) for s in upstream_map.symbols]
    assert rows == [
        (ENTRY, 0, nm["memory_stack"] - nm[ENTRY], "code", True),
        ("memory_stack", nm["memory_stack"], 8192, "data", False),
        ("register_stack", nm["register_stack"], 8192, "data", False),
    ]
    assert (upstream_map.start, upstream_map.end) == (nm[ENTRY], nm[END])
    assert upstream_map.size == nm[END] - nm[ENTRY]
    # memory_stack_end is where register_stack begins: folded in, not a piece of its own.
    assert upstream_map.symbol("register_stack").aliases == ("memory_stack_end",)
    assert upstream_map.symbol("memory_stack_end").name == "register_stack"
    assert upstream_map.code_size == upstream_map.code_end == nm["memory_stack"]
    assert upstream_map.data_size == 16384
    assert [s.name for s in upstream_map.entry_points] == [ENTRY]
    assert END not in {s.name for s in upstream_map.symbols}


def test_upstream_has_no_page_warnings(upstream_map: ControlPageMap) -> None:
    for report in page_report(upstream_map, PAGE_SIZES):
        assert report.warnings == ()
        assert report.count == -(-upstream_map.size // report.page_size)
        assert report.boundaries == tuple(
            range(report.page_size, upstream_map.size, report.page_size)
        )


def test_data_areas_are_the_callers_word(objects: dict[str, Path]) -> None:
    obj = load_object(objects["upstream"])
    everything_code = build_map(obj, entry=ENTRY, end_label=END, data_areas=())
    assert {s.kind for s in everything_code.symbols} == {"code"}
    assert everything_code.code_size == everything_code.size


def test_2006_shape_map(objects: dict[str, Path], shape_2006_map: ControlPageMap) -> None:
    nm = nm_values(objects["2006"])
    names = ["relocate_new_kernel", "memory_stack", "register_stack"]
    names += ["kexec_fake_sal_rendez", "kexec_fake_sal_spin"]
    assert [s.name for s in shape_2006_map.symbols] == names
    for symbol in shape_2006_map.symbols:
        assert symbol.offset == nm[symbol.name] - nm[ENTRY]
    assert shape_2006_map.end == nm[END]
    # The size word and what follows it are outside the copied region.
    assert nm["relocate_new_kernel_size"] >= shape_2006_map.end
    assert nm["ia64_dump_cpu_regs"] > shape_2006_map.end
    assert [s.name for s in shape_2006_map.entry_points] == [
        "relocate_new_kernel",
        "kexec_fake_sal_rendez",
        "kexec_fake_sal_spin",
    ]
    assert shape_2006_map.symbol("kexec_fake_sal_spin").end == shape_2006_map.size
    assert shape_2006_map.code_end == shape_2006_map.size


@pytest.mark.parametrize("page_size", [4096, 16384])
def test_2006_shape_entries_beyond_the_first_page(
    shape_2006_map: ControlPageMap, page_size: int
) -> None:
    (report,) = page_report(shape_2006_map, [page_size])
    kib = page_size // 1024
    for name in ("kexec_fake_sal_rendez", "kexec_fake_sal_spin"):
        offset = shape_2006_map.symbol(name).offset
        page = offset // page_size
        expected = (f"entry point {name} at 0x{offset:04x} is beyond the first {kib} KiB page "
                    f"(it is in page {page + 1}, from 0x{page * page_size:04x})")
        assert expected in report.warnings, report.warnings
    assert not any("relocate_new_kernel " in w for w in report.warnings)


def test_2006_shape_fits_in_a_64k_page(shape_2006_map: ControlPageMap) -> None:
    (report,) = page_report(shape_2006_map, [65536])
    assert (report.count, report.boundaries, report.warnings) == (1, (), ())


def test_an_entry_point_crossing_a_page(objects: dict[str, Path]) -> None:
    nm = nm_values(objects["crossing"])
    control_map = map_object_file(
        objects["crossing"], entry=ENTRY, end_label="region_end", data_areas={"scratch_area"}
    )
    crossing = control_map.symbol("crossing_entry")
    # The fixture is built to straddle the first 4 KiB boundary; make sure it still does.
    assert crossing.offset == nm["crossing_entry"] < 4096 < nm["region_end"] == crossing.end
    reports = {r.page_size: r for r in page_report(control_map, PAGE_SIZES)}
    assert reports[4096].warnings == (
        f"entry point crossing_entry at 0x{crossing.offset:04x} crosses the 4 KiB page boundary "
        f"at 0x1000 (it ends at 0x{crossing.end:04x})",
    )
    assert all(reports[size].warnings == () for size in (8192, 16384, 65536))


def test_missing_labels_are_errors(objects: dict[str, Path]) -> None:
    obj = load_object(objects["upstream"])
    with pytest.raises(RelgenError, match="entry no_such_entry"):
        build_map(obj, entry="no_such_entry", end_label=END, data_areas=STACKS)
    with pytest.raises(RelgenError, match="end label no_such_end"):
        build_map(obj, entry=ENTRY, end_label="no_such_end", data_areas=STACKS)
    with pytest.raises(RelgenError, match="lies before"):
        build_map(obj, entry="memory_stack", end_label=ENTRY, data_areas=STACKS)


# ---- the views -------------------------------------------------------------------------------


def test_text_table(shape_2006_map: ControlPageMap) -> None:
    text = render_text(shape_2006_map, PAGE_SIZES)
    lines = text.splitlines()
    rendez = shape_2006_map.symbol("kexec_fake_sal_rendez")
    row = next(line for line in lines if line.startswith(f"0x{rendez.offset:04x}  kexec_fake"))
    assert row.split()[-4:] == ["code", f"0x{rendez.size:04x}", f"0x{rendez.end:04x}", "global"]
    stack = next(line for line in lines if " memory_stack " in line)
    assert stack.split()[2:4] == ["data", "0x2000"]
    assert "---- 4 KiB page 2 begins at 0x1000 ----" in lines
    assert "---- 4 KiB page 5, 8 KiB page 3, 16 KiB page 2 begin at 0x4000 ----" in lines
    # The boundary lines sit between the rows they separate.
    boundary = lines.index("---- 4 KiB page 2 begins at 0x1000 ----")
    following = next(line for line in lines[boundary:] if not line.startswith("----"))
    assert " memory_stack " in lines[boundary - 1] and " register_stack " in following
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 6  # two entries, each beyond the first 4, 8 and 16 KiB page
    assert (
        f"warning: entry point kexec_fake_sal_rendez at 0x{rendez.offset:04x} is beyond the "
        "first 4 KiB page" in text
    )


def test_json(shape_2006_map: ControlPageMap) -> None:
    data = to_json(shape_2006_map, PAGE_SIZES)
    assert json.loads(json.dumps(data)) == data  # plain JSON values only: no tuples, no objects
    assert list(data) == ["region", "symbols", "pages"]
    assert data["region"]["entry"] == ENTRY
    assert (data["region"]["start"], data["region"]["end"]) == (
        shape_2006_map.start,
        shape_2006_map.end,
    )
    assert [s["name"] for s in data["symbols"]] == [s.name for s in shape_2006_map.symbols]
    assert {"name", "offset", "size", "kind", "global"} <= set(data["symbols"][0])
    assert all(isinstance(s["offset"], int) and isinstance(s["size"], int) for s in data["symbols"])
    assert list(data["pages"]) == ["4096", "8192", "16384", "65536"]
    size = shape_2006_map.size
    for page_size in PAGE_SIZES:
        page = data["pages"][str(page_size)]
        assert page["count"] == -(-size // page_size)
        assert page["boundaries"] == list(range(page_size, size, page_size))
    assert len(data["pages"]["4096"]["warnings"]) == 2
    assert data["pages"]["65536"]["warnings"] == []


def test_svg(shape_2006_map: ControlPageMap) -> None:
    root = ElementTree.fromstring(render_svg(shape_2006_map, PAGE_SIZES))
    assert root.tag == f"{SVG}svg"
    pieces = [r for r in root.iter(f"{SVG}rect") if r.get("class") in ("code", "data")]
    assert [(r.get("data-symbol"), r.get("class")) for r in pieces] == [
        (s.name, s.kind) for s in shape_2006_map.symbols
    ]
    # To scale: every piece's width is proportional to its size, and they tile the bar.
    (region,) = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "region"]
    assert int(region.get("data-size", "0")) == shape_2006_map.size
    scale = float(region.get("width", "0")) / shape_2006_map.size
    # The shaded part of the bar is whole pages of the smallest size, the bar itself too.
    for kind in ("pages", "extent"):
        (pages,) = [r for r in root.iter(f"{SVG}rect") if r.get("class") == kind]
        extent = int(pages.get("data-size", "0"))
        assert extent % 4096 == 0 and extent - 4096 < shape_2006_map.size <= extent
        assert float(pages.get("width", "0")) == pytest.approx(extent * scale, abs=0.01)
    left = float(pieces[0].get("x", "0"))
    for rect, symbol in zip(pieces, shape_2006_map.symbols, strict=True):
        assert float(rect.get("width", "0")) == pytest.approx(symbol.size * scale, abs=0.01)
        assert float(rect.get("x", "0")) == pytest.approx(left + symbol.offset * scale, abs=0.01)
    lines = [line for line in root.iter(f"{SVG}line") if line.get("class") == "page-boundary"]
    size = shape_2006_map.size
    for page_size in PAGE_SIZES:
        of_size = [line for line in lines if line.get("data-page-size") == str(page_size)]
        expected = list(range(page_size, size, page_size))
        assert [int(line.get("data-offset", "-1")) for line in of_size] == expected
        for line, offset in zip(of_size, expected, strict=True):
            assert float(line.get("x1", "0")) == pytest.approx(left + offset * scale, abs=0.01)
    labels = {t.get("data-symbol"): t.text for t in root.iter(f"{SVG}text") if t.get("data-symbol")}
    for entry in shape_2006_map.entry_points:
        assert labels[entry.name] == f"{entry.name} 0x{entry.offset:04x}"
    assert labels[END] == f"{END} 0x{shape_2006_map.size:04x}"
    legend = [r.get("class") for r in root.iter(f"{SVG}rect") if "swatch" in r.get("class", "")]
    assert legend == ["swatch code", "swatch data"]


def test_svg_of_upstream_has_no_label_off_the_picture(upstream_map: ControlPageMap) -> None:
    for page_sizes in SELECTIONS:
        root = ElementTree.fromstring(render_svg(upstream_map, page_sizes))
        width, height = float(root.get("width", "0")), float(root.get("height", "0"))
        for box, _ in text_boxes(root):
            assert 0 <= box.left and box.right <= width and 0 <= box.top and box.bottom <= height


# ---- the pictures, looked at geometrically ---------------------------------------------------

SELECTIONS = [(4096,), (8192,), (16384,), (65536,), PAGE_SIZES]


def text_boxes(root: ElementTree.Element) -> list[tuple[Box, ElementTree.Element]]:
    """Every text of the picture with the box the renderer's character-width model gives it."""
    return [
        (
            text_box(
                element.text or "",
                float(element.get("x", "0")),
                float(element.get("y", "0")),
                float(element.get("font-size", "0")),
                element.get("text-anchor", "start"),  # type: ignore[arg-type]
            ),
            element,
        )
        for element in root.iter(f"{SVG}text")
    ]


def collisions(svg: str) -> list[str]:
    """Each text that another text or a line crosses, said in words."""
    root = ElementTree.fromstring(svg)
    boxes = text_boxes(root)
    found = []
    for index, (box, element) in enumerate(boxes):
        for other, other_element in boxes[index + 1 :]:
            if box.left < other.right and other.left < box.right and (
                box.top < other.bottom and other.top < box.bottom
            ):
                found.append(f"{element.text!r} overlaps {other_element.text!r}")
        for line in root.iter(f"{SVG}line"):
            x1, y1, x2, y2 = (float(line.get(k, "0")) for k in ("x1", "y1", "x2", "y2"))
            # a vertical line is the interval [x, x]: it crosses where left < x < right
            if (min(x1, x2) < box.right and box.left < max(x1, x2)
                    and min(y1, y2) < box.bottom and box.top < max(y1, y2)):
                found.append(f"a {line.get('class')} line at x={x1} crosses {element.text!r}")
    return found


def named_pieces(svg: str, control_map: ControlPageMap) -> dict[str, list[str]]:
    """The texts that name each piece of the map and its end."""
    root = ElementTree.fromstring(svg)
    names: dict[str, list[str]] = {s.name: [] for s in control_map.symbols}
    names[control_map.end_label] = []
    for element in root.iter(f"{SVG}text"):
        if element.get("data-symbol") in names:
            names[element.get("data-symbol", "")].append(element.text or "")
    return names


@pytest.fixture(scope="module")
def regenerations(
    upstream_tree: Path, toolchain: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Regeneration]:
    """Upstream 6.1 and the 2006 shape, before and after the rewrite."""
    tree = KernelTree(upstream_tree)
    return {
        name: regenerate(load_source(path, tree), tree, tmp_path_factory.mktemp(name))
        for name, path in (("upstream", tree.relocate_kernel),
                           ("2006", FIXTURES / "layout_2006_shape.S"))
    }


def pictures(
    regen: Regeneration, page_sizes: tuple[int, ...]
) -> dict[str, tuple[str, ControlPageMap]]:
    """What `rewrite` writes (before and after at one scale) and what `layout` prints (each
    map at its own)."""
    report = layout_report(regen, page_sizes)
    return {
        "layout-before.svg": (report["layout-before.svg"].decode(), regen.before),
        "layout-after.svg": (report["layout-after.svg"].decode(), regen.after),
        "layout of before": (render_svg(regen.before, page_sizes), regen.before),
        "layout of after": (render_svg(regen.after, page_sizes), regen.after),
    }


@pytest.mark.parametrize("page_sizes", SELECTIONS, ids=lambda sizes: "+".join(map(str, sizes)))
@pytest.mark.parametrize("shape", ["upstream", "2006"])
def test_no_label_is_crossed(
    regenerations: dict[str, Regeneration], shape: str, page_sizes: tuple[int, ...]
) -> None:
    for name, (svg, control_map) in pictures(regenerations[shape], page_sizes).items():
        assert collisions(svg) == [], name
        # and none went missing on the way: every piece and the end are named
        for symbol, texts in named_pieces(svg, control_map).items():
            assert texts and texts[0].startswith(symbol), (name, symbol, texts)


@pytest.mark.parametrize("page_sizes", SELECTIONS, ids=lambda sizes: "+".join(map(str, sizes)))
def test_names_inside_the_bar_stay_inside_their_piece(
    regenerations: dict[str, Regeneration], page_sizes: tuple[int, ...]
) -> None:
    for shape, regen in regenerations.items():
        root = ElementTree.fromstring(render_svg(regen.before, page_sizes))
        pieces = {r.get("data-symbol"): r for r in root.iter(f"{SVG}rect")
                  if r.get("class") == "data"}
        inside = [(box, t) for box, t in text_boxes(root) if t.get("class") == "area-label"
                  and t.get("fill") == "#fff"]
        assert inside, (shape, page_sizes)  # else the loop below would assert nothing
        for box, text in inside:
            piece = pieces[text.get("data-symbol")]
            x, y = float(piece.get("x", "0")), float(piece.get("y", "0"))
            width, height = float(piece.get("width", "0")), float(piece.get("height", "0"))
            assert x <= box.left and box.right <= x + width, (shape, text.text)
            assert y <= box.top and box.bottom <= y + height, (shape, text.text)


def test_64k_picture_still_names_the_stacks(upstream_map: ControlPageMap) -> None:
    svg = render_svg(upstream_map, [65536])
    names = named_pieces(svg, upstream_map)
    assert names["memory_stack"] and names["register_stack"]
    assert "8 KiB" in " ".join(names["memory_stack"] + names["register_stack"])
    assert collisions(svg) == []


def test_before_and_after_share_a_scale(regenerations: dict[str, Regeneration]) -> None:
    for shape, regen in regenerations.items():
        report = layout_report(regen, PAGE_SIZES)
        scales = []
        for name in ("layout-before.svg", "layout-after.svg"):
            root = ElementTree.fromstring(report[name])
            rects = {r.get("class"): r for r in root.iter(f"{SVG}rect")}
            bar, region = rects["extent"], rects["region"]
            scale = float(bar.get("width", "0")) / int(bar.get("data-size", "1"))
            scales.append((scale, float(bar.get("x", "0"))))
            # every byte drawn at that scale: the region and its entry procedure alike
            assert float(region.get("width", "0")) == pytest.approx(
                int(region.get("data-size", "0")) * scale, abs=0.01), (shape, name)
            (code,) = [r for r in root.iter(f"{SVG}rect") if r.get("data-symbol") == ENTRY]
            assert float(code.get("width", "0")) == pytest.approx(
                int(code.get("data-size", "0")) * scale, abs=0.01), (shape, name)
        assert scales[0] == scales[1], shape
        # the before map is the larger: its pages are what both bars stand for
        assert regen.after.size < regen.before.size
        assert int(rects["extent"].get("data-size", "0")) == 0x5000 == shared_extent(
            [regen.before], [4096])


def test_svg_shows_the_warnings(shape_2006_map: ControlPageMap,
                                upstream_map: ControlPageMap) -> None:
    root = ElementTree.fromstring(render_svg(shape_2006_map, PAGE_SIZES))
    shown = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "warning"]
    expected = [f"warning: {w}" for r in page_report(shape_2006_map, PAGE_SIZES)
                for w in r.warnings]
    assert len(expected) == 6 and shown == expected
    red = {t.get("data-symbol") for t in root.iter(f"{SVG}text")
           if t.get("class") == "entry-label" and t.get("fill") != "#111"}
    assert red == {"kexec_fake_sal_rendez", "kexec_fake_sal_spin"}
    (at_64k,) = [ElementTree.fromstring(render_svg(shape_2006_map, [65536]))]
    assert not [t for t in at_64k.iter(f"{SVG}text") if t.get("class") == "warning"]
    upstream = ElementTree.fromstring(render_svg(upstream_map, PAGE_SIZES))
    assert not [t for t in upstream.iter(f"{SVG}text") if t.get("class") == "warning"]


@pytest.mark.parametrize("page_sizes", SELECTIONS, ids=lambda sizes: "+".join(map(str, sizes)))
def test_a_crossing_entry_in_the_picture(objects: dict[str, Path],
                                         page_sizes: tuple[int, ...]) -> None:
    control_map = map_object_file(
        objects["crossing"], entry=ENTRY, end_label="region_end", data_areas={"scratch_area"}
    )
    svg = render_svg(control_map, page_sizes)
    assert collisions(svg) == []
    root = ElementTree.fromstring(svg)
    warnings = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "warning"]
    assert [w.split(" crosses ")[0] for w in warnings] == (
        ["warning: entry point crossing_entry at 0x0fe0"] if 4096 in page_sizes else [])


def crowded_map() -> ControlPageMap:
    """Labels that fight for room: a 0x20-byte entry between the stacks and code after them,
    two entries at one offset, a zero-size data area, and code right at the end."""
    pieces = [
        MapSymbol(ENTRY, 0, 0x40, "code", True),
        MapSymbol("memory_stack", 0x40, 0x2000, "data", False),
        MapSymbol("tiny_entry", 0x2040, 0x20, "code", True),
        MapSymbol("register_stack", 0x2060, 0x2000, "data", False),
        MapSymbol("empty_area", 0x4060, 0, "data", False),
        MapSymbol("twin_a", 0x4060, 0, "code", True),
        MapSymbol("twin_b", 0x4060, 0x20, "code", True),
        MapSymbol("tail_code", 0x4080, 0xf80, "code", False),
    ]
    return ControlPageMap(entry=ENTRY, start=0, end=0x5000, symbols=tuple(pieces),
                          end_label=END)


@pytest.mark.parametrize("page_sizes", SELECTIONS, ids=lambda sizes: "+".join(map(str, sizes)))
def test_crowded_labels_are_not_crossed(page_sizes: tuple[int, ...]) -> None:
    control_map = crowded_map()
    svg = render_svg(control_map, page_sizes)
    assert collisions(svg) == []
    for symbol, texts in named_pieces(svg, control_map).items():
        assert texts and texts[0].startswith(symbol), (symbol, texts)


@pytest.mark.parametrize("font_size", [10, 12, 14])
def test_the_width_model_holds_what_a_renderer_draws(tmp_path: Path, font_size: int) -> None:
    """The geometric checks above are only as good as the model: rsvg-convert draws a text
    alone and crops the picture to its ink, which must lie within the model's box, and not
    far within it (a model twice too wide would pass the checks and waste the picture)."""
    require_tool("rsvg-convert")
    for text in ("relocate_new_kernel_end 0x4340", "Wg|_" * 30):
        svg = tmp_path / "text.svg"
        svg.write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="100" '
            f'font-family="{FONT_FAMILY}"><text id="t" x="10" y="60" font-size="{font_size}">'
            f"{escape(text)}</text></svg>"
        )
        png = tmp_path / "text.png"
        subprocess.run(["rsvg-convert", "-i", "t", str(svg), "-o", str(png)], check=True)
        # The PNG's IHDR chunk gives its size: with -i, the text's ink, rounded up to pixels.
        ink_width, ink_height = struct.unpack(">II", png.read_bytes()[16:24])
        box = text_box(text, 10, 60, font_size)
        width, height = box.right - box.left, box.bottom - box.top
        assert ink_width - 1 <= width <= ink_width * 1.1, (text, ink_width, width)
        assert ink_height - 1 <= height <= ink_height * 1.5, (text, ink_height, height)
