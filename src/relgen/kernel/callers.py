"""The C side of the change: `asm/kexec.h` and `machine_kexec.c`, changed with Coccinelle.

The semantic patches are templates (`cocci/*.cocci.j2`) filled in with the header's facts and
the tree's era: where the tree's `include/linux/kexec.h` offers `struct kimage_arch`, each
image gets its stacks in `machine_kexec_prepare()` (after the code in the control page where
one page holds all, else control pages of their own); in older trees the stacks follow the
code in the image's own control pages, which the control size now covers. Either way
`relocate_new_kernel_t` (kept in `machine_kexec.c`, its one user) and the prototype gain the
two parameters and `ia64_machine_kexec()` passes the stacks as arguments 5 and 6.

`change_callers` runs `spatch` on copies of the tree's two files in a scratch folder (the
kernel tree is never written) and returns the changed text. Coccinelle matches the code, not
its line breaks or white space, so the same patches change any formatting of the same code.
`caller_problems` reads changed C back and says what a caller still lacks; `change_callers`
uses it to name a rule that did not apply, `relgen verify` to check the patch's C.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from relgen import tools
from relgen.errors import RelgenError
from relgen.kernel.header import HeaderFacts
from relgen.kernel.templates import render_template
from relgen.names import (
    CODE_PAGE_MACRO,
    HEADER_INCLUDE,
    MACHINE_KEXEC_PATH,
    PAGES_SIZE_MACRO,
    STACKS_SIZE_MACRO,
)
from relgen.scratch import scratch_folder
from relgen.toolchain.era import Era

TYPEDEF = "relocate_new_kernel_t"
#: The field of `struct kimage_arch` that holds the physical address of the stacks.
STACKS_FIELD = "stacks"
#: The allocator that keeps control pages clear of every destination (kernel/kexec.c).
ALLOCATOR = "kimage_alloc_control_pages"

KEXEC_H_PATCH = "kexec_h.cocci.j2"
MACHINE_KEXEC_PATCH = "machine_kexec_c.cocci.j2"


@dataclass(frozen=True)
class CallerSources:
    """The text of the two C files that call or declare the entry, and where they are."""

    kexec_h_path: str  # the era's asm/kexec.h
    kexec_h: str
    machine_kexec_c: str

    def by_path(self) -> dict[str, str]:
        return {self.kexec_h_path: self.kexec_h, MACHINE_KEXEC_PATH: self.machine_kexec_c}


def read_callers(tree_root: Path, era: Era) -> CallerSources | None:
    """The tree's two files, or None where the tree lacks one (a tree of the .S alone)."""
    paths = [tree_root / era.kexec_h, tree_root / MACHINE_KEXEC_PATH]
    if not all(path.is_file() for path in paths):
        return None
    return CallerSources(era.kexec_h, *(path.read_text(encoding="utf-8") for path in paths))


def control_size_value(facts: HeaderFacts) -> str:
    """What the control size macro of asm/kexec.h becomes: the code page where each image
    gets its stacks apart, else the code page and the stacks after it."""
    return CODE_PAGE_MACRO if facts.kimage_arch else PAGES_SIZE_MACRO


def stack_arguments(facts: HeaderFacts) -> list[str]:
    """Arguments 5 and 6 as ia64_machine_kexec() writes them (`code` is the variable the
    call's function descriptor points at, which holds the control page's address)."""
    if facts.kimage_arch:
        first = f"image->arch.{STACKS_FIELD}"
        return [first if number == 0 else f"{first} + " + " + ".join(
            a.macro for a in facts.data_areas[:number])
            for number in range(len(facts.data_areas))]
    return [f"__pa(code) + {area.offset_macro}" for area in facts.data_areas]


def semantic_patches(facts: HeaderFacts, existing: Sequence[str],
                     kexec_h_path: str) -> dict[str, str]:
    """The SmPL text for each file, rendered from the templates with the header's facts.
    `existing` are the typedef's parameters as the tree's machine_kexec.c declares them."""
    named = all(re.search(r"\w\s*$", parameter) and " " in parameter.strip()
                and not parameter.strip().endswith("*") for parameter in existing)
    new_parameters = [f"unsigned long {area.name}" if named else "unsigned long"
                      for area in facts.data_areas]
    context = {
        "entry": facts.entry,
        "typedef": TYPEDEF,
        "header_include": HEADER_INCLUDE,
        "control_macro": facts.control_macro,
        "control_value": control_size_value(facts),
        "code_page_macro": CODE_PAGE_MACRO,
        "stacks_size_macro": STACKS_SIZE_MACRO,
        "stacks_field": STACKS_FIELD,
        "kimage_arch": facts.kimage_arch,
        "existing_count": len(existing),
        "areas": facts.data_areas,
        "new_parameters": new_parameters,
        "stack_arguments": stack_arguments(facts),
    }
    return {kexec_h_path: render_template(KEXEC_H_PATCH, **context),
            MACHINE_KEXEC_PATH: render_template(MACHINE_KEXEC_PATCH, **context)}


def change_callers(sources: CallerSources, facts: HeaderFacts) -> CallerSources:
    """Both files after the semantic patches, each rule checked to have applied."""
    spatch = tools.find("spatch")
    existing = read_typedef_arguments(sources.machine_kexec_c)
    with scratch_folder("relgen-spatch-") as scratch:
        work = Path(scratch)
        # spatch looks for its own files under $HOME; give it one of its own
        environment = tools.environment_with(HOME=str(work))

        def apply(job: tuple[int, tuple[str, str]]) -> str:
            number, (path, smpl) = job
            rule_file = work / f"{number}.cocci"
            rule_file.write_text(smpl, encoding="utf-8")
            original = work / f"{number}{Path(path).suffix}"
            original.write_text(sources.by_path()[path], encoding="utf-8")
            result = work / f"{number}.out{Path(path).suffix}"
            run = tools.run([spatch, "--very-quiet", "--no-includes", "--no-show-diff",
                             "--sp-file", str(rule_file), str(original), "-o", str(result)],
                            work, env=environment)
            if run.returncode != 0:
                raise RelgenError(f"spatch failed on {path}: {run.stderr.strip()}")
            # spatch writes no file when nothing matched
            return result.read_text(encoding="utf-8") if result.is_file() \
                else sources.by_path()[path]

        # one spatch per file, side by side: each is a program of its own
        jobs = list(enumerate(semantic_patches(facts, existing,
                                               sources.kexec_h_path).items()))
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            changed = dict(zip((path for _, (path, _) in jobs), pool.map(apply, jobs),
                               strict=True))
    new = CallerSources(sources.kexec_h_path, changed[sources.kexec_h_path],
                        changed[MACHINE_KEXEC_PATH])
    problems = caller_problems(new, facts, len(existing))
    if problems:
        raise RelgenError("the semantic patches did not apply everywhere: "
                          + "; ".join(problems))
    return new


# ------------------------------------------------------------------- reading C


def read_typedef_arguments(source: str, name: str = TYPEDEF) -> tuple[str, ...]:
    """The parameter declarations of `typedef [NORET_TYPE] void (*name)(...)` in C source
    (machine_kexec.c), in any of the forms the eras wrote it."""
    match = re.search(r"typedef\s+(?:\w+\s+)*void\s*\(\s*\*\s*" + re.escape(name)
                      + r"\s*\)\s*\(([^)]*)\)", source)
    if match is None:
        raise RelgenError(f"no `typedef void (*{name})(...)` found in {MACHINE_KEXEC_PATH}")
    # one declaration per comma, white space (tabs, line breaks) folded to single spaces
    return tuple(" ".join(part.split()) for part in match.group(1).split(","))


def control_size(kexec_h: str, macro: str) -> str | None:
    """The value `macro` (the control size) is defined as in asm/kexec.h, e.g.
    `(8192 + 8192 + 4096)`, white space folded."""
    match = re.search(rf"^[ \t]*#[ \t]*define[ \t]+{re.escape(macro)}[ \t]+(.*)$", kexec_h,
                      re.M)
    return " ".join(match.group(1).split()) if match else None


def control_size_bytes(kexec_h: str, macro: str) -> int | None:
    """The control size in bytes where it is a sum of numbers, e.g. (8192 + 8192 + 4096)."""
    value = control_size(kexec_h, macro)
    if value is None:
        return None
    terms = value.strip("()").split("+")
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


def caller_problems(sources: CallerSources, facts: HeaderFacts, existing: int) -> list[str]:
    """What the changed C still lacks, one message per missing part (empty when complete);
    `existing` is the number of the entry's parameters before the change."""
    wanted = existing + len(facts.data_areas)
    kexec_h, machine_kexec_c = sources.kexec_h, sources.machine_kexec_c
    problems = []
    if not re.search(rf"#\s*include\s*<{re.escape(HEADER_INCLUDE)}>", kexec_h):
        problems.append(f"include_header: {sources.kexec_h_path} does not include "
                        f"<{HEADER_INCLUDE}>")
    value = control_size(kexec_h, facts.control_macro)
    if value != control_size_value(facts):
        problems.append(f"control_size: {facts.control_macro} is {value or 'not defined'}, "
                        f"not {control_size_value(facts)}")
    declared = prototype_arguments(kexec_h, facts.entry)
    if declared != wanted:
        problems.append(f"prototype: {facts.entry} is declared with {declared} parameters, "
                        f"not {wanted}")
    typedef = len(read_typedef_arguments(machine_kexec_c))
    if typedef != wanted:
        problems.append(f"typedef_parameters: {TYPEDEF} takes {typedef} parameters, not "
                        f"{wanted}")
    if facts.kimage_arch:
        if not re.search(r"#\s*define\s+ARCH_HAS_KIMAGE_ARCH\b", kexec_h) or \
                not re.search(rf"struct\s+kimage_arch\s*\{{[^}}]*\b{STACKS_FIELD}\b", kexec_h):
            problems.append(f"prototype: no struct kimage_arch with {STACKS_FIELD} under "
                            "ARCH_HAS_KIMAGE_ARCH")
        if not re.search(rf"\b{ALLOCATOR}\s*\(", machine_kexec_c) or not re.search(
                rf"arch\.{STACKS_FIELD}\s*=", machine_kexec_c):
            problems.append(f"allocate_stacks: machine_kexec_prepare() does not set "
                            f"image->arch.{STACKS_FIELD} from {ALLOCATOR}()")
    calls = entry_call_arguments(machine_kexec_c)
    if not calls or any(count != wanted for count in calls):
        problems.append(f"pass_stacks: the call of {facts.entry} passes "
                        f"{', '.join(map(str, calls)) or 'no'} arguments, not {wanted}")
    return problems
