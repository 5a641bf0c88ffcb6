"""The check-only ia64 compiler stand-in: its command-line reading and what it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool
from relgen.checks import checkcc

STANDIN = [sys.executable, "-m", "relgen.checks.checkcc"]
EM_IA_64 = 50  # e_machine of an ia64 ELF object


def standin(*args: str, stdin: str | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STANDIN, *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, check=False)


@pytest.mark.parametrize("option", ["-mconstant-gp", "-mno-sdata", "-mtune=mckinley",
                                    "-mfixed-range=f12-f15,f32-f127", "-mauto-pic",
                                    "-mno-inline-float-divide"])
def test_ia64_machine_options_are_dropped(option: str) -> None:
    invocation = checkcc.parse_command_line(["-O2", option, "-c", "-o", "x.o", "x.c"])
    assert invocation.mode == "compile"
    assert option not in invocation.options
    assert invocation.inputs == (("c", "x.c"),) and invocation.output == "x.o"


@pytest.mark.parametrize("option", ["-mfentry", "-m64", "-mrecord-mcount", "-msse2"])
def test_other_machine_options_are_refused_like_an_ia64_gcc(option: str) -> None:
    with pytest.raises(checkcc.UsageError, match="unrecognized command-line option"):
        checkcc.parse_command_line([option, "-c", "x.c"])


def test_predefines_swap_x86_for_ia64() -> None:
    flags = checkcc.predefines(["-std=gnu11"])
    assert "-U__x86_64__" in flags and "-U__SSE2__" in flags
    assert "-D__ia64__=1" in flags and "-D__LP64__=1" in flags and "-Dia64=1" in flags
    assert "-Dia64=1" not in checkcc.predefines(["-std=c11"])


def test_modes() -> None:
    assert checkcc.parse_command_line(["-E", "-x", "c", "-"]).mode == "preprocess"
    assert checkcc.parse_command_line(["-S", "-o", "a.s", "a.c"]).mode == "assembly-text"
    assert checkcc.parse_command_line(["--version"]).mode == "info"
    assert checkcc.parse_command_line(["-c", "a.S"]).inputs == (("assembler-with-cpp", "a.S"),)


def test_c_is_parsed_with_the_ia64_predefines(tmp_path: Path) -> None:
    require_tool("gcc")
    require_tool("ia64-linux-gnu-as")
    source = tmp_path / "probe.c"
    source.write_text("#if !defined(__ia64__) || !defined(__LP64__) || defined(__x86_64__)\n"
                      "#error not ia64\n#endif\n"
                      "int x __attribute__((__model__ (__small__)));\n"
                      "_Static_assert(sizeof(long) == 8, \"LP64\");\n")
    result = standin("-mconstant-gp", "-Wall", "-Werror", "-c", "-o", "probe.o", "probe.c",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the object holds no code: an empty ia64 object, so that Kbuild's nm has one to read
    header = (tmp_path / "probe.o").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_IA_64


def test_c_errors_are_gcc_errors(tmp_path: Path) -> None:
    require_tool("gcc")
    (tmp_path / "bad.c").write_text("void f(int a);\nvoid g(void) { f(); }\n")
    result = standin("-c", "-o", "bad.o", "bad.c", cwd=tmp_path)
    assert result.returncode != 0
    assert "bad.c:2:" in result.stderr and "too few arguments" in result.stderr
    assert not (tmp_path / "bad.o").exists()


def test_assembly_goes_to_the_ia64_assembler(tmp_path: Path) -> None:
    require_tool("ia64-linux-gnu-as")
    (tmp_path / "a.S").write_text("#ifdef __ia64__\n\t.text\n\tnop.m 0\n#endif\n")
    result = standin("-D__ASSEMBLY__", "-c", "-o", "a.o", "a.S", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = subprocess.run(["ia64-linux-gnu-objdump", "-d", "a.o"], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout
    assert "nop.m 0x0" in text


def test_kbuild_probes(tmp_path: Path) -> None:
    require_tool("ia64-linux-gnu-as")
    assert standin("-dumpmachine").stdout.strip() == "ia64-linux-gnu"
    version = standin("-Wa,--version", "-c", "-x", "assembler-with-cpp", "/dev/null",
                      "-o", "/dev/null")
    assert version.stdout.startswith("GNU assembler")
    assert "ia64-linux-gnu" in version.stdout
    compiler = standin("-E", "-P", "-x", "c", "-", stdin="GCC __GNUC__ __ia64__\n")
    assert compiler.stdout.split()[0] == "GCC" and compiler.stdout.split()[-1] == "1"
    # asm-offsets: -S writes text whose `->` markers carry the LP64 values
    (tmp_path / "offsets.c").write_text(
        "struct s { char c; long l; };\nvoid f(void) {\n"
        "asm volatile(\"\\n.ascii \\\"->S_L %0 x\\\"\" : : \"i\" (__builtin_offsetof("
        "struct s, l)));\n}\n")
    assert standin("-S", "-o", "offsets.s", "offsets.c", cwd=tmp_path).returncode == 0
    assert "->S_L $8 x" in (tmp_path / "offsets.s").read_text()


def test_linking_is_refused() -> None:
    result = standin("-o", "vmlinux", "a.o")
    assert result.returncode == 1 and "builds no code" in result.stderr


def test_the_assembler_gets_x_as_from_an_ia64_gcc(tmp_path: Path) -> None:
    """gcc for ia64 passes -x to GNU as (ASM_EXTRA_SPEC `%{!mno-gnu-as:-x}`): explicit mode,
    where a missing stop is a reported dependency violation, not a silently added stop."""
    require_tool("ia64-linux-gnu-as")
    (tmp_path / "a.S").write_text("\t.text\n\tmov r2=r3\n\tmov r4=r2\n")
    explicit = standin("-c", "-o", "a.o", "a.S", cwd=tmp_path)
    assert explicit.returncode == 0 and "violates RAW dependency" in explicit.stderr
    automatic = standin("-mno-gnu-as", "-c", "-o", "a.o", "a.S", cwd=tmp_path)
    assert automatic.returncode == 0 and "violates" not in automatic.stderr
