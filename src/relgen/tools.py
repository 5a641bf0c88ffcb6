"""The one place that runs external programs: how they are started, and how they are found.

Every program runs with LC_ALL=C, because relgen parses what they print (diagnostics, version
lines) and translated messages would not match. A program that is not installed is a ToolError
naming the Debian package that has it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from relgen.errors import ToolError


def run(command: Sequence[str], cwd: Path | None = None, *, stdin: str | None = None,
        env: Mapping[str, str] | None = None, merge_output: bool = False
        ) -> subprocess.CompletedProcess[str]:
    """Run `command` to its end and return what it printed; never raises on its exit status.

    `merge_output` puts stderr into stdout in the order the program wrote them (make's
    progress lines on stdout say whose diagnostics follow on stderr).
    """
    environment = dict(os.environ if env is None else env, LC_ALL="C")
    return subprocess.run(list(command), cwd=cwd, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                          text=True, env=environment, check=False)


def run_bytes(command: Sequence[str], cwd: Path | None = None, *,
              env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`run` for a program whose output is kept byte for byte (git's diffs and mails)."""
    environment = dict(os.environ if env is None else env, LC_ALL="C")
    return subprocess.run(list(command), cwd=cwd, capture_output=True, env=environment,
                          check=False)


def run_passthrough(command: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
    """Run `command` with this process's stdin, stdout and stderr; return its exit status.

    For a program that stands in for another (the check-only compiler): its caller reads the
    output itself, so it must go where the caller expects it. LC_ALL=C here too: Kbuild
    unexports LC_ALL, and gcc would quote with ‘’ under a UTF-8 locale.
    """
    environment = dict(os.environ if env is None else env, LC_ALL="C")
    return subprocess.run(list(command), env=environment, check=False).returncode


def find(program: str, package: str) -> str:
    """The path of `program` on PATH, or a ToolError naming the Debian `package`."""
    found = shutil.which(program)
    if found is None:
        raise ToolError(f"{program} not found on PATH; install the Debian package {package}")
    return found
