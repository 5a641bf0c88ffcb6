"""A Linux tree's era: where a tree of 2.6.18 to 6.6 keeps what relgen reads and changes.

ia64 kexec lived in mainline from 2.6.20 to 6.6, and before that in 2.6.18 vendor trees
(RHEL5, the fastboot patches) and 2.6.18-xen dom0 trees. Their layouts differ: where the asm
headers are (`include/asm-ia64/`, which Kbuild linked to `include/asm`, until 2.6.26;
`arch/ia64/include/asm/` from 2.6.27), which file Kbuild forces on every unit
(`include/linux/autoconf.h` until 2.6.32, `include/generated/autoconf.h` from 2.6.33, through
`include/linux/kconfig.h` from 3.1), what `asm/kexec.h` calls the control size
(`KEXEC_CONTROL_CODE_SIZE` until 2.6.26), whether `include/linux/kexec.h` offers `struct
kimage_arch` (read from the tree's own file: it arrived between 2.6.28 and 2.6.32), and
whether a hypervisor calls the control page (the Xen dom0 tree, under `CONFIG_XEN`).

`place(root)` reads the era from the tree itself: the version lines of its top Makefile
give the era, and the files say the rest (a vendor tree may differ from mainline of its
version). A tree that cannot be placed is refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from relgen.errors import RelgenError

MODERN_ASM = "arch/ia64/include/asm"
OLD_ASM = "include/asm-ia64"
KEXEC_H = "kexec.h"
LINUX_KEXEC_H = "include/linux/kexec.h"
MACHINE_KEXEC = "arch/ia64/kernel/machine_kexec.c"

_VERSION_LINE = re.compile(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)[ \t]*=[ \t]*(.*?)[ \t]*$",
                           re.M)
_CONTROL_MACRO = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(KEXEC_CONTROL_(?:CODE|PAGE)_SIZE)\b",
                            re.M)
# The rules of the 2.6.x top Makefile that make 3.82 and later refuse ("mixed implicit and
# normal rules"): `config %config:` and `/ %/:`.
_MIXED_RULES = re.compile(r"^(?:config %config|/ %/)[ \t]*:", re.M)
_CONDITIONAL = re.compile(r"^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: (first version, name) of each era, oldest first; a version belongs to the last era it
#: reaches. 2.6.18 and 2.6.19 held ia64 kexec only in vendor and Xen dom0 trees.
ERAS = (
    ((2, 6, 18), "2.6.18 vendor"),
    ((2, 6, 20), "2.6.20-2.6.26"),
    ((2, 6, 27), "2.6.27-2.6.32"),
    ((2, 6, 33), "2.6.33-6.6"),
)
LAST = (6, 6)  # mainline dropped ia64 after 6.6


@dataclass(frozen=True)
class Era:
    """What relgen needs to know of a tree, read from the tree."""

    name: str  # "2.6.18 vendor", "2.6.18-xen dom0", "2.6.20-2.6.26", ...
    version: str  # the tree's own, "2.6.24", "6.1.0"
    release: tuple[int, int, int]
    asm_dir: str  # where asm/*.h live in the tree
    control_macro: str  # asm/kexec.h's name for the control size
    kimage_arch: bool  # include/linux/kexec.h offers struct kimage_arch
    # switches under which a hypervisor, not Linux, calls the control page (CONFIG_XEN)
    hypervisor_switches: tuple[str, ...] = ()
    kbuild_runs: bool = True  # its top Makefile is one today's make reads

    @property
    def kexec_h(self) -> str:
        return f"{self.asm_dir}/{KEXEC_H}"

    @property
    def header(self) -> str:
        """Where the new header goes: beside asm/kexec.h."""
        return f"{self.asm_dir}/kexec_control_page.h"

    @property
    def config_header(self) -> str:
        """The configuration Kbuild writes and forces on every unit."""
        return "include/generated/autoconf.h" if self.release >= (2, 6, 33) \
            else "include/linux/autoconf.h"

    @property
    def forced_include(self) -> str:
        """What Kbuild passes as `-include`: kconfig.h from 3.1, the config before."""
        return "include/linux/kconfig.h" if self.release >= (3, 1, 0) else self.config_header

    @property
    def asm_offsets(self) -> str:
        """Where a build writes asm-offsets.h, as an include name."""
        return "generated/asm-offsets.h" if self.release >= (2, 6, 33) else "asm/asm-offsets.h"

    @property
    def links_asm(self) -> bool:
        """Kbuild made an `include/asm` link to `include/asm-ia64` (2.6.26 and before)."""
        return self.asm_dir == OLD_ASM

    @property
    def subject_prefix(self) -> str:
        """The subject prefix of the era's ia64 kexec commits: `[IA64] ` in 2.6.x."""
        return "[IA64] " if self.release < (3, 0, 0) else "ia64: kexec: "

    def describe(self) -> str:
        """One line: which tree relgen took this for."""
        facts = [f"asm headers in {self.asm_dir}", self.control_macro,
                 f"config in {self.config_header}",
                 "struct kimage_arch" if self.kimage_arch else "no struct kimage_arch"]
        if self.hypervisor_switches:
            facts.append(f"the hypervisor calls the control page under "
                         f"{' or '.join(self.hypervisor_switches)}")
        if not self.kbuild_runs:
            facts.append("Kbuild that today's make refuses")
        return f"Linux {self.version}, the {self.name} era: " + ", ".join(facts)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_version(makefile: str) -> tuple[tuple[int, int, int], str] | None:
    """(release, version text) from a top Makefile's version lines, None without them."""
    fields = dict(_VERSION_LINE.findall(makefile))
    try:
        numbers = tuple(int(fields[key]) for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
    except (KeyError, ValueError):
        return None
    release = (numbers[0], numbers[1], numbers[2])
    text = ".".join(map(str, release)) + fields.get("EXTRAVERSION", "")
    return release, text


def guarding_switches(source: str, needle: re.Pattern[str]) -> tuple[str, ...]:
    """The switches S such that the first line matching `needle` is compiled only when S
    is off: it stands in `#ifndef S` or in the `#else` of `#ifdef S` (C conditionals)."""
    stack: list[tuple[str, str | None]] = []  # (directive, switch) of each open conditional
    for line in source.splitlines():
        match = _CONDITIONAL.match(line)
        if match:
            directive, rest = match.groups()
            names = _NAME.findall(rest)
            switch = names[0] if names and directive in ("ifdef", "ifndef") else None
            if directive in ("if", "ifdef", "ifndef"):
                stack.append((directive, switch))
            elif directive == "endif" and stack:
                stack.pop()
            elif directive in ("else", "elif") and stack:
                opened, switch = stack.pop()
                flipped = {"ifdef": "ifndef", "ifndef": "ifdef"}.get(opened, "if")
                stack.append((flipped if directive == "else" else "if", switch))
            continue
        if needle.search(line):
            return tuple(s for d, s in stack if d == "ifndef" and s is not None)
    return ()


def _entry_call(machine_kexec: str) -> re.Pattern[str]:
    """A line that calls the control page: through the variable of relocate_new_kernel_t."""
    variable = re.search(r"\brelocate_new_kernel_t\s+(\w+)\s*;", machine_kexec)
    name = re.escape(variable.group(1)) if variable else r"(?!)"
    return re.compile(rf"\(\s*\*\s*{name}\s*\)\s*\(|(?<![\w*])\b{name}\s*\(")


def place(root: Path) -> Era:
    """The era of the tree at `root`, or a RelgenError that says why it cannot be placed."""
    makefile = _read(root / "Makefile")
    version = read_version(makefile) if makefile is not None else None
    if version is None:
        raise RelgenError(f"cannot tell which Linux the tree at {root} is: its top Makefile "
                          "has no VERSION, PATCHLEVEL and SUBLEVEL lines")
    release, text = version
    if release < ERAS[0][0]:
        raise RelgenError(f"the tree at {root} is Linux {text}: ia64 kexec came in 2.6.20 "
                          "(2.6.18 in vendor and Xen dom0 trees), so there is nothing to "
                          "rewrite")
    if release[:2] > LAST:
        raise RelgenError(f"the tree at {root} is Linux {text}: mainline dropped ia64 after "
                          f"{LAST[0]}.{LAST[1]}")
    asm_dir = next((d for d in (MODERN_ASM, OLD_ASM) if (root / d).is_dir()), None)
    if asm_dir is None:
        raise RelgenError(f"the tree at {root} has neither {MODERN_ASM} nor {OLD_ASM}: it "
                          "holds no ia64 headers")
    kexec_h = _read(root / asm_dir / KEXEC_H)
    if kexec_h is None:
        raise RelgenError(f"the tree at {root} has no {asm_dir}/{KEXEC_H}: it has no ia64 "
                          "kexec")
    macros = _CONTROL_MACRO.findall(kexec_h)
    if not macros:
        raise RelgenError(f"{asm_dir}/{KEXEC_H} of the tree at {root} defines neither "
                          "KEXEC_CONTROL_CODE_SIZE nor KEXEC_CONTROL_PAGE_SIZE")
    linux_kexec = _read(root / LINUX_KEXEC_H) or ""
    machine_kexec = _read(root / MACHINE_KEXEC) or ""
    hypervisor = guarding_switches(machine_kexec, _entry_call(machine_kexec))
    name = next(n for first, n in reversed(ERAS) if release >= first)
    if hypervisor and name == "2.6.18 vendor":
        name = "2.6.18-xen dom0"
    return Era(name=name, version=text, release=release, asm_dir=asm_dir,
               control_macro=macros[0], kimage_arch="ARCH_HAS_KIMAGE_ARCH" in linux_kexec,
               hypervisor_switches=hypervisor,
               kbuild_runs=makefile is not None and not _MIXED_RULES.search(makefile))
