"""The one place that finds and runs external programs.

Every program is found on PATH through `find`, and a missing one is always the same one-line
ToolError, naming it and the Debian package that has it. Every program runs with LC_ALL=C,
because relgen parses what they print (diagnostics, version lines) and translated messages
would not match. File operands go through `operand`, so that no file name is read as an
option (`-x.S` would be one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from relgen.errors import ToolError

#: The ia64 cross binutils (as, objdump, nm, ld, objcopy) all carry this prefix.
IA64_PREFIX = "ia64-linux-gnu-"
IA64_BINUTILS = "binutils-ia64-linux-gnu"

#: Each program relgen runs, and the Debian package that installs it.
PACKAGES: Mapping[str, str] = {
    "cpp": "cpp",
    "gcc": "gcc",
    "git": "git",
    "perl": "perl",
    "spatch": "coccinelle",
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "sparse": "sparse",
    "cp": "coreutils",
    **{IA64_PREFIX + tool: IA64_BINUTILS for tool in ("as", "objdump", "nm", "ld", "objcopy")},
}


def package_of(program: str) -> str:
    return PACKAGES.get(program, program)


def find(program: str) -> str:
    """The path of `program` on PATH, or the one ToolError that names it and its package."""
    found = shutil.which(program)
    if found is None:
        raise ToolError(f"{program} not found on PATH; install the Debian package "
                        f"{package_of(program)}")
    return found


def missing(programs: Iterable[str]) -> list[str]:
    """`program (Debian package P)` for each of `programs` that is not installed."""
    return [f"{program} (Debian package {package_of(program)})" for program in programs
            if shutil.which(program) is None]


def operand(path: Path | str) -> str:
    """A file operand no program takes for an option: `-x.S` becomes `./-x.S`."""
    text = str(path)
    return f"./{text}" if text.startswith("-") else text


def _resolved(command: Sequence[str]) -> list[str]:
    """The command with its program found on PATH (a path is taken as it is)."""
    program, *rest = command
    return [program if "/" in program else find(program), *rest]


def environment_with(**overrides: str) -> dict[str, str]:
    """This process's environment with `overrides` (a program's own HOME, say)."""
    return {**os.environ, **overrides}


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env, LC_ALL="C")


def run(command: Sequence[str], cwd: Path | None = None, *, stdin: str | None = None,
        env: Mapping[str, str] | None = None, merge_output: bool = False
        ) -> subprocess.CompletedProcess[str]:
    """Run `command` to its end and return what it printed; never raises on its exit status.

    `merge_output` puts stderr into stdout in the order the program wrote them (make's
    progress lines on stdout say whose diagnostics follow on stderr).
    """
    return subprocess.run(_resolved(command), cwd=cwd, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                          text=True, errors="replace", env=_environment(env), check=False)


def run_bytes(command: Sequence[str], cwd: Path | None = None, *,
              env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`run` for a program whose output is kept byte for byte (git's diffs and mails)."""
    return subprocess.run(_resolved(command), cwd=cwd, capture_output=True,
                          env=_environment(env), check=False)


def start(command: Sequence[str], cwd: Path | None = None, *,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `command` with its stdout and stderr merged into one pipe, read as it runs."""
    return subprocess.Popen(_resolved(command), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=_environment(env))


def run_passthrough(command: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
    """Run `command` with this process's stdin, stdout and stderr; return its exit status.

    For a program that stands in for another (the check-only compiler): its caller reads the
    output itself, so it must go where the caller expects it. LC_ALL=C here too: Kbuild
    unexports LC_ALL, and gcc would quote with ‘’ under a UTF-8 locale.
    """
    return subprocess.run(_resolved(command), env=_environment(env), check=False).returncode
