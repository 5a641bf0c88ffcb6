"""Memory, work and output stay bounded whatever the input (issue 17): a huge expression, deep
nesting, inputs that are not regular files or are too large, and a tool that reports an error
on every line. Each case failed before: 4 GB for a 60,000-term sum, a RecursionError, a FIFO
read to its end, /dev/zero read until MemoryError, 152,884 lines on stderr."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from conftest import AUTHOR, FIXTURES
from relgen import source
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.names import HEADER_NAME, SOURCE_NAME
from relgen.source import expressions as ex
from relgen.source import reading
from relgen.toolchain import assemble

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "relgen.cli"]
SHAPE_2006 = FIXTURES / "layout_2006_shape.S"


def sum_of(terms: int) -> str:
    return "\t.long " + "+".join(["1"] * (terms - 1)) + "+0\n"


def peak_of_parse(text: str) -> tuple[int, source.Module]:
    """The most memory the parse of `text` held at once, in bytes, and what it made."""
    tracemalloc.start()
    try:
        module = source.parse_module(text)
        return tracemalloc.get_traced_memory()[1], module
    finally:
        tracemalloc.stop()


def test_a_60000_term_sum_parses_in_linear_memory() -> None:
    small, _ = peak_of_parse(sum_of(6_000))
    large, module = peak_of_parse(sum_of(60_000))
    assert large < 300 * 2**20  # it took 4 GB when each node kept a copy of its text
    assert large < 15 * small  # ten times the terms, about ten times the memory
    (sum_,) = module.lines[0].items[0].operands
    assert isinstance(sum_, ex.Binary) and "text" not in type(sum_).__slots__
    # a left-deep tree of 60,000 levels: nothing that walks it recurses
    assert ex.linear_form(sum_) == ex.LinearForm({}, 59_999)
    assert sum_ == source.parse_expression(sum_.text) and hash(sum_) == hash(sum_)
    assert repr(sum_).startswith("Binary(left=Binary(left=") and sum_.text == " " + str(sum_)
    assert sum(1 for _ in sum_.walk()) == 119_999


def test_a_sum_of_60000_labels_is_reduced_in_linear_time() -> None:
    labels = source.parse_expression("+".join(f"a{i}" for i in range(60_000)) + "-a0")
    form = ex.linear_form(labels)
    assert len(form.terms) == 59_999 and "a0" not in form.terms
    assert len(ex.symbols_in(labels)) == 60_000


def nested(depth: int) -> str:
    return "\tdata8 " + "(" * depth + "1" + ")" * depth + "\n"


def test_nesting_up_to_the_bound_is_read() -> None:
    expression = source.parse_module(nested(source.MAX_NESTING)).lines[0].items[0].operands[0]
    assert expression.depth == source.MAX_NESTING
    assert ex.linear_form(expression) == ex.LinearForm({}, 1)


@pytest.mark.parametrize(("text", "column"), [
    # the error stands at the parenthesis that opens the level beyond the bound
    (nested(source.MAX_NESTING + 1), 8),
    (nested(1_000), 8 + 1_000 - source.MAX_NESTING - 1),
    (nested(100_000), 8 + 100_000 - source.MAX_NESTING - 1),
    ("\tmov r2=" + "-" * (source.MAX_NESTING + 1) + "1\n", 9),
    ("\tld8 r2=" + "[" * (source.MAX_NESTING + 1) + "r3" + "]" * 101 + "\n", 9),
    ("\tmov r2=" + "F(" * (source.MAX_NESTING + 1) + "1" + ")" * 101 + "\n", 9),
])
def test_nesting_deeper_than_the_bound_is_a_positioned_error(text: str, column: int) -> None:
    with pytest.raises(RelgenError) as caught:
        source.parse_module(text, "deep.S")
    error = caught.value
    assert (error.path, error.line, error.column) == ("deep.S", 1, column)
    assert error.message == (f"expression nested deeper than {source.MAX_NESTING} levels "
                             "(parentheses, brackets, calls and unary operators)")


def test_rewrite_refuses_1000_nested_parentheses_with_a_position(
        upstream_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 9.6 KB relocate_kernel.S with 1,000 nested parentheses crashed rewrite with a
    RecursionError."""
    text = SHAPE_2006.read_text()
    deep = tmp_path / "deep.S"
    deep.write_text(text + nested(1_000))
    line = text.count("\n") + 1
    assert main(["rewrite", str(deep), "--kernel-tree", str(upstream_tree), "-o",
                 str(tmp_path / "out"), "--from", AUTHOR]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{deep}:{line}:907: error: expression nested deeper than ")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------- what relgen reads

NOT_REGULAR = "error: not a regular file ({}): relgen reads sources from regular files, so " \
    "save it to a file first"


def run_cli(*argv: str | Path, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    """relgen as a process, which must end within a minute (it used to wait for a FIFO's
    writer forever)."""
    return subprocess.run([*CLI, *map(str, argv)], capture_output=True, text=True, timeout=60,
                          stdin=stdin, check=False)


def test_dev_zero_is_refused_before_it_is_read() -> None:
    result = run_cli("parse", "/dev/zero")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "/dev/zero: " + NOT_REGULAR.format("a character device") + "\n"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "relocate_kernel.S"
    os.mkfifo(path)
    return path


def output_folder(tmp_path: Path) -> Path:
    """A folder that `verify` takes for rewrite's outputs until it reads the original."""
    out = tmp_path / "out"
    out.mkdir()
    (out / SOURCE_NAME).write_text("\tnop 0\n")
    (out / HEADER_NAME).write_text("\n")
    return out


def test_a_fifo_is_refused_by_every_command_before_it_is_read(
        fifo: Path, upstream_tree: Path, tmp_path: Path) -> None:
    tree = ("--kernel-tree", upstream_tree)
    commands = [("parse", fifo), ("layout", fifo, *tree),
                ("rewrite", fifo, *tree, "-o", tmp_path / "new", "--from", AUTHOR),
                ("verify", output_folder(tmp_path), "--original", fifo, *tree)]
    for argv in commands:
        result = run_cli(*argv)  # no writer ever opens the FIFO: reading it would wait
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr == f"{fifo}: " + NOT_REGULAR.format("a FIFO") + "\n", argv
    assert not (tmp_path / "new").exists()


def test_a_file_over_the_bound_is_refused_in_one_line(tmp_path: Path) -> None:
    big = tmp_path / "big.S"
    with big.open("wb") as stream:  # sparse: no disk, and relgen must not read it
        stream.truncate(reading.MAX_SOURCE_BYTES + 1)
    result = run_cli("parse", big)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"{big}: error: too large: {reading.MAX_SOURCE_BYTES + 1} bytes, "
                             f"and relgen reads at most {reading.MAX_SOURCE_BYTES} bytes "
                             "(MAX_SOURCE_BYTES)\n")


def test_standard_input_is_read_up_to_the_bound() -> None:
    with open(os.devnull, "rb") as empty:
        assert run_cli("parse", "-", stdin=empty.fileno()).returncode == 0
    with open("/dev/zero", "rb") as zeros:
        result = run_cli("parse", "-", stdin=zeros.fileno())
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("<stdin>: error: too large: larger, and relgen reads at most "
                             f"{reading.MAX_SOURCE_BYTES} bytes (MAX_SOURCE_BYTES)\n")


def test_the_bound_of_standard_input_is_its_size(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(reading, "MAX_SOURCE_BYTES", 16)
    for data, status in ((b"\tnop 0\n\tnop 12\n\n", 0), (b"\tnop 0\n\tnop 12\n\n\n", 2)):
        assert len(data) in (16, 17)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["parse", "-"]) == status
    assert capsys.readouterr().err.startswith("<stdin>: error: too large")


# ------------------------------------------------------- what the tools say: the first error

def test_a_tool_that_reports_every_line_gives_one_error_and_a_count(tmp_path: Path) -> None:
    source_path = tmp_path / "many.S"
    source_path.write_text("\tbad\n" * 10_000)
    stderr = "many.s: Assembler messages:\n" + "".join(
        f"many.S:{n}: Error: unknown opcode `bad'\n" for n in range(1, 10_001))
    places = assemble._ReportedFiles("many.S", source_path, None, tmp_path)  # type: ignore
    error = assemble._diagnostic_error("as", stderr, assemble._AS_DIAGNOSTIC, places)
    rendered = error.render().splitlines()
    assert rendered == [
        f"{source_path}:1: error: unknown opcode `bad' (as)",
        "as also said:",
        f"{source_path}:2: Error: unknown opcode `bad'",
        f"{source_path}:3: Error: unknown opcode `bad'",
        f"{source_path}:4: Error: unknown opcode `bad'",
        "and 9996 more",
        "\tbad",
    ]


def test_layout_of_an_input_with_an_error_on_every_line_prints_a_few_lines(
        upstream_tree: Path, toolchain: None, tmp_path: Path) -> None:
    bad = tmp_path / "many.S"
    bad.write_text(SHAPE_2006.read_text().replace(
        "\tmov r8=r0\n", "\tmov r8=r0\n" + "\tadds r2 = 100000, r3\n;;\n" * 2_000, 1))
    result = run_cli("layout", bad, "--kernel-tree", upstream_tree)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    # the first error, three more of the assembler's lines, the count of the rest and the
    # source line (as gives no column, so no caret)
    assert re.fullmatch(rf"{re.escape(str(bad))}:111: error: Operand 2 of `adds' should be "
                        r"a 14-bit integer .*\(ia64-linux-gnu-as\)", lines[0]), lines
    assert lines[1] == "ia64-linux-gnu-as also said:" and lines[5] == "and 1996 more"
    assert lines[6:] == ["\tadds r2 = 100000, r3"]
