"""relgen installs the ordinary ways: `pip install .` and the built wheel, each into a fresh
venv, give a relgen that imports every module and rewrites Linux 6.1.

The dependencies come from `.cache/wheels`, which `make setup` fills, so no network is used;
the source tree is off the path (the venvs run from a folder of their own, and a copy of the
source is what gets built).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import AUTHOR, ROOT, missing

WHEELS = ROOT / ".cache" / "wheels"
pytestmark = pytest.mark.slow

# Every module of the installed package, imported by name, in a process of the fresh venv.
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, relgen
names = [m.name for m in pkgutil.walk_packages(relgen.__path__, "relgen.")]
for name in names:
    importlib.import_module(name)
assert "/site-packages/relgen" in relgen.__file__, relgen.__file__
print(len(names))
"""


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a fresh clone holds of the package, copied, so the build writes nothing here."""
    if not WHEELS.is_dir():
        missing(f"the wheels of relgen's dependencies at {WHEELS}")
    copy = tmp_path_factory.mktemp("clone")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "src", copy / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


def _clean_environment(home: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_CONFIG_FILE")}
    return {**environment, "HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _fresh_venv(folder: Path, installable: Path) -> Path:
    """A new venv at `folder` with `installable` (a wheel or a source folder) pip-installed
    from the local wheels only; returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
           "--find-links", str(WHEELS), str(installable)]
    result = subprocess.run(pip, capture_output=True, text=True, cwd=folder,
                            env=_clean_environment(folder))
    assert result.returncode == 0, result.stderr
    assert "deprecat" not in result.stderr.lower(), result.stderr
    return folder / "bin"


def _rewrites(bin_dir: Path, upstream_tree: Path, out: Path) -> None:
    environment = _clean_environment(bin_dir.parent)
    imported = subprocess.run([str(bin_dir / "python"), "-c", IMPORT_EVERY_MODULE],
                              capture_output=True, text=True, cwd=bin_dir.parent,
                              env=environment)
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) >= 30  # every module, not a few
    run = subprocess.run([str(bin_dir / "relgen"), "rewrite", "--kernel-tree",
                          str(upstream_tree), "-o", str(out), "--from", AUTHOR,
                          "--no-kernel-checks"],
                         capture_output=True, text=True, cwd=bin_dir.parent, env=environment)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "relocate_new_kernel" in (out / "kexec_control_page.h").read_text()
    assert (out / "relocate_kernel.patch").read_text().startswith("From ")


def test_the_built_wheel_installs_and_rewrites(source_copy: Path, upstream_tree: Path,
                                               toolchain: None, tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-index", "--find-links", str(WHEELS), "-w",
                            str(tmp_path / "dist"), str(source_copy)],
                           capture_output=True, text=True, env=_clean_environment(tmp_path))
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("relgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # the data beside the modules that read them, and the two commands
    assert {"relgen/source/ia64.lark", "relgen/kernel/templates/kexec_control_page.h.j2",
            "relgen/kernel/cocci/machine_kexec_c.cocci.j2",
            "relgen/checks/cocci/stacks_order.cocci"} <= names
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "relgen = relgen.cli:main" in entry_points
    assert "relgen-checkcc = relgen.checks.checkcc:main" in entry_points
    _rewrites(_fresh_venv(tmp_path / "venv", wheel), upstream_tree, tmp_path / "out")


def test_pip_install_dot_installs_and_rewrites(source_copy: Path, upstream_tree: Path,
                                               toolchain: None, tmp_path: Path) -> None:
    _rewrites(_fresh_venv(tmp_path / "venv", source_copy), upstream_tree, tmp_path / "out")
