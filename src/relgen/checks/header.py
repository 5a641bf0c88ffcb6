"""The header compiles: with the host gcc in C (`-fsyntax-only`) and in assembly (`-E
-D__ASSEMBLY__`), once per configuration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from relgen import tools
from relgen.checks.report import Check
from relgen.names import HEADER_INCLUDE

#: What a kernel build gives every unit (compiler_attributes.h), for a host compile.
HOST_KERNEL_DEFINES = ("-D__noreturn=__attribute__((__noreturn__))",)

#: <linux/build_bug.h> reduced to the one macro the header uses: the kernel's static_assert
#: (its message optional) on the compiler's _Static_assert.
BUILD_BUG_STANDIN = """#define static_assert(expr, ...) __static_assert(expr, ##__VA_ARGS__, #expr)
#define __static_assert(expr, msg, ...) _Static_assert(expr, msg)
"""

def write_kernel_standins(include_dir: Path) -> None:
    """The kernel headers the generated header includes, as stand-ins for a host compile."""
    (include_dir / "linux").mkdir(parents=True, exist_ok=True)
    (include_dir / "linux" / "build_bug.h").write_text(BUILD_BUG_STANDIN, encoding="utf-8")

def check_header_compiles(header: str, work: Path,
                          flag_sets: Sequence[Sequence[str]] = ((),)) -> Check:
    """The header compiles in C and in assembly, once per configuration's cpp flags."""
    if tools.missing(["gcc"]):
        return Check.not_run("the header compiles in C and in assembly",
                             "gcc not found on PATH; install the Debian package gcc")
    include = work / "header-include" / "asm"
    include.mkdir(parents=True, exist_ok=True)
    (include / "kexec_control_page.h").write_text(header, encoding="utf-8")
    write_kernel_standins(include.parent)
    probe = f"#include <{HEADER_INCLUDE}>\n"
    evidence: list[str] = []
    passed = True
    for flags in flag_sets:
        c_mode = tools.run(["gcc", "-fsyntax-only", "-std=gnu11", "-Wall", "-Werror",
                       *HOST_KERNEL_DEFINES, *flags,
                       "-x", "c", "-I", str(include.parent), "-"],
                      stdin=probe + "int kexec_probe;\n")
        asm_mode = tools.run(["gcc", "-E", "-D__ASSEMBLY__", *flags, "-x", "assembler-with-cpp",
                         "-I", str(include.parent), "-"], stdin=probe)
        shown = "".join(f" {flag}" for flag in flags)
        evidence += [f"  gcc -fsyntax-only{shown} -x c: exit {c_mode.returncode}",
                     f"  gcc -E -D__ASSEMBLY__{shown} -x assembler-with-cpp: exit "
                     f"{asm_mode.returncode}"]
        evidence += ["  " + line for line in (c_mode.stderr + asm_mode.stderr).splitlines()]
        passed &= c_mode.returncode == 0 and asm_mode.returncode == 0
    return Check("the header compiles in C and in assembly", passed, tuple(evidence))
