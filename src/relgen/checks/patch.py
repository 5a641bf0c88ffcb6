"""The patch's checks: it applies to the tree (once: every later check reads the files it
gives), its C calls the entry with every argument, and checkpatch.pl --strict reports
nothing but what the change cannot avoid."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from relgen import tools
from relgen.checks.inputs import Inputs
from relgen.checks.report import Check
from relgen.errors import ToolError
from relgen.kernel import callers
from relgen.kernel.review import expected_checkpatch
from relgen.names import MACHINE_KEXEC_PATH
from relgen.source.files import kernel_path

#: What checkpatch.pl says of lines that end in CRLF (it counts the CR as trailing space).
CRLF_CHECKPATCH = frozenset({"DOS_LINE_ENDINGS", "TRAILING_WHITESPACE"})
_PATCHED_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.M)


@dataclass(frozen=True)
class AppliedPatch:
    """The patch applied to a scratch copy of the files it changes: the check, and every
    file of the patch as it is after it (None when it did not apply)."""

    check: Check
    changed: Mapping[str, bytes] | None


def no_patch_needed(inputs: Inputs) -> Check:
    present = inputs.patch_path is not None
    return Check("no patch: the input is already in code-first layout", not present,
                 ("  FAIL: a patch was written for an input that needs no change",)
                 if present else ())


def _originals(inputs: Inputs, names: list[str]) -> dict[str, bytes]:
    """The files the patch changes as the tree has them, the .S being the input's bytes."""
    originals = {kernel_path(inputs.original): inputs.original.text.encode("utf-8")}
    for name in names:
        if name not in originals and (inputs.tree.root / name).is_file():
            originals[name] = (inputs.tree.root / name).read_bytes()
    return originals


def apply_patch(inputs: Inputs, work: Path) -> AppliedPatch:
    """`git apply` of the patch on a scratch copy of the files it names."""
    name = "the patch applies to the tree"
    if inputs.patch_path is None:
        return AppliedPatch(Check(name, False, ("  FAIL: no patch written",)), None)
    patch = inputs.patch_path.resolve()
    names = [new for _, new in _PATCHED_FILE.findall(patch.read_text(encoding="utf-8"))]
    originals = _originals(inputs, names)
    scratch = work / "apply"
    for path, data in originals.items():
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        (scratch / path).write_bytes(data)
    try:
        result = tools.run(["git", "apply", tools.operand(patch)], scratch)
    except ToolError as error:
        return AppliedPatch(Check.not_run(name, error.message), None)
    source = kernel_path(inputs.original)
    after = (scratch / source).read_bytes() if (scratch / source).is_file() else b""
    same = result.returncode == 0 and after == inputs.new.text.encode("utf-8")
    own = inputs.tree.relocate_kernel.is_file() and \
        inputs.tree.relocate_kernel.read_bytes() == inputs.original.text.encode("utf-8")
    check = Check(name, same, (
        f"  the input {'is' if own else 'is not'} the tree's own {source}",
        f"  git apply on a scratch copy of {', '.join(sorted(originals))}: "
        f"exit {result.returncode}",
        f"  applied, {source} equals the regenerated file: {same}",
        *("  " + line for line in result.stderr.splitlines())))
    changed = {path: (scratch / path).read_bytes() for path in names
               if (scratch / path).is_file()} if result.returncode == 0 else None
    return AppliedPatch(check, changed)


def check_changed_callers(inputs: Inputs, changed: Mapping[str, bytes]) -> list[Check]:
    """The patched C, read back: every part of the change is there (the header included,
    the control size from it, the prototype and the typedef with the stacks, each image's
    stacks where the tree has struct kimage_arch, and a call that passes them)."""
    era = inputs.tree.era
    name = f"the patched C passes the stacks to {inputs.entry}"
    if not {era.kexec_h, MACHINE_KEXEC_PATH} <= set(changed) or inputs.header_facts is None:
        return [Check(name, False, (f"  FAIL: the patch does not change {era.kexec_h} and "
                                    f"{MACHINE_KEXEC_PATH}",))]
    sources = callers.CallerSources(era.kexec_h,
                                    changed[era.kexec_h].decode("utf-8", "replace"),
                                    changed[MACHINE_KEXEC_PATH].decode("utf-8", "replace"))
    old = (inputs.tree.root / MACHINE_KEXEC_PATH).read_text(encoding="utf-8",
                                                            errors="replace")
    existing = len(callers.read_typedef_arguments(old))
    problems = callers.caller_problems(sources, inputs.header_facts, existing)
    calls = callers.entry_call_arguments(sources.machine_kexec_c)
    evidence = (f"  {MACHINE_KEXEC_PATH}: the calls through {callers.TYPEDEF} pass "
                f"{', '.join(map(str, calls)) or 'no'} arguments; "
                f"{inputs.header_facts.control_macro} is "
                f"{callers.control_size(sources.kexec_h, inputs.header_facts.control_macro)}",)
    return [Check(name, not problems, evidence + tuple(f"  FAIL: {p}" for p in problems))]


def checkpatch(inputs: Inputs, work: Path) -> Check:
    """`scripts/checkpatch.pl --strict` of the tree on the patch."""
    expected = {key.split()[-1]: reason
                for key, reason in expected_checkpatch(
                    inputs.tree, bool(inputs.header_facts and inputs.header_facts.kimage_arch)
                ).items()}
    name = "checkpatch.pl --strict: nothing but " + " and ".join(expected)
    script = inputs.tree.root / "scripts" / "checkpatch.pl"
    if inputs.patch_path is None:
        return Check(name, False, ("  FAIL: no patch written",))
    if not script.is_file():
        return Check.not_run(name, f"the tree has no {script.relative_to(inputs.tree.root)}")
    try:
        run = tools.run(["perl", str(script), "--no-tree", "--strict", "--show-types",
                         tools.operand(inputs.patch_path.resolve())], work)
    except ToolError as error:
        return Check.not_run(name, error.message)
    found = re.findall(r"^(ERROR|WARNING|CHECK):([A-Z_]+):", run.stdout, re.M)
    unexpected = [f"{kind}:{name}" for kind, name in found if name not in expected]
    total = next((line for line in run.stdout.splitlines() if line.startswith("total:")),
                 "total: ?")
    evidence = [f"  {total}"]
    evidence += [f"  {kind}:{name} (expected: {expected[name]})"
                 for kind, name in found if name in expected]
    crlf = "\r\n" in inputs.original.text
    for message, count in Counter(unexpected).items():
        times = f" ({count} times)" if count > 1 else ""
        why = ""
        if crlf and message.split(":")[1] in CRLF_CHECKPATCH:
            why = (": the input's lines end in CRLF and the patch keeps the input's bytes; "
                   "the kernel's own file ends its lines in LF, so convert the input (e.g. "
                   "dos2unix) before making a patch of it")
        evidence.append(f"  FAIL: {message}{times}{why}")
    return Check(name, not unexpected, tuple(evidence))
