"""Shared fixtures: a machine-independent environment, the upstream tree and the toolchain.

Every test runs in the same environment whatever the machine: an empty home, no git identity
or git configuration, a cache folder of the session's own, and the kernel checks' cache of
this checkout (`.cache/kernel-checks`, which tests may find empty: they make what they need).
Tests that need the upstream tree or the toolchain skip on a developer machine without them,
and fail under CI=true: CI installs both through `make setup`, so their absence there is a
defect, not a reason to skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from relgen.source import Line, Module

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
UPSTREAM = Path(os.environ.get("RELGEN_KERNEL_TREE", ROOT / ".cache" / "linux-source-6.1"))
IN_CI = os.environ.get("CI") == "true"
#: The kernel checks' cache that the tests share (the prepared pristine trees): this checkout's
#: .cache/kernel-checks, or the one $RELGEN_KERNEL_CHECK_CACHE names (a developer's own).
KERNEL_CHECK_CACHE = Path(os.environ.get("RELGEN_KERNEL_CHECK_CACHE")
                          or ROOT / ".cache" / "kernel-checks").resolve()
#: Who the tests say made a patch, wherever a test does not say it itself.
AUTHOR = "Ann Dev <ann@example.org>"
#: The date tests pin a patch to (`--date`) wherever they compare two runs' bytes: without a
#: pin a mail is dated now, and two runs a second apart differ.
DATE = "2026-11-25 04:00:00 +0000"
#: How `git format-patch` writes DATE in the mail's header.
DATE_IN_MAIL = "Wed, 25 Nov 2026 04:00:00 +0000"
#: What a rewrite is given where the test is not about the author, the date or the kernel
#: checks: an author, a date (two runs give the same bytes), and no kernel checks, which
#: tests/test_kernelcheck.py and test_maintainer_patch.py run. The same arguments in the same
#: order make the same run of `SharedRuns.rewrite`, shared by every test that asks for it.
QUICK_OPTIONS = ("--from", AUTHOR, "--date", DATE, "--no-kernel-checks")


@pytest.fixture(scope="session", autouse=True)
def machine_independent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads the machine's home, git identity or caches (issue 17)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        patch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        patch.setenv("RELGEN_KERNEL_CHECK_CACHE", str(KERNEL_CHECK_CACHE))
        for name in ("SOURCE_DATE_EPOCH", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                     "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
            patch.delenv(name, raising=False)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The markers of what a test needs, from the fixtures it uses: `-m "not upstream"`
    leaves out every test that reads the Linux 6.1 tree, `-m "not toolchain"` every one
    that assembles."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if "upstream_tree" in used:
            item.add_marker(pytest.mark.upstream)
        if "toolchain" in used:
            item.add_marker(pytest.mark.toolchain)


@pytest.fixture(autouse=True)
def kbuild_only_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Kbuild runs only in tests marked `kbuild`. Elsewhere the kernel checks of a tree with
    Kbuild say they did not run, as on a machine without make: `-m "not kbuild"` is then a
    suite without Kbuild, and a test that needs Kbuild cannot pass without its marker."""
    if request.node.get_closest_marker("kbuild") is not None:
        yield
        return
    from relgen.checks import kernel

    def why_not(tree: object, original=kernel.why_not) -> str | None:  # noqa: ANN001
        reason = original(tree)
        if reason is None and kernel.route_of(tree) == kernel.KBUILD:
            return "Kbuild runs only in tests marked kbuild"
        return reason

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernel, "why_not", why_not)
        yield


class SharedRuns:
    """Runs made once per test session, by whichever xdist worker asks first.

    A module-scoped fixture is made once per worker, so two workers that each get a test of a
    module both make its runs. Here a run is made under a lock in a folder every worker of the
    session sees (in the parent of the workers' own base folders; in the base folder itself
    without xdist), and its record (a JSON document) is written last: a worker that asks for a run
    another has made, or is making, waits for the lock and reads it. A run that failed half-way
    left no record and is made again. The outputs are for reading only: a test that changes
    them copies them first (`broken_copy`).
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self.memo = folder, {}
        folder.mkdir(parents=True, exist_ok=True)

    def once(self, key: str, make: Callable[[Path], dict]) -> tuple[Path, dict]:
        """`make(folder)`'s record, made once for `key` in an empty folder of its own."""
        if key not in self.memo:
            name = hashlib.sha256(key.encode()).hexdigest()[:16]
            folder, record = self.folder / name, self.folder / f"{name}.json"
            lock = os.open(self.folder / f"{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not record.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir()
                    made = json.dumps(make(folder))
                    (self.folder / f"{name}.json.tmp").write_text(made)
                    (self.folder / f"{name}.json.tmp").rename(record)
                self.memo[key] = (folder, json.loads(record.read_text()))
            finally:
                os.close(lock)
        return self.memo[key]

    def rewrite(self, *argv: str | Path, again: bool = False) -> Rewritten:
        """`relgen rewrite ARGV -o OUT` in this process, made once for these arguments; with
        `again`, a second run of them, made once too, for the tests that compare two runs."""
        def make(folder: Path) -> dict:
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                from relgen.cli import main
                status = main(["rewrite", *map(str, argv), "-o", str(folder / "out")])
            return {"status": status, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}

        key = json.dumps(["rewrite again" if again else "rewrite", *map(str, argv)])
        folder, record = self.once(key, make)
        return Rewritten(folder / "out", record["status"], record["stdout"], record["stderr"])


@dataclass(frozen=True)
class Rewritten:
    """One `relgen rewrite` of `SharedRuns.rewrite`: its output folder and what it printed."""

    out: Path
    status: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory: pytest.TempPathFactory) -> SharedRuns:
    """The session's SharedRuns. Under xdist every worker's base folder is in the session's,
    which a --basetemp given keeps from one session to the next: the folder is named after
    the run xdist gives every worker (no worker reads what an earlier session made)."""
    base = tmp_path_factory.getbasetemp()
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if os.environ.get("PYTEST_XDIST_WORKER") and run:
        return SharedRuns(base.parent / f"shared-runs-{run}")
    return SharedRuns(base / "shared-runs")


@pytest.fixture(scope="module")
def _pipeline_results() -> dict[tuple[object, ...], object]:
    return {}


@pytest.fixture
def pipeline_once(_pipeline_results: dict[tuple[object, ...], object],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`relgen rewrite`, `--diff`, `--check` and `relgen diff` of the test, each as ever but for
    the pipeline they all call (`pipeline.run_rewrite`: regenerate, check, write the mail in
    memory): its result for the same input (path, name and text), tree and arguments is
    computed once per module and handed to every command that asks again.

    For the tests of what the command line does with that result: where it writes, what it
    keeps, what it says. A run without --date is dated when it is first made, so no test
    that reads a mail's date of now uses this.
    """
    from relgen import pipeline

    real = pipeline.run_rewrite

    def run_rewrite(source, tree, **options):  # noqa: ANN001, ANN202 - the pipeline's own
        key = (source.path, source.shown, source.text, tree.root,
               repr(sorted((k, v) for k, v in options.items() if k != "progress")))
        if key not in _pipeline_results:
            _pipeline_results[key] = real(source, tree, **options)
        return _pipeline_results[key]

    monkeypatch.setattr(pipeline, "run_rewrite", run_rewrite)


def missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is missing under CI=true; `make setup` should have installed it")
    pytest.skip(f"{what} is missing (run `make setup`)")


def require_tool(tool: str) -> None:
    """Skip without `tool` on a developer machine; fail under CI=true."""
    if shutil.which(tool) is None:
        missing(tool)


@pytest.fixture(scope="session")
def upstream_tree() -> Path:
    """The extracted Linux 6.1 tree (arch/ia64, include, scripts)."""
    if not (UPSTREAM / "arch" / "ia64" / "kernel" / "relocate_kernel.S").is_file():
        missing(f"the upstream tree at {UPSTREAM}")
    return UPSTREAM


@pytest.fixture(scope="session")
def toolchain() -> None:
    """The ia64 assembler and friends from binutils-ia64-linux-gnu."""
    for tool in ("ia64-linux-gnu-as", "ia64-linux-gnu-objdump", "ia64-linux-gnu-nm"):
        require_tool(tool)


def upstream_corpus(tree: Path) -> list[Path]:
    """The 33 ia64 assembly files of Linux 6.1 (the .lds.S linker scripts are not assembly)."""
    return sorted(
        p for p in (tree / "arch" / "ia64").rglob("*.S") if not p.name.endswith(".lds.S")
    )


def without_dac_override(path: Path) -> list[str] | None:
    """A command prefix under which root obeys file modes, or None where none works here.

    Root reads and writes any file through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; setpriv
    (util-linux) takes both out of the bounding set, so the program it starts has neither.
    `path` is a mode-000 file to probe with.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1])",
                            str(path)], capture_output=True, text=True)
    return prefix if "PermissionError" in probe.stderr else None


def broken_copy(out: Path, tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of an output folder with `old` replaced by `new` once in its file `name`."""
    copy = tmp_path / "broken"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / name
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    return copy


def identity_pass(module: Module) -> Module:
    """A pass that rebuilds every line and item without changing any: for round-trip tests."""
    return module.with_lines(
        [Line(tuple(replace(item) for item in line.items), line.ending, line.number)
         for line in module.lines]
    )
