"""Reading what the kernel checks need, without a tree: Kbuild's dry run, a defconfig, a
folder's Makefile, the checkers' output, and the verdict against the pristine tree.

Pure functions on text written for these tests; no tree, no program.
"""

from __future__ import annotations

from pathlib import Path

from relgen.checks import direct, kbuild
from relgen.checks.kexec_units import touched_units
from relgen.checks.replay import Diagnostic, Outcome, new_diagnostics, parse_diagnostics, verdicts

SOURCE = Path("/cache/key/source")
UNIT = "arch/ia64/kernel/machine_kexec.o"
C_FILE = f"{SOURCE}/arch/ia64/kernel/machine_kexec.c"
CC = ["/venv/bin/python", "-m", "relgen.checks.checkcc"]
FLAGS = ("-Wp,-MMD,arch/ia64/kernel/.machine_kexec.o.d -nostdinc -I./include "
         "-DKBUILD_MODFILE='\"arch/ia64/kernel/machine_kexec\"' -D__KERNEL__")
# two recipe lines of `make -n C=2 V=1` as Kbuild 6.1 prints them (trimmed)
DRY_RUN = [
    f"set -e;  echo '  CC      {UNIT}'; trap 'rm -f {UNIT}; trap - HUP; kill -s HUP $$' HUP; "
    f"{' '.join(CC)} {FLAGS} -c -o {UNIT} {C_FILE}  ; scripts/basic/fixdep "
    f"arch/ia64/kernel/.machine_kexec.o.d {UNIT} '{' '.join(CC)} -c -o {UNIT} {C_FILE}' "
    f"> arch/ia64/kernel/.machine_kexec.o.cmd; rm -f arch/ia64/kernel/.machine_kexec.o.d",
    f"set -e;  echo '  CHECK   {C_FILE}'; sparse -D__linux__ -Wsparse-error {FLAGS} {C_FILE}",
    f"set -e;  {' '.join(CC)} {FLAGS} -c -o kernel/bounds.s {SOURCE}/kernel/bounds.c",
]


def test_the_dry_run_gives_each_units_command_lines_as_the_shell_would_run_them() -> None:
    (commands,) = kbuild.unit_commands(DRY_RUN, SOURCE, CC).values()
    assert commands.unit == UNIT
    assert commands.compiler == (*CC, "-Wp,-MMD,arch/ia64/kernel/.machine_kexec.o.d",
                                 "-nostdinc", "-I./include",
                                 '-DKBUILD_MODFILE="arch/ia64/kernel/machine_kexec"',
                                 "-D__KERNEL__", "-c", "-o", UNIT, C_FILE)
    # sparse's copy of the dependency option goes: the compiler writes the same file
    assert commands.sparse is not None and commands.sparse[:3] == ("sparse", "-D__linux__",
                                                                   "-Wsparse-error")
    assert not any(a.startswith("-Wp,") for a in commands.sparse) and commands.sparse[-1] == C_FILE


def test_a_defconfig_is_written_as_kbuild_writes_autoconf_h() -> None:
    config = direct.read_config('CONFIG_KEXEC=y\n# CONFIG_XEN is not set\nCONFIG_EFI_VARS=m\n'
                                'CONFIG_NR_CPUS=64\nCONFIG_PHYSICAL_START=0x4000000\n'
                                'CONFIG_CMDLINE="console=ttyS0"\nCONFIG_FOO=n\n')
    assert direct.autoconf(config).splitlines()[1:] == [
        "#define CONFIG_KEXEC 1", "#define CONFIG_EFI_VARS_MODULE 1",
        "#define CONFIG_NR_CPUS 64", "#define CONFIG_PHYSICAL_START 0x4000000",
        '#define CONFIG_CMDLINE "console=ttyS0"']


def test_a_folders_makefile_enables_what_the_configuration_selects() -> None:
    makefile = ("obj-y := process.o \\\n\tsetup.o\n"
                "obj-$(CONFIG_KEXEC)\t\t+= machine_kexec.o relocate_kernel.o crash.o\n"
                "obj-$(CONFIG_CRASH_DUMP) += crash_dump.o  # a comment.o\n"
                "obj-$(CONFIG_IA64_MCA) += mca_all.o\nmca_all-y := mca.o mca_asm.o\n"
                "obj-$(CONFIG_XEN) += xen.o\nsubdir-y += sub/\n")
    config = {"CONFIG_KEXEC": "y", "CONFIG_IA64_MCA": "m"}
    assert direct.enabled_objects(makefile, config) == {
        "process.o", "setup.o", "machine_kexec.o", "relocate_kernel.o", "crash.o",
        "mca_all.o", "mca.o", "mca_asm.o"}


def test_each_era_gets_its_kbuilds_flags_read_as_gnu89() -> None:
    old = direct.cflags((2, 6, 18), {})
    late = direct.cflags((2, 6, 32), {"CONFIG_CC_OPTIMIZE_FOR_SIZE": "y"})
    assert old[-1] == late[-1] == "-std=gnu89"
    assert "-O2" in old and "-Os" in late
    assert "-fno-strict-overflow" not in old and "-fconserve-stack" in late
    assert "-mfixed-range=f12-f15,f32-f127" in old and "-fomit-frame-pointer" in old


# ------------------------------------------------------------------- the checkers' output

GCC_OUTPUT = f"""\
In file included from {C_FILE}:12:
{SOURCE}/include/linux/x.h:10:3: warning: old gcc warning [-Wfoo]
./include/generated/autoconf.h:1:2: error: generated
{C_FILE}:131:9: error: too few arguments to function 'f'
"""
AS_OUTPUT = f"""{SOURCE}/arch/ia64/kernel/relocate_kernel.S: Assembler messages:
{SOURCE}/arch/ia64/kernel/relocate_kernel.S:24: Warning: Use of 'mov' violates RAW dependency
"""


def test_diagnostics_lose_the_caches_folders_and_keep_their_kind() -> None:
    found = parse_diagnostics("gcc", GCC_OUTPUT, [f"{SOURCE}/"])
    assert [(d.path, d.line, d.kind) for d in found] == [
        ("include/linux/x.h", 10, "warning"), ("include/generated/autoconf.h", 1, "error"),
        ("arch/ia64/kernel/machine_kexec.c", 131, "error")]
    (violation,) = parse_diagnostics("gcc", AS_OUTPUT, [f"{SOURCE}/"])
    assert violation.kind == "warning" and violation.message.startswith("Use of 'mov'")
    (fatal,) = parse_diagnostics("gcc", "a.c:3:10: fatal error: x.h: No such file", [])
    assert fatal.kind == "fatal error"


def _outcome(tool: str, *diagnostics: tuple[int, str], status: int = 0,
             unit: str = UNIT, last: str = "") -> Outcome:
    found = tuple(Diagnostic(tool, "arch/ia64/kernel/machine_kexec.c", line, "error", message)
                  for line, message in diagnostics)
    return Outcome(unit, tool, status, found, 0.1, last)


def test_new_means_new_by_file_and_message_not_by_line() -> None:
    pristine = _outcome("sparse", (40, "symbol 'x' was not declared")).diagnostics
    changed = _outcome("sparse", (44, "symbol 'x' was not declared"),
                       (131, "incorrect type in argument 5")).diagnostics
    (new,) = new_diagnostics(pristine, changed)
    assert new.line == 131 and "argument 5" in new.message


def test_each_tool_fails_for_what_it_reports_new() -> None:
    pristine = [_outcome("gcc"), _outcome("sparse", (40, "old"), status=1)]
    changed = [_outcome("gcc"), _outcome("sparse", (44, "old"), (131, "argument 5"), status=1)]
    gcc, sparse = verdicts(pristine, changed, ["  route: test"])
    assert gcc.passed and not sparse.passed
    assert gcc.evidence == ("  route: test", "  nothing new against the pristine tree")
    assert f"  FAIL: new: arch/ia64/kernel/machine_kexec.c:131: error: argument 5 (sparse), " \
           f"in {UNIT}" in sparse.evidence


def test_a_command_that_gives_up_without_a_diagnostic_fails_its_tool() -> None:
    pristine = [_outcome("gcc"), _outcome("sparse")]
    changed = [_outcome("gcc", status=1, last="relgen-checkcc: error: unrecognized option"),
               _outcome("sparse")]
    gcc, sparse = verdicts(pristine, changed, [])
    assert not gcc.passed and sparse.passed
    assert f"  FAIL: gcc gave up on {UNIT}: relgen-checkcc: error: unrecognized option" \
        in gcc.evidence


def test_a_unit_the_pristine_tree_cannot_compile_is_not_counted_as_checked() -> None:
    fatal = Diagnostic("gcc", "arch/ia64/kernel/machine_kexec.c", 3, "fatal error",
                       "linux/bounds.h: No such file or directory")
    other = "kernel/kexec.o"
    pristine = [Outcome(UNIT, "gcc", 1, (fatal,), 0.1, ""), _outcome("gcc", unit=other)]
    gcc, sparse = verdicts(pristine, [pristine[0], _outcome("gcc", unit=other)], [])
    assert sparse.passed and "no unit sparse checks reads" in sparse.evidence[-1]
    assert gcc.passed and any(line.startswith("  not checked past a fatal error") and UNIT in line
                              for line in gcc.evidence)
    # with no unit left, the check did not run, and never passes
    alone, _ = verdicts(pristine[:1], pristine[:1], [])
    assert alone.status == "not run" and "fatal error" in alone.evidence[-1]
    required, _ = verdicts(pristine[:1], pristine[:1], [], required=True)
    assert required.status == "fail"


def test_only_the_units_that_read_a_changed_file_run(tmp_path: Path) -> None:
    (tmp_path / "include" / "linux").mkdir(parents=True)
    (tmp_path / "include" / "linux" / "kexec.h").write_text("")
    units = ["a.o", "b.o", "c.o", "d.o"]
    read = {"a.o": ["a.c", "include/linux/kexec.h"], "b.o": ["b.c", "include/asm/page.h"],
            "c.o": ["c.c", "include/asm-generic/errno.h"]}  # d.o: nothing recorded
    assert touched_units(units, read, ["include/linux/kexec.h"], tmp_path) == ["a.o", "d.o"]
    assert touched_units(units, read, ["b.c"], tmp_path) == ["b.o", "d.o"]
    # a new file may be found first where the include path looks for one of its name
    assert touched_units(units, read, ["arch/ia64/include/asm/errno.h"], tmp_path) == \
        ["c.o", "d.o"]
