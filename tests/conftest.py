"""Shared fixtures: a machine-independent environment, the upstream tree and the toolchain.

Every test runs in the same environment whatever the machine: an empty home, no git identity
or git configuration, a cache folder of the session's own, and the kernel checks' cache of
this checkout (`.cache/kernel-checks`, which tests may find empty: they make what they need).
Tests that need the upstream tree or the toolchain skip on a developer machine without them,
and fail under CI=true: CI installs both through `make setup`, so their absence there is a
defect, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
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
