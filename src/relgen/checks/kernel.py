"""The kernel's own checkers on a changed ia64 tree: sparse, gcc and Coccinelle.

`kernel_checks(tree, changed)` takes the tree and the changed files (kernel-relative path ->
bytes) and returns a `KernelCheckRun`: the checks, the route that ran them, the units
sparse and gcc checked and the Coccinelle scripts run, or why none of it ran.

- sparse and gcc (through the check-only compiler `checkcc.py`) on every unit that includes
  <asm/kexec.h> and on relocate_kernel.S, by one of two routes. Where the tree's Kbuild runs
  under today's make, Kbuild itself records the command lines (`kbuild.py`); where it
  cannot (2.6.x top Makefiles, trees without Kbuild), they are written with the flags that
  Kbuild of the tree's era would give (`direct.py`). Either way the recording is made once
  per pristine tree, and each check replays it on all cores (`replay.py`) for the units the
  change can alter (`kexec_units.touched_units`): the tree with the change must report
  nothing the pristine tree does not;
- the Coccinelle scripts of `cocci/` in report mode on the changed C files (`cocci.py`), as
  one more job of the same pool: what types cannot say (which allocator, who frees, which
  argument gets which stack).

The user's tree is only read: everything runs on a copy of it in the cache
(`treecopy.py`). Each tree has a folder there, named by a key of the tree's place and the
state of what decides the pristine results, holding the copy, the route's scratch files,
`prepared.json` (the recording and the pristine outcomes) and `results/` (the checks of
each change already seen: an identical change is answered from there). Runs on one tree
take turns; a cache that cannot be written, or a copy that cannot be made, is one line
saying that the checks did not run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relgen import caches, tools
from relgen.checks import direct, kbuild, replay, treecopy
from relgen.checks.cocci import cocci_checks, cocci_scripts
from relgen.checks.kexec_units import KEXEC_HEADER, RELOCATE_KERNEL_UNIT, touched_units
from relgen.checks.report import Check
from relgen.errors import RelgenError, ToolError
from relgen.names import MACHINE_KEXEC_PATH, RELOCATE_KERNEL_PATH
from relgen.progress import QUIET, Progress
from relgen.toolchain.tree import KernelTree

CACHE_ENVIRONMENT_VARIABLE = "RELGEN_KERNEL_CHECK_CACHE"
KERNEL_CHECKS = "kernel checks (sparse and gcc, Coccinelle)"
KBUILD, DIRECT = "Kbuild", "direct"
# Bump when what the cache holds changes shape, so an old cache is not read as a new one.
CACHE_VERSION = "5"
# The code that decides what a pristine tree reports by each route: a change to it prepares
# the trees of that route again.
_DECIDING = {KBUILD: ("checkcc.py", "kbuild.py", "replay.py", "kexec_units.py"),
             DIRECT: ("checkcc.py", "direct.py", "replay.py", "kexec_units.py")}


@dataclass(frozen=True)
class KernelCheckRun:
    """What the kernel checks did: their checks, and what a commit message says of them."""

    checks: tuple[Check, ...]
    route: str | None  # "Kbuild of Linux 6.1", "direct, with the flags Kbuild of ..."
    units: tuple[str, ...]  # the units sparse and gcc checked
    cocci_scripts: int  # the Coccinelle scripts run on the changed C files
    # why they did not run, as a commit message may say it (no path of this machine);
    # then route is None and units empty
    not_run: str | None = None


def not_run(reason: str, *, required: bool = False) -> Check:
    """The one line that says the kernel checks did not run, and why."""
    return Check.not_run(KERNEL_CHECKS, reason, required=required)


def did_not_run(reason: str, required: bool = False, *, said: str | None = None
                ) -> KernelCheckRun:
    """A run of no check: `reason` in the evidence, `said` (default: the same) in a commit
    message, which must not name a path of this machine."""
    return KernelCheckRun((not_run(reason, required=required),), None, (), 0, said or reason)


def cache_root() -> Path:
    """$RELGEN_KERNEL_CHECK_CACHE, else $XDG_CACHE_HOME/relgen/kernel-checks (~/.cache)."""
    return caches.cache_folder("kernel-checks", variable=CACHE_ENVIRONMENT_VARIABLE)


def route_of(tree: KernelTree) -> str:
    """KBUILD where the tree has Kbuild and today's make runs it, else DIRECT."""
    return KBUILD if tree.era.kbuild_runs and not kbuild.missing_files(tree) else DIRECT


def _checked_paths(changed: Mapping[str, bytes]) -> dict[str, bytes]:
    checked = {}
    for name, data in changed.items():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"changed file {name!r} is not a kernel-relative path")
        checked[path.as_posix()] = data
    return checked


def why_not(tree: KernelTree) -> str | None:
    """Why no route can check `tree` on this machine, or None."""
    try:
        route = route_of(tree)
    except RelgenError as error:
        return error.message
    if route == KBUILD:
        built = kbuild.configured_in_place(tree)
        if built is not None:
            return built
    absent = tools.missing(kbuild.PROGRAMS if route == KBUILD else direct.PROGRAMS)
    return "not installed: " + ", ".join(absent) if absent else None


# ---------------------------------------------------------------------------- the cache


def tree_key(tree: KernelTree, route: str) -> str:
    """The prepared tree's key: its place, its route, the state of what Kbuild reads first
    and of the files a change of relgen's touches, and the code that decides what the
    pristine tree reports. A file the units read, changed later, is caught when the prepared
    tree is loaded (`read_state`)."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{tree.root.resolve()}\0{route}".encode())
    names = (*kbuild.KBUILD_FILES, *direct.DEFCONFIGS, ".relgen-extracted",
             "arch/ia64/kernel/Makefile", "include/linux/kexec.h", tree.era.kexec_h,
             MACHINE_KEXEC_PATH, RELOCATE_KERNEL_PATH)
    for name in names:
        path = tree.root / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"\0{name} {stat.st_size} {stat.st_mtime_ns}".encode())
    digest.update(sys.executable.encode())
    here = Path(__file__).parent
    for name in _DECIDING[route]:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """One kernel check at a time per prepared tree: they share its copy."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Prepared:
    """A pristine tree in the cache: its copy, its recorded commands and what they said."""

    folder: Path
    copy: Path
    route: str  # as the evidence names it
    recording: replay.Recording
    pristine: tuple[replay.Outcome, ...]
    dependencies: dict[str, list[str]]  # unit -> the files it reads, kernel-relative

    @property
    def prefixes(self) -> list[str]:
        """The cache's folders, taken off the diagnostics' paths."""
        return replay.relative_prefixes(self.copy, self.recording.cwd, self.folder)


def prepare(tree: KernelTree, folder: Path, route: str, progress: Progress = QUIET
            ) -> Prepared:
    """The prepared pristine tree in `folder`, made on first use: the copy, the recording,
    the pristine outcomes. The caller holds the tree's lock. Raises ToolError when the
    route cannot record or run on the pristine tree."""
    copy, stamp = folder / "source", folder / "prepared.json"
    if stamp.is_file():
        treecopy.restore(tree.root, copy)
        try:
            saved = json.loads(stamp.read_text(encoding="utf-8"))
            loaded = _load(folder, copy, saved)
            # a file the units read, edited in the tree since: the pristine results are stale
            if saved.get("read") == read_state(tree.root, loaded.dependencies):
                return loaded
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # not what this version writes: prepared again below
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    progress.phase("kernel checks: the pristine tree: copying it into the cache")
    treecopy.make_copy(tree.root, copy)
    if route == KBUILD:
        recording, name = kbuild.record(tree, copy, folder / "objects", sys.executable,
                                        progress)
    else:
        recording, name = direct.record(tree, copy, folder / "scratch", progress)
    prepared = Prepared(folder, copy, name, recording, (), {})
    outcomes, _ = replay.replay(recording, prepared.prefixes, progress=progress,
                                what="kernel checks: the pristine tree: sparse and gcc")
    dependencies = replay.dependencies(recording, copy)
    temporary = folder / "prepared.json.tmp"
    temporary.write_text(json.dumps({
        "version": CACHE_VERSION, "route": name, "recording": recording.to_json(),
        "pristine": [o.to_json() for o in outcomes], "dependencies": dependencies,
        "read": read_state(tree.root, dependencies)}),
        encoding="utf-8")
    temporary.replace(stamp)
    return Prepared(folder, copy, name, recording, tuple(outcomes), dependencies)


def read_state(root: Path, dependencies: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """Size and time of every file of `root` the units read (None where there is none): what
    says, on the next run, that the pristine results still hold."""
    state: dict[str, object] = {}
    for name in sorted({name for names in dependencies.values() for name in names}):
        try:
            stat = (root / name).stat()
        except OSError:
            state[name] = None
        else:
            state[name] = [stat.st_size, stat.st_mtime_ns]
    return state


def _load(folder: Path, copy: Path, saved: dict[str, object]) -> Prepared:
    if saved["version"] != CACHE_VERSION:
        raise ValueError("another version's cache")
    outcomes, recording = saved["pristine"], saved["recording"]
    dependencies = saved["dependencies"]
    if not isinstance(outcomes, list) or not isinstance(recording, dict) or \
            not isinstance(dependencies, dict):
        raise ValueError("not a prepared tree")
    return Prepared(folder, copy, str(saved["route"]), replay.Recording.from_json(recording),
                    tuple(replay.Outcome.from_json(o) for o in outcomes),
                    {str(unit): [str(name) for name in names]
                     for unit, names in dependencies.items()})


# -------------------------------------------------------------------------------- run


def kernel_checks(tree: KernelTree, changed: Mapping[str, bytes], *,
                  cache: Path | None = None, required: bool = False,
                  units: Sequence[str] | None = None, progress: Progress = QUIET
                  ) -> KernelCheckRun:
    """sparse and gcc on the units, and the Coccinelle scripts, on `tree` with `changed`.

    `units` narrows sparse and gcc to some of the prepared units (all of them by default).
    When they cannot run, the run holds one `not run` Check (failed only when `required`).
    """
    changed = _checked_paths(changed)
    reason = why_not(tree)
    if reason is not None:
        return did_not_run(reason, required)
    route = route_of(tree)
    try:
        root = cache or cache_root()
        key = tree_key(tree, route)
        with _locked(root / f"{key}.lock"):
            prepared = prepare(tree, root / key, route, progress)
            return _check(tree, prepared, changed, units, required, progress)
    except ToolError as error:
        # a tool's message may name the cache's scratch folders: the message says less
        said = None if "/" not in error.message else "preparing the unpatched tree failed"
        return did_not_run(error.message, required, said=said)
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        said = f"the kernel checks' cache cannot be used: {error.strerror or error}"
        return did_not_run(said + where, required, said=said)


def _check(tree: KernelTree, prepared: Prepared, changed: dict[str, bytes],
           units: Sequence[str] | None, required: bool, progress: Progress) -> KernelCheckRun:
    recording = prepared.recording if units is None else prepared.recording.narrowed(units)
    if not recording.units:
        return did_not_run(f"none of {', '.join(units or ())} is a unit of the tree that "
                           f"includes <{KEXEC_HEADER}>", required)
    # only the units the change can alter run: the others' pristine results stand
    candidates = len(recording.units)
    recording = recording.narrowed(touched_units(
        [u.unit for u in recording.units], prepared.dependencies, changed, tree.root))
    chosen = tuple(u.unit for u in recording.units)
    untouched = candidates - len(chosen)
    scripts = len(cocci_scripts())
    results = prepared.folder / "results"
    key = change_key(changed, chosen)
    remembered = recall(results, key)
    if remembered is not None:
        return KernelCheckRun(remembered, prepared.route, chosen, scripts)
    with treecopy.changed_files(tree.root, prepared.copy, changed) as written:
        outcomes, cocci = replay.replay(
            recording, prepared.prefixes, durations=replay.by_job(prepared.pristine),
            also=lambda: cocci_checks(written, prepared.copy), progress=progress)
    preamble = [f"  route: {prepared.route}; the checkers' command lines recorded once, "
                f"run on {replay.cores()} cores"]
    preamble += replay.unit_listing(chosen, f"those that include <{KEXEC_HEADER}>, and "
                                            f"{RELOCATE_KERNEL_UNIT}, that read a changed file")
    if untouched:
        preamble.append(f"  {untouched} more read no file the change touches: their pristine "
                        "results stand")
    checks = replay.verdicts(prepared.pristine, outcomes, preamble, required=required)
    checks += cocci or []
    remember(results, key, checks)
    return KernelCheckRun(tuple(checks), prepared.route, chosen, scripts)


@contextlib.contextmanager
def prepared_tree(tree: KernelTree, cache: Path | None = None) -> Iterator[Prepared]:
    """The prepared pristine tree of `tree` (prepared first where it is not yet), held: no
    kernel check runs on it meanwhile. What the tests share, and what `make bench` runs the
    recorded commands on to measure the floor of the kernel checks."""
    route = route_of(tree)
    root = cache or cache_root()
    key = tree_key(tree, route)
    with _locked(root / f"{key}.lock"):
        yield prepare(tree, root / key, route)


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


def recall(folder: Path, key: str) -> tuple[Check, ...] | None:
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
    return tuple(checks)


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
