"""The lossless parse: round trips, typed statements, expressions, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, identity_pass, upstream_corpus
from relgen import source
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.source import expressions as ex
from relgen.source import parser

FIXTURE_FILES = sorted(FIXTURES.glob("*.S"))
NODE_TYPES = {source.Label, source.Tag, source.Stop, source.Separator, source.BundleOpen,
              source.BundleClose, source.Comment, source.Preprocessor, source.Instruction,
              source.Directive, source.MacroCall, source.Assignment}
EXPR_TYPES = {ex.Symbol, ex.Number, ex.Float, ex.LocalRef, ex.Here, ex.StringLiteral,
              ex.AtName, ex.VersionedName, ex.PastedName, ex.Empty, ex.Paren, ex.Memory,
              ex.Index, ex.Call, ex.Reloc, ex.Unary, ex.Binary}


def kinds(text: str) -> list[str]:
    return [item.kind for _, item in source.parse_module(text).items()]


def test_the_syntax_fixtures_are_found() -> None:
    # the round trip below is parametrized over them: without them it would test nothing
    names = {path.name for path in FIXTURE_FILES}
    assert {"syntax_crlf.S", "syntax_edge_cases.S", "syntax_no_final_newline.S"} <= names


def assert_nodes_only(module: source.Module, text: str) -> None:
    """Every item is one of the node classes, every operand an expression node down to its
    leaves, every text a plain str (no lark Tree or Token leaked from the parse), and every
    line numbered by the newlines before it."""
    offset = 0
    for line in module.lines:
        assert line.number == text.count("\n", 0, offset) + 1, line
        offset += len(line.raw)
        assert type(line.ending) is str
        for item in line.items:
            assert type(item) in NODE_TYPES and type(item.raw) is str, item
            operands = (item.value,) if isinstance(item, source.Assignment) else \
                getattr(item, "operands", ())
            for operand in operands:
                for node in operand.walk():
                    assert type(node) in EXPR_TYPES and type(node.text) is str, node
    assert offset == len(text)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_round_trip(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    module = source.parse_module(text, str(path))
    assert source.unparse(module) == text
    assert source.unparse(identity_pass(module)) == text
    assert_nodes_only(module, text)


def test_corpus_round_trip_and_every_statement_typed(upstream_tree: Path) -> None:
    files = upstream_corpus(upstream_tree)
    assert len(files) == 33
    for path in files:
        text = path.read_bytes().decode("utf-8")
        module = source.parse_module(text, str(path))
        assert source.unparse(module) == text, path
        assert source.unparse(identity_pass(module)) == text, path
        assert_nodes_only(module, text)


def test_crlf_endings_survive_and_statements_are_typed() -> None:
    text = (FIXTURES / "syntax_crlf.S").read_bytes().decode()
    module = source.parse_module(text)
    assert [line.ending for line in module.lines] == ["\r\n"] * 5
    assert kinds(text) == ["comment", "macro_call", "instruction", "stop", "instruction",
                           "macro_call"]


def test_no_final_newline() -> None:
    text = (FIXTURES / "syntax_no_final_newline.S").read_text()
    module = source.parse_module(text)
    assert module.lines[-1].ending == ""
    data = module.lines[-1].items[0]
    assert isinstance(data, source.Instruction) and data.kind == "data"
    assert isinstance(data.operands[0], ex.Binary)
    left, right = data.operands[0].left, data.operands[0].right
    assert left == ex.LocalRef(" 1f", 1, True)
    assert isinstance(right, ex.LocalRef) and not right.forward


def test_tabs_and_stop_right_after_instruction() -> None:
    module = source.parse_module("\tmov r8=r0;;\t// done\n")
    items = module.lines[0].items
    assert [i.kind for i in items] == ["instruction", "stop", "comment"]
    assert items[0].column == 2 and items[1].column == 11
    assert items[0].raw == "\tmov r8=r0"


def test_multiline_block_comment_is_one_item_and_leads_the_next_line() -> None:
    module = source.parse_module((FIXTURES / "syntax_edge_cases.S").read_text())
    first = module.lines[0]
    assert first.is_comment_only and first.items[0].text.count("\n") == 2
    assert source.owner_of_comment_line(module, 0) == 1
    assert isinstance(module.lines[1].items[0], source.Preprocessor)


def test_define_with_continuations_is_one_preprocessor_line() -> None:
    module = source.parse_module((FIXTURES / "syntax_edge_cases.S").read_text())
    define = module.lines[1].items[0]
    assert isinstance(define, source.Preprocessor)
    assert define.directive == "define" and define.text.count("\\\n") == 2
    assert module.lines[2].items[0].directive == "include"  # type: ignore[attr-defined]


def test_bundle_predicate_completers_and_operands() -> None:
    module = source.parse_module((FIXTURES / "syntax_edge_cases.S").read_text())
    statements = [item for _, item in module.items()]
    by_text = {item.text: item for item in statements}
    assert by_text["{"].kind == "bundle_open"
    template = next(i for i in statements if isinstance(i, source.Directive) and i.name == ".mii")
    assert template.operands == ()
    branch = by_text["(p6)\tbr.cond.sptk.few .anchor"]
    assert isinstance(branch, source.Instruction)
    assert branch.predicate == "(p6)" and branch.mnemonic == "br.cond.sptk.few"
    assert branch.operands[0] == ex.Symbol(" .anchor", ".anchor")
    add = by_text["add sp=(area_end - 16 - .anchor),r2"]
    assert isinstance(add, source.Instruction) and add.destinations == 1
    assert ex.linear_form(add.sources[0]) == ex.LinearForm({"area_end": 1, ".anchor": -1}, -16)
    load = by_text["ld8 r18=[r2],(O(B)-O(A))"]
    assert isinstance(load.operands[1], ex.Memory)  # type: ignore[attr-defined]
    kr = by_text["mov r16=IA64_KR(CURRENT_STACK)"]
    assert isinstance(kr.operands[1], ex.Call) and kr.operands[1].name == "IA64_KR"  # type: ignore
    gprel = by_text["movl r17=@gprel(edge_entry)"]
    assert isinstance(gprel.operands[1], ex.Reloc)  # type: ignore[attr-defined]
    rr = by_text["mov rr[r8]=r9"]
    assert isinstance(rr.operands[0], ex.Index)  # type: ignore[attr-defined]
    save = by_text[".save @priunat,r17"]
    assert isinstance(save.operands[0], ex.AtName)  # type: ignore[attr-defined]
    pred_rel = by_text['.pred.rel "mutex", p6, p7']
    assert pred_rel.operands[0] == ex.StringLiteral(' "mutex"', "mutex")  # type: ignore
    paddr = by_text["GET_THIS_PADDR(r2, ia64_cpu_info)"]
    assert isinstance(paddr, source.MacroCall) and paddr.args == ("r2", "ia64_cpu_info")
    fill = by_text[".fill\t64, 1, 0"]
    assert isinstance(fill, source.Directive) and fill.reserves_area and fill.kind == "data"
    assert [i.kind for i in statements if i.line == 29] == ["directive", "separator",
                                                            "instruction"]
    tag = next(i for i in statements if isinstance(i, source.Tag))
    assert tag.name == "1"
    rotr = next(i for i in statements if isinstance(i, source.Directive) and i.name == ".rotr")
    assert len(rotr.operands) == 3  # across a `\` continuation


def test_labels_named_numeric_and_dotted() -> None:
    module = source.parse_module("1:\tnop 0\n.reloc_entry:\nname: data8 0\n")
    labels = [item for _, item in module.items() if isinstance(item, source.Label)]
    assert [label.name for label in labels] == ["1", ".reloc_entry", "name"]
    assert labels[0].is_numeric and not labels[1].is_numeric


def test_with_operands_rebuilds_only_that_statement() -> None:
    text = "\tadd sp=(a_end - 16 - .x),r2\t// why\n"
    module = source.parse_module(text)
    add = module.lines[0].items[0]
    assert isinstance(add, source.Instruction)
    new = add.with_operands([add.operands[0], source.parse_expression("KEXEC_SIZE - 16"),
                             source.parse_expression("in4")])
    line = source.Line((new, *module.lines[0].items[1:]), module.lines[0].ending, 1)
    assert line.raw == "\tadd sp=KEXEC_SIZE - 16,in4\t// why\n"
    # the new line reads back as the same statement
    assert source.parse_module(line.raw).lines[0].items[0] == new


def grouping(expr: ex.Expr) -> str:
    """The expression with every Binary and Unary in brackets: how it was grouped."""
    if isinstance(expr, ex.Binary):
        return f"({grouping(expr.left)} {expr.operator} {grouping(expr.right)})"
    if isinstance(expr, ex.Unary):
        return f"({expr.operator}{grouping(expr.operand)})"
    if isinstance(expr, ex.Index):
        return f"{grouping(expr.base)}[{grouping(expr.index)}]"
    return str(expr)


@pytest.mark.parametrize(("text", "grouped"), [
    # GAS precedence, loosest first: && ||; + - and comparisons; | & ^; * / % << >>
    ("a + b * c", "(a + (b * c))"),
    ("a * b + c", "((a * b) + c)"),
    ("a - b - c", "((a - b) - c)"),
    ("a | b + c & d", "((a | b) + (c & d))"),
    ("a << 2 | b == c && d", "((((a << 2) | b) == c) && d)"),
    ("a && b || c", "((a && b) || c)"),
    ("-a * ~b[1]", "((-a) * (~b[1]))"),
    ("x - -1", "(x - (-1))"),
])
def test_binary_operators_group_by_gas_precedence(text: str, grouped: str) -> None:
    expr = source.parse_expression(text)
    assert grouping(expr) == grouped
    assert expr.text == text
    # inside an instruction the operand is grouped the same way
    add = source.parse_statement(f"\tadd r2={text},r3")
    assert add.operands[1] == expr  # type: ignore[union-attr]


def test_parse_expression_makes_the_nodes_a_file_would_hold() -> None:
    size = source.parse_expression("KEXEC_MEMORY_STACK_SIZE - 16")
    assert size == ex.Binary(ex.Symbol("KEXEC_MEMORY_STACK_SIZE", "KEXEC_MEMORY_STACK_SIZE"),
                             " -", ex.Number(" 16", 16), depth=0)
    assert size.text == "KEXEC_MEMORY_STACK_SIZE - 16" and size.operator == "-"
    assert ex.linear_form(size) == ex.LinearForm({"KEXEC_MEMORY_STACK_SIZE": 1}, -16)
    assert source.parse_expression(" in4") == ex.Symbol(" in4", "in4")
    assert source.parse_expression('"mutex"') == ex.StringLiteral('"mutex"', "mutex")
    assert source.parse_expression("@gprel(x)") == source.parse_statement(
        "\tmovl r2=@gprel(x)").operands[1]  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "column", "words"), [
    ("r2 r3", 4, "unexpected 'r3' here;"),  # no advice about statements: there are none
    ("a ", 3, "unexpected"),
    ("a\n", 2, "unexpected"),
    ("", 1, "unexpected end of file"),
    ("mov r2=r3", 5, "unexpected 'r2' here"),
])
def test_parse_expression_rejects_anything_but_one_operand(text: str, column: int,
                                                          words: str) -> None:
    with pytest.raises(RelgenError) as caught:
        source.parse_expression(text, "new.S")
    error = caught.value
    assert (error.path, error.line, error.column) == ("new.S", 1, column)
    assert error.message.startswith(words)


def test_parse_statement_reads_one_statement() -> None:
    text = "\t(p6) adds r2=KEXEC_MEMORY_STACK_SIZE - 16,in4"
    adds = source.parse_statement(text)
    assert isinstance(adds, source.Instruction)
    assert (adds.raw, adds.line, adds.column) == (text, 1, 2)
    assert (adds.predicate, adds.mnemonic, adds.destinations) == ("(p6)", "adds", 1)
    assert adds.operands[1] == source.parse_expression("KEXEC_MEMORY_STACK_SIZE - 16")
    assert isinstance(source.parse_statement(".fill 64, 1, 0"), source.Directive)
    assert isinstance(source.parse_statement("END(x)"), source.MacroCall)


@pytest.mark.parametrize(("text", "words"), [
    ("\tnop 0;; nop 1", "found instruction, stop, instruction"),
    ("\tnop 0\n", "found instruction, a line ending"),
    ("\tnop 0\t// why", "found instruction, comment"),
    ("x:", "found label"),
    ("", "expected one statement, found nothing"),
])
def test_parse_statement_rejects_anything_else(text: str, words: str) -> None:
    with pytest.raises(RelgenError) as caught:
        source.parse_statement(text, "new.S")
    assert (caught.value.path, caught.value.line, caught.value.column) == ("new.S", 1, 1)
    assert words in caught.value.message


BAD_INPUTS = [
    ("\tmov r2=\n", 1, 9, "an operand is missing after '='"),
    ("\tnop 0\n\tadd r3=r2 r4\n", 2, 12, "unexpected 'r4' here"),
    ("label: ) nop\n", 1, 8, "unexpected"),
    ("\t.fill 8192, 1, 0 ]\n", 1, 19, "unexpected"),
]


@pytest.mark.parametrize(("text", "line", "column", "words"), BAD_INPUTS)
def test_bad_input_position(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(RelgenError) as caught:
        source.parse_module(text, "bad.S")
    error = caught.value
    assert (error.path, error.line, error.column) == ("bad.S", line, column)
    assert words in error.message
    rendered = error.render().splitlines()
    assert rendered[0].startswith(f"bad.S:{line}:{column}: error: ")
    assert rendered[1] == text.splitlines()[line - 1]
    assert rendered[2].index("^") == column - 1


# Whole messages: what the parser expected comes from the grammar's shape (which rules, where
# they reduce), so a change of the grammar that changes what users read shows here.
WHOLE_MESSAGES = [
    ("\tmov r2=\n", "bad.S:1:9: error: an operand is missing after '='"),
    ("\tld8 r2=[r3\n", "bad.S:1:12: error: unexpected 'NEWLINE' here; expected ']'"),
    ("\tmov r2=r3 $\n", "bad.S:1:12: error: unexpected '$' here (two statements on one line "
     "need a ';' or ';;' between them)"),
    ("\tmov r8=r0+", "bad.S:1:12: error: unexpected end of file; expected an @keyword, '!', a "
     "macro call, '.', a dotted name, a floating-point number"),
    # a comma with nothing after it, and two operands side by side: what only directives
    # and GAS macros may have
    ("\tadd r2=r3,\n", "bad.S:1:12: error: an operand is missing after ','"),
    ("\tadd r2=r3,,r4\n", "bad.S:1:12: error: an operand is missing after ','"),
    ("\tadd r2=r3\\\n r4\n", "bad.S:2:2: error: unexpected 'r4' here (two statements on one "
     "line need a ';' or ';;' between them)"),
]


@pytest.mark.parametrize(("text", "first_line"), WHOLE_MESSAGES)
def test_whole_error_messages(text: str, first_line: str) -> None:
    with pytest.raises(RelgenError) as caught:
        source.parse_module(text, "bad.S")
    assert caught.value.render().splitlines()[0] == first_line


def test_cli_bad_input_exit_status_and_message(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text("\tnop 0\n\tadd r3=r2 r4\n")
    assert main(["parse", "--check", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}:2:12: error: unexpected 'r4' here")
    assert err[1] == "\tadd r3=r2 r4" and err[2] == "\t" + " " * 10 + "^"


def test_non_utf8_and_binary_files_are_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin1.S"
    latin.write_bytes(b"\tnop 0\n// caf\xe9\n")
    assert main(["parse", str(latin)]) == 2
    assert f"{latin}:2:7: error: not UTF-8: byte 0xe9" in capsys.readouterr().err
    binary = tmp_path / "object.o"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00")
    assert main(["parse", str(binary)]) == 2
    assert f"{binary}:1:8: error: not a text file" in capsys.readouterr().err
    assert main(["parse", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_cli_check_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "syntax_crlf.S"
    assert main(["parse", "--check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: round trip ok (")
    assert "2 instruction" in out and "2 macro_call" in out
    assert main(["parse", "--json", str(path)]) == 0
    tree = json.loads(capsys.readouterr().out)
    first = tree["statements"][1]
    assert first == {"kind": "macro_call", "text": "GLOBAL_ENTRY(crlf_entry)", "line": 2,
                     "column": 1, "name": "GLOBAL_ENTRY", "args": ["crlf_entry"]}


def test_gas_integers_octal_hex_decimal() -> None:
    operands = source.parse_module("\tdata8 017, 0x1f, 10, 0\n").lines[0].items[0].operands  # type: ignore
    assert [op.value for op in operands] == [15, 31, 10, 0]
    with pytest.raises(RelgenError) as caught:
        source.parse_module("\tmov r8=08\n", "bad.S")
    assert (caught.value.line, caught.value.column) == (1, 9)
    assert caught.value.message.startswith("08 is not a number: GAS reads a leading 0 as octal")


def test_positions_count_only_newlines() -> None:
    # a form feed or a lone CR is white space inside a line, not a line break
    with pytest.raises(RelgenError) as caught:
        source.parse_module("\f\f\fmov r8=r0+", "ff.S")
    assert (caught.value.line, caught.value.column) == (1, 14)  # just past the end
    assert caught.value.source_line == "\f\f\fmov r8=r0+"
    module = source.parse_module("\tnop 0\r\n\f\tnop 1\n\tnop 2\n")
    assert [line.number for line in module.lines] == [1, 2, 3]


def test_the_grammar_from_lark_s_cache_still_builds_relgen_s_nodes(tmp_path: Path) -> None:
    # lark's cache keeps the parse tables, not the transformer: a process that loads the
    # grammar from the cache file must build the same nodes as the one that wrote it
    show = ("import relgen.source as s; item = s.parse_module('\\t(p6) add r2=r3+1,r4\\n')"
            ".lines[0].items[0]; print(type(item).__name__, repr(item))")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), TMPDIR=str(scratch))

    def run() -> str:
        return subprocess.run([sys.executable, "-c", show], env=env, capture_output=True,
                              text=True, check=True).stdout

    cold = run()
    (cached,) = (tmp_path / "relgen").glob("ia64-grammar.lark-*.cache")
    # a private folder: nobody else can plant the pickle lark loads from it
    assert (tmp_path / "relgen").stat().st_mode & 0o777 == 0o700
    assert cached.read_bytes()[:64].decode().isalnum()  # lark's sha256 of the grammar first
    assert list(scratch.iterdir()) == []  # nothing in the temporary folder any more
    warm = run()
    assert cold.startswith("Instruction Instruction(raw='\\t(p6) add r2=r3+1,r4'")
    assert warm == cold


def test_no_grammar_cache_in_a_folder_others_can_write(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert str(parser._grammar_cache()).startswith(str(tmp_path / "relgen" / "ia64-grammar"))
    (tmp_path / "relgen").chmod(0o777)
    assert parser._grammar_cache() is False
