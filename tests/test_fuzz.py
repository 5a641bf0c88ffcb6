"""Property tests over the parser: damaged ia64 assembly must round-trip or fail with a position.

The inputs start from real text, the repository's own tests/fixtures/*.S (so something runs
on any machine), the 33 assembly files of Linux 6.1 arch/ia64 (when the upstream tree is
there) and the 284 of the public corpus of binutils, glibc and gcc (tests/test_corpus.py, when
fetched), and are then damaged: characters dropped, doubled, swapped or replaced, lines cut,
joined, shuffled or duplicated, files truncated; next to that come random bytes (fed through
decode_source, so non-UTF-8 and NUL are covered) and random unicode text.

For every input exactly two outcomes are allowed:
- a clean parse that gives the text back (`unparse(parse(t)) == t`, also after
  `identity_pass`), made of relgen's nodes only, with every line numbered by the newlines
  before it and every item positioned inside the text; or
- a RelgenError with a 1-based line and column inside the input, the offending line shown
  under it, and `render()` starting with `path:line:col: error:`.
Any other exception is a parser defect and fails the test, with hypothesis' minimal input.

Budget: RELGEN_FUZZ_EXAMPLES is the number of examples *in total* over the property tests
(default 400, which keeps a CI run to seconds; `make fuzz` sets 10000), shared out by the
weights in `_BUDGET`. Runs are derandomized (a seed from each test's own name), so CI sees
the same inputs on every run and a failure reproduces without a database; set
RELGEN_FUZZ_RANDOM=1 to explore fresh inputs instead.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, identity_pass, upstream_corpus
from public_corpus import PACKAGES, require_public_corpus
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.source.nodes import Module
from relgen.source.parser import decode_source, parse_module, unparse
from test_syntax import assert_nodes_only

TOTAL_EXAMPLES = int(os.environ.get("RELGEN_FUZZ_EXAMPLES", "400"))
RANDOM = os.environ.get("RELGEN_FUZZ_RANDOM") == "1"

# Shares of the total budget. The corpus tests get the most: their inputs are the closest
# to what relgen really reads, so they reach the deepest parser states.
_BUDGET = {
    "fixture_mutations": 0.15,
    "corpus_mutations": 0.20,
    "public_corpus_mutations": 0.10,
    "corpus_line_soup": 0.15,
    "truncated_files": 0.10,
    "mutated_bytes": 0.10,
    "random_bytes": 0.05,
    "random_text": 0.10,
    "cli": 0.05,
}


def fuzz_settings(name: str) -> settings:
    """Settings for one property test: its share of the budget, no deadline (the first
    example pays for loading the grammar), and no example database, since derandomized runs
    reproduce without one and the checkout stays clean."""
    return settings(
        max_examples=max(1, round(TOTAL_EXAMPLES * _BUDGET[name])),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------------------- the oracle

PATH = "fuzz.S"


def _lines(text: str) -> list[str]:
    """Lines as the parser counts them: only "\\n" ends a line (lark counts no other)."""
    return text.split("\n")


def check_text(text: str, path: str = PATH) -> Module | None:
    """Parse `text`; assert one of the two allowed outcomes. Other exceptions propagate."""
    try:
        module = parse_module(text, path)
    except RelgenError as error:
        check_error(error, _lines(text), path)
        return None
    assert unparse(module) == text
    assert unparse(identity_pass(module)) == text
    assert_nodes_only(module, text)
    lines = _lines(text)
    for _, item in module.items():
        assert 1 <= item.line <= len(lines), (item, len(lines))
        assert 1 <= item.column <= len(lines[item.line - 1]) + 1, item
    return module


def check_bytes(data: bytes, path: str = PATH) -> None:
    """Bytes as relgen reads a file: decode_source, then the parser."""
    try:
        text = decode_source(data, path)
    except RelgenError as error:
        # positions of undecodable input count bytes, not characters
        raw_lines = data.split(b"\n")
        check_error(error, raw_lines, path, compare_source_line=False)
        return
    check_text(text, path)


def check_error(
    error: RelgenError,
    lines: list[str] | list[bytes],
    path: str,
    *,
    compare_source_line: bool = True,
) -> None:
    """A positioned error: line and column set, 1-based, inside the input, rendered as
    `path:line:col: error: ...` and showing the line it points at."""
    assert error.path == path
    assert isinstance(error.line, int) and isinstance(error.column, int), error.render()
    assert 1 <= error.line <= len(lines), (error.render(), len(lines))
    line = lines[error.line - 1]
    # the column may point one past the last character: at the end of the line or file
    assert 1 <= error.column <= len(line) + 1, (error.render(), line)
    rendered = error.render()
    assert rendered.startswith(f"{path}:{error.line}:{error.column}: error: "), rendered
    if compare_source_line:
        # the caret goes under this line, so it must be the one the position names
        assert isinstance(line, str)
        assert error.source_line == line.removesuffix("\r"), (rendered, line)


# ---------------------------------------------------------------------------- the seeds

_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")


def split_keep(text: str) -> list[str]:
    """The lines of `text` with their "\\n" endings, so that "".join() gives it back."""
    return _LINE.findall(text)


@cache
def fixture_texts() -> tuple[str, ...]:
    return tuple(p.read_bytes().decode("utf-8") for p in sorted(FIXTURES.glob("*.S")))


@cache
def corpus_texts(tree: Path) -> tuple[str, ...]:
    return tuple(p.read_bytes().decode("utf-8") for p in upstream_corpus(tree))


@cache
def public_corpus_texts() -> tuple[str, ...]:
    require_public_corpus()
    return tuple(path.read_bytes().decode("utf-8") for files in PACKAGES.values()
                 for path in files())


@cache
def corpus_line_pool(tree: Path) -> tuple[str, ...]:
    return tuple(line for text in corpus_texts(tree) for line in split_keep(text))


# Fragments that steer damage towards the grammar's edges: comment and string openers, line
# continuations, stops, predicates, local labels, macro calls, odd line ends and characters
# Python's str.splitlines() takes for line breaks although lark does not.
_FRAGMENTS = (
    *";{}()[]=,:/*\\#\"'.@!~<>&|^%+-$_0123456789abfx \t",
    "\n", "\r", "\r\n", "\f", "\v", "\x00", "\x1c", "\x85", "\u2028", "\ufeff", "é", "→",
    "//", "/*", "*/", ";;", "\\\n", "(p6)", "(p7) ", "1f", "1b", "1:", "[1:]", "0x", "data8 ",
    ".align 32", ".fill 8192, 1, 0", "GLOBAL_ENTRY(", "END(", ")", "#define X \\\n",
    "@gprel(", "br.ret.sptk.many rp", "alloc r31=ar.pfs,4,4,0,0", "{ .mii", "}",
)


@st.composite
def window(draw: st.DrawFn, texts: tuple[str, ...], max_lines: int = 40) -> str:
    """Consecutive lines of one of `texts`, starting anywhere (inside a comment, too)."""
    lines = split_keep(draw(st.sampled_from(texts)))
    if not lines:
        return ""
    start = draw(st.integers(0, len(lines) - 1))
    count = draw(st.integers(1, max_lines))
    return "".join(lines[start:start + count])


def _at(draw: st.DrawFn, size: int) -> int:
    return draw(st.integers(0, max(0, size - 1)))


def _char_op(draw: st.DrawFn, text: str) -> str:
    what = draw(st.sampled_from(("drop", "double", "swap", "insert", "replace", "cut")))
    i = _at(draw, len(text))
    if what == "drop":
        return text[:i] + text[i + 1:]
    if what == "double":
        return text[:i + 1] + text[i:]
    if what == "swap":
        return text[:i] + text[i + 1:i + 2] + text[i:i + 1] + text[i + 2:]
    fragment = draw(st.one_of(st.sampled_from(_FRAGMENTS), st.characters()))
    if what == "insert":
        return text[:i] + fragment + text[i:]
    if what == "replace":
        return text[:i] + fragment + text[i + 1:]
    return text[:i]  # cut: the file ends here


def _line_op(draw: st.DrawFn, text: str) -> str:
    lines = split_keep(text)
    if not lines:
        return text
    what = draw(st.sampled_from(("delete", "duplicate", "swap", "shuffle", "split", "join")))
    j = _at(draw, len(lines))
    if what == "delete":
        del lines[j]
    elif what == "duplicate":
        lines.insert(j, lines[j])
    elif what == "swap":
        k = _at(draw, len(lines))
        lines[j], lines[k] = lines[k], lines[j]
    elif what == "shuffle":
        lines = draw(st.permutations(lines))
    elif what == "split":
        cut = _at(draw, len(lines[j]))
        lines[j] = lines[j][:cut] + "\n" + lines[j][cut:]
    else:
        lines[j] = lines[j].removesuffix("\n")
    return "".join(lines)


@st.composite
def damaged(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """`base` text with one to six character or line damages."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 6))):
        op: Callable[[st.DrawFn, str], str] = draw(st.sampled_from((_char_op, _line_op)))
        text = op(draw, text)
    return text


@st.composite
def damaged_bytes(draw: st.DrawFn, base: st.SearchStrategy[str]) -> bytes:
    """`base` encoded as UTF-8, then bytes overwritten or inserted (bad UTF-8, NUL, ...)."""
    data = bytearray(draw(base).encode("utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        i = _at(draw, len(data))
        byte = draw(st.sampled_from((0x00, 0x80, 0xBF, 0xC0, 0xC3, 0xE2, 0xF0, 0xFF))
                    | st.integers(0, 255))
        if data and draw(st.booleans()):
            data[i] = byte
        else:
            data.insert(i, byte)
    return bytes(data)


# ---------------------------------------------------------------------------- the tests


@fuzz_settings("fixture_mutations")
@given(text=damaged(window(fixture_texts())))
# Minimal inputs found by this file: lines that str.splitlines() sees and lark does not.
@example(text="\f\f\fmov r8=r0+")
@example(text="\f\f mov r8=r0 r9\n")
@example(text="\x1cmov r8=r0+\n")
def test_damaged_fixtures(text: str) -> None:
    check_text(text)


@fuzz_settings("corpus_mutations")
@given(data=st.data())
def test_damaged_corpus(upstream_tree: Path, data: st.DataObject) -> None:
    check_text(data.draw(damaged(window(corpus_texts(upstream_tree)))))


@fuzz_settings("public_corpus_mutations")
@given(data=st.data())
def test_damaged_public_corpus(data: st.DataObject) -> None:
    """GAS's own tests (its error cases among them), glibc's libm and libgcc, damaged."""
    check_text(data.draw(damaged(window(public_corpus_texts()))))


@fuzz_settings("corpus_line_soup")
@given(data=st.data())
def test_corpus_line_soup(upstream_tree: Path, data: st.DataObject) -> None:
    """Lines of all 33 files in any order and number: a label here, half a bundle there."""
    pool = corpus_line_pool(upstream_tree)
    lines = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=30))
    check_text("".join(lines))


@fuzz_settings("truncated_files")
@given(data=st.data())
def test_truncated_files(upstream_tree: Path, data: st.DataObject) -> None:
    """Whole files cut anywhere: the file may end inside a comment, bundle or procedure."""
    text = data.draw(st.sampled_from(corpus_texts(upstream_tree) + fixture_texts()))
    check_text(text[:data.draw(st.integers(0, len(text)))])


@fuzz_settings("mutated_bytes")
@given(data=damaged_bytes(window(fixture_texts())))
@example(data=b"mov r8=r0\xff\n")
@example(data=b"\xc3\xa9\xc3\xa9 data8 \xc3\n")
@example(data=b"nop.m 0\n\x00")
def test_damaged_bytes(data: bytes) -> None:
    check_bytes(data)


@fuzz_settings("random_bytes")
@given(data=st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    check_bytes(data)


@fuzz_settings("random_text")
# A number with a leading zero ("A!01" shrunk from random text): GAS reads it as octal.
@example(text="mov r8=01\n")
@given(
    text=st.one_of(
        st.text(max_size=200),
        # text over the assembly alphabet goes past the first token far more often
        st.lists(st.sampled_from(_FRAGMENTS) | st.from_regex(r"[a-z0-9.]{1,8}", fullmatch=True),
                 max_size=60).map("".join),
    )
)
def test_random_text(text: str) -> None:
    check_text(text)


@fuzz_settings("cli")
@given(data=damaged_bytes(window(fixture_texts()))
       | damaged(window(fixture_texts())).map(lambda text: text.encode("utf-8")))
def test_cli_parse_check(data: bytes) -> None:
    """`relgen parse --check` on a written file: 0 (round trip ok) or 2 (positioned error);
    1 would mean a parse that does not give the file back."""
    # not capsys: a function-scoped fixture is not reset between hypothesis examples
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.S"
        path.write_bytes(data)
        with redirect_stdout(out), redirect_stderr(err):
            status = main(["parse", "--check", str(path)])
    assert status in (0, 2), (status, out.getvalue(), err.getvalue())
    if status == 2:
        assert err.getvalue().startswith(f"{path}:"), err.getvalue()
