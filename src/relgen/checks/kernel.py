"""The kernel's own checkers on a changed ia64 tree: Kbuild with sparse and gcc, and Coccinelle.

`kernel_checks(tree, changed)` takes the tree and the changed files (kernel-relative path ->
bytes) and returns `Check`s:

- Kbuild (`make ARCH=ia64 defconfig prepare`, then `C=1 CF=-Wsparse-error` on every
  defconfig-enabled unit that includes <asm/kexec.h>) through the check-only compiler
  stand-in `relgen.checks.checkcc`, once on the pristine tree and once on the changed one:
  sparse and gcc must report nothing the pristine tree does not;
- the Coccinelle scripts of `cocci/checks/` in report mode on the changed C files: what types
  cannot say (which allocator, who frees, which argument gets which stack).

The user's tree is only read: Kbuild runs out of tree (`O=`) on a hard-linked copy of it in a
cache outside the tree, and every changed file is a new file there (unlinked, then written),
never a write through a shared inode. The prepared pristine build (the copy, defconfig,
prepare, the list of units, the pristine diagnostics) is cached per tree, so later runs pay
only for the units.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relgen import tools
from relgen.checks.cocci import cocci_checks, cocci_scripts
from relgen.checks.report import Check
from relgen.names import KEXEC_H_PATH, RELOCATE_KERNEL_PATH
from relgen.progress import QUIET, Progress
from relgen.toolchain.tree import KernelTree

CACHE_ENVIRONMENT_VARIABLE = "RELGEN_KERNEL_CHECK_CACHE"
KEXEC_HEADER = "asm/kexec.h"
RELOCATE_KERNEL_UNIT = str(PurePosixPath(RELOCATE_KERNEL_PATH).with_suffix(".o"))
ARCH = "ia64"
CROSS_COMPILE = "ia64-linux-gnu-"
# What Kbuild needs of a tree for defconfig and prepare (a partial extraction lacks them).
KBUILD_FILES = ("Makefile", "Kconfig", "arch/ia64/Kconfig", "arch/ia64/Makefile",
                "scripts/Makefile.build", "scripts/kconfig/Makefile", "kernel/Makefile",
                "arch/ia64/configs/generic_defconfig")
# A tree with these was configured in place; Kbuild refuses an O= build from it.
IN_TREE_BUILD = (".config", "include/config", "arch/ia64/include/generated")
#: What Kbuild with sparse and the check-only compiler runs.
PROGRAMS = ("make", "flex", "bison", "bc", "gcc", "sparse", "spatch", "ia64-linux-gnu-as")
# Bump when what the cache holds changes shape, so an old cache is not read as a new one.
CACHE_VERSION = "2"

_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
                         r"(?:fatal )?(?P<kind>error|warning): (?P<message>.*)$")
_QUIET_HEADER = re.compile(r"^\s{2}(?P<tool>[A-Z]+)\s+(?P<target>\S+)$")
_MAKE_FAILURE = re.compile(r"^make\[\d+\]: \*\*\* \[[^\]]*: (?P<target>\S+)\] Error \d+")
_INCLUDE = re.compile(rb'^\s*#\s*include\s*[<"](?P<name>[^>"]+)[>"]', re.M)


@dataclass(frozen=True)
class Diagnostic:
    """One message of gcc or sparse, keyed without its line so that moved code compares."""

    tool: str  # "gcc" or "sparse"
    path: str  # kernel-relative
    line: int
    kind: str
    message: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.tool, self.path, self.kind, self.message)

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.message} ({self.tool})"


@dataclass(frozen=True)
class KbuildRun:
    """What `make C=1` said about the units: diagnostics and the units make gave up on."""

    units: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]
    failed_units: tuple[str, ...]
    output: str


# ------------------------------------------------------------------------- preconditions


def missing_for_kbuild(tree: KernelTree) -> str | None:
    """Why Kbuild cannot run on `tree`, or None when it can."""
    missing = [name for name in KBUILD_FILES if not (tree.root / name).exists()]
    if missing:
        return (f"the tree at {tree.root} has no {', '.join(missing)} (a partial tree; "
                "`make setup` extracts the whole linux-source-6.1)")
    built = [name for name in IN_TREE_BUILD if (tree.root / name).exists()]
    if built:
        return (f"the tree at {tree.root} was configured in place ({', '.join(built)}); "
                "Kbuild builds out of tree only from a clean tree (`make mrproper`)")
    absent = tools.missing(PROGRAMS)
    if absent:
        return "not installed: " + ", ".join(absent)
    return None


KERNEL_CHECKS = "kernel checks (Kbuild with sparse and gcc, Coccinelle)"


def not_run(reason: str, *, required: bool = False) -> Check:
    """The one line that says the kernel checks did not run, and why."""
    return Check.not_run(KERNEL_CHECKS, reason, required=required)


def _checked_paths(changed: Mapping[str, bytes]) -> dict[str, bytes]:
    checked = {}
    for name, data in changed.items():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"changed file {name!r} is not a kernel-relative path")
        checked[path.as_posix()] = data
    return checked


# ---------------------------------------------------------------------------- the cache


def cache_root() -> Path:
    """$RELGEN_KERNEL_CHECK_CACHE, else $XDG_CACHE_HOME/relgen/kernel-checks (~/.cache)."""
    explicit = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    if explicit:
        return Path(explicit).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).resolve() / "relgen" / "kernel-checks"


def tree_key(tree: KernelTree) -> str:
    """The prepared build's key: the tree's place and the state of what Kbuild reads first."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{tree.root.resolve()}".encode())
    for name in (*KBUILD_FILES, ".relgen-extracted", "include/linux/kexec.h",
                 KEXEC_H_PATH):
        path = tree.root / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"\0{name} {stat.st_size} {stat.st_mtime_ns}".encode())
    digest.update(checker_command().encode())
    # the stand-in's own code decides what the pristine tree reports
    digest.update(Path(__file__).with_name("checkcc.py").read_bytes())
    return digest.hexdigest()[:16]


def checker_command() -> str:
    """The CC that Kbuild gets: this Python running the check-only stand-in."""
    return f"{sys.executable} -m relgen.checks.checkcc"


def make_command(source: Path, objects: Path, *targets: str, check: bool = False) -> list[str]:
    # One job for the checked units: Kbuild reaches arch/ia64/hp/common/ by two paths, and two
    # parallel single-target builds of sba_iommu.o race (one deletes the other's object).
    jobs = 1 if check else os.cpu_count() or 1
    command = ["make", "-s" if not check else "-k", "-C", str(source),
               f"O={objects}", f"ARCH={ARCH}", f"CROSS_COMPILE={CROSS_COMPILE}",
               f"CC={checker_command()}", f"-j{jobs}", "--output-sync=target"]
    if check:
        # C=2 checks every named unit, rebuilt or not; -Wsparse-error makes a warning fail it.
        command += ["C=2", "CF=-Wsparse-error"]
    return command + list(targets)


def _make(source: Path, objects: Path, *targets: str, check: bool = False
          ) -> subprocess.CompletedProcess[str]:
    return tools.run(make_command(source, objects, *targets, check=check), merge_output=True)


@dataclass(frozen=True)
class PreparedBuild:
    """A pristine tree's out-of-tree build after defconfig and prepare, with its units.

    `source` is a hard-linked copy of the user's tree at a fixed place: Kbuild's command lines
    name the source folder, so every run from the same place reuses the prepared build
    instead of redoing prepare (about 10 s) for a new folder.
    """

    source: Path
    objects: Path
    units: tuple[str, ...]  # "arch/ia64/kernel/machine_kexec.o" ...
    baseline: KbuildRun


def prepare(tree: KernelTree, cache: Path | None = None) -> PreparedBuild:
    """The cached pristine build of `tree`, made on first use (defconfig, prepare, units,
    the pristine diagnostics). Raises tools.ToolError when Kbuild fails on the pristine tree.
    The caller holds the cache's lock."""
    folder = (cache or cache_root()) / tree_key(tree)
    stamp = folder / "prepared.json"
    source, objects = folder / "source", folder / "objects"
    if stamp.is_file():
        restore(tree.root, source)
        saved = json.loads(stamp.read_text(encoding="utf-8"))
        baseline = KbuildRun(tuple(saved["units"]),
                             tuple(Diagnostic(**d) for d in saved["diagnostics"]),
                             tuple(saved["failed_units"]), "")
        return PreparedBuild(source, objects, tuple(saved["units"]), baseline)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    linked_copy(tree.root, source)
    objects.mkdir()
    for targets in (("defconfig",), ("prepare",)):
        result = _make(source, objects, *targets)
        if result.returncode != 0:
            raise tools.ToolError(f"make ARCH=ia64 {' '.join(targets)} failed on the pristine "
                                  f"tree:\n{_tail(result.stdout)}")
    units = kexec_units(source, objects)
    baseline = run_checks(source, objects, units)
    stamp.write_text(json.dumps({
        "units": list(units), "failed_units": list(baseline.failed_units),
        "diagnostics": [d.__dict__ for d in baseline.diagnostics]}, indent=1),
        encoding="utf-8")
    return PreparedBuild(source, objects, units, baseline)


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One kernel check at a time per cache: runs share the prepared source folder."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------- the units


def enabled_units(source: Path, objects: Path) -> list[str]:
    """Every C unit the configured kernel compiles, from a dry run of `make vmlinux`."""
    result = _make(source, objects, "-n", "vmlinux")
    prefix = f"{source}/"
    units = set()
    for match in re.finditer(r" -c -o (\S+\.o) (\S+\.[cS])\b", result.stdout):
        unit, c_file = match.groups()
        if c_file.startswith(prefix) and unit.removesuffix(".o") == c_file[len(prefix):-2]:
            units.add(unit)
    return sorted(units)


def _including_headers(source: Path, header: str) -> set[str]:
    """Include names (`linux/kexec.h`) of the headers that include `header`, transitively."""
    roots = [source / "include", source / "arch" / ARCH / "include",
             source / "include" / "uapi", source / "arch" / ARCH / "include" / "uapi"]
    includes: dict[str, set[str]] = {}
    for root in roots:
        for path in root.rglob("*.h"):
            name = path.relative_to(root).as_posix()
            text = path.read_bytes()
            includes.setdefault(name, set()).update(
                m.group("name").decode("utf-8", "replace") for m in _INCLUDE.finditer(text))
    found = {header}
    while True:
        more = {name for name, wanted in includes.items() if wanted & found} - found
        if not more:
            return found
        found |= more


def kexec_units(source: Path, objects: Path) -> tuple[str, ...]:
    """The enabled units whose C file includes <asm/kexec.h>, directly or through headers,
    and the assembly file relgen rewrites (assembled by the real ia64-linux-gnu-as)."""
    headers = _including_headers(source, KEXEC_HEADER)
    chosen = []
    for unit in enabled_units(source, objects):
        if unit == RELOCATE_KERNEL_UNIT:
            chosen.append(unit)
            continue
        c_file = (source / unit).with_suffix(".c")
        if not c_file.is_file():
            continue
        text = c_file.read_bytes()
        names = {m.group("name").decode("utf-8", "replace") for m in _INCLUDE.finditer(text)}
        if names & headers:
            chosen.append(unit)
    return tuple(chosen)


# ------------------------------------------------------------------------ sparse and gcc


def run_checks(source: Path, objects: Path, units: Sequence[str]) -> KbuildRun:
    """`make C=2 CF=-Wsparse-error` on `units`, every one compiled afresh."""
    for unit in units:
        (objects / unit).unlink(missing_ok=True)
    result = _make(source, objects, *units, check=True)
    output = result.stdout
    failed = {m.group("target") for m in map(_MAKE_FAILURE.match, output.splitlines()) if m}
    return KbuildRun(tuple(units), tuple(parse_diagnostics(output, source)),
                     tuple(sorted(t for t in failed if t.endswith(".o"))), output)


def parse_diagnostics(output: str, source: Path) -> Iterable[Diagnostic]:
    """gcc's and sparse's messages; `--output-sync` keeps each unit's lines together and the
    quiet headers (`  CC  x.o`, `  CHECK  x.c`) say which tool is speaking."""
    tool = "gcc"
    prefix = f"{source}/"
    for line in output.splitlines():
        if header := _QUIET_HEADER.match(line):
            tool = "sparse" if header.group("tool") == "CHECK" else "gcc"
            continue
        match = _DIAGNOSTIC.match(line)
        if match is None:
            continue
        path = match.group("file").removeprefix(prefix)
        yield Diagnostic(tool, path, int(match.group("line")), match.group("kind"),
                         match.group("message"))


def new_diagnostics(baseline: KbuildRun, changed: KbuildRun, tool: str) -> list[Diagnostic]:
    """What `changed` reports and the pristine tree does not (by file and message)."""
    before = Counter(d.key for d in baseline.diagnostics if d.tool == tool)
    new = []
    for diagnostic in changed.diagnostics:
        if diagnostic.tool != tool:
            continue
        if before[diagnostic.key] > 0:
            before[diagnostic.key] -= 1
        else:
            new.append(diagnostic)
    return new


def kbuild_checks(prepared: PreparedBuild, changed_run: KbuildRun) -> list[Check]:
    """One check for gcc and one for sparse: nothing new against the pristine tree."""
    tools_and_names = (("gcc", "gcc -fsyntax-only with the ia64 predefines"),
                       ("sparse", "sparse (C=2 CF=-Wsparse-error)"))
    new = {tool: new_diagnostics(prepared.baseline, changed_run, tool)
           for tool, _ in tools_and_names}
    explained = {d.path.removesuffix(".c") for found in new.values() for d in found}
    # a unit make gave up on that neither tool said anything new about is charged to gcc,
    # the compiler (the stand-in's own refusals land there)
    unexplained = [unit for unit in sorted(set(changed_run.failed_units)
                                           - set(prepared.baseline.failed_units))
                   if unit.removesuffix(".o") not in explained]
    listing = [f"  {len(changed_run.units)} units (those that include <{KEXEC_HEADER}>, "
               f"and {RELOCATE_KERNEL_UNIT}):"]
    listing += textwrap.wrap(" ".join(changed_run.units), 96, initial_indent="    ",
                             subsequent_indent="    ", break_on_hyphens=False)
    checks = []
    for tool, what in tools_and_names:
        failed = unexplained if tool == "gcc" else []
        evidence = listing + [f"  FAIL: new: {d.render()}" for d in new[tool]]
        evidence += [f"  FAIL: make gave up on {unit}" for unit in failed]
        if not new[tool] and not failed:
            evidence.append("  nothing new against the pristine tree")
        checks.append(Check(f"kernel checks: {what} reports nothing new",
                            not new[tool] and not failed, tuple(evidence)))
    return checks


# -------------------------------------------------------------------------------- run


def kernel_checks(tree: KernelTree, changed: Mapping[str, bytes], *,
                  cache: Path | None = None, required: bool = False,
                  units: Sequence[str] | None = None, progress: Progress = QUIET
                  ) -> list[Check]:
    """Kbuild with sparse and gcc, and the Coccinelle scripts, on `tree` with `changed`.

    `units` narrows the Kbuild check to some of the prepared units (all of them by default).
    Returns one `not run` Check (failed only when `required`) when the tree or the machine
    lacks what Kbuild needs.
    """
    changed = _checked_paths(changed)
    reason = missing_for_kbuild(tree)
    if reason is not None:
        return [not_run(reason, required=required)]
    cache = cache or cache_root()
    with _locked(cache):
        progress.phase("kernel checks: the pristine tree (made once per tree)")
        try:
            prepared = prepare(tree, cache)
        except tools.ToolError as error:
            return [not_run(error.message, required=required)]
        chosen = prepared.units if units is None else tuple(
            u for u in prepared.units if u in set(units))
        results = cache / tree_key(tree) / "results"
        key = change_key(changed, chosen)
        remembered = recall(results, key)
        if remembered is not None:
            return remembered
        with changed_files(tree.root, prepared.source, changed) as written:
            progress.phase(f"kernel checks: sparse and gcc on {len(chosen)} units")
            changed_run = run_checks(prepared.source, prepared.objects, chosen)
            checks = kbuild_checks(prepared, changed_run)
            progress.phase("kernel checks: Coccinelle")
            checks += cocci_checks(written, prepared.source)
        remember(results, key, checks)
    return checks


# ------------------------------------------------------------------------ the results


def change_key(changed: Mapping[str, bytes], units: Sequence[str]) -> str:
    """What decides the checks' results once the pristine tree is fixed: the changed files,
    the units, and the Coccinelle scripts."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for name, data in sorted(changed.items()):
        digest.update(f"\0{name}\0{len(data)}\0".encode() + data)
    digest.update("\0".join(units).encode())
    for script in cocci_scripts():
        digest.update(script.read_bytes())
    return digest.hexdigest()


def recall(folder: Path, key: str) -> list[Check] | None:
    """The checks of an earlier run on the same change, or None. The file is read as
    untrusted input: anything but the exact shape `remember` writes is ignored."""
    try:
        data = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, list) or not data:
        return None
    checks = []
    for entry in data:
        if not (isinstance(entry, dict) and set(entry) == {"name", "passed", "evidence"}
                and isinstance(entry["name"], str) and isinstance(entry["passed"], bool)
                and isinstance(entry["evidence"], list)
                and all(isinstance(line, str) for line in entry["evidence"])):
            return None
        checks.append(Check(entry["name"], entry["passed"],
                            (*entry["evidence"], "  (this very change was checked earlier "
                             "on this tree: its result, kept in the cache)")))
    return checks


def remember(folder: Path, key: str, checks: Sequence[Check]) -> None:
    """Keep the checks of a run for the next one on the same change (best effort)."""
    if any(not check.ran for check in checks):
        return
    data = [{"name": c.name, "passed": c.passed, "evidence": list(c.evidence)} for c in checks]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{key}.tmp"
        temporary.write_text(json.dumps(data), encoding="utf-8")
        temporary.replace(folder / f"{key}.json")
    except OSError:
        pass


def linked_copy(tree: Path, target: Path) -> None:
    """A hard-linked copy of `tree` (1.5 GB in about a second); Kbuild only reads it."""
    result = tools.run(["cp", "-al", str(tree), str(target)])
    if result.returncode != 0:
        raise tools.ToolError(f"cp -al {tree} {target} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def changed_files(tree: Path, source: Path, changed: Mapping[str, bytes]
                  ) -> Iterator[dict[str, Path]]:
    """The changed files written into the hard-linked `source`, and put back afterwards.

    Each file is unlinked before it is written, so the write makes a new inode and the
    user's file (the other link) keeps its bytes. Afterwards each one is a fresh copy of the
    tree's file (a new inode with a new time, so that make rebuilds what depended on the
    changed one), and a file the tree does not have is removed. The names are noted next to
    `source` first, so that a run killed halfway is put right by the next one.
    """
    note = changed_note(source)
    note.write_text(json.dumps(sorted(changed)), encoding="utf-8")
    written = {}
    try:
        for name, data in changed.items():
            path = source / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_bytes(data)
            written[name] = path
        yield written
    finally:
        restore(tree, source)


def changed_note(source: Path) -> Path:
    """Where a run notes the files it changed in `source` until it has put them back."""
    return source.parent / "changed-files.json"


def restore(tree: Path, source: Path) -> None:
    """Put the tree's files back where a run (finished or killed) wrote its changed ones."""
    note = changed_note(source)
    if not note.is_file():
        return
    for name in json.loads(note.read_text(encoding="utf-8")):
        path = source / name
        path.unlink(missing_ok=True)
        if (tree / name).is_file():
            shutil.copyfile(tree / name, path)
    note.unlink()
