"""The Kbuild route: a tree whose own Kbuild today's make runs (Linux 6.1 and its era).

Once per pristine tree, in its cache folder: the copy of the tree is the source folder and
Kbuild builds out of tree (`O=objects`) next to it, through the check-only compiler
stand-in: `make ARCH=ia64 defconfig`, `make prepare`, and one dry run,
`make -n C=2 CF=-Wsparse-error vmlinux`, which prints every command Kbuild would run for the
configured kernel. From it come the units defconfig compiles and, for each, the exact
command lines of the compiler and of sparse, as make would run them from `objects/`: that
recording is what every later check replays (`replay.py`), without make.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from relgen import tools
from relgen.checks.kexec_units import include_roots, including_headers, kexec_units
from relgen.checks.replay import Recording, UnitCommands, cores
from relgen.errors import ToolError
from relgen.progress import QUIET, Progress
from relgen.toolchain.tree import KernelTree

ARCH = "ia64"
CROSS_COMPILE = tools.IA64_PREFIX
SPARSE = "sparse"
#: What Kbuild needs of a tree for defconfig and prepare (a partial extraction lacks them).
KBUILD_FILES = ("Makefile", "Kconfig", "arch/ia64/Kconfig", "arch/ia64/Makefile",
                "scripts/Makefile.build", "scripts/kconfig/Makefile", "kernel/Makefile")
#: A tree with these was configured in place; Kbuild refuses an O= build from it.
IN_TREE_BUILD = (".config", "include/config", "arch/ia64/include/generated")
#: The check-only compiler stand-in that Kbuild gets as CC.
CHECKCC_MODULE = "relgen.checks.checkcc"
#: What this route runs.
PROGRAMS = ("make", "flex", "bison", "bc", "gcc", SPARSE, "spatch", tools.IA64_PREFIX + "as")
# The shell's operators, which end one simple command of a recipe line.
_OPERATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "<", ">", ">>", ";;"})


def compiler_command(python: str) -> list[str]:
    """The CC that Kbuild gets: `python` running the check-only stand-in."""
    return [python, "-m", CHECKCC_MODULE]


def missing_files(tree: KernelTree) -> list[str]:
    """The files Kbuild needs that the tree lacks (all of them for a skeleton tree)."""
    return [name for name in KBUILD_FILES if not (tree.root / name).exists()]


def configured_in_place(tree: KernelTree) -> str | None:
    """Why Kbuild would refuse to build this tree out of tree, or None."""
    built = [name for name in IN_TREE_BUILD if (tree.root / name).exists()]
    if not built:
        return None
    return (f"the tree was configured in place ({', '.join(built)}); Kbuild "
            "builds out of tree only from a clean tree (`make mrproper`)")


def make_command(source: Path, objects: Path, python: str, *targets: str,
                 jobs: int | None = None) -> list[str]:
    """make of `targets` with the pristine copy `source` built out of tree in `objects`."""
    return ["make", "-s", "-C", str(source), f"O={objects}", f"ARCH={ARCH}",
            f"CROSS_COMPILE={CROSS_COMPILE}", f"CC={shlex.join(compiler_command(python))}",
            f"-j{jobs or cores()}", *targets]


def record(tree: KernelTree, source: Path, objects: Path, python: str,
           progress: Progress = QUIET) -> tuple[Recording, str]:
    """defconfig, prepare and the dry run on the copy `source` of `tree`: the recording of
    the units that include <asm/kexec.h>, and what the route is called in the evidence.
    Raises ToolError when Kbuild fails on the pristine tree."""
    objects.mkdir(parents=True, exist_ok=True)
    for targets in (("defconfig",), ("prepare",)):
        progress.phase(f"kernel checks: the pristine tree: make {' '.join(targets)}")
        result = tools.run(make_command(source, objects, python, *targets), merge_output=True)
        if result.returncode != 0:
            raise ToolError(f"make ARCH=ia64 {' '.join(targets)} failed on the pristine tree: "
                            + _last_lines(result.stdout))
    progress.phase("kernel checks: the pristine tree: recording Kbuild's commands (make -n)")
    # one job: parallel sub-makes would print their long recipe lines into one pipe, where
    # lines longer than the pipe's atomic write can interleave
    dry = tools.run(make_command(source, objects, python, "-n", "-k", "C=2",
                                 "CF=-Wsparse-error", "vmlinux", jobs=1), merge_output=True)
    compiler = compiler_command(python)
    commands = unit_commands(dry.stdout.splitlines(), source, compiler)
    if not commands:
        raise ToolError("the dry run of make vmlinux listed no unit: "
                        + _last_lines(dry.stdout))
    progress.phase("kernel checks: the pristine tree: the units that include <asm/kexec.h>")
    headers = including_headers(include_roots(source, tree.era))
    chosen = kexec_units(source, sorted(commands), headers)
    recording = Recording(objects, tuple(commands[unit] for unit in chosen))
    return recording, f"Kbuild of Linux {tree.era.version}"


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-count:]) if lines else "no output"


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line as make prints it (quotes removed as the shell
    removes them), or [] for a line the shell could not read."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return []
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in _OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def unit_commands(lines: Iterable[str], source: Path, compiler: Sequence[str]
                  ) -> dict[str, UnitCommands]:
    """Each unit's compiler and sparse command lines from a dry run's recipe lines.

    A unit is an object `dir/name.o` that the compiler makes with `-c` from the tree's own
    `dir/name.c` or `.S`; its sparse line is the one that checks that C file. sparse's
    `-Wp,-MMD,...` is dropped: the compiler writes the same dependency file, and two writers
    at once would tear it.
    """
    prefix = f"{source}/"
    compiled: dict[str, list[str]] = {}
    checked: dict[str, list[str]] = {}
    width = len(compiler)
    for line in lines:
        if SPARSE not in line and compiler[-1] not in line:
            continue
        for argv in simple_commands(line):
            if argv[:width] == list(compiler) and "-c" in argv and "-o" in argv[:-1]:
                unit, source_file = argv[argv.index("-o") + 1], argv[-1]
                if unit.endswith(".o") and source_file.startswith(prefix) and \
                        source_file[-2:] in (".c", ".S") and \
                        source_file[len(prefix):-2] == unit[:-2]:
                    compiled[unit] = argv
            elif argv[0] == SPARSE and argv[-1].startswith(prefix) and argv[-1].endswith(".c"):
                unit = argv[-1][len(prefix):-2] + ".o"
                checked[unit] = [a for a in argv if not a.startswith(("-Wp,-MMD,", "-Wp,-MD,"))]
    return {unit: UnitCommands(unit, tuple(argv),
                               tuple(checked[unit]) if unit in checked else None)
            for unit, argv in compiled.items()}
