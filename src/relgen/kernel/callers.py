"""The C side of the change: `asm/kexec.h` and `machine_kexec.c`, changed with Coccinelle.

The semantic patches are templates (`cocci/*.cocci.j2`) filled in with the header's facts;
`change_callers` runs `spatch` on copies of the tree's two files in a scratch folder (the
kernel tree is never written) and returns the changed text. Coccinelle matches the code, not
its line breaks or white space, so the same patches change any formatting of the same code.
`caller_problems` reads changed C back and says what a caller still lacks; `change_callers`
uses it to name a rule that did not apply, `relgen verify` to check the patch's C.
"""

from __future__ import annotations

import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from relgen import tools
from relgen.errors import RelgenError
from relgen.kernel import render
from relgen.names import (
    CODE_PAGE_MACRO,
    HEADER_INCLUDE,
    KEXEC_H_PATH,
    MACHINE_KEXEC_PATH,
    STACKS_SIZE_MACRO,
)

TYPEDEF = "relocate_new_kernel_t"
#: The field of `struct kimage_arch` that holds the one block of control pages for the stacks.
STACKS_FIELD = "stack_pages"
#: The allocator that keeps control pages clear of every destination (kernel/kexec_core.c).
ALLOCATOR = "kimage_alloc_control_pages"

SEMANTIC_PATCHES = {KEXEC_H_PATH: "kexec_h.cocci.j2",
                    MACHINE_KEXEC_PATH: "machine_kexec_c.cocci.j2"}


@dataclass(frozen=True)
class CallerSources:
    """The text of the two C files that call or declare the entry."""

    kexec_h: str
    machine_kexec_c: str

    def by_path(self) -> dict[str, str]:
        return {KEXEC_H_PATH: self.kexec_h, MACHINE_KEXEC_PATH: self.machine_kexec_c}


def read_callers(tree_root: Path) -> CallerSources | None:
    """The tree's two files, or None where the tree lacks one (a tree of the .S alone)."""
    paths = [tree_root / KEXEC_H_PATH, tree_root / MACHINE_KEXEC_PATH]
    if not all(path.is_file() for path in paths):
        return None
    return CallerSources(*(path.read_text(encoding="utf-8") for path in paths))


def semantic_patches(facts: render.HeaderFacts) -> dict[str, str]:
    """The SmPL text for each file, rendered from the templates with the header's facts."""
    areas = []
    offset: list[str] = []
    for area in facts.data_areas:
        # the areas lie one after the other in the block: each starts after the ones before
        areas.append({"name": area.name,
                      "offset_expression": "".join(f" + {macro}" for macro in offset)})
        offset.append(area.macro)
    context = {
        "entry": facts.entry,
        "typedef": TYPEDEF,
        "header_include": HEADER_INCLUDE,
        "code_page_macro": CODE_PAGE_MACRO,
        "stacks_size_macro": STACKS_SIZE_MACRO,
        "stacks_field": STACKS_FIELD,
        "existing_count": len(facts.existing_arguments),
        "areas": areas,
    }
    return {path: render.render_template(name, **context)
            for path, name in SEMANTIC_PATCHES.items()}


def change_callers(sources: CallerSources, facts: render.HeaderFacts) -> CallerSources:
    """Both files after the semantic patches, each rule checked to have applied."""
    spatch = tools.find("spatch")
    with tempfile.TemporaryDirectory(prefix="relgen-spatch-") as scratch:
        work = Path(scratch)

        def apply(job: tuple[int, tuple[str, str]]) -> str:
            number, (path, smpl) = job
            rule_file = work / f"{number}.cocci"
            rule_file.write_text(smpl, encoding="utf-8")
            original = work / f"{number}{Path(path).suffix}"
            original.write_text(sources.by_path()[path], encoding="utf-8")
            result = work / f"{number}.out{Path(path).suffix}"
            run = tools.run([spatch, "--very-quiet", "--no-includes", "--no-show-diff",
                             "--sp-file", str(rule_file), str(original), "-o", str(result)],
                            work)
            if run.returncode != 0:
                raise RelgenError(f"spatch failed on {path}: {run.stderr.strip()}")
            # spatch writes no file when nothing matched
            return result.read_text(encoding="utf-8") if result.is_file() \
                else sources.by_path()[path]

        # one spatch per file, side by side: each is a program of its own
        jobs = list(enumerate(semantic_patches(facts).items()))
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            changed = dict(zip((path for _, (path, _) in jobs), pool.map(apply, jobs),
                               strict=True))
    new = CallerSources(changed[KEXEC_H_PATH], changed[MACHINE_KEXEC_PATH])
    problems = caller_problems(new, facts)
    if problems:
        raise RelgenError("the semantic patches did not apply everywhere: "
                          + "; ".join(problems))
    return new


# ------------------------------------------------------------------- reading changed C


def control_page_size(kexec_h: str) -> int | None:
    """KEXEC_CONTROL_PAGE_SIZE when it is a sum of numbers, e.g. (8192 + 8192 + 4096)."""
    match = re.search(r"^[ \t]*#[ \t]*define[ \t]+KEXEC_CONTROL_PAGE_SIZE[ \t]+(.*)$", kexec_h,
                      re.M)
    if match is None:
        return None
    terms = match.group(1).strip().strip("()").split("+")
    if not all(term.strip().isdigit() for term in terms):
        return None
    return sum(int(term) for term in terms)


def _argument_count(text: str, open_paren: int) -> int:
    """Top-level arguments of the call or declaration whose `(` is at `open_paren`."""
    depth, count, empty = 0, 1, True
    for char in text[open_paren:]:
        if char in "([{":
            depth += 1
            if depth == 1:
                continue
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return 0 if empty else count
        elif char == "," and depth == 1:
            count += 1
        if not char.isspace():
            empty = False
    raise RelgenError("unbalanced parentheses in a call")


def entry_call_arguments(machine_kexec_c: str) -> list[int]:
    """Arguments of each call through a `relocate_new_kernel_t` variable."""
    variables = re.findall(rf"\b{TYPEDEF}\s+(\w+)\s*;", machine_kexec_c)
    counts = []
    for name in variables:
        for call in re.finditer(rf"(?:\(\s*\*\s*{name}\s*\)|\b{name})\s*\(", machine_kexec_c):
            counts.append(_argument_count(machine_kexec_c, call.end() - 1))
    return counts


def prototype_arguments(kexec_h: str, entry: str) -> int | None:
    match = re.search(rf"\bvoid\s+{re.escape(entry)}\s*\(", kexec_h)
    return None if match is None else _argument_count(kexec_h, match.end() - 1)


def caller_problems(sources: CallerSources, facts: render.HeaderFacts) -> list[str]:
    """What the changed C still lacks, one message per missing part (empty when complete)."""
    wanted = len(facts.existing_arguments) + len(facts.data_areas)
    kexec_h, machine_kexec_c = sources.kexec_h, sources.machine_kexec_c
    problems = []
    if not re.search(rf"#\s*include\s*<{re.escape(HEADER_INCLUDE)}>", kexec_h):
        problems.append(f"include_header: {KEXEC_H_PATH} does not include <{HEADER_INCLUDE}>")
    if not re.search(rf"#\s*define\s+KEXEC_CONTROL_PAGE_SIZE\s+{CODE_PAGE_MACRO}\s*$",
                     kexec_h, re.M):
        problems.append(f"control_page_size: KEXEC_CONTROL_PAGE_SIZE is "
                        f"{control_page_size(kexec_h) or 'not'} {CODE_PAGE_MACRO}")
    declared = prototype_arguments(kexec_h, facts.entry)
    if declared != wanted:
        problems.append(f"prototype: {facts.entry} is declared with {declared} parameters, "
                        f"not {wanted}")
    if not re.search(r"#\s*define\s+ARCH_HAS_KIMAGE_ARCH\b", kexec_h) or \
            not re.search(rf"struct\s+kimage_arch\s*\{{[^}}]*\b{STACKS_FIELD}\b", kexec_h):
        problems.append(f"prototype: no struct kimage_arch with {STACKS_FIELD} under "
                        "ARCH_HAS_KIMAGE_ARCH")
    if re.search(rf"typedef[^;]*\(\s*\*\s*{TYPEDEF}\s*\)", machine_kexec_c):
        problems.append(f"local_typedef: {MACHINE_KEXEC_PATH} still defines its own {TYPEDEF}")
    if not re.search(rf"arch\.{STACKS_FIELD}\s*=\s*{ALLOCATOR}\s*\(", machine_kexec_c):
        problems.append(f"allocate_stacks: the stacks are not allocated with {ALLOCATOR}()")
    calls = entry_call_arguments(machine_kexec_c)
    if not calls or any(count != wanted for count in calls):
        problems.append(f"pass_stacks: the call of {facts.entry} passes "
                        f"{', '.join(map(str, calls)) or 'no'} arguments, not {wanted}")
    return problems
