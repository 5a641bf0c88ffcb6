"""The main job: read, rewrite, assemble both files, measure, and say what to write.

`regenerate()` runs the rewrite passes on the source, assembles the original and the
regenerated file with the real toolchain, and measures both control pages in the objects;
every number that reaches the header or the patch comes from those objects.
`run_rewrite()` checks that with verify's own passes and turns it into the files of the
output folder; the patch holds the whole change (the .S, the header and the C callers
changed by `callers`), made by `mail`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from relgen import __version__
from relgen.checks.execution.evidence import QUICK
from relgen.checks.inputs import inputs_from
from relgen.checks.report import Report
from relgen.checks.runner import Plan, page_sizes_for, run_checks
from relgen.errors import RelgenError
from relgen.kernel import callers, mail, render
from relgen.names import (
    DEFAULT_ENTRY,
    HEADER_INCLUDE,
    HEADER_NAME,
    LAYOUT_AFTER_SVG_NAME,
    LAYOUT_BEFORE_SVG_NAME,
    LAYOUT_JSON_NAME,
    LAYOUT_TEXT_NAME,
    PAGE_SIZES,
    PATCH_NAME,
    SOURCE_NAME,
)
from relgen.progress import QUIET, Progress
from relgen.rewrite import RewriteResult, rewrite_control_page
from relgen.source.configurations import AS_GIVEN, Configuration, Configurations
from relgen.source.files import SourceFile, kernel_path, require_regular_file
from relgen.source.parser import unparse
from relgen.source.region import check_procedures_closed
from relgen.toolchain import layout
from relgen.toolchain import pictures as layout_svg
from relgen.toolchain.measure import companion_headers, configurations_of, source_map
from relgen.toolchain.tree import KernelTree


@dataclass(frozen=True)
class Variant:
    """One configuration's measurements: both maps and the header's numbers."""

    configuration: Configuration
    before: layout.ControlPageMap
    after: layout.ControlPageMap
    header_facts: render.HeaderFacts


@dataclass(frozen=True)
class Regeneration:
    source: SourceFile
    result: RewriteResult
    new_text: str
    header_text: str
    before: layout.ControlPageMap
    after: layout.ControlPageMap
    standins: tuple[str, ...]
    header_facts: render.HeaderFacts
    caller_sources: callers.CallerSources | None = None  # the tree's C, as it was
    # every configuration checked, the first one being before/after/header_facts above
    variants: tuple[Variant, ...] = ()
    configurations: Configurations | None = None

    @property
    def changed(self) -> bool:
        return not self.result.already_code_first


def _area_facts(result: RewriteResult, before: layout.ControlPageMap
                ) -> tuple[render.DataAreaFacts, ...]:
    sizes = {s.name: s.size for s in before.symbols}
    facts = []
    for area in result.data_areas:
        size = sizes.get(area.name, area.size)
        if area.size is not None and size != area.size:
            raise RelgenError(f"{area.name}: the source reserves {area.size} bytes but the "
                              f"object holds {size}")
        facts.append(render.DataAreaFacts(area.name, area.size_macro, int(size or 0),
                                        result.argument_registers[area.name], area.name))
    return tuple(facts)


def _header_facts(source: SourceFile, result: RewriteResult,
                  areas: tuple[render.DataAreaFacts, ...],
                  control_map: layout.ControlPageMap | None, code_size: int,
                  sources: callers.CallerSources | None = None) -> render.HeaderFacts:
    # a draft knows only that the entry opens the page
    points = (render.EntryPointFacts(result.region.entry, 0, True),) if control_map is None \
        else tuple(
        render.EntryPointFacts(s.name, s.offset, s.name == result.region.entry)
        for s in control_map.entry_points)
    return render.HeaderFacts(
        relgen_version=__version__, input_path=kernel_path(source), input_sha256=source.sha256,
        entry=result.region.entry, code_size=code_size, data_areas=areas, entry_points=points,
        # the parameters as the tree's own machine_kexec.c names and orders them
        existing_arguments=render.read_typedef_arguments(sources.machine_kexec_c)
        if sources is not None else render.UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS,
    )


def regenerate(source: SourceFile, tree: KernelTree, workdir: Path, *,
               entry: str = DEFAULT_ENTRY, include_dirs: Sequence[Path] = (),
               configuration: Configuration = AS_GIVEN) -> Regeneration:
    """Rewrite, assemble both files in every configuration, and measure them. Nothing is
    written outside workdir."""
    require_regular_file(source.path)
    check_procedures_closed(source.module)
    result = rewrite_control_page(source.module, entry)
    new_text = unparse(result.module)
    configurations = configurations_of(source.module, entry, configuration)
    if result.already_code_first:
        headers = companion_headers(source, include_dirs)
        after, assembled, _ = source_map(source, tree, workdir / "new", entry=entry,
                                         include_dirs=include_dirs, extra_headers=headers,
                                         configuration=configurations.each[0])
        facts = _header_facts(source, result, (), after, after.size)
        return Regeneration(source, result, new_text, headers[HEADER_INCLUDE], after, after,
                            assembled.standins, facts,
                            variants=(Variant(configurations.each[0], after, after, facts),),
                            configurations=configurations)

    sources = callers.read_callers(tree.root)
    originals = []
    for each in configurations.each:
        before, original, _ = source_map(source, tree, workdir / "original" / each.folder,
                                         entry=entry, include_dirs=include_dirs,
                                         extra_headers={}, configuration=each)
        originals.append((each, before, _area_facts(result, before)))
    # The regenerated file uses only the area sizes from the header, so a first rendering
    # (with the old code size and only the entry point, as only the new object can tell)
    # assembles it exactly as the final header will.
    draft = render_variants(configurations, [
        _header_facts(source, result, areas, None, before.code_size, sources)
        for _, before, areas in originals])
    new_path = workdir / "new" / SOURCE_NAME
    new_path.parent.mkdir(parents=True, exist_ok=True)
    new_path.write_text(new_text, encoding="utf-8", newline="")
    new_source = SourceFile(new_path, SOURCE_NAME, new_text, result.module)
    variants = []
    for each, before, areas in originals:
        after, _, _ = source_map(new_source, tree, workdir / "new" / each.folder, entry=entry,
                                 include_dirs=include_dirs,
                                 extra_headers={HEADER_INCLUDE: draft}, configuration=each)
        facts = _header_facts(source, result, areas, after, after.size, sources)
        variants.append(Variant(each, before, after, facts))
    first = variants[0]
    header = render_variants(configurations, [v.header_facts for v in variants])
    return Regeneration(source, result, new_text, header, first.before, first.after,
                        original.standins, first.header_facts, caller_sources=sources,
                        variants=tuple(variants), configurations=configurations)


def render_variants(configurations: Configurations,
                    facts: Sequence[render.HeaderFacts]) -> str:
    """The header: one set of numbers, or one per configuration under its condition."""
    if len(set(facts)) == 1:
        return render.render_header(facts[0])
    # all switches off (the first configuration) comes last, so that the header reads like
    # the source: `#if defined(CONFIG_XEN)` ... `#else` ...; configurations with the same
    # numbers share one condition
    grouped: dict[render.HeaderFacts, list[str]] = {}
    for each, numbers in list(zip(configurations.each, facts, strict=True))[::-1]:
        grouped.setdefault(numbers, []).append(f"({each.condition})")
    variants: list[tuple[str | None, render.HeaderFacts]] = [
        (" || ".join(conditions) if len(conditions) > 1 else conditions[0][1:-1], numbers)
        for numbers, conditions in grouped.items()]
    if configurations.complete:
        variants[-1] = (None, variants[-1][1])  # what every other case leaves: #else
    return render.render_header(facts[0], variants=tuple(variants))


def control_page_size_before(tree: KernelTree) -> int | None:
    """KEXEC_CONTROL_PAGE_SIZE of the tree's asm/kexec.h, e.g. (8192 + 8192 + 4096)."""
    path = tree.root / callers.KEXEC_H_PATH
    return callers.control_page_size(path.read_text(encoding="utf-8")) if path.is_file() \
        else None


def _pages(size: int, page: int) -> int:
    """Bytes kimage_alloc_control_pages(image, get_order(size)) takes: a power of two pages."""
    pages = 1
    while pages * page < size:
        pages *= 2
    return pages * page


def control_memory(before_size: int, code_page_size: int, stacks_size: int,
                   page_sizes: Sequence[int]) -> tuple[render.ControlMemory, ...]:
    """Control memory per image at each page size: one allocation before, two after."""
    return tuple(render.ControlMemory(page, _pages(before_size, page),
                                    _pages(code_page_size, page) + _pages(stacks_size, page))
                 for page in page_sizes)


def patch_files(regen: Regeneration) -> list[mail.FileChange]:
    """The four files of the commit: the .S, the header, and the C changed with spatch."""
    changes = [
        mail.FileChange(kernel_path(regen.source), regen.source.text.encode("utf-8"),
                         regen.new_text.encode("utf-8")),
        mail.FileChange(render.HEADER_PATH, None, regen.header_text.encode("utf-8")),
    ]
    if regen.caller_sources is not None:
        new = callers.change_callers(regen.caller_sources, regen.header_facts)
        for path, old_text in regen.caller_sources.by_path().items():
            changes.append(mail.FileChange(path, old_text.encode("utf-8"),
                                            new.by_path()[path].encode("utf-8")))
    return changes


def patch_text(regen: Regeneration, tree: KernelTree,
               changes: Sequence[mail.FileChange], instructions_compared: int | None = None,
               *, author: str = mail.PLACEHOLDER_IDENTITY, date: str | None = None) -> str:
    """The format-patch mail of the whole change (`changes`, from `patch_files`), by git."""
    source = regen.source
    before_size = control_page_size_before(tree) or regen.before.size
    facts = render.PatchFacts(
        relgen_version=__version__, input_path=kernel_path(source),
        input_sha256=source.sha256,
        entry=regen.result.region.entry, data_areas=regen.header_facts.data_areas,
        before_size=before_size,
        after_size=regen.header_facts.code_page_size, code_size=regen.after.size,
        instructions_rewritten=len(regen.result.rewritten),
        instructions_compared=instructions_compared,
        before_region_size=regen.before.size,
        code_after_data=_code_after_data(regen.before),
        signed_off_by=mail.parse_identity(author),
        existing_arguments=regen.header_facts.existing_arguments,
        control_memory=control_memory(before_size, regen.header_facts.code_page_size,
                                      regen.header_facts.stacks_size, PAGE_SIZES),
        callers_changed=regen.caller_sources is not None,
        configurations=regen.configurations.describe()
        if regen.configurations and regen.configurations.switches else None,
    )
    made = mail.format_patch(changes, subject=render.DEFAULT_SUBJECT,
                             body=render.render_commit_message(facts), author=author,
                             date=date or mail.FIXED_DATE)
    return made.decode("utf-8")


def source_diff(run: RewriteRun) -> bytes:
    """The whole change (the files of the patch) as one diff, for `relgen rewrite --diff`."""
    return mail.diff_files(run.changes)


def _code_after_data(before: layout.ControlPageMap) -> tuple[str, ...]:
    first_data = next((s.offset for s in before.symbols if s.kind == "data"), None)
    if first_data is None:
        return ()
    return tuple(s.name for s in before.entry_points if s.offset > first_data)


def layout_report(regen: Regeneration, page_sizes: Sequence[int]) -> dict[str, bytes]:
    """The map as text and JSON, and its two pictures, before and after."""
    checked = f"configurations checked: {regen.configurations.describe()}\n" \
        if regen.configurations else ""
    text = (checked + "before: " + source_label(regen) + "\n"
            + layout.render_text(regen.before, page_sizes)
            + "\nafter: regenerated " + SOURCE_NAME + "\n"
            + layout.render_text(regen.after, page_sizes))
    data = {"before": layout.to_json(regen.before, page_sizes),
            "after": layout.to_json(regen.after, page_sizes)}
    before_svg, after_svg = layout_svg.render_before_after(regen.before, regen.after, page_sizes)
    return {
        LAYOUT_TEXT_NAME: text.encode("utf-8"),
        LAYOUT_JSON_NAME: (json.dumps(data, indent=2) + "\n").encode("utf-8"),
        LAYOUT_BEFORE_SVG_NAME: before_svg.encode("utf-8"),
        LAYOUT_AFTER_SVG_NAME: after_svg.encode("utf-8"),
    }


def source_label(regen: Regeneration) -> str:
    return f"{regen.source.shown} (sha256 {regen.source.sha256[:16]})"


def primary_outputs(regen: Regeneration) -> dict[str, bytes]:
    """The regenerated source and its header: what verification needs."""
    return {SOURCE_NAME: regen.new_text.encode("utf-8"),
            HEADER_NAME: regen.header_text.encode("utf-8")}


def scratch_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="relgen-")


@dataclass(frozen=True)
class RewriteRun:
    """What `relgen rewrite` would write, and the report of the checks it ran before.

    Every mode (write, `--diff`, `--check`) and `relgen diff` get this from `run_rewrite`,
    so they accept and refuse the same inputs with the same errors.
    """

    regen: Regeneration
    files: dict[str, bytes]
    changes: tuple[mail.FileChange, ...]  # the files of the patch, old and new
    report: Report

    @property
    def passed(self) -> bool:
        return self.report.passed


def run_rewrite(source: SourceFile, tree: KernelTree, *,
                entry: str = DEFAULT_ENTRY, include_dirs: Sequence[Path] = (),
                author: str = mail.PLACEHOLDER_IDENTITY, date: str | None = None,
                configuration: Configuration = AS_GIVEN, kernel_skipped: str | None = None,
                progress: Progress = QUIET) -> RewriteRun:
    """Rewrite, assemble, check as `relgen verify` does, and render every output.

    The files are staged in a scratch folder and checked by the checks' runner in two
    plans: before the mail, the twin objects, execution on a kexec image, the header and
    the kernel checks on the changed files; after it, the patch's own checks. The mail
    states what the first found (`kernel_skipped` says why the kernel checks do not run).
    """
    with scratch_folder() as scratch:
        work = Path(scratch)
        progress.phase("rewriting and assembling")
        regen = regenerate(source, tree, work, entry=entry, include_dirs=include_dirs,
                           configuration=configuration)
        progress.phase("changing the C callers with spatch")
        # spatch runs once: the mail and `--diff` show the same changed files
        changes = tuple(patch_files(regen)) if regen.changed else ()
        staged = work / "staged"
        staged.mkdir()
        primary = primary_outputs(regen)
        for name, data in primary.items():
            (staged / name).write_bytes(data)
        new = SourceFile(staged / SOURCE_NAME, SOURCE_NAME, regen.new_text, regen.result.module)
        inputs = inputs_from(staged, source, new, tree, regen.result, entry=entry,
                             include_dirs=include_dirs, configuration=configuration)
        before_mail = Plan(page_sizes=page_sizes_for(tree), execution=QUICK, patch=False,
                           kernel=regen.changed, kernel_skipped=kernel_skipped,
                           changed={c.path: c.new for c in changes})
        report = run_checks(inputs, before_mail, work / "checks", progress)
        made: dict[str, bytes] = {}
        if regen.changed:
            made[PATCH_NAME] = patch_text(regen, tree, changes,
                                          report.instructions_compared, author=author,
                                          date=date).encode("utf-8")
            (staged / PATCH_NAME).write_bytes(made[PATCH_NAME])
        after_mail = Plan(objects=False, execution=None, header=False, kernel=False)
        mail_report = run_checks(replace(inputs, patch_path=staged / PATCH_NAME if made
                                         else None), after_mail, work / "mail", progress)
    files = {**primary, **layout_report(regen, PAGE_SIZES), **made}
    return RewriteRun(regen, files, changes,
                      replace(report, checks=report.checks + mail_report.checks))
