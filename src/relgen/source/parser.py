"""The parser: ia64 assembly text to nodes (`parse_module`), and nodes back to text.

This is the only module that knows lark (the grammar is `ia64.lark` beside it). The nodes
are built during lark's LALR parse, so no lark tree is walked again. `unparse(parse_module(
text)) == text` always holds. New syntax for an edit comes from text too:
`parse_statement()` and `parse_expression()` read it with the same grammar.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import lark
from lark import (
    Lark,
    Token,
    Transformer,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.exceptions import UnexpectedEOF

from relgen import caches
from relgen.errors import RelgenError
from relgen.source import expressions as ex
from relgen.source.nodes import (
    BLANK,
    LEADING_SPACE,
    STATEMENT_TYPES,
    BundleClose,
    BundleOpen,
    Comment,
    Directive,
    Instruction,
    Item,
    Label,
    Line,
    MacroCall,
    Module,
    Preprocessor,
    Separator,
    Stop,
    Tag,
    source_line,
    strip_space,
)

#: The LALR grammar of GNU ia64 assembly with the C preprocessor lines and kernel macros.
GRAMMAR = Path(__file__).with_name("ia64.lark")

# The grammar's entry points: a whole file, and one operand alone (`parse_expression`).
_FILE_START = "start"
_EXPRESSION_START = "expression"


def _position(token: Token) -> tuple[int, int]:
    """Line and column of the first non-space character of a token."""
    rest = token.lstrip(BLANK)
    if rest[:1] != "\\":  # no `\` continuation in the white space, so no newline either
        return token.line, token.column + len(token) - len(rest)
    prefix = LEADING_SPACE.match(token).group(0)  # type: ignore[union-attr]
    line = token.line + prefix.count("\n")
    if "\n" in prefix:
        return line, len(prefix) - prefix.rfind("\n")
    return line, token.column + len(prefix)


def _line_number(items: Sequence[Item], ending: Token | None) -> int:
    """Where a line starts: where its first token starts, white space included. That is
    its first item's, or, on a line without items, its ending's."""
    if not items:
        assert ending is not None, "a line holds an item or ends in a token"
        return ending.line
    first = items[0]
    if first.raw.lstrip(BLANK)[:1] != "\\":
        return first.line
    # a `\` continuation before the first item: the item stands on a later physical line
    return first.line - LEADING_SPACE.match(first.raw).group(0).count("\n")  # type: ignore


def _text(children: Sequence[Token | ex.Expr]) -> str:
    """The exact text of tokens and expressions in a row."""
    return "".join(child if isinstance(child, str) else child.text for child in children)


def gas_integer(text: str) -> int:
    """A GAS integer literal: 0x... hexadecimal, a leading 0 octal, else decimal."""
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    return int(text, 8) if len(text) > 1 and text[0] == "0" else int(text, 10)


def split_macro_args(text: str) -> tuple[str, ...]:
    """`(a, (b, c), d)` -> ('a', '(b, c)', 'd'), each stripped."""
    inner = text[1:-1]
    args: list[str] = []
    depth = 0
    start = 0
    for i, char in enumerate(inner):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    if inner.strip() or args:
        args.append(inner[start:].strip())
    return tuple(args)


_PREPROCESSOR_DIRECTIVE = re.compile(r"[A-Za-z_]*")

# How tightly each binary operator binds in GAS: && || loosest, then + - and comparisons,
# then | & ^, then * / % << >>.
_BINDING = {
    "LOGIC": 1, "PLUS": 2, "MINUS": 2, "CMP": 2, "PIPE": 3, "AMP": 3, "CARET": 3,
    "STAR": 4, "SLASH": 4, "PERCENT": 4, "SHL": 4, "SHR": 4,
}


def _combine(operands: list[ex.Expr], operator: Token) -> None:
    """Replace the last two operands by their Binary under `operator`."""
    right = operands.pop()
    left = operands.pop()
    operands.append(ex.Binary(left.text + operator + right.text, strip_space(operator),
                              left, right))


def _splice(children: list, at: int) -> None:
    """Put the items of a grown list (`_ToNodes._grow`) in its place among `children`,
    the first child (`at` 0) or the last (`at` -1), where the rule has one there."""
    if children and type(children[at]) is list:
        children[at:at + 1 or None] = children[at]


class _ToNodes(Transformer):
    """Builds relgen nodes during the LALR parse (lark's `transformer=`): no lark tree.

    lark calls the method named after a rule (or its alias) with the rule's children:
    tokens, which stay raw, and the nodes already built below; and the method named after a
    terminal (upper case) with each token of it as it is read. Item positions come from
    their first token. The methods take the children list as lark passes it, not through
    `v_args`, which would add two function calls to every node.
    """

    # --- expressions
    def symbol(self, children: list[Token]) -> ex.Symbol:
        token = children[0]
        return ex.Symbol(str(token), strip_space(token))

    def number(self, children: list[Token]) -> ex.Number:
        token = children[0]
        return ex.Number(str(token), gas_integer(strip_space(token)))

    # Tokens that are whole expressions, read as nodes when lark shifts them: lark calls
    # the method named after the terminal.
    def LOCALREF(self, token: Token) -> ex.LocalRef:
        text = strip_space(token)
        return ex.LocalRef(str(token), int(text[:-1]), text.endswith("f"))

    def DOT(self, token: Token) -> ex.Here:
        return ex.Here(str(token))

    def STRING(self, token: Token) -> ex.StringLiteral:
        return ex.StringLiteral(str(token), strip_space(token)[1:-1])

    def AT_NAME(self, token: Token) -> ex.AtName:
        return ex.AtName(str(token), strip_space(token))

    def paren(self, children: list) -> ex.Paren:
        return ex.Paren(_text(children), children[1])

    def memory(self, children: list) -> ex.Memory:
        return ex.Memory(_text(children), children[1])

    def index(self, children: list) -> ex.Index:
        return ex.Index(_text(children), children[0], children[2])

    def call(self, children: list) -> ex.Call:
        # NAME ( arg , arg ... ): the arguments stand at every other place
        return ex.Call(_text(children), strip_space(children[0]), tuple(children[2:-1:2]))

    def reloc(self, children: list) -> ex.Reloc:
        return ex.Reloc(_text(children), strip_space(children[0]), children[2])

    def unary(self, children: list) -> ex.Unary:
        return ex.Unary(_text(children), strip_space(children[0]), children[1])

    def binary_chain(self, children: list) -> ex.Expr:
        """`a + b * c`, read flat by the grammar, grouped by GAS precedence (left to right
        within a level) with an operator stack."""
        if len(children) == 1:  # an aliased `?` rule is called for a lone operand too
            return children[0]
        operands: list[ex.Expr] = [children[0]]
        pending: list[Token] = []
        for i in range(1, len(children), 2):
            operator = children[i]
            binding = _BINDING[operator.type]
            while pending and _BINDING[pending[-1].type] >= binding:
                _combine(operands, pending.pop())
            pending.append(operator)
            operands.append(children[i + 1])
        while pending:
            _combine(operands, pending.pop())
        return operands[0]

    def expression(self, children: list[ex.Expr]) -> ex.Expr:
        return children[0]

    # --- items
    def label(self, children: list[Token]) -> Label:
        name_token = children[0]
        line, column = _position(name_token)
        return Label(_text(children), line, column, name=strip_space(name_token))

    # Tokens that are whole items, read as nodes when lark shifts them.
    def TAG(self, token: Token) -> Tag:
        return Tag(str(token), *_position(token), name=strip_space(token).strip("[]: \t"))

    def STOP(self, token: Token) -> Stop:
        return Stop(str(token), *_position(token))

    def SEMI(self, token: Token) -> Separator:
        return Separator(str(token), *_position(token))

    def LBRACE(self, token: Token) -> BundleOpen:
        return BundleOpen(str(token), *_position(token))

    def RBRACE(self, token: Token) -> BundleClose:
        return BundleClose(str(token), *_position(token))

    def COMMENT(self, token: Token) -> Comment:
        return Comment(str(token), *_position(token))

    def PP(self, token: Token) -> Preprocessor:
        body = strip_space(token)[1:].lstrip(" \t")
        directive = _PREPROCESSOR_DIRECTIVE.match(body).group(0)  # type: ignore[union-attr]
        return Preprocessor(str(token), *_position(token), directive=directive)

    # Repetitions (`operands`, `items`, `lines`) are left recursion in the grammar, `x: y |
    # x y`: the first reduction's children start a list, each later one grows it.
    def _grow(self, children: list) -> list:
        grown = children[0]
        if type(grown) is list:
            grown += children[1:]
            return grown
        return children

    operands = items = lines = _grow

    def instruction(self, children: list) -> Instruction:
        # [PREDICATE] NAME, then operands and their `,`/`=` separators taking turns
        _splice(children, -1)
        first = children[0]
        head_length = 2 if first.type == "PREDICATE" else 1
        separators = children[head_length + 1::2]
        destinations = next(
            (n + 1 for n, separator in enumerate(separators) if separator.type == "EQ"), 0
        )
        return Instruction(
            _text(children), *_position(first),
            predicate=strip_space(first) if head_length == 2 else None,
            mnemonic=strip_space(children[head_length - 1]),
            operands=tuple(children[head_length::2]),
            separators=tuple(str(separator) for separator in separators),
            destinations=destinations, head="".join(children[:head_length]),
        )

    def directive(self, children: list) -> Directive:
        # DOTNAME, then operands and their separators taking turns
        _splice(children, -1)
        first = children[0]
        return Directive(_text(children), *_position(first), name=strip_space(first),
                         operands=tuple(children[1::2]))

    def macro_call(self, children: list[Token]) -> MacroCall:
        name, args = children
        return MacroCall(name + args, *_position(name), name=strip_space(name),
                         args=split_macro_args(args))

    # --- lines
    def line(self, children: list) -> Line:
        ending = children.pop()
        _splice(children, 0)
        return Line(tuple(children), str(ending), _line_number(children, ending))

    def last_line(self, children: list) -> Line:
        _splice(children, 0)
        # no newline: the line ends in white space (the one token among nodes) or nothing
        if isinstance(children[-1], Token):
            space = children.pop()
            return Line(tuple(children), str(space), _line_number(children, space))
        return Line(tuple(children), "", _line_number(children, None))

    def start(self, children: list) -> tuple[Line, ...]:
        # [lines] [last_line]
        _splice(children, 0)
        return tuple(children)


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


@cache
def _parser() -> Lark:
    return Lark.open(
        str(GRAMMAR),
        parser="lalr",
        lexer="contextual",
        start=[_FILE_START, _EXPRESSION_START],
        # The nodes are built during the parse: lark makes no tree for `_ToNodes` to walk
        # again; with the grammar's few reductions that halved the corpus parse time
        # (bench/run.py, section a). lark's cache holds the tables, not the transformer,
        # which is given again when the cache is loaded.
        transformer=_ToNodes(),
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
    "TILDE": "'~'", "MINUS": "'-'", "PLUS": "'+'",
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
        line, column = _position(token)
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


def decode_source(data: bytes, path: str) -> str:
    """Bytes -> text, strictly UTF-8; a NUL byte or bad UTF-8 is a positioned error."""
    if b"\0" in data:
        offset = data.index(b"\0")
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise RelgenError("not a text file (it holds a NUL byte)", path, line, column)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        line_start = data.rfind(b"\n", 0, error.start) + 1
        # in characters, so that the caret stands under the byte in the decoded line
        column = len(data[line_start:error.start].decode("utf-8", "replace")) + 1
        bad = data[error.start:error.start + 1].hex()
        source = data.split(b"\n")[line - 1].decode("utf-8", "replace").rstrip("\r")
        raise RelgenError(f"not UTF-8: byte 0x{bad} cannot be decoded", path, line, column,
                          source) from None


def parse_module(text: str, path: str = "<input>") -> Module:
    """Parse ia64 assembly text into a Module; RelgenError with a position on bad input."""
    parser = _parser()  # outside the `try`: an error in the grammar is not one in `text`
    # The nodes hold no reference cycles: the cyclic garbage collector, which would scan every
    # node made so far again and again, has nothing to find while they are built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        lines = parser.parse(text, start=_FILE_START)
    except UnexpectedInput as error:
        raise _error_from_lark(error, text, path) from None
    finally:
        if collecting:
            gc.enable()
    return Module(lines, path)


# New syntax for a rewrite is made by parsing its text with the grammar, never by putting
# strings into nodes by hand: the node is then what the file would hold, with its parts.


def parse_expression(text: str, path: str = "<new text>") -> ex.Expr:
    """One operand from its text, as the grammar reads it in an instruction.

    `parse_expression("KEXEC_MEMORY_STACK_SIZE - 16")` is a `Binary` of a `Symbol` and a
    `Number`, ready for `Instruction.with_operands`. White space before the operand stays in
    its `text`, as it would in a file; white space or anything else after it is an error.
    RelgenError, positioned in `text` under `path`, when `text` is not one operand.
    """
    parser = _parser()
    try:
        return parser.parse(text, start=_EXPRESSION_START)
    except UnexpectedInput as error:
        raise _error_from_lark(error, text, path, in_statement=False) from None


def parse_statement(text: str, path: str = "<new text>") -> Instruction | Directive | MacroCall:
    """One statement (instruction, directive or kernel macro call) from its text.

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


def read_source(path: Path) -> str:
    """Read a file as text for parsing, with relgen's errors for what is not a text file."""
    shown = str(path)
    if path.is_dir():
        raise RelgenError("is a directory, not an assembly file", shown)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RelgenError("no such file", shown) from None
    except PermissionError:
        raise RelgenError("cannot read the file (permission denied)", shown) from None
    except OSError as error:
        raise RelgenError(f"cannot read the file ({error.strerror})", shown) from None
    return decode_source(data, shown)


def unparse(module: Module) -> str:
    """The text of the module: the original bytes for every item not replaced."""
    return "".join(line.raw for line in module.lines)
