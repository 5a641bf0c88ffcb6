"""The main job, `relgen rewrite`: regenerate, check, and say what to write.

`run_rewrite()` regenerates the source (`relgen.regenerate`), changes the C callers
(`kernel.callers`, with spatch), runs the checks before the mail (the twin objects, both
pages on a kexec image, the header, the kernel's checkers on the changed files), writes the
mail that states what they found (`kernel.message`, made by git in `kernel.mail`), runs the
patch's own checks on it, and returns every output in memory; the command line writes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from relgen import __version__
from relgen.checks.execution.evidence import QUICK
from relgen.checks.inputs import inputs_from
from relgen.checks.report import Report
from relgen.checks.runner import Plan, page_sizes_for, run_checks
from relgen.kernel import callers, mail
from relgen.kernel.message import (
    Evidence,
    PatchFacts,
    control_memory,
    render_commit_message,
    render_notes,
    subject,
)
from relgen.kernel.review import checkpatch_notes, subject_prefix
from relgen.names import (
    DEFAULT_ENTRY,
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
from relgen.regenerate import Regeneration, regenerate
from relgen.scratch import scratch_folder
from relgen.source.configurations import AS_GIVEN, Configuration
from relgen.source.files import SourceFile, kernel_path
from relgen.toolchain import layout
from relgen.toolchain import pictures as layout_svg
from relgen.toolchain.tree import KernelTree


def patch_files(regen: Regeneration) -> list[mail.FileChange]:
    """The four files of the commit: the .S, the header, and the C changed with spatch."""
    assert regen.header_facts is not None, "an input in code-first layout has no change"
    era = regen.tree.era
    changes = [
        mail.FileChange(kernel_path(regen.source), regen.source.text.encode("utf-8"),
                        regen.new_text.encode("utf-8")),
        mail.FileChange(era.header, None, regen.header_text.encode("utf-8")),
    ]
    if regen.caller_sources is not None:
        new = callers.change_callers(regen.caller_sources, regen.header_facts)
        for path, old_text in regen.caller_sources.by_path().items():
            changes.append(mail.FileChange(path, old_text.encode("utf-8"),
                                           new.by_path()[path].encode("utf-8")))
    return changes




def before_bytes(regen: Regeneration) -> int:
    """The control size of the tree's asm/kexec.h before the change, else the region's."""
    sources = regen.caller_sources
    if sources is not None:
        value = callers.control_size_bytes(sources.kexec_h, regen.tree.era.control_macro)
        if value is not None:
            return value
    return regen.before.size




def mail_text(regen: Regeneration, changes: Sequence[mail.FileChange], evidence: Evidence,
              *, author: str, date: str | None) -> str:
    """The format-patch mail of the whole change (`changes`, from `patch_files`), by git."""
    header = regen.header_facts
    assert header is not None
    existing = len(callers.read_typedef_arguments(regen.caller_sources.machine_kexec_c)) \
        if regen.caller_sources is not None else int(regen.result.alloc_before.split(",")[1])
    before = before_bytes(regen)
    memory = control_memory(before, header)
    facts = PatchFacts(
        entry=regen.result.region.entry, header=header, before_bytes=before,
        after_bytes=header.code_page_size if header.kimage_arch
        else header.code_page_size + header.stacks_size,
        code_size=regen.after.code_size, moved=regen.result.moved,
        padding=_stacks_padded(regen.before),
        instructions_rewritten=len(regen.result.rewritten), existing_arguments=existing,
        control_memory=memory, evidence=evidence,
        signed_off_by=mail.parse_identity(author), hook=regen.tree.era.kimage_arch)
    notes = render_notes(__version__, kernel_path(regen.source), regen.source.sha256,
                         checkpatch_notes(regen.tree, header.kimage_arch))
    made = mail.format_patch(changes, subject=subject(facts, subject_prefix(regen.tree)),
                             body=render_commit_message(facts), author=author, date=date,
                             notes=notes)
    return made.decode("utf-8")




def _stacks_padded(before: layout.ControlPageMap) -> bool:
    """Whether bytes lay between the code and the first stack (an .align's nops)."""
    first = min((s.offset for s in before.data_symbols), default=None)
    if first is None:
        return False
    ends = [s.end for s in before.code_symbols if s.offset < first]
    return bool(ends) and max(ends) < first


def source_diff(run: RewriteRun) -> bytes:
    """The whole change (the files of the patch) as one diff, for `relgen rewrite --diff`."""
    return mail.diff_files(run.changes)


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


def evidence_of(report: Report, regen: Regeneration, plan: Plan) -> Evidence:
    """What the checks before the mail found, as the commit message states it."""
    switched = regen.configurations.switches
    execution = plan.execution or QUICK
    return Evidence(page_sizes=plan.page_sizes,
                    configurations=regen.configurations.in_words() if switched else None,
                    instructions_compared=report.instructions_compared,
                    images=execution.images, pages=execution.pages,
                    kernel=report.kernel_clause or "the kernel checks did not run")


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
            evidence = evidence_of(report, regen, before_mail)
            made[PATCH_NAME] = mail_text(regen, changes, evidence, author=author,
                                         date=date).encode("utf-8")
            (staged / PATCH_NAME).write_bytes(made[PATCH_NAME])
        after_mail = Plan(objects=False, execution=None, header=False, kernel=False)
        mail_report = run_checks(replace(inputs, patch_path=staged / PATCH_NAME if made
                                         else None), after_mail, work / "mail", progress)
    files = {**primary, **layout_report(regen, PAGE_SIZES), **made}
    return RewriteRun(regen, files, changes,
                      replace(report, checks=report.checks + mail_report.checks))
