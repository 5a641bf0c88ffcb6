"""The direct route: the checkers on the units, with the flags the tree's own Kbuild would give.

For a tree whose Kbuild today's make cannot run (the 2.6.x top Makefiles stop under make
3.82 and later: "mixed implicit and normal rules") or that has no Kbuild at all (the
skeleton trees of the tests), the commands Kbuild would run are written here instead of
recorded from make, once per pristine tree, and replayed like the Kbuild route's:

- the configuration: the tree's defconfig (`arch/ia64/configs/generic_defconfig`, else
  `arch/ia64/defconfig`) as Kbuild writes it into autoconf.h (`CONFIG_X=y` is
  `#define CONFIG_X 1`, `=m` is `#define CONFIG_X_MODULE 1`, strings and numbers as they
  are), in a scratch folder of the cache, never in the tree. Kconfig does not run, so an
  option the defconfig leaves out gets no default. Where the era says a hypervisor calls the
  control page under a switch (the Xen dom0 trees' CONFIG_XEN), the units are checked a
  second time with that switch on;
- the include layout: `toolchain.assemble.kbuild_include_flags` (the `include/asm` link of
  2.6.26 and before, made in the scratch folder; `arch/ia64/include` after; the forced
  `-include` of the era's configuration header), with the stand-ins of `write_standins`;
- the units: the C files that include <asm/kexec.h> (directly or through headers) and that
  the configuration enables in their folder's Makefile (`obj-$(CONFIG_KEXEC) +=
  machine_kexec.o ...`), and relocate_kernel.S;
- the flags: the top Makefile's and arch/ia64/Makefile's of the era (below), and
  `-std=gnu89`, the default of the gcc those trees were built with (gcc 5 changed it; Kbuild
  said so itself from 3.18), so that today's gcc reads their C as it was written.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from relgen import tools
from relgen.checks.kexec_units import include_roots, including_headers, kexec_units
from relgen.checks.replay import Recording, UnitCommands
from relgen.errors import ToolError
from relgen.progress import QUIET, Progress
from relgen.toolchain.assemble import KBUILD_IA64_DEFINES, kbuild_include_flags, write_standins
from relgen.toolchain.era import Era
from relgen.toolchain.tree import KernelTree

DEFCONFIGS = ("arch/ia64/configs/generic_defconfig", "arch/ia64/defconfig")
#: What this route runs.
PROGRAMS = ("gcc", "sparse", "spatch", tools.IA64_PREFIX + "as")
CHECKCC = ("-m", "relgen.checks.checkcc")

# The top Makefile's KBUILD_CFLAGS (CFLAGS before 2.6.24), the same from 2.6.18 to 3.x.
BASE_CFLAGS = ("-Wall", "-Wundef", "-Wstrict-prototypes", "-Wno-trigraphs",
               "-fno-strict-aliasing", "-fno-common", "-Werror-implicit-function-declaration")
# arch/ia64/Makefile's cflags-y, and its CFLAGS_KERNEL / AFLAGS_KERNEL.
IA64_CFLAGS = ("-pipe", "-ffixed-r13", "-mfixed-range=f12-f15,f32-f127",
               "-falign-functions=32", "-frename-registers", "-fno-optimize-sibling-calls")
IA64_KERNEL_FLAGS = ("-mconstant-gp",)
# The top Makefile's CHECKFLAGS, arch/ia64/Makefile's, and what today's sparse needs to
# predefine nothing of the host (its default target is the machine it runs on).
CHECKFLAGS = ("-D__linux__", "-Dlinux", "-D__STDC__", "-Dunix", "-D__unix__", "-Wbitwise",
              "-Wsparse-error", "-m64", "-D__ia64=1", "-D__ia64__=1", "-D_LP64", "-D__LP64__",
              "--arch=ia64")
# Flags the top Makefile gained along the way: (first release, flags).
LATER_CFLAGS = (
    ((2, 6, 29), ("-fno-strict-overflow",)),
    ((2, 6, 31), ("-Wno-format-security", "-fno-delete-null-pointer-checks")),
    ((2, 6, 32), ("-fconserve-stack",)),
)

_CONFIG_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_MAKE_ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_$().-]+)\s*(?:\+=|:=|\?=|=)\s*(.*)$")
_CONFIG_REFERENCE = re.compile(r"\$\((CONFIG_[A-Za-z0-9_]+)\)")
_PAGE_SIZE = re.compile(r"^CONFIG_IA64_PAGE_SIZE_(\d+)KB$")


def defconfig(tree: KernelTree) -> Path | None:
    """The tree's default configuration file, or None."""
    return next((tree.root / name for name in DEFCONFIGS if (tree.root / name).is_file()),
                None)


def read_config(text: str) -> dict[str, str]:
    """`CONFIG_X` -> its value as the file writes it (`y`, `m`, `"text"`, `64`, `0x10`)."""
    return {m.group(1): m.group(2).strip() for m in map(_CONFIG_LINE.match, text.splitlines())
            if m and m.group(2).strip() not in ("", "n")}


def autoconf(config: Mapping[str, str]) -> str:
    """The configuration header Kbuild writes from `config`."""
    lines = ["/* relgen: the tree's defconfig, as Kbuild writes it into autoconf.h */"]
    for name, value in config.items():
        if value == "y":
            lines.append(f"#define {name} 1")
        elif value == "m":
            lines.append(f"#define {name}_MODULE 1")
        else:
            lines.append(f"#define {name} {value}")
    return "\n".join(lines) + "\n"


def enabled_objects(makefile: str, config: Mapping[str, str]) -> set[str]:
    """The objects (`name.o`) a folder's Makefile builds under `config`: the `obj-y`,
    `obj-m` and `lib-y` lists, `obj-$(CONFIG_X)` where X is y or m, and the parts of an
    enabled composite object (`name-y`, `name-objs`). Conditionals are not evaluated."""
    lists: dict[str, list[str]] = {}
    for line in makefile.replace("\\\n", " ").splitlines():
        match = _MAKE_ASSIGNMENT.match(line.split("#", 1)[0])
        if match is None:
            continue
        name = _CONFIG_REFERENCE.sub(lambda m: config.get(m.group(1), ""), match.group(1))
        lists.setdefault(name, []).extend(w for w in match.group(2).split() if w.endswith(".o"))
    enabled = {o for name in ("obj-y", "obj-m", "lib-y", "lib-m") for o in lists.get(name, [])}
    while True:
        parts = {o for composite in enabled for suffix in ("-y", "-objs")
                 for o in lists.get(composite[:-2] + suffix, [])} - enabled
        if not parts:
            return enabled
        enabled |= parts


def enabled_units(root: Path, config: Mapping[str, str]) -> list[str]:
    """Every unit (`dir/name.o`) whose source the tree has and its folder's Makefile (or
    Kbuild file) builds."""
    units: dict[str, None] = {}  # in order, once each
    for makefile in sorted([*root.rglob("Makefile"), *root.rglob("Kbuild")]):
        folder = makefile.parent.relative_to(root).as_posix()
        text = makefile.read_text(encoding="utf-8", errors="replace")
        for unit in sorted(enabled_objects(text, config)):
            stem = makefile.parent / unit[:-2]
            if stem.with_suffix(".c").is_file() or stem.with_suffix(".S").is_file():
                units[f"{folder}/{unit}" if folder != "." else unit] = None
    return list(units)


def cflags(release: tuple[int, int, int], config: Mapping[str, str]) -> list[str]:
    """KBUILD_CFLAGS of the era under `config`, with arch/ia64's."""
    flags = list(BASE_CFLAGS)
    flags.append("-Os" if config.get("CONFIG_CC_OPTIMIZE_FOR_SIZE") == "y" else "-O2")
    flags += IA64_CFLAGS
    flags += ["-fno-omit-frame-pointer"] if config.get("CONFIG_FRAME_POINTER") == "y" \
        else ["-fomit-frame-pointer"]
    flags += ["-fno-stack-protector", "-Wdeclaration-after-statement", "-Wno-pointer-sign"]
    for first, more in LATER_CFLAGS:
        if release >= first:
            flags += more
    return [*flags, "-std=gnu89"]


def _basename_flags(unit: str) -> list[str]:
    """The unit's names, as Kbuild of 2.6.x and 3.x defines them for every C file."""
    name = Path(unit).stem.replace("-", "_")
    return ["-DKBUILD_STR(s)=#s", f"-DKBUILD_BASENAME=KBUILD_STR({name})",
            f"-DKBUILD_MODNAME=KBUILD_STR({name})"]


def _page_size(config: Mapping[str, str]) -> int:
    sizes = [int(m.group(1)) * 1024 for m in map(_PAGE_SIZE.match, config) if m]
    return sizes[0] if sizes else 16384  # Kconfig's default for ia64


def configurations(era: Era, config: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
    """(label, options): the defconfig, and the defconfig with each switch under which a
    hypervisor calls the control page (the Xen dom0 trees' CONFIG_XEN) turned on."""
    found = [("", dict(config))]
    found += [(f"[{switch}=y]", {**config, switch: "y"}) for switch in era.hypervisor_switches
              if config.get(switch) != "y"]
    return found


def record(tree: KernelTree, source: Path, work: Path, progress: Progress = QUIET
           ) -> tuple[Recording, str]:
    """The commands Kbuild of the tree's era would run for the units that include
    <asm/kexec.h>, on the copy `source` of `tree`, with their scratch files in `work`; and
    what the route is called in the evidence. Raises ToolError when the tree has no
    defconfig or no such unit."""
    era = tree.era
    found = defconfig(tree)
    if found is None:
        raise ToolError(f"the tree has none of {', '.join(DEFCONFIGS)} to "
                        "configure it with")
    progress.phase("kernel checks: the pristine tree: the units and their flags")
    config = read_config(found.read_text(encoding="utf-8", errors="replace"))
    copy = KernelTree(source)
    headers = including_headers(include_roots(source, era))
    units = kexec_units(source, enabled_units(source, config), headers)
    if not units:
        raise ToolError(f"no unit that includes <asm/kexec.h> is enabled by "
                        f"{found.relative_to(tree.root)} in the Makefiles of the tree")
    isystem = tools.run(["gcc", "-print-file-name=include"]).stdout.strip()
    commands: list[UnitCommands] = []
    for index, (label, options) in enumerate(configurations(era, config)):
        layout = work / f"configuration-{index}"
        write_standins(layout / "standins", era, _page_size(options))
        (layout / "standins" / era.config_header.removeprefix("include/")).write_text(
            autoconf(options), encoding="utf-8")
        include = ["-nostdinc", "-isystem", isystem, "-D__KERNEL__",
                   *kbuild_include_flags(copy, layout), *KBUILD_IA64_DEFINES]
        c_flags = [*include, *cflags(era.release, options), *IA64_KERNEL_FLAGS]
        commands += [_unit_commands(unit, label, source, layout, include, c_flags)
                     for unit in units]
    return Recording(source, tuple(commands)), \
        f"direct, with the flags Kbuild of {era.version} would give ({why_direct(tree)})"


def _unit_commands(unit: str, label: str, source: Path, layout: Path, include: list[str],
                   c_flags: list[str]) -> UnitCommands:
    """Kbuild's commands for one unit: `$(CC) $(a_flags)` for assembly; `$(CC) $(c_flags)`
    and `$(CHECK) $(CHECKFLAGS) $(c_flags)` for C. They run in the copy of the tree; what
    they write goes to the scratch folder `layout`."""
    objects = layout / "objects" / unit
    objects.parent.mkdir(parents=True, exist_ok=True)
    depfile = f"-Wp,-MD,{objects.with_name(f'.{objects.name}.d')}"
    assembly = Path(unit).with_suffix(".S")
    if (source / assembly).is_file():
        return UnitCommands(unit + label, (
            sys.executable, *CHECKCC, depfile, *include, "-D__ASSEMBLY__", *IA64_KERNEL_FLAGS,
            "-c", "-o", str(objects), str(assembly)), None)
    flags = [*c_flags, *_basename_flags(unit)]
    c_file = str(Path(unit).with_suffix(".c"))
    return UnitCommands(unit + label,
                        (sys.executable, *CHECKCC, depfile, *flags, "-c", "-o", str(objects),
                         c_file),
                        ("sparse", *CHECKFLAGS, *flags, c_file))


def why_direct(tree: KernelTree) -> str:
    """Why the tree's own Kbuild does not run: one clause for the evidence."""
    if not tree.era.kbuild_runs:
        return "today's make refuses its top Makefile: mixed implicit and normal rules"
    return "the tree has no Kbuild to run"
