"""What a reviewer of the tree expects of a patch, read from the tree: the subject prefix of
its history (or its era's), what checkpatch.pl --strict will say and why, and what input a
mail says it was made from."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from relgen import tools
from relgen.kernel.message import history_prefix
from relgen.names import MACHINE_KEXEC_PATH
from relgen.toolchain.tree import KernelTree

#: What checkpatch.pl --strict says of the change that the change cannot avoid.
FILE_PATH_CHANGES = "WARNING FILE_PATH_CHANGES"
DEFINE_ARCH_HAS = "ERROR DEFINE_ARCH_HAS"
_ARCH_HOOK = re.compile(r"^[ \t]*#[ \t]*define[ \t]+ARCH_HAS_KIMAGE_ARCH\b", re.M)


def subject_prefix(tree: KernelTree) -> str:
    """The prefix most used in the history of machine_kexec.c where the tree is a git
    repository, else the era's: `[IA64] ` in 2.6.x, `ia64: kexec: ` later."""
    if (tree.root / ".git").exists() and not tools.missing(["git"]):
        log = tools.run(["git", "-C", str(tree.root), "log", "--format=%s", "-n", "300", "--",
                         MACHINE_KEXEC_PATH])
        found = history_prefix(log.stdout.splitlines()) if log.returncode == 0 else None
        if found:
            return found
    return tree.era.subject_prefix


def expected_checkpatch(tree: KernelTree, kimage_arch: bool) -> dict[str, str]:
    """The checkpatch.pl --strict messages the change cannot avoid, each with its reason,
    as the tree's own files state them; `kimage_arch`: the change defines the hook."""
    maintainers = tree.root / "MAINTAINERS"
    covered = maintainers.is_file() and re.search(
        r"^F:\s*arch/ia64/\s*$", maintainers.read_text(encoding="utf-8", errors="replace"),
        re.M)
    expected = {FILE_PATH_CHANGES: "a new file; " + (
        "F: arch/ia64/ in MAINTAINERS covers it already" if covered else
        "it goes beside asm/kexec.h")}
    if kimage_arch:
        users = [path for path in sorted(tree.root.glob("arch/*/include/asm/kexec.h"))
                 if _ARCH_HOOK.search(path.read_text(encoding="utf-8", errors="replace"))]
        expected[DEFINE_ARCH_HAS] = (
            "ARCH_HAS_KIMAGE_ARCH is the hook include/linux/kexec.h offers for struct "
            "kimage_arch" + (f", used by {len(users)} architectures" if users else ""))
    return expected


def checkpatch_notes(tree: KernelTree, kimage_arch: bool) -> Sequence[tuple[str, str]] | str:
    if not (tree.root / "scripts" / "checkpatch.pl").is_file():
        return "This tree has no scripts/checkpatch.pl: no checkpatch.pl ran."
    return list(expected_checkpatch(tree, kimage_arch).items())


def recorded_input_sha256(patch: Path) -> str | None:
    """The sha256 of the input a mail says below its `---` it was made from."""
    match = re.search(r"\(sha256 ([0-9a-f]{64})\)", patch.read_text(encoding="utf-8",
                                                                   errors="replace"))
    return match.group(1) if match else None
