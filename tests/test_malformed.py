"""Malformed input through the command line: the exact message, exit status 2, nothing written.

Every case is a small file of tests/fixtures/malformed_* (shaped after Linux 6.1's
relocate_kernel.S, written for relgen) or something made in tmp_path, run through
`relgen.cli.main`. The first line of stderr is `path:line:col: error: message` where a line
is known (`path: error: message` or `error: message` where none is), the second the offending
line and the third a caret under the column; stdout stays empty, the output folder does not
appear and nothing new is left in tmp_path or in relgen's scratch folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import AUTHOR, FIXTURES, IN_CI, without_dac_override
from relgen.cli import main
from relgen.outputs import MARKER

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"
CLI_PROGRAM = "import sys\nfrom relgen.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str


@dataclass
class Sandbox:
    """tmp_path as the current folder, with relgen's scratch folders inside it."""

    root: Path
    scratch: Path
    out: Path
    before: frozenset[Path] = frozenset()

    def snapshot(self) -> None:
        self.before = self.files()

    def scratch_left(self) -> list[str]:
        return sorted(p.name for p in self.scratch.iterdir())

    def assert_nothing_written(self) -> None:
        assert not self.out.exists() and not self.out.is_symlink()
        assert self.scratch_left() == [], "a scratch folder was left behind"
        assert self.files() == self.before

    def files(self) -> frozenset[Path]:
        """Everything under tmp_path but what is inside the scratch folder."""
        return frozenset(p for p in self.root.rglob("*") if self.scratch not in p.parents)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(tmp_path)
    # relgen's scratch folders (tempfile.TemporaryDirectory) go here, to be seen cleaned up
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    box = Sandbox(tmp_path, scratch, tmp_path / "out")
    box.snapshot()
    yield box


def relgen(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Run:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)


def assert_error(run: Run, head: str, source: str | None = None,
                 caret: str | None = None) -> None:
    """Exit status 2, nothing on stdout, and stderr exactly these lines."""
    expected = [head, *(line for line in (source, caret) if line is not None)]
    assert (run.status, run.out, run.err) == (2, "", "\n".join(expected) + "\n")


def rewrite(capsys: pytest.CaptureFixture[str], box: Sandbox, path: str | Path,
            tree: str | Path, *extra: str) -> Run:
    # no kernel checks: they say nothing of what an input's errors are or what is written
    return relgen(capsys, "rewrite", path, "--kernel-tree", tree, "-o", box.out, "--from",
                  AUTHOR, "--no-kernel-checks", *extra)


# ------------------------------------------------------ what the file says: positioned errors

# (fixture, line, column, message, source line); the caret follows from line and column
SOURCE_CASES = [
    pytest.param(
        "malformed_no_end.S", 5, 1,
        "procedure relocate_new_kernel is never closed: no END(relocate_new_kernel) or "
        ".endp relocate_new_kernel",
        "GLOBAL_ENTRY(relocate_new_kernel)", id="procedure-without-END"),
    pytest.param(
        "malformed_no_data_area.S", 5, 1,
        "no data area in the control page of relocate_new_kernel: no label followed by "
        ".fill/.skip/.space/.zero between relocate_new_kernel and relocate_new_kernel_end",
        "GLOBAL_ENTRY(relocate_new_kernel)", id="no-data-area"),
    pytest.param(
        "malformed_uncovered_reference.S", 20, 2,
        "movl refers to memory_stack (data area memory_stack) in `memory_stack`; relgen "
        "rewrites only an add that forms the area's address from the position anchor, and no "
        "rule covers this use",
        "\tmovl r9=memory_stack", id="reference-no-rule-covers"),
    pytest.param(
        "malformed_offset_too_far.S", 17, 2,
        "the offset 16368 into memory_stack does not fit the 14-bit immediate of adds "
        "(-8192..8191); relgen will not change the code it generates",
        "\tadd sp=(memory_stack_end - 16 - .reloc_entry),r2", id="offset-beyond-imm14"),
    pytest.param(
        "malformed_early_version.S", 19, 2,
        "this computes memory_stack_end + (memory_stack - .reloc_entry) (r2 holds "
        "memory_stack, set at line 17): memory_stack - .reloc_entry bytes past the end of "
        "memory_stack, outside the area; no rule rewrites it",
        "\tadd sp=(memory_stack_end - .reloc_entry),r2", id="early-version"),
    pytest.param(
        "malformed_undefined_end_label.S", 36, 8,
        "the size word measures to relocate_new_kernel_end, which is never defined",
        "\tdata8\trelocate_new_kernel_end - relocate_new_kernel", id="undefined-end-label"),
]


def caret_under(source: str, column: int) -> str:
    # tabs stay tabs so that the caret lines up in any terminal
    return "".join(c if c == "\t" else " " for c in source[: column - 1]) + "^"


@pytest.mark.parametrize(("name", "line", "column", "message", "source"), SOURCE_CASES)
def test_positioned_source_errors(name: str, line: int, column: int, message: str, source: str,
                                  upstream_tree: Path, toolchain: None, sandbox: Sandbox,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / name
    assert path.read_text(encoding="utf-8").splitlines()[line - 1] == source
    # the file is well-formed assembly: the error is in what it says, not in its syntax
    assert relgen(capsys, "parse", path).status == 0
    run = rewrite(capsys, sandbox, path, upstream_tree)
    assert_error(run, f"{path}:{line}:{column}: error: {message}", source,
                 caret_under(source, column))
    sandbox.assert_nothing_written()


def test_region_without_size_word(upstream_tree: Path, toolchain: None, sandbox: Sandbox,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # the missing line has no position: the error points at the entry it belongs to
    path = FIXTURES / "malformed_no_size_word.S"
    run = rewrite(capsys, sandbox, path, upstream_tree)
    assert_error(run, f"{path}:5:1: error: no size word for the control page: expected a line "
                 "such as `data8 relocate_new_kernel_end - relocate_new_kernel` that says "
                 "where the region of relocate_new_kernel ends; relgen cannot rewrite this "
                 "file (`relgen layout --end-label NAME` maps it)",
                 "GLOBAL_ENTRY(relocate_new_kernel)", "^")
    sandbox.assert_nothing_written()


def test_stub_entry_is_refused_with_its_reason_and_mapped_with_end_label(
        upstream_tree: Path, toolchain: None, sandbox: Sandbox,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "shape_stub_entry.S"
    run = rewrite(capsys, sandbox, path, upstream_tree)
    assert_error(run, f"{path}:10:1: error: no size word for the control page: expected a line "
                 "such as `data8 relocate_new_kernel_end - relocate_new_kernel` that says "
                 "where the region of relocate_new_kernel ends, and relocate_new_kernel here "
                 "is a stub of 4 instructions; relgen cannot rewrite this file (`relgen "
                 "layout --end-label NAME` maps it)",
                 "GLOBAL_ENTRY(relocate_new_kernel)", "^")
    sandbox.assert_nothing_written()
    run = relgen(capsys, "layout", path, "--kernel-tree", upstream_tree, "--end-label",
                 "relocate_new_kernel_end")
    assert run.status == 0
    assert "relocate_new_kernel  code  0x0030" in run.out


# ------------------------------------------------------------ what the file is: read errors


@pytest.mark.parametrize("command", ["parse", "rewrite"])
def test_not_utf8(command: str, upstream_tree: Path, sandbox: Sandbox,
                  capsys: pytest.CaptureFixture[str]) -> None:
    # Latin-1, not UTF-8: its name keeps it out of the fixtures/*.S the other tests decode
    path = FIXTURES / "malformed_not_utf8.S.latin1"
    # the Latin-1 ü of "Jürgen" in a comment, shown as U+FFFD under the caret
    source = "\tdep r2=0,r2,61,3\t\t// J\ufffdrgen: the physical address"
    argv = ["parse", path] if command == "parse" else \
        ["rewrite", path, "--kernel-tree", upstream_tree, "-o", sandbox.out]
    run = relgen(capsys, *argv)
    assert_error(run, f"{path}:15:24: error: not UTF-8: byte 0xfc cannot be decoded",
                 source, "\t                \t\t    ^")
    sandbox.assert_nothing_written()


def test_empty_file(upstream_tree: Path, toolchain: None, sandbox: Sandbox,
                    capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "malformed_empty.S"
    assert path.stat().st_size == 0
    run = rewrite(capsys, sandbox, path, upstream_tree)
    assert_error(run, f"{path}: error: the file is empty")
    sandbox.assert_nothing_written()


def test_empty_file_parses(capsys: pytest.CaptureFixture[str]) -> None:
    # an empty file is valid assembly: `parse --check` gives its zero bytes back
    path = FIXTURES / "malformed_empty.S"
    run = relgen(capsys, "parse", "--check", path)
    assert (run.status, run.err) == (0, "")


@pytest.mark.parametrize("command", ["parse", "rewrite"])
def test_directory_as_path(command: str, upstream_tree: Path, sandbox: Sandbox,
                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = sandbox.root / "relocate_kernel.S"
    folder.mkdir()
    sandbox.snapshot()
    argv = ["parse", folder] if command == "parse" else \
        ["rewrite", folder, "--kernel-tree", upstream_tree, "-o", sandbox.out]
    assert_error(relgen(capsys, *argv), f"{folder}: error: is a directory, not an assembly file")
    sandbox.assert_nothing_written()


@pytest.mark.parametrize("target", ["missing", "dangling-symlink"])
@pytest.mark.parametrize("command", ["parse", "rewrite"])
def test_no_such_file(command: str, target: str, upstream_tree: Path, sandbox: Sandbox,
                      capsys: pytest.CaptureFixture[str]) -> None:
    path = sandbox.root / "relocate_kernel.S"
    if target == "dangling-symlink":
        path.symlink_to(sandbox.root / "gone.S")
        sandbox.snapshot()
    argv = ["parse", path] if command == "parse" else \
        ["rewrite", path, "--kernel-tree", upstream_tree, "-o", sandbox.out]
    assert_error(relgen(capsys, *argv), f"{path}: error: no such file")
    sandbox.assert_nothing_written()


@pytest.mark.parametrize("command", ["parse", "rewrite"])
def test_unreadable_file(command: str, upstream_tree: Path, sandbox: Sandbox,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """A mode-000 file really read, by relgen's own read_bytes: no monkeypatching.

    As root, relgen runs in a child process without the capabilities that let root read
    any file; as anyone else, in this process.
    """
    path = sandbox.root / "relocate_kernel.S"
    path.write_bytes(FIXTURE_2006.read_bytes())
    path.chmod(0)
    sandbox.snapshot()
    argv = ["parse", path] if command == "parse" else \
        ["rewrite", path, "--kernel-tree", upstream_tree, "-o", sandbox.out]
    try:
        if os.geteuid() == 0:
            prefix = without_dac_override(path)
            if prefix is None:
                pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here: "
                            "root reads a mode-000 file")
            child = subprocess.run([*prefix, sys.executable, "-c", CLI_PROGRAM,
                                    *(str(a) for a in argv)], capture_output=True, text=True,
                                   cwd=sandbox.root,
                                   env={**os.environ, "TMPDIR": str(sandbox.scratch)})
            run = Run(child.returncode, child.stdout, child.stderr)
        else:
            run = relgen(capsys, *argv)
        assert_error(run, f"{path}: error: cannot read the file (permission denied)")
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    sandbox.assert_nothing_written()


# ------------------------------------------------- a pipe, as `relgen rewrite <(git show ...)`


@pytest.fixture
def pipe_path() -> Iterator[Path]:
    """/dev/fd/N of a pipe holding the 2006 fixture, its writing end closed: what `<(...)` is."""
    read_end, write_end = os.pipe()
    try:
        data = FIXTURE_2006.read_bytes()
        assert len(data) < 4096  # fits any pipe buffer: the write cannot block
        os.write(write_end, data)
        os.close(write_end)
        write_end = -1
        yield Path(f"/dev/fd/{read_end}")
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


# A pipe is refused before a byte of it is read (issue 17: `relgen parse` read a FIFO to its
# end first, and /dev/zero until it ran out of memory); standard input, `-`, is the way to give
# relgen parse a stream.
PIPE_REFUSED = "error: not a regular file (a FIFO): relgen reads sources from regular files, " \
    "so save it to a file first"


def assert_pipe_unread(pipe: Path) -> None:
    data = FIXTURE_2006.read_bytes()
    assert os.read(int(pipe.name), len(data) + 1) == data


def test_a_pipe_is_refused_unread(pipe_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("parse", pipe_path), ("parse", "--check", pipe_path)):
        assert_error(relgen(capsys, *argv), f"{pipe_path}: {PIPE_REFUSED}")
    assert_pipe_unread(pipe_path)


def test_pipe_rewrite(pipe_path: Path, upstream_tree: Path, toolchain: None, sandbox: Sandbox,
                      capsys: pytest.CaptureFixture[str]) -> None:
    run = rewrite(capsys, sandbox, pipe_path, upstream_tree)
    assert_error(run, f"{pipe_path}: {PIPE_REFUSED}")
    sandbox.assert_nothing_written()
    assert_pipe_unread(pipe_path)


# ------------------------------------------------------------------ the set-up around it


@pytest.mark.parametrize("with_path", [True, False], ids=["PATH-given", "PATH-from-tree"])
def test_kernel_tree_without_arch_ia64(with_path: bool, sandbox: Sandbox,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    empty = sandbox.root / "linux"
    empty.mkdir()
    sandbox.snapshot()
    argv = ["rewrite", *([FIXTURE_2006] if with_path else []), "--kernel-tree", empty,
            "-o", sandbox.out]
    assert_error(relgen(capsys, *argv), f"error: {empty} is not a Linux tree with arch/ia64")
    sandbox.assert_nothing_written()


def test_assembler_missing_from_path(upstream_tree: Path, sandbox: Sandbox,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    cpp = shutil.which("cpp")
    if cpp is None:
        (pytest.fail if IN_CI else pytest.skip)("cpp is missing")
    bin_dir = sandbox.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "cpp").symlink_to(cpp)
    sandbox.snapshot()
    monkeypatch.setenv("PATH", str(bin_dir))
    run = rewrite(capsys, sandbox, FIXTURE_2006, upstream_tree)
    assert_error(run, "error: ia64-linux-gnu-as not found on PATH; install the Debian package "
                 "binutils-ia64-linux-gnu")
    sandbox.assert_nothing_written()


def test_output_path_is_a_file(upstream_tree: Path, sandbox: Sandbox,
                               capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.out.write_text("mine\n")
    sandbox.snapshot()
    for force in ((), ("--force",)):
        run = rewrite(capsys, sandbox, FIXTURE_2006, upstream_tree, *force)
        assert_error(run, f"{sandbox.out}: error: the output path exists and is not a folder")
    assert sandbox.out.read_text() == "mine\n"
    assert sandbox.files() == sandbox.before


def _foreign_folder(box: Sandbox) -> None:
    box.out.mkdir()
    (box.out / "notes.txt").write_text("mine\n")
    box.snapshot()


def test_force_keeps_a_foreign_folder_on_bad_input(upstream_tree: Path, toolchain: None,
                                                   sandbox: Sandbox,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _foreign_folder(sandbox)
    path = FIXTURES / "malformed_no_end.S"
    run = rewrite(capsys, sandbox, path, upstream_tree, "--force")
    assert run.status == 2 and run.err.startswith(f"{path}:5:1: error: procedure ")
    assert (sandbox.out / "notes.txt").read_text() == "mine\n"
    assert sandbox.files() == sandbox.before
    assert sandbox.scratch_left() == []


def test_force_keeps_the_files_of_a_foreign_folder(upstream_tree: Path, toolchain: None,
                                                  sandbox: Sandbox,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _foreign_folder(sandbox)
    run = rewrite(capsys, sandbox, FIXTURE_2006, upstream_tree, "--force")
    assert (run.status, run.err) == (0, "")
    assert run.out.endswith(f" to {sandbox.out}/\n")
    names = sorted(p.name for p in sandbox.out.iterdir())
    assert names == sorted([MARKER, "kexec_control_page.h", "layout-after.svg",
                            "layout-before.svg", "layout.json", "layout.txt", "notes.txt",
                            "relocate_kernel.S", "relocate_kernel.patch"])
    assert (sandbox.out / "notes.txt").read_text() == "mine\n"
    # only the output folder changed: no staging or temporary file is left beside it
    assert sorted(p.name for p in sandbox.root.iterdir()) == ["out", "scratch"]
    assert sandbox.scratch_left() == []
