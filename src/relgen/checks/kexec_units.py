"""Which units the kernel checks check: the C files that include <asm/kexec.h>, directly or
through other headers, and the assembly file relgen rewrites.

The include graph is read from the tree's own headers, where its era keeps them
(`include/asm-ia64/` is `asm/` until 2.6.26; `arch/ia64/include/` after), by their
`#include` lines; conditionals are not evaluated, so a header included under any
configuration counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from relgen.names import RELOCATE_KERNEL_PATH
from relgen.toolchain.era import Era

KEXEC_HEADER = "asm/kexec.h"
RELOCATE_KERNEL_UNIT = str(PurePosixPath(RELOCATE_KERNEL_PATH).with_suffix(".o"))

_INCLUDE = re.compile(rb'^\s*#\s*include\s*[<"](?P<name>[^>"]+)[>"]', re.M)


def include_roots(root: Path, era: Era, *generated: Path) -> list[tuple[Path, str]]:
    """(folder, the include name prefix its files have) for each header folder of the tree,
    and the folders a build generated (`generated`, e.g. an out-of-tree build's include/)."""
    roots = [(root / "include", ""), (root / "include" / "uapi", "")]
    if era.links_asm:
        roots.append((root / era.asm_dir, "asm/"))
    else:
        roots += [(root / "arch" / "ia64" / "include", ""),
                  (root / "arch" / "ia64" / "include" / "uapi", "")]
    roots += [(folder, "") for folder in generated]
    return [(folder, prefix) for folder, prefix in roots if folder.is_dir()]


def includes(path: Path) -> set[str]:
    """The names a file includes: `linux/kexec.h` for `#include <linux/kexec.h>`."""
    try:
        text = path.read_bytes()
    except OSError:
        return set()
    return {m.group("name").decode("utf-8", "replace") for m in _INCLUDE.finditer(text)}


def including_headers(roots: Iterable[tuple[Path, str]], header: str = KEXEC_HEADER
                      ) -> set[str]:
    """The include names of `header` and of every header that includes it, transitively."""
    included_by: dict[str, set[str]] = {}
    for folder, prefix in roots:
        for path in folder.rglob("*.h"):
            name = prefix + path.relative_to(folder).as_posix()
            included_by.setdefault(name, set()).update(includes(path))
    found = {header}
    while True:
        more = {name for name, wanted in included_by.items() if wanted & found} - found
        if not more:
            return found
        found |= more


def kexec_units(root: Path, candidates: Iterable[str], headers: set[str]) -> tuple[str, ...]:
    """The units among `candidates` ("dir/name.o") whose C file includes one of `headers`,
    and relocate_kernel.o where it is a candidate, in the candidates' order."""
    chosen = []
    for unit in candidates:
        if unit == RELOCATE_KERNEL_UNIT:
            chosen.append(unit)
        elif includes((root / unit).with_suffix(".c")) & headers:
            chosen.append(unit)
    return tuple(chosen)


def touched_units(units: Iterable[str], dependencies: dict[str, list[str]],
                  changed: Iterable[str], tree: Path) -> list[str]:
    """The units a change can alter: those that read a changed file in the pristine tree
    (`dependencies`: each unit's files, kernel-relative), those whose files nobody recorded,
    and those that read a file of the same name as one the change adds (it may be found
    first where the include path looks)."""
    changed = set(changed)
    added = {Path(name).name for name in changed if not (tree / name).exists()}
    chosen = []
    for unit in units:
        read = dependencies.get(unit)
        if read is None or changed & set(read) or added & {Path(n).name for n in read}:
            chosen.append(unit)
    return chosen
