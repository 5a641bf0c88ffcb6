"""Where the kernel checks keep the pristine trees, and what they do when they cannot.

One rule finds every cache folder of relgen; the copy of a tree is hard-linked where it can
be and copied where it cannot; a check puts the copy right after a run killed halfway; a
cache that cannot be written, and a copy that cannot be made, are one line saying that the
kernel checks did not run, and the rest of verify runs; spatch runs without a HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, require_tool, without_dac_override
from relgen import caches
from relgen.checks import kernel, treecopy

TREE = FIXTURES / "trees" / "linux-2.6.24"
MACHINE_KEXEC_C = "arch/ia64/kernel/machine_kexec.c"


# ------------------------------------------------------------------- the cache folders


def test_one_rule_for_every_cache_folder(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RELGEN_KERNEL_CHECK_CACHE", raising=False)
    assert caches.cache_folder() == tmp_path / "xdg" / "relgen"
    assert kernel.cache_root() == tmp_path / "xdg" / "relgen" / "kernel-checks"
    monkeypatch.setenv("RELGEN_KERNEL_CHECK_CACHE", str(tmp_path / "mine"))
    assert kernel.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert caches.cache_folder("x") == tmp_path / "home" / ".cache" / "relgen" / "x"


def test_no_home_is_no_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def nowhere() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(nowhere))
    with pytest.raises(caches.NoCacheFolder):
        caches.cache_folder()
    assert isinstance(caches.NoCacheFolder(), OSError)


# ------------------------------------------------------------------------ the copy


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree)
    return tree


def test_the_copy_is_hard_linked_on_one_filesystem(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    assert treecopy.make_copy(tree, tmp_path / "copy") == treecopy.HARD_LINKED
    original, copy = tree / MACHINE_KEXEC_C, tmp_path / "copy" / MACHINE_KEXEC_C
    assert original.stat().st_ino == copy.stat().st_ino


def test_the_copy_is_copied_across_filesystems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) here")
    tree = _tree(tmp_path)
    target = shm / f"relgen-test-{os.getpid()}"
    target.mkdir()
    try:
        assert treecopy.make_copy(tree, target / "copy") == treecopy.COPIED
        assert (target / "copy" / MACHINE_KEXEC_C).read_bytes() == \
            (tree / MACHINE_KEXEC_C).read_bytes()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_changed_file_is_a_new_file_and_goes_back(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    copy = tmp_path / "copy"
    treecopy.make_copy(tree, copy)
    before = (tree / MACHINE_KEXEC_C).read_bytes()
    with treecopy.changed_files(tree, copy, {MACHINE_KEXEC_C: b"changed\n",
                                             "new.h": b"new\n"}) as written:
        assert written[MACHINE_KEXEC_C].read_bytes() == b"changed\n"
        assert (tree / MACHINE_KEXEC_C).read_bytes() == before
    assert (copy / MACHINE_KEXEC_C).read_bytes() == before and not (copy / "new.h").exists()
    assert not treecopy.changed_note(copy).exists()


def test_a_run_killed_halfway_is_put_right(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    copy = tmp_path / "copy"
    treecopy.make_copy(tree, copy)
    # what a run killed inside changed_files() leaves: its note and its files in the copy
    treecopy.changed_note(copy).write_text(json.dumps([MACHINE_KEXEC_C, "new.h"]))
    (copy / MACHINE_KEXEC_C).unlink()
    (copy / MACHINE_KEXEC_C).write_bytes(b"half\n")
    (copy / "new.h").write_bytes(b"new\n")
    treecopy.restore(tree, copy)
    assert (copy / MACHINE_KEXEC_C).read_bytes() == (tree / MACHINE_KEXEC_C).read_bytes()
    assert not (copy / "new.h").exists() and not treecopy.changed_note(copy).exists()


# --------------------------------------------------- what the kernel checks do instead


CHILD = """import json, sys
from pathlib import Path
from relgen.checks import kernel
from relgen.toolchain.tree import KernelTree
run = kernel.kernel_checks(KernelTree(Path(sys.argv[1])), {}, cache=Path(sys.argv[2]))
print(json.dumps([run.not_run, [[c.status, *c.evidence] for c in run.checks]]))
"""


def _checks_without_dac_override(tree: Path, cache: Path, tmp_path: Path
                                 ) -> tuple[str | None, list[list[str]]]:
    """The kernel checks of `tree` in a process that obeys file modes, even as root."""
    for program in ("gcc", "sparse", "spatch", "ia64-linux-gnu-as"):
        require_tool(program)
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0)
    prefix = without_dac_override(probe)
    if prefix is None and os.geteuid() == 0:
        pytest.skip("root reads and writes anywhere here, and setpriv cannot stop it")
    result = subprocess.run([*(prefix or []), sys.executable, "-c", CHILD, str(tree),
                             str(cache)], capture_output=True, text=True, check=True)
    reason, checks = json.loads(result.stdout)
    return reason, checks


def test_an_unwritable_cache_is_one_line_not_run(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    reason, checks = _checks_without_dac_override(TREE, cache, tmp_path)
    assert reason.startswith("the kernel checks' cache cannot be used: Permission denied")
    assert [check[0] for check in checks] == ["not run"] and len(checks[0]) == 2


def test_a_copy_that_cannot_be_made_is_one_line_not_run(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    for number in range(50):  # fifty complaints of cp, which must not reach the report
        (tree / f"unreadable-{number}").mkdir(mode=0)
    said, checks = _checks_without_dac_override(tree, tmp_path / "cache", tmp_path)
    assert [check[0] for check in checks] == ["not run"] and len(checks[0]) == 2
    reason = checks[0][1]
    assert reason.startswith(f"  not run: cannot copy {tree} into the cache")
    assert "(and 49 more lines)" in reason
    # what a commit message may say names no folder of this machine
    assert said == "preparing the unpatched tree failed"


def test_an_unwritable_home_is_one_line_and_verify_runs_the_rest(tmp_path: Path) -> None:
    from relgen.cli import main

    out = tmp_path / "out"
    assert main(["rewrite", "--kernel-tree", str(TREE), "-o", str(out), "-q",
                 "--no-kernel-checks"]) == 0
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0)
    prefix = without_dac_override(probe)
    if prefix is None and os.geteuid() == 0:
        pytest.skip("root writes anywhere here, and setpriv cannot stop it")
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("XDG_CACHE_HOME", "RELGEN_KERNEL_CHECK_CACHE")}
    result = subprocess.run(
        [*(prefix or []), sys.executable, "-c", "import sys\nfrom relgen.cli import main\n"
         "sys.exit(main(sys.argv[1:]))", "verify", str(out), "--kernel-tree", str(TREE)],
        env={**environment, "HOME": str(home)}, capture_output=True, text=True, check=False)
    lines = result.stdout.splitlines()
    (index,) = [n for n, line in enumerate(lines) if line.startswith("NOT RUN  kernel checks")]
    assert lines[index + 1].startswith("  not run: the kernel checks' cache cannot be used: "
                                       "Permission denied")
    assert not lines[index + 2].startswith("  ")  # one line
    assert result.returncode == 0 and "FAIL" not in result.stdout
    assert sum(line.startswith("PASS  ") for line in lines) > 10


@pytest.mark.slow  # the four Coccinelle checks, run by spatch in a child of its own
def test_spatch_runs_without_a_home(tmp_path: Path) -> None:
    require_tool("spatch")
    program = ("import sys\nfrom pathlib import Path\n"
               "from relgen.checks.cocci import cocci_checks\n"
               "path = Path(sys.argv[1])\n"
               "checks = cocci_checks({'arch/ia64/kernel/machine_kexec.c': path}, path.parent)\n"
               "print([line for c in checks for line in c.evidence if 'exit' in line])\n")
    c_file = tmp_path / "machine_kexec.c"
    c_file.write_bytes((TREE / MACHINE_KEXEC_C).read_bytes())
    environment = {k: v for k, v in os.environ.items() if k != "HOME"}
    result = subprocess.run([sys.executable, "-c", program, str(c_file)], env=environment,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"  # no spatch gave up ("exception Not_found")
