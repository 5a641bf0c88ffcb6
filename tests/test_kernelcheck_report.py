"""Reading Kbuild's output: whose diagnostic, what is new against the pristine tree.

Pure functions on make output written for these tests; no tree, no Kbuild.
"""

from __future__ import annotations

from pathlib import Path

from relgen.checks.kernel import (
    KbuildRun,
    PreparedBuild,
    kbuild_checks,
    new_diagnostics,
    parse_diagnostics,
)

SOURCE = Path("/cache/key/source")
UNIT = "arch/ia64/kernel/machine_kexec.o"
PRISTINE = f"""\
  CC      {UNIT}
{SOURCE}/include/linux/x.h:10:3: warning: old gcc warning [-Wfoo]
  CHECK   {SOURCE}/arch/ia64/kernel/machine_kexec.c
{SOURCE}/arch/ia64/kernel/machine_kexec.c:40:5: error: symbol 'x' was not declared
"""
CHANGED = f"""\
  CC      {UNIT}
{SOURCE}/include/linux/x.h:12:3: warning: old gcc warning [-Wfoo]
  CHECK   {SOURCE}/arch/ia64/kernel/machine_kexec.c
{SOURCE}/arch/ia64/kernel/machine_kexec.c:44:5: error: symbol 'x' was not declared
{SOURCE}/arch/ia64/kernel/machine_kexec.c:131:9: error: incorrect type in argument 5
make[4]: *** [{SOURCE}/scripts/Makefile.build:256: {UNIT}] Error 1
"""


def _run(text: str, failed: tuple[str, ...] = ()) -> KbuildRun:
    return KbuildRun((UNIT,), tuple(parse_diagnostics(text, SOURCE)), failed, text)


def test_the_quiet_headers_say_which_tool_speaks() -> None:
    found = list(parse_diagnostics(PRISTINE, SOURCE))
    assert [(d.tool, d.path, d.line, d.kind) for d in found] == [
        ("gcc", "include/linux/x.h", 10, "warning"),
        ("sparse", "arch/ia64/kernel/machine_kexec.c", 40, "error")]


def test_new_means_new_by_file_and_message_not_by_line() -> None:
    baseline, changed = _run(PRISTINE), _run(CHANGED)
    assert new_diagnostics(baseline, changed, "gcc") == []
    (new,) = new_diagnostics(baseline, changed, "sparse")
    assert new.line == 131 and "argument 5" in new.message


def test_a_failed_unit_is_charged_to_the_tool_that_explains_it() -> None:
    prepared = PreparedBuild(SOURCE, SOURCE.parent / "objects", (UNIT,), _run(PRISTINE))
    gcc, sparse = kbuild_checks(prepared, _run(CHANGED, (UNIT,)))
    assert gcc.passed and not sparse.passed
    assert any("incorrect type in argument 5" in line for line in sparse.evidence)


def test_a_failed_unit_nobody_explains_fails_the_compiler_check() -> None:
    prepared = PreparedBuild(SOURCE, SOURCE.parent / "objects", (UNIT,), _run(PRISTINE))
    silent = PRISTINE + "relgen-checkcc: error: unrecognized command-line option '-mfoo'\n"
    gcc, sparse = kbuild_checks(prepared, _run(silent, (UNIT,)))
    assert not gcc.passed and sparse.passed
    assert f"  FAIL: make gave up on {UNIT}" in gcc.evidence
