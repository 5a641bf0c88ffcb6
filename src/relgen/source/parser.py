"""The parser: ia64 assembly text to nodes (`parse_module`), and nodes back to text.

This is the only module that knows lark (the grammar is `ia64.lark` beside it). The nodes
are built during lark's LALR parse by `relgen.source.builder`, so no lark tree is walked
again. `unparse(parse_module(text)) == text` always holds. New syntax for an edit comes from
text too: `parse_statement()` and `parse_expression()` read it with the same grammar.
Reading files (bounded, regular files only) is `relgen.source.reading`'s.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
from pathlib import Path

import lark
from lark import (
    Lark,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.exceptions import UnexpectedEOF

from relgen import caches
from relgen.errors import RelgenError
from relgen.source import expressions as ex
from relgen.source.builder import BuildError, NodeBuilder, gas_integer, position
from relgen.source.nodes import (
    STATEMENT_TYPES,
    Assignment,
    Directive,
    Instruction,
    MacroCall,
    Module,
    source_line,
)
from relgen.source.reading import MAX_SOURCE_BYTES, decode_source, read_source, read_stream
from relgen.source.spacing import strip_space

__all__ = [
    "GRAMMAR", "MAX_SOURCE_BYTES", "decode_source", "gas_integer", "parse_expression",
    "parse_module", "parse_statement", "read_source", "read_stream", "unparse",
]

#: The LALR grammar of GNU ia64 assembly with the C preprocessor lines and macros.
GRAMMAR = Path(__file__).with_name("ia64.lark")

# The grammar's entry points: a whole file, and one operand alone (`parse_expression`).
_FILE_START = "start"
_EXPRESSION_START = "expression"


def _grammar_cache() -> str | bool:
    """Where lark keeps the compiled grammar: a file in the user's own cache folder
    ($XDG_CACHE_HOME/relgen, else ~/.cache/relgen), named for lark's and Python's versions.

    Not lark's default, the shared temporary folder: lark unpickles that file, and another
    local user could plant it there. lark still checks the grammar's sha256 in the file and
    rebuilds it when the grammar changed. No cache (False) where no private folder is had.
    """
    try:
        folder = caches.cache_folder()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = folder.stat()
    except OSError:  # caches.NoCacheFolder among them: no home folder to be found
        return False
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        return False
    python = "{}.{}".format(*sys.version_info[:2])
    return str(folder / f"ia64-grammar.lark-{lark.__version__}.py{python}.cache")


# Each thread's parser and node builder (relgen's checks run in threads). The builder
# remembers what it has read of the file (the GAS macros it defined), so no two parses may
# share one at once.
_PER_THREAD = threading.local()


def _parser() -> tuple[Lark, NodeBuilder]:
    """This thread's parser and the node builder it calls back."""
    made = getattr(_PER_THREAD, "parser", None)
    if made is None:
        builder = NodeBuilder()
        made = _PER_THREAD.parser = (_new_parser(builder), builder)
    return made


def _new_parser(builder: NodeBuilder) -> Lark:
    return Lark.open(
        str(GRAMMAR),
        parser="lalr",
        lexer="contextual",
        start=[_FILE_START, _EXPRESSION_START],
        # The nodes are built during the parse: lark makes no tree for the builder to walk
        # again; with the grammar's few reductions that halved the corpus parse time
        # (bench/run.py, section a). lark's cache holds the tables, not the transformer,
        # which is given again when the cache is loaded.
        transformer=builder,
        # Positions come from the tokens, which lark always keeps.
        propagate_positions=False,
        maybe_placeholders=False,
        cache=_grammar_cache(),
    )


# Human words for the grammar's terminals, used in error messages.
_TERMINAL_WORDS = {
    "NAME": "a name", "DOTNAME": "a dotted name", "NUMBER": "a number",
    "LOCALREF": "a local label reference", "NEWLINE": "the end of the line",
    "COMMA": "','", "EQ": "'='", "COLON": "':'", "LPAREN": "'('", "RPAREN": "')'",
    "LBRACKET": "'['", "RBRACKET": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "STOP": "';;'", "SEMI": "';'", "COMMENT": "a comment", "STRING": "a string",
    "PREDICATE": "a predicate", "CALL_NAME": "a macro call", "MACRO_ARGS": "macro arguments",
    "PP": "a preprocessor line", "$END": "the end of the file", "TAG": "a tag",
    "EOF_SPACE": "white space at the end of the file", "DOT": "'.'",
    "AT_NAME": "an @keyword", "RELOC_OP": "a relocation operator", "BANG": "'!'",
    "TILDE": "'~'", "MINUS": "'-'", "PLUS": "'+'", "FLOAT": "a floating-point number",
    "EQEQ": "'=='", "DOUBLE_COLON": "'::'",
}


def _describe_terminal(name: str) -> str:
    return _TERMINAL_WORDS.get(name, f"'{name.lower()}'")


def _error_from_lark(error: UnexpectedInput, text: str, path: str,
                     in_statement: bool = True) -> RelgenError:
    """A RelgenError at the place lark stopped. `in_statement` is False for an operand
    read alone, where no advice about statements on one line applies."""
    line = error.line if isinstance(error.line, int) and error.line > 0 else 1
    column = error.column if isinstance(error.column, int) and error.column > 0 else 1
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        line, column = position(token)
        what = strip_space(token).split("\n")[0][:40] or token.type
        message = f"unexpected {what!r} here"
        if token.type == "NAME" and in_statement:
            message += " (two statements on one line need a ';' or ';;' between them)"
    elif isinstance(error, UnexpectedCharacters):
        octal = re.match(r"0[0-9]+", text[error.pos_in_stream:])
        if octal:
            message = (f"{octal.group(0)} is not a number: GAS reads a leading 0 as octal, "
                       "which has no 8 or 9")
        else:
            message = f"unexpected character {text[error.pos_in_stream]!r}"
    elif isinstance(error, UnexpectedEOF | UnexpectedToken):
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
        message = "unexpected end of file"
    else:  # pragma: no cover - lark has no other kinds
        message = str(error).splitlines()[0]
    expected = sorted(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())
    words = [_describe_terminal(e) for e in expected if not e.startswith("__")][:6]
    if words:
        message += "; expected " + ", ".join(words)
    return RelgenError(message, path, line, column, source_line(text, line))


def parse_module(text: str, path: str = "<input>") -> Module:
    """Parse ia64 assembly text into a Module; RelgenError with a position on bad input."""
    return Module(_parse(text, path, _FILE_START), path)


def _parse(text: str, path: str, start: str):  # noqa: ANN202 - what the entry point builds
    parser, builder = _parser()  # outside the `try`: an error in the grammar is not in `text`
    # The nodes hold no reference cycles: the cyclic garbage collector, which would scan every
    # node made so far again and again, has nothing to find while they are built.
    collecting = gc.isenabled()
    gc.disable()
    builder.begin()
    try:
        return parser.parse(text, start=start)
    except UnexpectedInput as error:
        raise _error_from_lark(error, text, path, in_statement=start == _FILE_START) from None
    except BuildError as error:
        raise RelgenError(error.message, path, error.line, error.column,
                          source_line(text, error.line)) from None
    finally:
        if collecting:
            gc.enable()


# New syntax for a rewrite is made by parsing its text with the grammar, never by putting
# strings into nodes by hand: the node is then what the file would hold, with its parts.


def parse_expression(text: str, path: str = "<new text>") -> ex.Expr:
    """One operand from its text, as the grammar reads it in an instruction.

    `parse_expression("KEXEC_MEMORY_STACK_SIZE - 16")` is a `Binary` of a `Symbol` and a
    `Number`, ready for `Instruction.with_operands`. White space before the operand stays in
    its `text`, as it would in a file; white space or anything else after it is an error.
    RelgenError, positioned in `text` under `path`, when `text` is not one operand.
    """
    return _parse(text, path, _EXPRESSION_START)


def parse_statement(text: str, path: str = "<new text>"
                    ) -> Instruction | Directive | MacroCall | Assignment:
    """One statement (instruction, directive, macro call or symbol assignment) from its text.

    `parse_statement("\tadds r2=KEXEC_MEMORY_STACK_SIZE - 16,in4")` is the `Instruction` a
    file with that line would hold: its `raw` is `text`, its position line 1 of `text` (give
    it its place in a module with `dataclasses.replace(item, line=..., column=...)`).
    RelgenError when `text` is anything but one statement: no newline, no comment, no stop.
    """
    module = parse_module(text, path)
    items = [item for _, item in module.items()]
    if (len(module.lines) == 1 and module.lines[0].ending == "" and len(items) == 1
            and isinstance(items[0], STATEMENT_TYPES)):
        return items[0]  # type: ignore[return-value]
    found = [item.kind for item in items]
    if any(line.ending for line in module.lines):
        found.append("a line ending")
    message = (f"expected one statement and nothing else, found {', '.join(found)}" if found
               else "expected one statement, found nothing")
    raise RelgenError(message, path, 1, 1, source_line(text, 1))


def unparse(module: Module) -> str:
    """The text of the module: the original bytes for every item not replaced."""
    return "".join(line.raw for line in module.lines)
