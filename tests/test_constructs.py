"""The GNU ia64 constructs beyond the kernel's own (issue 21): each is read as a node a rewrite
can see, on tests/fixtures/syntax_gas_constructs.S (written for relgen) and on small texts."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import FIXTURES
from relgen import source
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.source import expressions as ex

CONSTRUCTS = FIXTURES / "syntax_gas_constructs.S"


@pytest.fixture(scope="module")
def statements() -> dict[int, source.Item]:
    """The first item that is no comment on each line of the fixture, by line number."""
    module = source.parse_module(CONSTRUCTS.read_text(), str(CONSTRUCTS))
    by_line: dict[int, source.Item] = {}
    for _, item in module.items():
        if item.kind != "comment":
            by_line.setdefault(item.line, item)
    return by_line


def test_symbol_assignments_name_their_symbol_and_value(statements: dict) -> None:
    alias, equivalence = statements[5], statements[6]
    assert isinstance(alias, source.Assignment)
    assert (alias.name, alias.operator, alias.value) == ("rArg", "=", ex.Symbol(" r32", "r32"))
    assert isinstance(equivalence, source.Assignment) and equivalence.operator == "=="
    assert ex.linear_form(equivalence.value, {"rArg": 3}) == ex.LinearForm({}, 6)
    # a new value keeps the name and its spacing, as with_operands does for instructions
    changed = equivalence.with_value(source.parse_expression(" 16"))
    assert changed.raw == "limit\t\t== 16" and changed.value == ex.Number(" 16", 16)
    assert source.parse_statement("x = y - 1") == source.parse_module("x = y - 1").lines[0].items[0]


def test_a_pound_suffix_names_the_same_symbol(statements: dict) -> None:
    section, proc, call, load, end = (statements[n] for n in (7, 8, 10, 11, 18))
    assert section.operands[0] == ex.Symbol(" .text.pound#", ".text.pound")
    assert proc.operands[0] == ex.Symbol("\tfirst#", "first") == end.operands[0]
    assert call.sources[0] == ex.Symbol(" memcpy#", "memcpy")
    ltoff = load.sources[0]
    assert isinstance(ltoff, ex.Reloc) and ltoff.operator == "@ltoff"
    assert isinstance(ltoff.operand, ex.Reloc) and ltoff.operand.operator == "@fptr"
    assert ex.symbols_in(ltoff) == {"first"} and str(ltoff) == "@ltoff(@fptr(first#))"
    assert statements[12].predicate == "(p#[0])"
    rotating = source.parse_expression("p#[0]")
    assert isinstance(rotating, ex.Index) and rotating.base == ex.Symbol("p#", "p")
    first = statements[9]
    assert isinstance(first, source.Label) and (first.name, first.is_global) == ("first", True)


def test_macro_calls_with_blanks_before_the_parenthesis(statements: dict) -> None:
    alias, nested = statements[20], statements[21]
    assert isinstance(alias, source.MacroCall)
    assert (alias.name, alias.args) == ("weak_alias", ("first", "second"))
    assert (nested.name, nested.args) == ("DO_CALL", ("SYS_ify (clone)",))
    operand = statements[13].sources[0]
    assert isinstance(operand, ex.Call) and operand.name == "SYS_ify"
    assert operand.args == (ex.Symbol("clone2", "clone2"),)
    # a data pseudo-op is no macro: its operand is a parenthesized expression
    data = statements[14]
    assert isinstance(data, source.Instruction) and data.mnemonic == "data8"
    assert isinstance(data.operands[0], ex.Paren) and data.operands[1].value == 5


def test_symbol_versions_floats_and_keywords(statements: dict) -> None:
    version = statements[19].operands[1]
    assert isinstance(version, ex.VersionedName)
    assert (version.name, version.binding, version.version) == ("first", "@@", "VERS_1.0")
    assert statements[15].operands == (ex.Float("\t0.2", "0.2"),)
    mutex, keyword = statements[16], statements[17]
    # .pred.rel takes its class without a comma after it, as a string or an @keyword
    assert [op.kind for op in mutex.operands] == ["string", "symbol", "symbol"]
    assert mutex.separators == ("", ",")
    assert keyword.operands[0] == ex.AtName(" @mutex", "@mutex")


def test_gas_macros_their_bodies_and_their_calls(statements: dict) -> None:
    begin = statements[24]
    assert isinstance(begin, source.Directive) and begin.name == ".macro"
    assert [str(op) for op in begin.operands] == ["begin", "n", "attr"]
    pasted = statements[25].operands[0]
    assert isinstance(pasted, ex.PastedName) and pasted.parameters == ("n",)
    label = statements[26]
    assert isinstance(label, source.Label) and label.name == "_&n"
    # in a macro body an instruction is a template: its parameters may stand side by side
    template = statements[29]
    assert isinstance(template, source.Instruction) and template.mnemonic == "op"
    assert template.separators == ("",)
    assert ex.symbols_in(template.operands[1]) == {"_e", "op", "_"}
    kind = statements[32]
    assert kind.name == ".\\kind" and kind.operands[0].parameters == ("kind",)
    # a call of a macro defined above is a macro call, with an empty last argument
    calls = [statements[n] for n in (35, 36, 37)]
    assert all(isinstance(call, source.MacroCall) for call in calls)
    assert [call.args for call in calls] == [("mov", '"ax"'), ("mov", "r2 ="), ("global",)]


def test_gas_comment_lines_are_comments_and_cpp_lines_are_cpp() -> None:
    module = source.parse_module(CONSTRUCTS.read_text())
    include, comment = module.lines[1].items[0], module.lines[2].items[0]
    assert isinstance(include, source.Preprocessor) and include.directive == "include"
    assert isinstance(comment, source.Comment) and comment.text.startswith("# a GAS line")


@pytest.mark.parametrize(("text", "words"), [
    # what only directives and GAS macros may have, refused in an instruction elsewhere
    ("\tm1 mov, r2 =\n", "1:14: error: an operand is missing after '='"),
    ("\top opnd1 x\n", "1:11: error: unexpected 'x' here"),
    # a macro is known from its .macro on: a call before it is an instruction
    ("\tm1 mov, r2 =\n\t.macro m1 a, b\n\t.endm\n", "1:14: error: an operand is missing"),
    # after .endm the body is over, and after .purgem the macro
    ("\t.macro m a\n\t.endm\n\top a b\n", "3:7: error: unexpected 'b' here"),
    ("\t.macro m a\n\t.endm\n\tm x,\n\t.purgem m\n\tm x,\n",
     "5:6: error: an operand is missing after ','"),
])
def test_templates_only_inside_macros(text: str, words: str) -> None:
    with pytest.raises(RelgenError) as caught:
        source.parse_module(text, "t.S")
    assert caught.value.render().splitlines()[0].startswith(f"t.S:{words}")


def test_a_rewrite_sees_the_template_in_a_repetition() -> None:
    module = source.parse_module("\t.irp reg, r2, r3\n\tmov \\reg = 0 r0\n\t.endr\n")
    body = module.lines[1].items[0]
    assert isinstance(body, source.Instruction) and body.separators == (" =", "")
    assert body.operands[0] == ex.PastedName(" \\reg", "\\reg")


def test_parse_json_shows_the_new_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "--json", str(CONSTRUCTS)]) == 0
    document = json.loads(capsys.readouterr().out)
    by_line = {s["line"]: s for s in document["statements"] if s["kind"] != "comment"}
    assert by_line[5] == {"kind": "assignment", "text": "rArg\t\t= r32", "line": 5,
                          "column": 1, "name": "rArg", "operator": "=",
                          "value": {"kind": "symbol", "text": "r32", "name": "r32"}}
    assert by_line[9]["global"] is True
    assert by_line[10]["operands"][1] == {"kind": "symbol", "text": "memcpy#",
                                          "name": "memcpy"}
    assert by_line[15]["operands"] == [{"kind": "float", "text": "0.2", "literal": "0.2"}]
    assert by_line[19]["operands"][1] == {"kind": "versioned_name", "text": "first@@VERS_1.0",
                                          "name": "first", "binding": "@@",
                                          "version": "VERS_1.0"}
    assert by_line[25]["operands"][0] == {"kind": "pasted_name", "text": ".&n",
                                          "parameters": ["n"]}
    assert by_line[36] == {"kind": "macro_call", "text": "twice\tmov, r2 =", "line": 36,
                           "column": 2, "name": "twice", "args": ["mov", "r2 ="]}
    assert document["counts"]["assignment"] == 2


def test_threads_parse_side_by_side() -> None:
    """What the builder remembers of a file (its GAS macros, an open macro body) is each
    thread's own: relgen's checks run in threads."""
    text = CONSTRUCTS.read_text()
    expected = [item.kind for _, item in source.parse_module(text).items()]
    start = threading.Barrier(4)
    results: list[object] = []

    def parse_repeatedly() -> None:
        start.wait()
        try:
            for _ in range(25):
                results.append([item.kind for _, item in source.parse_module(text).items()])
        except RelgenError as error:
            results.append(error)

    threads = [threading.Thread(target=parse_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 100
