"""relgen never loses a user's file: the output rules, each case with and without --force.

The library cases call `outputs.write_outputs` on folders made here; the command-line cases
run `relgen rewrite` / `relgen layout` on the 2006 fixture and on the upstream tree, in
folders that also hold files relgen did not write, and compare every file before and after.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AUTHOR, FIXTURES, without_dac_override
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.outputs import MARKER, Manifest, kernel_tree_holding, write_outputs

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"
FORCE = pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
CLI_PROGRAM = "import sys\nfrom relgen.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (path relative to it -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the rules, as a library


@FORCE
def test_foreign_files_beside_the_outputs_are_kept(tmp_path: Path, force: bool) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.c").write_text("int x;\n")
    result = write_outputs(tmp_path, {"a.S": b"new\n"}, force=force)
    assert result.written == ("a.S",)
    digest = hashlib.sha256(b"new\n").hexdigest()
    assert snapshot(tmp_path) == {
        "notes.txt": b"mine\n", "sub/deep.c": b"int x;\n", "a.S": b"new\n",
        MARKER: f"{digest}  a.S\n".encode()}


@FORCE
def test_a_file_relgen_did_not_write_is_never_overwritten(tmp_path: Path, force: bool) -> None:
    (tmp_path / "a.S").write_text("the user's own\n")
    before = snapshot(tmp_path)
    with pytest.raises(RelgenError) as caught:
        write_outputs(tmp_path, {"a.S": b"new\n", "b.h": b"h\n"}, force=force)
    assert caught.value.render() == (
        f"{tmp_path}: error: a.S exists and was not written by relgen; relgen never "
        "overwrites it, even with --force")
    assert snapshot(tmp_path) == before  # b.h is not written either: all or nothing


def test_an_output_edited_by_hand_needs_force(tmp_path: Path) -> None:
    write_outputs(tmp_path, {"a.patch": b"Signed-off-by: relgen\n"}, force=False)
    (tmp_path / "a.patch").write_text("Signed-off-by: Jane\n")
    with pytest.raises(RelgenError, match="a.patch was changed since relgen wrote it; pass "
                       "--force to overwrite relgen's own outputs"):
        write_outputs(tmp_path, {"a.patch": b"Signed-off-by: relgen\n"}, force=False)
    assert (tmp_path / "a.patch").read_text() == "Signed-off-by: Jane\n"
    write_outputs(tmp_path, {"a.patch": b"Signed-off-by: relgen\n"}, force=True)
    assert (tmp_path / "a.patch").read_text() == "Signed-off-by: relgen\n"


def test_an_unchanged_output_is_replaced_without_force(tmp_path: Path) -> None:
    write_outputs(tmp_path, {"a.S": b"one\n"}, force=False)
    write_outputs(tmp_path, {"a.S": b"two\n"}, force=False)
    assert (tmp_path / "a.S").read_bytes() == b"two\n"
    assert Manifest.read(tmp_path).entries == {"a.S": hashlib.sha256(b"two\n").hexdigest()}


def test_stale_outputs_go_only_while_unchanged(tmp_path: Path) -> None:
    write_outputs(tmp_path, {"a.S": b"a\n", "b.patch": b"b\n", "c.txt": b"c\n"}, force=False)
    (tmp_path / "c.txt").write_text("edited\n")
    result = write_outputs(tmp_path, {"a.S": b"a2\n"}, force=False)
    assert (result.removed, result.kept) == (("b.patch",), ("c.txt",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, "a.S", "c.txt"]
    assert (tmp_path / "c.txt").read_text() == "edited\n"
    # the edited one is still known as relgen's: --force may overwrite it later
    assert "c.txt" in Manifest.read(tmp_path).entries


def test_a_manifest_without_digests_counts_as_maybe_edited(tmp_path: Path) -> None:
    """Folders written by relgen 0.1 list names only: their files need --force."""
    (tmp_path / "a.S").write_text("old\n")
    (tmp_path / MARKER).write_text("a.S\n")
    with pytest.raises(RelgenError, match="changed since relgen wrote it"):
        write_outputs(tmp_path, {"a.S": b"new\n"}, force=False)
    write_outputs(tmp_path, {"a.S": b"new\n"}, force=True)
    assert (tmp_path / "a.S").read_text() == "new\n"


@FORCE
def test_a_folder_in_a_kernel_tree_is_refused(tmp_path: Path, force: bool) -> None:
    tree = tmp_path / "linux"
    (tree / "arch" / "ia64" / "kernel").mkdir(parents=True)
    (tree / "MAINTAINERS").write_text("x\n")
    (tree / "arch" / "ia64" / "kernel" / "head.S").write_text("y\n")
    before = snapshot(tree)
    for folder in (tree, tree / "arch" / "ia64" / "kernel", tree / "newdir"):
        with pytest.raises(RelgenError, match="lies in the kernel source tree"):
            write_outputs(folder, {"a.S": b"new\n"}, force=force)
    assert snapshot(tree) == before and not (tree / "newdir").exists()
    assert kernel_tree_holding(tree / "arch" / "ia64") == tree
    assert kernel_tree_holding(tmp_path) is None


def test_a_missing_parent_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RelgenError, match="the output folder's parent .* does not exist"):
        write_outputs(tmp_path / "no" / "out", {"a.S": b"x\n"}, force=False)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_where_an_output_goes(tmp_path: Path) -> None:
    (tmp_path / "a.S").mkdir()
    with pytest.raises(RelgenError, match="a.S exists and is not a regular file"):
        write_outputs(tmp_path, {"a.S": b"x\n"}, force=True)
    assert (tmp_path / "a.S").is_dir()


def test_a_read_only_folder_leaves_nothing(tmp_path: Path) -> None:
    """As root, in a child that cannot override file modes; nothing is half-written."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0)
    prefix = without_dac_override(probe) if os.geteuid() == 0 else []
    if prefix is None:
        pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    folder.chmod(0o555)
    try:
        child = subprocess.run(
            [*prefix, sys.executable, "-c",
             "import sys\nfrom pathlib import Path\nfrom relgen.errors import RelgenError\n"
             "from relgen.outputs import write_outputs\n"
             "try:\n    write_outputs(Path(sys.argv[1]), {'a.S': b'x'}, force=True)\n"
             "except RelgenError as e:\n    print(e.render()); sys.exit(2)\n", str(folder)],
            capture_output=True, text=True)
    finally:
        folder.chmod(0o755)
    assert child.returncode == 2, child.stderr
    assert child.stdout == (f"{folder}: error: cannot write the outputs here (Permission "
                            "denied); nothing was written\n")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- through the command line


def rewrite(*argv: str | Path) -> int:
    return main(["rewrite", "--from", AUTHOR, *(str(a) for a in argv)])


@FORCE
def test_rewrite_into_a_folder_with_the_users_files(upstream_tree: Path, toolchain: None,
                                                     tmp_path: Path, force: bool,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`relgen rewrite X -o . [--force]` in a folder of the user's: all of it survives."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine\n")
    (work / ".git").mkdir()
    (work / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = snapshot(work)
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", work,
                   *(["--force"] if force else [])) == 0
    after = snapshot(work)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == sorted([
        MARKER, "kexec_control_page.h", "layout-after.svg", "layout-before.svg",
        "layout.json", "layout.txt", "relocate_kernel.S", "relocate_kernel.patch"])


@FORCE
def test_rewrite_beside_its_own_input_is_refused(upstream_tree: Path, toolchain: None,
                                                  tmp_path: Path, force: bool,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "relocate_kernel.S"
    source.write_bytes(FIXTURE_2006.read_bytes())
    before = snapshot(tmp_path)
    assert rewrite(source, "--kernel-tree", upstream_tree, "-o", tmp_path,
                   *(["--force"] if force else [])) == 2
    assert capsys.readouterr().err == (
        f"{tmp_path}: error: relocate_kernel.S exists and was not written by relgen; relgen "
        "never overwrites it, even with --force\n")
    assert snapshot(tmp_path) == before


@FORCE
@pytest.mark.parametrize("where", ["arch/ia64/kernel", "."])
def test_rewrite_into_the_kernel_tree_is_refused(upstream_tree: Path, toolchain: None,
                                                  force: bool, where: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = upstream_tree / where
    before = sorted(p.name for p in folder.iterdir())
    assert rewrite("--kernel-tree", upstream_tree, "-o", folder,
                   *(["--force"] if force else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{folder}: error: the output folder lies in the kernel source "
                          f"tree {upstream_tree.resolve()}; relgen does not write")
    assert sorted(p.name for p in folder.iterdir()) == before


def test_an_edited_patch_survives_a_second_rewrite(upstream_tree: Path, toolchain: None,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out) == 0
    patch = out / "relocate_kernel.patch"
    edited = patch.read_text().replace("\n---\n", "\nTested-by: Jane <jane@example.org>\n---\n", 1)
    assert edited != patch.read_text()
    patch.write_text(edited)
    capsys.readouterr()
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out) == 2
    assert "relocate_kernel.patch was changed since relgen wrote it" in capsys.readouterr().err
    assert patch.read_text() == edited
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out, "--force") == 0
    assert patch.read_text() != edited


def test_layout_output_file(upstream_tree: Path, toolchain: None, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "map.svg"
    argv = ["layout", str(FIXTURE_2006), "--kernel-tree", str(upstream_tree),
            "--format", "svg", "-o", str(target)]
    assert main(argv) == 0 and main(argv) == 0  # its own earlier output: replaced
    assert "<svg " in target.read_text()
    mine = tmp_path / "mine.svg"
    mine.write_text("<svg>mine</svg>\n")
    capsys.readouterr()
    assert main([*argv[:-1], str(mine), "--force"]) == 2
    assert "mine.svg exists and was not written by relgen" in capsys.readouterr().err
    assert mine.read_text() == "<svg>mine</svg>\n"
    for bad, message in ((tmp_path, "the output path is a folder"),
                         (tmp_path / "no" / "map.svg", "does not exist")):
        assert main([*argv[:-1], str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ": error: " in err and message in err


# -------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("signum", "status", "line"), [
    (signal.SIGINT, 130, "relgen: interrupted"),
    (signal.SIGTERM, 143, "relgen: terminated"),
], ids=["SIGINT", "SIGTERM"])
def test_a_signal_leaves_nothing_behind(upstream_tree: Path, toolchain: None, tmp_path: Path,
                                        signum: int, status: int, line: str) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-c", CLI_PROGRAM, "rewrite", "--kernel-tree", str(upstream_tree),
         "-o", str(out)],
        env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # signal it in the middle of its work: once its scratch folder exists
    while not any(p.name.startswith("relgen-") for p in scratch.iterdir()):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    child.send_signal(signum)
    stdout, stderr = child.communicate(timeout=60)
    assert (child.returncode, stderr) == (status, line + "\n")
    assert [p.name for p in scratch.iterdir()] == []
    assert not out.exists()


@FORCE
def test_an_immutable_folder(upstream_tree: Path, toolchain: None, tmp_path: Path, force: bool,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """chattr +i: even root cannot write; one line, exit 2, nothing half-written."""
    folder = tmp_path / "frozen"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i does not work on this file system")
    try:
        status = rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", folder,
                         *(["--force"] if force else []))
        err = capsys.readouterr().err
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert status == 2
    assert err == (f"{folder}: error: cannot write the outputs here (Operation not "
                   "permitted); nothing was written\n")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
