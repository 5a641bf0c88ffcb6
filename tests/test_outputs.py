"""relgen never loses a user's file: the output rules, each case with and without --force.

The library cases call `outputs.write_outputs` on folders made here; the command-line cases
run `relgen rewrite` / `relgen layout` on the 2006 fixture and on the upstream tree, in
folders that also hold files relgen did not write, and compare every file before and after.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import AUTHOR, DATE, FIXTURES, without_dac_override
from relgen import outputs
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.names import (
    HEADER_NAME,
    LAYOUT_TEXT_NAME,
    PATCH_NAME,
    SOURCE_NAME,
)
from relgen.outputs import (
    LAYOUT,
    MANIFEST_HEADER,
    MARKER,
    REWRITE,
    Entry,
    Manifest,
    WriteResult,
    kernel_tree_holding,
    write_outputs,
)

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"
#: What is written where is the point here, not what is computed: each command-line case runs
#: the command as ever, its pipeline's result computed once per input and arguments.
pytestmark = pytest.mark.usefixtures("pipeline_once")
FORCE = pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
CLI_PROGRAM = "import sys\nfrom relgen.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (path relative to it -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the rules, as a library


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(**commands: dict[str, bytes]) -> bytes:
    """The manifest relgen writes for these files of these commands."""
    lines = [MANIFEST_HEADER]
    for command, files in sorted(commands.items()):
        lines.append(f"# command: {command}")
        lines += [f"{sha(data)}  {name}" for name, data in sorted(files.items())]
    return ("\n".join(lines) + "\n").encode()


def write(folder: Path, files: dict[str, bytes], command: str = REWRITE, *, force: bool = False,
          warnings: list[str] | None = None) -> WriteResult:
    """write_outputs, its warnings kept in `warnings` (or failing the test if none is given)."""
    def warn(message: str) -> None:
        if warnings is None:
            pytest.fail(f"unexpected warning: {message}")
        warnings.append(message)
    return write_outputs(folder, files, command=command, force=force, warn=warn)


@FORCE
def test_foreign_files_beside_the_outputs_are_kept(tmp_path: Path, force: bool) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.c").write_text("int x;\n")
    result = write(tmp_path, {SOURCE_NAME: b"new\n"}, force=force)
    assert result.written == (SOURCE_NAME,)
    assert snapshot(tmp_path) == {
        "notes.txt": b"mine\n", "sub/deep.c": b"int x;\n", SOURCE_NAME: b"new\n",
        MARKER: manifest(rewrite={SOURCE_NAME: b"new\n"})}


def test_the_manifest_is_sha256sum_readable(tmp_path: Path) -> None:
    write(tmp_path, {SOURCE_NAME: b"s\n", PATCH_NAME: b"p\n"})
    write(tmp_path, {"map.txt": b"m\n"}, LAYOUT)
    assert (tmp_path / MARKER).read_bytes() == manifest(
        layout={"map.txt": b"m\n"}, rewrite={SOURCE_NAME: b"s\n", PATCH_NAME: b"p\n"})
    assert manifest(layout={"m": b""}).decode().splitlines()[:2] == [
        "# relgen-output 2: the files relgen wrote here, in sha256sum format "
        "(sha256sum -c skips the lines that start with #)", "# command: layout"]
    checked = subprocess.run(["sha256sum", "--check", "--strict", MARKER], cwd=tmp_path,
                             capture_output=True, text=True)
    assert (checked.returncode, checked.stderr) == (0, "")
    assert sorted(checked.stdout.splitlines()) == sorted([
        "map.txt: OK", f"{PATCH_NAME}: OK", f"{SOURCE_NAME}: OK"])


@FORCE
def test_a_file_relgen_did_not_write_is_never_overwritten(tmp_path: Path, force: bool) -> None:
    (tmp_path / SOURCE_NAME).write_text("the user's own\n")
    before = snapshot(tmp_path)
    with pytest.raises(RelgenError) as caught:
        write(tmp_path, {SOURCE_NAME: b"new\n", HEADER_NAME: b"h\n"}, force=force)
    assert caught.value.render() == (
        f"{tmp_path}: error: {SOURCE_NAME} exists and was not written by relgen; relgen never "
        "overwrites it, even with --force")
    assert snapshot(tmp_path) == before  # the header is not written either: all or nothing


def test_an_output_edited_by_hand_needs_force(tmp_path: Path) -> None:
    write(tmp_path, {PATCH_NAME: b"Signed-off-by: relgen\n"})
    (tmp_path / PATCH_NAME).write_text("Signed-off-by: Jane\n")
    with pytest.raises(RelgenError, match=f"{PATCH_NAME} was changed since relgen wrote it; "
                       "pass --force to overwrite relgen's own outputs"):
        write(tmp_path, {PATCH_NAME: b"Signed-off-by: relgen\n"})
    assert (tmp_path / PATCH_NAME).read_text() == "Signed-off-by: Jane\n"
    write(tmp_path, {PATCH_NAME: b"Signed-off-by: relgen\n"}, force=True)
    assert (tmp_path / PATCH_NAME).read_text() == "Signed-off-by: relgen\n"


def test_an_unchanged_output_is_replaced_without_force(tmp_path: Path) -> None:
    write(tmp_path, {SOURCE_NAME: b"one\n"})
    write(tmp_path, {SOURCE_NAME: b"two\n"})
    assert (tmp_path / SOURCE_NAME).read_bytes() == b"two\n"
    assert Manifest.read(tmp_path).entries == {
        SOURCE_NAME: Entry(REWRITE, frozenset({sha(b"two\n")}))}


def test_stale_outputs_go_only_while_unchanged(tmp_path: Path) -> None:
    write(tmp_path, {SOURCE_NAME: b"a\n", PATCH_NAME: b"b\n", LAYOUT_TEXT_NAME: b"c\n"})
    (tmp_path / LAYOUT_TEXT_NAME).write_text("edited\n")
    result = write(tmp_path, {SOURCE_NAME: b"a2\n"})
    assert (result.removed, result.kept) == ((PATCH_NAME,), (LAYOUT_TEXT_NAME,))
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, LAYOUT_TEXT_NAME, SOURCE_NAME]
    assert (tmp_path / LAYOUT_TEXT_NAME).read_text() == "edited\n"
    # the edited one is still known as relgen's: --force may overwrite it later
    assert LAYOUT_TEXT_NAME in Manifest.read(tmp_path).entries


def test_a_manifest_without_digests_counts_as_maybe_edited(tmp_path: Path) -> None:
    """Folders written by relgen 0.1 list names only: their files need --force."""
    (tmp_path / SOURCE_NAME).write_text("old\n")
    (tmp_path / MARKER).write_text(f"{SOURCE_NAME}\n")
    with pytest.raises(RelgenError, match="changed since relgen wrote it"):
        write(tmp_path, {SOURCE_NAME: b"new\n"})
    write(tmp_path, {SOURCE_NAME: b"new\n"}, force=True)
    assert (tmp_path / SOURCE_NAME).read_text() == "new\n"


def test_a_manifest_without_commands_is_read_by_name(tmp_path: Path) -> None:
    """Before commands were recorded: rewrite's names are rewrite's, any other is layout's."""
    (tmp_path / SOURCE_NAME).write_text("s\n")
    (tmp_path / PATCH_NAME).write_text("p\n")
    (tmp_path / "map.txt").write_text("m\n")
    (tmp_path / MARKER).write_text("".join(f"{sha(data)}  {name}\n" for name, data in (
        (SOURCE_NAME, b"s\n"), (PATCH_NAME, b"p\n"), ("map.txt", b"m\n"))))
    result = write(tmp_path, {SOURCE_NAME: b"s2\n"})
    assert (result.removed, result.kept) == ((PATCH_NAME,), ())
    assert snapshot(tmp_path) == {
        SOURCE_NAME: b"s2\n", "map.txt": b"m\n",
        MARKER: manifest(layout={"map.txt": b"m\n"}, rewrite={SOURCE_NAME: b"s2\n"})}


@FORCE
def test_a_folder_in_a_kernel_tree_is_refused(tmp_path: Path, force: bool) -> None:
    tree = tmp_path / "linux"
    (tree / "arch" / "ia64" / "kernel").mkdir(parents=True)
    (tree / "MAINTAINERS").write_text("x\n")
    (tree / "arch" / "ia64" / "kernel" / "head.S").write_text("y\n")
    before = snapshot(tree)
    for folder in (tree, tree / "arch" / "ia64" / "kernel", tree / "newdir"):
        with pytest.raises(RelgenError, match="lies in the kernel source tree"):
            write(folder, {SOURCE_NAME: b"new\n"}, force=force)
    assert snapshot(tree) == before and not (tree / "newdir").exists()
    assert kernel_tree_holding(tree / "arch" / "ia64") == tree
    assert kernel_tree_holding(tmp_path) is None


def test_a_missing_parent_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RelgenError, match="the output folder's parent .* does not exist"):
        write(tmp_path / "no" / "out", {SOURCE_NAME: b"x\n"})
    assert list(tmp_path.iterdir()) == []


def test_a_directory_where_an_output_goes(tmp_path: Path) -> None:
    (tmp_path / SOURCE_NAME).mkdir()
    with pytest.raises(RelgenError, match=f"{SOURCE_NAME} exists and is not a regular file"):
        write(tmp_path, {SOURCE_NAME: b"x\n"}, force=True)
    assert (tmp_path / SOURCE_NAME).is_dir()


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
             "try:\n    write_outputs(Path(sys.argv[1]), {'relocate_kernel.S': b'x'}, "
             "command='rewrite', force=True)\n"
             "except RelgenError as e:\n    print(e.render()); sys.exit(2)\n", str(folder)],
            capture_output=True, text=True)
    finally:
        folder.chmod(0o755)
    assert child.returncode == 2, child.stderr
    assert child.stdout == (f"{folder}: error: cannot write the outputs here (Permission "
                            "denied); nothing was written\n")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# ------------------------------------------------------- the manifest is untrusted input


def test_manifest_lines_outside_relgens_outputs_are_ignored(tmp_path: Path) -> None:
    """Appended lines naming a path, an absolute path or a file rewrite never writes, each
    with its right digest: warned about, never removed, never overwritten."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (out / "MAINTAINERS").write_text("keep too\n")
    write(out, {SOURCE_NAME: b"s\n", PATCH_NAME: b"p\n"})
    keep = sha(b"keep\n")
    with (out / MARKER).open("ab") as manifest:
        manifest.write(f"{keep}  ../victim\n{keep}  {victim}\n".encode())
        manifest.write(f"{sha((out / 'MAINTAINERS').read_bytes())}  MAINTAINERS\n".encode())
        manifest.write(b"\xff\xfe  bad bytes\n" + f"{keep}  nul".encode() + b"\0name\n")
    warnings: list[str] = []
    result = write(out, {SOURCE_NAME: b"s2\n"}, warnings=warnings)
    assert (result.removed, result.kept) == ((PATCH_NAME,), ())
    assert victim.read_text() == "keep\n" and (out / "MAINTAINERS").read_text() == "keep too\n"
    where = f"{out / MARKER}"
    assert warnings == [
        f"{where}:5: warning: ignoring '../victim': not a plain file name",
        f"{where}:6: warning: ignoring {str(victim)!r}: not a plain file name",
        f"{where}:7: warning: ignoring 'MAINTAINERS': relgen rewrite never writes it",
        f"{where}:8: warning: ignoring the line: not UTF-8",
        f"{where}:9: warning: ignoring 'nul\\x00name': not a plain file name"]
    assert set(Manifest.read(out).entries) == {SOURCE_NAME}  # the ignored lines are gone
    # nor does a command overwrite a file that such a line names
    with pytest.raises(RelgenError, match="MAINTAINERS exists and was not written by relgen"):
        write(out, {"MAINTAINERS": b"x\n"}, LAYOUT, force=True)
    assert (out / "MAINTAINERS").read_text() == "keep too\n"


@pytest.mark.parametrize("line", [
    b"garbage", b"0123  relocate_kernel.S", b"# command: format-disk",
    b"# temporary: ../victim", b"# temporary: .notes.txt.relgen-tmp", b"\xc3\x28"],
    ids=["garbage", "short-digest", "unknown-command", "temporary-path", "temporary-unknown",
         "not-utf8"])
def test_a_malformed_manifest_line_is_one_warning(tmp_path: Path, line: bytes) -> None:
    write(tmp_path, {SOURCE_NAME: b"s\n"})
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / ".notes.txt.relgen-tmp").write_text("mine\n")
    with (tmp_path / MARKER).open("ab") as manifest:
        manifest.write(line + b"\n")
    warnings: list[str] = []
    write(tmp_path, {SOURCE_NAME: b"s2\n"}, warnings=warnings)
    assert len(warnings) == 1 and warnings[0].startswith(f"{tmp_path / MARKER}:4: warning: ")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / ".notes.txt.relgen-tmp").read_text() == "mine\n"


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "", ".", "..", MARKER, "a.relgen-tmp",
                                  "tab\tname", "back\\slash"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(RelgenError, match="refusing to write .*: "):
        write(tmp_path, {name: b"x\n"}, LAYOUT)
    assert list(tmp_path.iterdir()) == []


def test_rewrite_writes_only_its_own_names(tmp_path: Path) -> None:
    with pytest.raises(RelgenError, match="refusing to write 'map.txt': relgen rewrite never "
                       "writes it"):
        write(tmp_path, {"map.txt": b"x\n"})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------ each command keeps the other's outputs


def test_rewrite_and_layout_keep_each_others_files(tmp_path: Path) -> None:
    write(tmp_path, {SOURCE_NAME: b"s\n", PATCH_NAME: b"p\n"})
    write(tmp_path, {"map.txt": b"m\n"}, LAYOUT)
    write(tmp_path, {"map.svg": b"<svg/>\n"}, LAYOUT)
    result = write(tmp_path, {SOURCE_NAME: b"s2\n"})  # the patch is stale: only it goes
    assert (result.removed, result.kept) == ((PATCH_NAME,), ())
    write(tmp_path, {"map.txt": b"m2\n"}, LAYOUT)
    assert snapshot(tmp_path) == {
        SOURCE_NAME: b"s2\n", "map.txt": b"m2\n", "map.svg": b"<svg/>\n",
        MARKER: manifest(layout={"map.svg": b"<svg/>\n", "map.txt": b"m2\n"},
                         rewrite={SOURCE_NAME: b"s2\n"})}


@FORCE
def test_a_command_never_replaces_another_commands_output(tmp_path: Path, force: bool) -> None:
    write(tmp_path, {SOURCE_NAME: b"s\n", LAYOUT_TEXT_NAME: b"t\n"})
    write(tmp_path, {"map.txt": b"m\n"}, LAYOUT)
    before = snapshot(tmp_path)
    with pytest.raises(RelgenError, match=f"{LAYOUT_TEXT_NAME} was written by relgen rewrite; "
                       "relgen layout never replaces another command's output"):
        write(tmp_path, {LAYOUT_TEXT_NAME: b"mine\n"}, LAYOUT, force=force)
    assert snapshot(tmp_path) == before


# ----------------------------------------------- an interruption at any moment, completed

KILL_PROGRAM = """\
import os, sys
from pathlib import Path
from relgen import outputs
folder, kill_at, partial = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "partial"
steps = []
def dying(kind):
    real = getattr(outputs, "_" + kind)
    def step(path, *rest):
        steps.append(kind)
        if len(steps) == kill_at:  # kill -9 here: no finally, no except runs
            if kind == "create" and partial:
                Path(path).write_bytes(rest[0][:len(rest[0]) // 2])
            os._exit(9)
        return real(path, *rest)
    setattr(outputs, "_" + kind, step)
for kind in ("create", "rename", "unlink"):
    dying(kind)
files = {name: data.encode() for name, data in eval(sys.argv[4]).items()}
outputs.write_outputs(folder, files, command="rewrite", force=False)
print(" ".join(steps))
"""
SECOND_RUN = {SOURCE_NAME: "s2\n", HEADER_NAME: "h2\n", LAYOUT_TEXT_NAME: "t\n"}


def run_killed(folder: Path, kill_at: int, how: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", KILL_PROGRAM, str(folder), str(kill_at), how,
                           repr(SECOND_RUN)], capture_output=True, text=True)


@pytest.mark.parametrize("first", [None, {SOURCE_NAME: b"s\n", HEADER_NAME: b"h\n",
                                           PATCH_NAME: b"p\n"}], ids=["new-folder", "replace"])
def test_a_kill_at_any_step_leaves_a_folder_the_next_run_finishes(
        tmp_path: Path, first: dict[str, bytes] | None) -> None:
    """Killed before each rename, unlink and file creation (and half-way through writing a
    file): the next run takes every file as relgen's and leaves what an unbroken run leaves."""
    second = {name: data.encode() for name, data in SECOND_RUN.items()}

    def start(folder: Path) -> None:
        if first is not None:
            folder.mkdir()
            (folder / "notes.txt").write_text("mine\n")
            write(folder, first)

    reference = tmp_path / "reference"
    start(reference)
    unbroken = run_killed(reference, 0, "before")
    assert unbroken.returncode == 0, unbroken.stderr
    steps = unbroken.stdout.split()
    assert steps == [
        "create", "rename",  # the journal
        "create", "create", "create", "rename", "rename", "rename",  # the three files
        *(["unlink"] if first else []),  # the patch, which the second run does not write
        "create", "rename"]  # the final manifest
    expected = snapshot(reference)
    for kill_at, kind in enumerate(steps, 1):
        for how in ("before", "partial") if kind == "create" else ("before",):
            folder = tmp_path / f"{kill_at}-{how}"
            start(folder)
            killed = run_killed(folder, kill_at, how)
            assert killed.returncode == 9, killed.stderr
            write(folder, second)
            assert snapshot(folder) == expected, (kill_at, how)


def test_an_error_between_renames_leaves_a_folder_the_next_run_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {SOURCE_NAME: b"s\n", HEADER_NAME: b"h\n"})
    real_rename, renames = outputs._rename, []

    def failing_rename(source: Path, target: Path) -> None:
        renames.append(target.name)
        if len(renames) == 3:  # the journal and one output are in place
            raise OSError(errno.EIO, "Input/output error")
        real_rename(source, target)

    monkeypatch.setattr(outputs, "_rename", failing_rename)
    with pytest.raises(RelgenError, match=r"writing the outputs stopped half-way \(Input/output "
                       r"error\); run relgen again to finish"):
        write(tmp_path, {SOURCE_NAME: b"s2\n", HEADER_NAME: b"h2\n"})
    assert renames == [MARKER, HEADER_NAME, SOURCE_NAME]
    monkeypatch.setattr(outputs, "_rename", real_rename)
    write(tmp_path, {SOURCE_NAME: b"s2\n", HEADER_NAME: b"h2\n"})
    assert snapshot(tmp_path) == {
        SOURCE_NAME: b"s2\n", HEADER_NAME: b"h2\n",
        MARKER: manifest(rewrite={HEADER_NAME: b"h2\n", SOURCE_NAME: b"s2\n"})}


def test_an_error_before_the_renames_changes_nothing(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    write(tmp_path, {SOURCE_NAME: b"s\n", HEADER_NAME: b"h\n"})
    before = snapshot(tmp_path)
    real_create = outputs._create

    def full_disk(path: Path, data: bytes) -> None:
        if path.name != MARKER + ".relgen-tmp":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_create(path, data)

    monkeypatch.setattr(outputs, "_create", full_disk)
    with pytest.raises(RelgenError, match=r"cannot write the outputs here \(No space left on "
                       r"device\); nothing was written"):
        write(tmp_path, {SOURCE_NAME: b"s2\n", HEADER_NAME: b"h2\n"})
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", [b"", MANIFEST_HEADER.encode()[:10],
                                     MANIFEST_HEADER.encode() + b"\n# command: rew"],
                         ids=["empty", "header-begun", "header-and-more"])
def test_a_half_written_manifest_temporary_is_relgens(tmp_path: Path, content: bytes) -> None:
    (tmp_path / (MARKER + ".relgen-tmp")).write_bytes(content)
    write(tmp_path, {SOURCE_NAME: b"s\n"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, SOURCE_NAME]


def test_an_unrecorded_temporary_name_is_never_touched(tmp_path: Path) -> None:
    write(tmp_path, {SOURCE_NAME: b"s\n"})
    for name in (f".{SOURCE_NAME}.relgen-tmp", MARKER + ".relgen-tmp"):
        (tmp_path / name).write_text("the user's\n")
        before = snapshot(tmp_path)
        with pytest.raises(RelgenError, match=f"{re.escape(name)} exists and was not written "
                           "by relgen"):
            write(tmp_path, {SOURCE_NAME: b"s2\n"}, force=True)
        assert snapshot(tmp_path) == before
        (tmp_path / name).unlink()


# ------------------------------------------------------------- concurrent runs take turns

CONCURRENT_PROGRAM = """\
import sys, time
from pathlib import Path
from relgen.outputs import write_outputs
folder, start = Path(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time() - 0.005))  # asleep, not spinning, until just before
while time.time() < start:
    pass
write_outputs(folder, {"relocate_kernel.S": b"s\\n", "kexec_control_page.h": b"h\\n",
                       "layout.txt": b"t\\n"}, command="rewrite", force=False)
"""


def test_concurrent_first_writes_into_one_new_folder(tmp_path: Path) -> None:
    """Four processes that write into one new folder at the same moment: all succeed."""
    for round_ in range(6):
        folder = tmp_path / f"out{round_}"
        start = time.time() + 0.3  # after the interpreters have started
        children = [subprocess.Popen([sys.executable, "-c", CONCURRENT_PROGRAM, str(folder),
                                      str(start)], stderr=subprocess.PIPE, text=True)
                    for _ in range(4)]
        errors = [child.communicate(timeout=60)[1] for child in children]
        assert [child.returncode for child in children] == [0] * 4, errors
        assert sorted(p.name for p in folder.iterdir()) == sorted([
            MARKER, SOURCE_NAME, HEADER_NAME, LAYOUT_TEXT_NAME])


def test_a_second_run_waits_for_the_first(tmp_path: Path) -> None:
    """A run holds the folder (flock on the folder itself, no lock file): the next one waits."""
    write(tmp_path, {SOURCE_NAME: b"s\n"})
    holder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    waiting = threading.Thread(target=write, args=(tmp_path, {SOURCE_NAME: b"s2\n"}))
    try:
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and (tmp_path / SOURCE_NAME).read_bytes() == b"s\n"
    finally:
        os.close(holder)
    waiting.join(10)
    assert not waiting.is_alive() and (tmp_path / SOURCE_NAME).read_bytes() == b"s2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, SOURCE_NAME]


# ---------------------------------------------------------------- through the command line


def rewrite(*argv: str | Path) -> int:
    """`relgen rewrite` as these tests need it: an author and a date of their own (two runs
    give the same bytes), and no kernel checks, which say nothing of what is written where."""
    return main(["rewrite", "--from", AUTHOR, "--date", DATE, "--no-kernel-checks",
                 *(str(a) for a in argv)])


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


def test_rewrite_acts_on_no_name_its_manifest_smuggles_in(
        upstream_tree: Path, toolchain: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """issue 17: lines appended to .relgen-output, each with its right digest, made the next
    rewrite remove ../victim, an absolute path and MAINTAINERS."""
    out = tmp_path / "o"
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out) == 0
    victim, absolute, maintainers = tmp_path / "victim", tmp_path / "absolute", out / "MAINTAINERS"
    for path in (victim, absolute, maintainers):
        path.write_text("keep\n")
    digest = hashlib.sha256(b"keep\n").hexdigest()
    with (out / MARKER).open("a") as manifest:
        manifest.write(f"{digest}  ../victim\n{digest}  {absolute}\n{digest}  MAINTAINERS\n")
    with (out / MARKER).open("ab") as manifest:
        manifest.write(b"\xff  not UTF-8\n")
    capsys.readouterr()
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": warning: ")[1] for line in err] == [
        "ignoring '../victim': not a plain file name",
        f"ignoring {str(absolute)!r}: not a plain file name",
        "ignoring 'MAINTAINERS': relgen rewrite never writes it",
        "ignoring the line: not UTF-8"]
    assert all(path.read_text() == "keep\n" for path in (victim, absolute, maintainers))


def test_rewrite_and_layout_keep_each_others_outputs(upstream_tree: Path, toolchain: None,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """issue 17: `rewrite -o p && layout -o p/map.txt`, then `rewrite -o p` removed map.txt."""
    out = tmp_path / "p"
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out) == 0
    written = snapshot(out)
    layout = ["layout", str(FIXTURE_2006), "--kernel-tree", str(upstream_tree),
              "-o", str(out / "map.txt")]
    assert main(layout) == 0
    map_text = (out / "map.txt").read_bytes()
    assert rewrite(FIXTURE_2006, "--kernel-tree", upstream_tree, "-o", out) == 0
    assert main(layout) == 0
    after = snapshot(out)
    assert after.pop("map.txt") == map_text
    manifest = after.pop(MARKER).decode()
    del written[MARKER]
    assert after == written
    assert "# command: layout\n" in manifest and "# command: rewrite\n" in manifest
    assert Manifest.read(out).entries["map.txt"].command == LAYOUT
    assert capsys.readouterr().err == ""


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
