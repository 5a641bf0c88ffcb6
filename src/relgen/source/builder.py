"""The node builder: relgen's nodes made during lark's LALR parse (lark's `transformer=`).

lark calls the method named after a rule (or its alias) with the rule's children: tokens,
which stay raw, and the nodes already built below; and the method named after a terminal
(upper case) with each token of it as it is read. Item positions come from their first
token. The methods take the children list as lark passes it, not through `v_args`, which
would add two function calls to every node.

The grammar reads operands more widely than an instruction may have them (side by side, or
left out); the builder allows that where GAS does, in directives, in the body of a GAS macro
or `.rept`/`.irp`, and in a call of a GAS macro the file defined, and refuses it elsewhere
with a positioned `BuildError`. It also refuses an expression nested deeper than
`MAX_NESTING`. What it must know of the file so far (which GAS macros it defined, whether a
macro body is open) is reset by `begin()` before each parse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lark import Token, Transformer

from relgen.source import expressions as ex
from relgen.source.expressions import MAX_NESTING
from relgen.source.nodes import (
    Assignment,
    BundleClose,
    BundleOpen,
    Comment,
    Directive,
    Instruction,
    Item,
    Label,
    Line,
    MacroCall,
    Preprocessor,
    Separator,
    Stop,
    Tag,
)
from relgen.source.spacing import BLANK, LEADING_SPACE, strip_space


class BuildError(Exception):
    """Input the grammar reads but GAS does not take, at a line and column of the text."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def position(token: Token) -> tuple[int, int]:
    """Line and column of the first non-space character of a token."""
    rest = token.lstrip(BLANK)
    if rest[:1] != "\\":  # no `\` continuation in the white space, so no newline either
        return token.line, token.column + len(token) - len(rest)  # type: ignore[operator]
    prefix = LEADING_SPACE.match(token).group(0)  # type: ignore[union-attr]
    line = token.line + prefix.count("\n")  # type: ignore[operator]
    if "\n" in prefix:
        return line, len(prefix) - prefix.rfind("\n")
    return line, token.column + len(prefix)  # type: ignore[operator]


def _advanced(line: int, column: int, text: str) -> tuple[int, int]:
    """The position just after `text`, which starts at `line`, `column`."""
    newlines = text.count("\n")
    if not newlines:
        return line, column + len(text)
    return line + newlines, len(text) - text.rfind("\n")


def _line_number(items: Sequence[Item], ending: Token | None) -> int:
    """Where a line starts: where its first token starts, white space included. That is
    its first item's, or, on a line without items, its ending's."""
    if not items:
        assert ending is not None, "a line holds an item or ends in a token"
        return ending.line  # type: ignore[return-value]
    first = items[0]
    if first.raw.lstrip(BLANK)[:1] != "\\":
        return first.line
    # a `\` continuation before the first item: the item stands on a later physical line
    return first.line - LEADING_SPACE.match(first.raw).group(0).count("\n")  # type: ignore


def _text(children: Sequence[Token | ex.Expr]) -> str:
    """The exact text of tokens and expressions in a row."""
    return "".join(child if isinstance(child, str) else child.text for child in children)


def gas_integer(text: str) -> int:
    """A GAS integer literal: 0x... hexadecimal, 0b... binary, a leading 0 octal, else
    decimal."""
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if text[:2] in ("0b", "0B"):
        return int(text[2:], 2)
    return int(text, 8) if len(text) > 1 and text[0] == "0" else int(text, 10)


def split_arguments(text: str) -> tuple[str, ...]:
    """`a, (b, c), "d,e"` -> ('a', '(b, c)', '"d,e"'): split at the commas outside brackets
    and strings, each stripped; an empty text has no arguments, `a,` an empty last one."""
    args: list[str] = []
    depth = 0
    start = 0
    quoted = False
    escaped = False
    for i, char in enumerate(text):
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    if text.strip() or args:
        args.append(text[start:].strip())
    return tuple(args)


def split_macro_args(text: str) -> tuple[str, ...]:
    """`(a, (b, c), d)` (with any blanks before it) -> ('a', '(b, c)', 'd')."""
    return split_arguments(text.strip(" \t")[1:-1])


def symbol_name(token_text: str) -> str:
    """The symbol a name token names: without its GAS `#` suffix."""
    return token_text[:-1] if token_text.endswith("#") else token_text


_PREPROCESSOR_DIRECTIVE = re.compile(r"[A-Za-z_]*")
#: The directives of the C preprocessor. `#` alone, and `# 12 "file"` line markers, are
#: preprocessor lines too; any other `#word` line is a GAS comment.
CPP_DIRECTIVES = frozenset({
    "define", "undef", "include", "include_next", "import", "if", "ifdef", "ifndef", "elif",
    "elifdef", "elifndef", "else", "endif", "line", "error", "warning", "pragma", "ident",
    "sccs", "assert", "unassert",
})

# How tightly each binary operator binds in GAS: && || loosest, then + - and comparisons,
# then | & ^, then * / % << >>.
_BINDING = {
    "LOGIC": 1, "PLUS": 2, "MINUS": 2, "CMP": 2, "PIPE": 3, "AMP": 3, "CARET": 3,
    "STAR": 4, "SLASH": 4, "PERCENT": 4, "SHL": 4, "SHR": 4,
}

# Directives that open and close a body whose text GAS expands before it assembles it: a
# macro's (`.macro` ... `.endm`) and a repetition's (`.rept`, `.irp`, `.irpc` ... `.endr`).
_TEMPLATE_OPENERS = frozenset({".macro", ".rept", ".irp", ".irpc"})
_TEMPLATE_CLOSERS = frozenset({".endm", ".endr"})

_EMPTY = ex.Empty()


def _versioned(raw: str, name: str) -> ex.VersionedName:
    """`memcpy@@GLIBC_2.2` -> memcpy, "@@", GLIBC_2.2."""
    at = name.index("@")
    version_at = len(name) - len(name[at:].lstrip("@"))
    return ex.VersionedName(raw, name[:at], name[at:version_at], name[version_at:])


def _combine(operands: list[ex.Expr], operator: Token) -> None:
    """Replace the last two operands by their Binary under `operator`."""
    right = operands.pop()
    left = operands.pop()
    operands.append(ex.Binary(left, str(operator), right, max(left.depth, right.depth)))


def _nested(depth: int, token: Token) -> int:
    """`depth`, or a BuildError at `token` when it is deeper than the bound."""
    if depth > MAX_NESTING:
        raise BuildError(f"expression nested deeper than {MAX_NESTING} levels (parentheses, "
                         "brackets, calls and unary operators)", *position(token))
    return depth


def _splice(children: list, at: int) -> None:
    """Put the items of a grown list (`NodeBuilder._grow`) in its place among `children`,
    the first child (`at` 0) or the last (`at` -1), where the rule has one there."""
    if children and type(children[at]) is list:
        children[at:at + 1 or None] = children[at]


def _operands(run: Sequence[str | ex.Expr]) -> tuple[tuple[ex.Expr, ...], tuple[str, ...], int]:
    """A statement's operands, the separators between them and the index of the first `=`
    (-1 if none), from the run the `operands` rules grew: operands and separators taking
    turns (see `NodeBuilder.operand_left_out` and `operand_beside`)."""
    separators = tuple(map(str, run[1::2]))
    first_equals = -1
    for number, separator in enumerate(separators):
        if separator[-1:] == "=":
            first_equals = number
            break
    return tuple(run[::2]), separators, first_equals  # type: ignore[arg-type]


def _refusal(children: Sequence[str | ex.Expr], start: int, odd: tuple[int, str]
             ) -> BuildError:
    """The error for an operand an instruction cannot have, positioned where it stands:
    `odd` is its index among the operands and separators (from `start` in `children`) and
    "missing" or "beside"."""
    index, what = odd
    first = children[0]
    assert isinstance(first, Token)
    before = _text(children[:start + index])
    if what == "missing":
        separator = strip_space(str(children[start + index - 1]))
        line, column = _advanced(first.line, first.column, before)  # type: ignore[arg-type]
        return BuildError(f"an operand is missing after {separator!r}", line, column)
    operand = children[start + index]
    assert isinstance(operand, ex.Expr)
    text = operand.text
    space = LEADING_SPACE.match(text).group(0)  # type: ignore[union-attr]
    line, column = _advanced(first.line, first.column, before + space)  # type: ignore[arg-type]
    shown = str(operand).split()[0][:40] if str(operand).strip() else str(operand)
    return BuildError(f"unexpected {shown!r} here (two statements on one line need a ';' or "
                      "';;' between them)", line, column)


class NodeBuilder(Transformer):
    """Builds relgen's nodes during the LALR parse: no lark tree is made."""

    def __init__(self) -> None:
        super().__init__()
        self.begin()

    def begin(self) -> None:
        """Forget the file before: a new parse starts."""
        self._gas_macros: set[str] = set()  # the names `.macro` defined so far
        self._open_templates = 0  # how many macro or repetition bodies are open
        # the statement being read: where its first operand stands that only directives and
        # GAS macros may have, as (index among its operands and separators, what is odd)
        self._odd: tuple[int, str] | None = None

    # --- expressions
    def symbol(self, children: list[Token]) -> ex.Symbol | ex.PastedName | ex.VersionedName:
        token = children[0]
        name = strip_space(token)
        if "\\" in name or "&" in name:
            return ex.PastedName(str(token), name)
        if "@" in name:
            return _versioned(str(token), name)
        return ex.Symbol(str(token), name[:-1] if name[-1] == "#" else name)

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

    def FLOAT(self, token: Token) -> ex.Float:
        return ex.Float(str(token), strip_space(token))

    def paren(self, children: list) -> ex.Paren:
        opening, inner, closing = children
        return ex.Paren(str(opening), inner, str(closing), _nested(inner.depth + 1, opening))

    def memory(self, children: list) -> ex.Memory:
        opening, address, closing = children
        return ex.Memory(str(opening), address, str(closing),
                         _nested(address.depth + 1, opening))

    def index(self, children: list) -> ex.Index:
        base, opening, index, closing = children
        return ex.Index(base, str(opening), index, str(closing),
                        _nested(max(base.depth, index.depth) + 1, opening))

    def call(self, children: list) -> ex.Call:
        # NAME ( arg , arg ... ): the arguments stand at every other place
        name, opening, closing = children[0], children[1], children[-1]
        args = tuple(children[2:-1:2])
        depth = max((arg.depth for arg in args), default=0) + 1
        return ex.Call(str(name), str(opening), args,
                       tuple(str(comma) for comma in children[3:-1:2]), str(closing),
                       _nested(depth, name))

    def reloc(self, children: list) -> ex.Reloc:
        operator, opening, operand, closing = children
        return ex.Reloc(str(operator), str(opening), operand, str(closing),
                        _nested(operand.depth + 1, operator))

    def unary(self, children: list) -> ex.Unary:
        operator, operand = children
        return ex.Unary(str(operator), operand, _nested(operand.depth + 1, operator))

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
        name_token, colon = children
        line, column = position(name_token)
        name = strip_space(name_token)
        return Label(name_token + colon, line, column, name=symbol_name(name),
                     is_global=colon.type == "DOUBLE_COLON")

    # Tokens that are whole items, read as nodes when lark shifts them.
    def TAG(self, token: Token) -> Tag:
        return Tag(str(token), *position(token), name=strip_space(token).strip("[]: \t"))

    def STOP(self, token: Token) -> Stop:
        return Stop(str(token), *position(token))

    def SEMI(self, token: Token) -> Separator:
        return Separator(str(token), *position(token))

    def LBRACE(self, token: Token) -> BundleOpen:
        return BundleOpen(str(token), *position(token))

    def RBRACE(self, token: Token) -> BundleClose:
        return BundleClose(str(token), *position(token))

    def COMMENT(self, token: Token) -> Comment:
        return Comment(str(token), *position(token))

    def PP(self, token: Token) -> Preprocessor | Comment:
        body = strip_space(token)[1:].lstrip(" \t")
        directive = _PREPROCESSOR_DIRECTIVE.match(body).group(0)  # type: ignore[union-attr]
        if directive and directive not in CPP_DIRECTIVES:
            # `# instructions added by SDM2.1:` is a GAS line comment, which cpp passes
            # through in assembly (it takes no `#word` it does not know for a directive)
            return Comment(str(token), *position(token))
        return Preprocessor(str(token), *position(token), directive=directive)

    # Repetitions (`operands`, `items`, `lines`) are left recursion in the grammar, `x: y |
    # x y`: the first reduction's children start a list, each later one grows it.
    def _grow(self, children: list) -> list:
        grown = children[0]
        if type(grown) is list:
            grown += children[1:]
            return grown
        return children

    operands = items = lines = _grow

    # The grown run of operands holds operands and separators taking turns, also where an
    # operand is left out (`x,` holds an Empty after the `,`) or stands beside the one
    # before it (`"mutex" p6` holds "" between them).
    def operand_left_out(self, children: list) -> list:
        run, separator = children
        if self._odd is None:
            self._odd = (len(run) + 1, "missing")
        run += (separator, _EMPTY)
        return run

    def operand_beside(self, children: list) -> list:
        run, operand = children
        if self._odd is None:
            self._odd = (len(run) + 1, "beside")
        run += ("", operand)
        return run

    def instruction(self, children: list) -> Instruction | MacroCall:
        # [PREDICATE] NAME, then the run of operands and `,`/`=` tokens
        _splice(children, -1)
        first = children[0]
        head_length = 2 if first.type == "PREDICATE" else 1
        mnemonic = strip_space(children[head_length - 1])
        operands, separators, first_equals = _operands(children[head_length:])
        odd, self._odd = self._odd, None
        head = "".join(children[:head_length])
        if head_length == 1 and mnemonic in self._gas_macros:
            raw = _text(children)
            return MacroCall(raw, *position(first), name=mnemonic,
                             args=split_arguments(raw[len(head):]))
        if odd is not None and not self._open_templates:
            raise _refusal(children, head_length, odd)
        return Instruction(
            _text(children), *position(first),
            predicate=strip_space(first) if head_length == 2 else None,
            mnemonic=mnemonic, operands=operands, separators=separators,
            destinations=first_equals + 1, head=head,
        )

    def directive(self, children: list) -> Directive:
        # DOTNAME, then the run of operands and `,`/`=` tokens
        _splice(children, -1)
        first = children[0]
        name = strip_space(first)
        operands, separators, _ = _operands(children[1:])
        self._odd = None  # a directive reads its operands its own way
        if name in _TEMPLATE_OPENERS:
            self._open_templates += 1
            if name == ".macro" and operands:
                self._gas_macros.add(symbol_name(str(operands[0])))
        elif name in _TEMPLATE_CLOSERS:
            self._open_templates = max(0, self._open_templates - 1)
        elif name == ".purgem" and operands:
            self._gas_macros.discard(symbol_name(str(operands[0])))
        return Directive(_text(children), *position(first), name=name, operands=operands,
                         separators=separators)

    def assignment(self, children: list) -> Assignment:
        name, operator, value = children
        return Assignment(name + operator + value.text, *position(name),
                          name=symbol_name(strip_space(name)), operator=strip_space(operator),
                          value=value, head=name + operator)

    def macro_call(self, children: list[Token]) -> MacroCall:
        name, args = children
        return MacroCall(name + args, *position(name), name=strip_space(name),
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
