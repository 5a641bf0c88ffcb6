"""A check-only ia64 C compiler stand-in for Kbuild: the host gcc's front end, ia64's view.

There is no ia64 gcc in Debian, but the kernel's checks (sparse, and gcc's own diagnostics)
need only a compiler that parses C the way an ia64 gcc would. `python -m relgen.checks.checkcc`
(also installed as `relgen-checkcc`) takes a gcc command line as Kbuild writes it for
ARCH=ia64 and

- checks C with the host `gcc -fsyntax-only`: the x86 predefines (`__x86_64__`, `__SSE__`
  ...) are undefined and the ia64 ones (`__ia64__`, `__LP64__` ...) defined, so the kernel's
  headers take their ia64 paths; the ia64-only `-m` options are dropped, any other `-m`
  option is refused as an ia64 gcc would refuse it (so Kbuild's cc-option probes answer for
  ia64). It generates no code: the `-o` object of a C file that passes is an empty ia64
  object (no code, no symbols) made by the real assembler from nothing, because Kbuild runs
  nm on every object it asked for;
- turns `-S` into the host `gcc -S` with the same predefines. Kbuild reads only the `->`
  markers of such files (asm-offsets.s, bounds.s, nr-irqs.s); the values are integer constant
  expressions evaluated by the front end with LP64 type sizes and alignments, which x86_64
  and ia64 share, so they are ia64's. The x86 instructions around the markers are never used;
- assembles `.S` and `.s` files (and `-x assembler` input) with the real
  `ia64-linux-gnu-as`, after the host preprocessor with the ia64 predefines, and with `-x`
  as an ia64 gcc passes it to GNU as (explicit mode, dependency violations reported;
  `ASM_EXTRA_SPEC` of gcc/config/ia64: `%{!mno-gnu-as:-x}`);
- answers Kbuild's probes: `--version`, `-dumpversion`, `-print-file-name=...` go to the
  host gcc, `-dumpmachine` says ia64-linux-gnu, `-Wa,--version` asks the ia64 assembler.

Linking is refused: nothing here produces code to link.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relgen import tools

HOST_COMPILER = "gcc"
ASSEMBLER = "ia64-linux-gnu-as"
TARGET = "ia64-linux-gnu"

# What the host gcc (x86_64) predefines and an ia64 gcc does not (`gcc -dM -E -x c /dev/null`).
X86_PREDEFINES = (
    "__x86_64__", "__x86_64", "__amd64__", "__amd64", "__k8", "__k8__",
    "__code_model_small__", "__MMX__", "__SSE__", "__SSE2__", "__FXSR__", "__SSE_MATH__",
    "__SSE2_MATH__", "__MMX_WITH_SSE__", "__SEG_FS", "__SEG_GS", "__GCC_ASM_FLAG_OUTPUTS__",
    "__ATOMIC_HLE_ACQUIRE", "__ATOMIC_HLE_RELEASE", "__pic__", "__PIC__", "__pie__", "__PIE__",
    "__CET__", "__SHSTK__", "__IBT__",
)
# What gcc for ia64-linux predefines (gcc/config/ia64/ia64.h TARGET_CPU_CPP_BUILTINS and
# linux.h): the kernel tests __ia64__ (asm/types.h, uapi headers), _LP64/__LP64__
# (asm/bitsperlong.h paths) and __linux__. `ia64` is defined in GNU modes only, as by gcc.
IA64_PREDEFINES = ("__ia64__=1", "__ia64=1", "__itanium__=1", "__LP64__=1", "_LP64=1")
IA64_GNU_PREDEFINES = ("ia64=1",)

# ia64's own attributes, unknown to the x86 back end, which would warn "attribute directive
# ignored" at every per-cpu variable and asmlinkage function (thousands of lines per unit).
# They select code generation (small-model addressing, the syscall calling convention), which
# a syntax check never reaches, so the front end sees them as empty attribute lists.
IA64_ATTRIBUTES = ("__model__(model)=", "syscall_linkage=")

# ia64's machine options (GCC manual, "IA-64 Options"): they select code generation, which
# a syntax check never reaches. Exact names; each also has its `-mno-` form.
IA64_MACHINE_OPTIONS = frozenset({
    "big-endian", "little-endian", "gnu-as", "gnu-ld", "pic", "volatile-asm-stop",
    "register-names", "sdata", "constant-gp", "auto-pic", "inline-float-divide-min-latency",
    "inline-float-divide-max-throughput", "inline-float-divide",
    "inline-int-divide-min-latency", "inline-int-divide-max-throughput", "inline-int-divide",
    "inline-sqrt-min-latency", "inline-sqrt-max-throughput", "inline-sqrt", "dwarf2-asm",
    "early-stop-bits", "ilp32", "lp64", "sched-br-data-spec", "sched-ar-data-spec",
    "sched-control-spec", "sched-br-in-data-spec", "sched-ar-in-data-spec",
    "sched-in-control-spec", "sched-spec-ldc", "sched-spec-control-ldc",
    "sched-prefer-non-data-spec-insns", "sched-prefer-non-control-spec-insns",
    "sched-stop-bits-after-every-cycle", "sched-count-spec-in-critical-path",
    "sel-sched-dont-check-control-spec", "sched-fp-mem-deps-zero-cost",
    "sched-max-memory-insns-hard-limit",
})
IA64_MACHINE_OPTION_PREFIXES = ("fixed-range=", "tls-size=", "tune=", "sched-max-memory-insns=")
# The machine options an ia64 gcc hands to its assembler (ASM_SPEC).
IA64_ASSEMBLER_OPTIONS = frozenset({"-mconstant-gp", "-mauto-pic", "-milp32", "-mlp64",
                                    "-mbig-endian", "-mlittle-endian"})
# What an ia64 gcc built for GNU as always passes it, unless -mno-gnu-as (ASM_EXTRA_SPEC):
# explicit mode, in which gas reports dependency violations instead of inserting stops.
GNU_AS_EXPLICIT = "-x"

# Options whose value is the next argument when not joined to them.
TAKES_VALUE = frozenset({
    "-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter",
    "-iprefix", "-iwithprefix", "-isysroot", "-MF", "-MT", "-MQ", "-Xassembler",
    "-Xpreprocessor", "-Xlinker", "-T", "-L", "-l", "-u", "--param", "-dumpbase", "-dumpdir",
    "-aux-info",
})
INFO_OPTIONS = ("--version", "-v", "-dumpversion", "-dumpfullversion", "-print-", "--print-",
                "-dumpspecs", "--help", "-###")
LANGUAGE_BY_SUFFIX = {".c": "c", ".h": "c-header", ".S": "assembler-with-cpp",
                      ".sx": "assembler-with-cpp", ".s": "assembler"}


class UsageError(Exception):
    """A command line an ia64 gcc would refuse, or one this stand-in cannot serve."""


def is_ia64_machine_option(option: str) -> bool:
    """True for `-mconstant-gp`, `-mno-sdata`, `-mfixed-range=f12-f15` and the like."""
    name = option.removeprefix("-m")
    if name.startswith(IA64_MACHINE_OPTION_PREFIXES):
        return True
    return name in IA64_MACHINE_OPTIONS or name.removeprefix("no-") in IA64_MACHINE_OPTIONS


@dataclass(frozen=True)
class Invocation:
    """A gcc command line, split into what decides the mode and the rest."""

    mode: str  # "info", "preprocess", "assembly-text", "compile", "link"
    options: tuple[str, ...]  # for the host gcc, -m options dropped, no -c/-S/-E/-o
    inputs: tuple[tuple[str, str], ...]  # (language, path); "-" is stdin
    output: str | None
    assembler_options: tuple[str, ...] = field(default=())  # -Wa, and ia64 -m for the as
    gnu_as: bool = True  # False after -mno-gnu-as: gas gets no -x


def parse_command_line(argv: Sequence[str]) -> Invocation:
    """What Kbuild asked for, or UsageError for an option an ia64 gcc does not know."""
    if any(a.startswith(INFO_OPTIONS) or a == "-dumpmachine" for a in argv) and not any(
            a.startswith("-Wa,") for a in argv):
        return Invocation("info", tuple(argv), (), None)
    options: list[str] = []
    assembler: list[str] = []
    inputs: list[tuple[str, str]] = []
    output = None
    mode = "link"
    language: str | None = None
    gnu_as = True
    arguments = iter(argv)
    for argument in arguments:
        if argument in ("-c", "-fsyntax-only"):
            mode = "compile" if mode == "link" else mode
        elif argument == "-S":
            mode = "assembly-text" if mode != "preprocess" else mode
        elif argument == "-E":
            mode = "preprocess"
        elif argument.startswith("-o"):
            output = argument[2:] or next(arguments, "")
        elif argument.startswith("-x"):
            value = argument[2:] or next(arguments, "")
            language = None if value == "none" else value
        elif argument.startswith("-Wa,"):
            assembler += [a for a in argument[4:].split(",") if a]
        elif argument.startswith("-m"):
            if not is_ia64_machine_option(argument):
                raise UsageError(f"unrecognized command-line option '{argument}'")
            if argument in IA64_ASSEMBLER_OPTIONS:
                assembler.append(argument)
            gnu_as = {"-mno-gnu-as": False, "-mgnu-as": True}.get(argument, gnu_as)
        elif argument in TAKES_VALUE:
            options += [argument, next(arguments, "")]
        elif argument == "-" or not argument.startswith("-"):
            inputs.append((language or _language_of(argument), argument))
        else:
            options.append(argument)
    return Invocation(mode, tuple(options), tuple(inputs), output, tuple(assembler), gnu_as)


def _language_of(path: str) -> str:
    if path == "-":
        raise UsageError("-E or -x required when input is from standard input")
    return LANGUAGE_BY_SUFFIX.get(Path(path).suffix, "object")


def predefines(options: Sequence[str]) -> list[str]:
    """-U the x86 predefines, -D the ia64 ones; before the command's own -D/-U."""
    strict = any(o == "-ansi" or (o.startswith("-std=c") and not o.startswith("-std=c++"))
                 for o in options)
    defines = IA64_PREDEFINES + (() if strict else IA64_GNU_PREDEFINES)
    return [f"-U{name}" for name in X86_PREDEFINES] + [f"-D{name}" for name in defines]


def _gcc(invocation: Invocation, *mode: str, inputs: Sequence[tuple[str, str]],
         output: str | None) -> list[str]:
    attributes = [] if "-E" in mode else [f"-D{a}" for a in IA64_ATTRIBUTES]
    command = [tools.find(HOST_COMPILER), *predefines(invocation.options), *attributes,
               *invocation.options, *mode]
    if output is not None:
        command += ["-o", output]
    for language, path in inputs:
        command += ["-x", language, path]
    return command


def _assemble(invocation: Invocation) -> int:
    """cpp with the ia64 predefines where the language asks for it, then ia64-linux-gnu-as."""
    assembler = tools.find(ASSEMBLER)
    if "--version" in invocation.assembler_options:
        return tools.run_passthrough([assembler, "--version"])
    if len(invocation.inputs) != 1:
        raise UsageError("assemble one file at a time")
    language, path = invocation.inputs[0]
    with tempfile.TemporaryDirectory(prefix="relgen-checkcc-") as scratch:
        text = Path(scratch) / "input.s"
        if language == "assembler-with-cpp":
            status = tools.run_passthrough(_gcc(invocation, "-E", inputs=[(language, path)],
                                                output=str(text)))
            if status != 0:
                return status
        elif path == "-":
            text.write_bytes(sys.stdin.buffer.read())
        else:
            text = Path(path)
        output = invocation.output or Path(path).with_suffix(".o").name
        options = [GNU_AS_EXPLICIT] if invocation.gnu_as else []
        options += [o for o in invocation.assembler_options if o != "--version"]
        return tools.run_passthrough([assembler, *options, "-o", output, str(text)])


def _write_empty_object(output: str) -> int:
    """An ia64 object without code or symbols, assembled from nothing by the real assembler.

    Kbuild reads every object it asked for (check-local-export runs nm on it; modpost's
    mk_elfconfig reads the ELF class and byte order of scripts/mod/empty.o, whose source is
    empty). An empty object keeps those steps running and truthful: it exports nothing.
    """
    assembler = tools.find(ASSEMBLER)
    return tools.run_passthrough([assembler, "-o", output, "/dev/null"])


def run(argv: Sequence[str]) -> int:
    """Serve one gcc command line; the exit status is the one gcc or as gave."""
    invocation = parse_command_line(argv)
    if invocation.mode == "info":
        if "-dumpmachine" in argv:
            print(TARGET)
            return 0
        return tools.run_passthrough([tools.find(HOST_COMPILER), *argv])
    languages = {language for language, _ in invocation.inputs}
    if invocation.mode == "preprocess":
        return tools.run_passthrough(_gcc(invocation, "-E", inputs=invocation.inputs,
                                          output=invocation.output))
    if invocation.mode == "compile" and (
            languages & {"assembler", "assembler-with-cpp"}
            or "--version" in invocation.assembler_options):
        return _assemble(invocation)
    if invocation.mode == "assembly-text":
        return tools.run_passthrough(_gcc(invocation, "-S", inputs=invocation.inputs,
                                          output=invocation.output))
    if invocation.mode == "compile":
        # -o stays: gcc names the dependency file's target after it, and writes nothing there.
        status = tools.run_passthrough(_gcc(invocation, "-fsyntax-only",
                                            inputs=invocation.inputs, output=invocation.output))
        if status != 0 or invocation.output in (None, "/dev/null"):
            return status
        return _write_empty_object(invocation.output)
    raise UsageError("linking is not supported: relgen-checkcc only checks, it builds no code")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"relgen-checkcc: error: {error}", file=sys.stderr)
        return 1
    except tools.ToolError as error:
        print(f"relgen-checkcc: error: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
