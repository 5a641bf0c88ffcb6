"""Coccinelle in report mode on the changed C: what types cannot say (which allocator, who
frees, which argument gets which stack). Each script of `cocci/` is one check, found by glob:
add a `.cocci` file there to add a check; its first comment line names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from relgen import tools
from relgen.checks.report import Check
from relgen.scratch import scratch_folder

#: The report scripts, found by glob.
COCCI_CHECKS = Path(__file__).with_name("cocci")


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])



def cocci_scripts() -> list[Path]:
    """The report-mode scripts, each checking one thing types cannot."""
    return sorted(COCCI_CHECKS.glob("*.cocci"))


def _script_title(script: Path) -> str:
    """The script's first comment line says what it checks."""
    for line in script.read_text(encoding="utf-8").splitlines():
        if line.startswith("//"):
            return line.lstrip("/ ").rstrip()
    return script.stem


def cocci_checks(files: Mapping[str, Path], root: Path) -> list[Check]:
    """Each script in report mode on the changed C files (kernel path -> file under `root`):
    any line it prints is a failure (spatch exits 0 when it reports)."""
    c_files = [path for name, path in sorted(files.items()) if name.endswith(".c")]
    checks = []
    with scratch_folder("relgen-spatch-") as home:
        # spatch looks for its own files under $HOME (and stops without one): one of its own
        environment = tools.environment_with(HOME=home)
        for script in cocci_scripts():
            checks.append(_cocci_check(script, c_files, root, environment))
    return checks


def _cocci_check(script: Path, c_files: list[Path], root: Path,
                 environment: Mapping[str, str]) -> Check:
    title = _script_title(script)
    if not c_files:
        return Check(f"coccinelle: {title}", False, ("  FAIL: no C file changed",))
    result = tools.run(["spatch", "--sp-file", str(script), "--very-quiet", "--no-includes",
                        *map(str, c_files)], env=environment)
    reports = [line.replace(f"{root}/", "") for line in result.stdout.splitlines()
               if line.strip()]
    problems = [f"  FAIL: {line}" for line in reports]
    if result.returncode != 0:
        problems.append(f"  FAIL: spatch exit {result.returncode}: " + _tail(result.stderr, 5))
    return Check(f"coccinelle: {title}", not problems,
                 tuple(problems) or (f"  {script.name}: no report",))


