"""The nodes of relgen's lossless syntax tree of an ia64 `.S` or `.s` file, apart from the
parser.

The tree is a `Module` of physical `Line`s; a line holds `Item`s (labels, instructions,
directives, symbol assignments, macro calls, comments, ...) and its ending. Every item keeps
`raw`, its exact bytes including the white space before it, so printing the items back gives
the file back, and an edit that replaces one item leaves every other byte as it was. Operands
are expressions (`relgen.source.expressions`).

Comment ownership (what a comment moves with when code is moved):
- a comment on a line that also holds a statement *trails* that line and belongs to it;
- a line that holds only comments (and white space) *leads* the next line that holds a
  statement, label or preprocessor line: it belongs to that line (`owner_of_comment_line`).
  A blank line belongs to nothing and stays where it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from relgen.source import expressions as ex
from relgen.source.spacing import strip_space

# Pseudo-ops that lay down data rather than instructions.
DATA_MNEMONICS = frozenset(
    {"data1", "data2", "data4", "data8", "data16", "real4", "real8", "real10", "real16",
     "string", "stringz"}
)
DATA_DIRECTIVES = frozenset(
    {".fill", ".skip", ".space", ".zero", ".byte", ".word", ".long", ".quad", ".ascii",
     ".asciz", ".string", ".xdata1", ".xdata2", ".xdata4", ".xdata8", ".xreal4", ".xreal8"}
)
# Directives that reserve an area of bytes rather than lay down values.
AREA_DIRECTIVES = frozenset({".fill", ".skip", ".space", ".zero"})


@dataclass(frozen=True, slots=True)
class Item:
    """One thing on a line. `line`/`column` (1-based) are where its text starts."""

    raw: str
    line: int
    column: int
    kind: ClassVar[str] = "item"

    @property
    def text(self) -> str:
        return strip_space(self.raw)


@dataclass(frozen=True, slots=True)
class Label(Item):
    """`name:`, `1:`, or `name::`, which also makes the symbol global (`is_global`). `name`
    has no GAS `#` suffix (`foo#:` defines `foo`)."""

    name: str = ""
    is_global: bool = False
    kind: ClassVar[str] = "label"

    @property
    def is_numeric(self) -> bool:
        return self.name.isdigit()


@dataclass(frozen=True, slots=True)
class Tag(Item):
    """`[1:]`: an ia64 instruction tag."""

    name: str = ""
    kind: ClassVar[str] = "tag"


@dataclass(frozen=True, slots=True)
class Stop(Item):
    """`;;`: the end of an instruction group."""

    kind: ClassVar[str] = "stop"


@dataclass(frozen=True, slots=True)
class Separator(Item):
    """`;`: separates two statements on one line without ending the group."""

    kind: ClassVar[str] = "separator"


@dataclass(frozen=True, slots=True)
class BundleOpen(Item):
    kind: ClassVar[str] = "bundle_open"


@dataclass(frozen=True, slots=True)
class BundleClose(Item):
    kind: ClassVar[str] = "bundle_close"


@dataclass(frozen=True, slots=True)
class Comment(Item):
    kind: ClassVar[str] = "comment"


@dataclass(frozen=True, slots=True)
class Preprocessor(Item):
    """A C preprocessor line, continuations included. `directive` is `define`, `include`..."""

    directive: str = ""
    kind: ClassVar[str] = "preprocessor"


@dataclass(frozen=True, slots=True)
class Instruction(Item):
    """`(p6) mnemonic dst,...=src,...`. Data pseudo-ops such as `data8` are of kind "data".

    `operands` are in source order; the first `destinations` of them stand before the `=`.
    `separators` holds the raw `,`/`=` tokens between operands, so the text prints back.
    """

    predicate: str | None = None
    mnemonic: str = ""
    operands: tuple[ex.Expr, ...] = ()
    separators: tuple[str, ...] = ()
    destinations: int = 0
    # the raw text of the predicate and mnemonic tokens, kept to print the line back
    head: str = ""

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "data" if self.mnemonic in DATA_MNEMONICS else "instruction"

    @property
    def sources(self) -> tuple[ex.Expr, ...]:
        return self.operands[self.destinations:]

    def with_operands(self, operands: Sequence[ex.Expr], head: str | None = None) -> Instruction:
        """A copy with new operands (and head), its raw text rebuilt from the parts."""
        head_text = self.head if head is None else head
        raw = head_text + "".join(
            op.text if i == 0 else self.separators[i - 1] + op.text
            for i, op in enumerate(operands)
        )
        return replace(self, raw=raw, operands=tuple(operands), head=head_text)


@dataclass(frozen=True, slots=True)
class Directive(Item):
    """`.name operands`; area and data directives (`.fill`, `.skip`) are of kind "data".

    Each directive reads its operands its own way, so they need not be separated by commas:
    `.pred.rel "mutex" p6, p7`, `.file 1 "x.c"`, `.macro begin n, attr`. `separators` holds
    the raw token between each two operands: `,`, `=`, or "" where they stand side by side.
    An operand left out (`.xreal8 "a",`) is an `Empty` expression.
    """

    name: str = ""
    operands: tuple[ex.Expr, ...] = ()
    separators: tuple[str, ...] = ()

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "data" if self.name in DATA_DIRECTIVES else "directive"

    @property
    def reserves_area(self) -> bool:
        return self.name in AREA_DIRECTIVES


@dataclass(frozen=True, slots=True)
class MacroCall(Item):
    """A macro as a statement, whatever it expands to:
    - a C preprocessor macro, `GLOBAL_ENTRY(x)`, `END(x)`, `weak_alias (memcmp, bcmp)` (with
      or without blanks before the `(`);
    - a GAS macro that the file defined earlier (`.macro begin n, attr`), called as
      `begin mov, "ax"`; its arguments may be empty (`m1 mov, r2 =`).

    Arguments are kept as text split at top-level commas, since they may hold whole
    instructions (`EX(.fail, st8 [r31]=r9)`).
    """

    name: str = ""
    args: tuple[str, ...] = ()
    kind: ClassVar[str] = "macro_call"


@dataclass(frozen=True, slots=True)
class Assignment(Item):
    """`name = expr` (as `.set`) or `name == expr` (as `.eqv`): `rTblAddr = r3`, `two == 2*one`.

    `name` is the symbol (without a GAS `#` suffix), `value` its expression. `head` is the raw
    text of the name and the operator, kept to print the line back after `with_value`.
    """

    name: str = ""
    operator: str = "="
    value: ex.Expr = field(default_factory=ex.Empty)
    head: str = ""
    kind: ClassVar[str] = "assignment"

    def with_value(self, value: ex.Expr) -> Assignment:
        """A copy with a new value, its raw text rebuilt from the parts."""
        return replace(self, raw=self.head + value.text, value=value)


STATEMENT_TYPES = (Instruction, Directive, MacroCall, Assignment)


@dataclass(frozen=True, slots=True)
class Line:
    """A physical line: its items and its ending (white space and newline, or "" at EOF).

    A line may span several physical lines when it holds a multi-line `/* */` comment or a
    preprocessor line with continuations; `number` is where it starts.
    """

    items: tuple[Item, ...]
    ending: str
    number: int

    @property
    def raw(self) -> str:
        return "".join(item.raw for item in self.items) + self.ending

    @property
    def shown(self) -> str:
        """Its first physical line without the ending: what an error shows under its message."""
        return source_line(self.raw, 1) or ""

    @property
    def is_blank(self) -> bool:
        return not self.items

    @property
    def is_comment_only(self) -> bool:
        return bool(self.items) and all(isinstance(i, Comment) for i in self.items)

    def statements(self) -> Iterator[Item]:
        return (i for i in self.items if isinstance(i, STATEMENT_TYPES))

    def labels(self) -> Iterator[Label]:
        return (i for i in self.items if isinstance(i, Label))


@dataclass(frozen=True, slots=True)
class Module:
    """A whole file: its lines in order. `path` is used in messages only."""

    lines: tuple[Line, ...]
    path: str = field(default="<input>", compare=False)

    def items(self) -> Iterator[tuple[int, Item]]:
        """(index of the line, item) for every item in the file."""
        for index, line in enumerate(self.lines):
            for item in line.items:
                yield index, item

    def kind_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for line in self.lines:
            if line.is_blank:
                counts["blank"] += 1
            for item in line.items:
                counts[item.kind] += 1
        return counts

    def with_lines(self, lines: Sequence[Line]) -> Module:
        return replace(self, lines=tuple(lines))


def owner_of_comment_line(module: Module, index: int) -> int | None:
    """The index of the line that the comment-only line `index` leads, or None.

    A run of comment-only lines leads the first following line that holds anything but
    comments; a blank line in between breaks the run (the comment then belongs to nothing).
    """
    for later in range(index + 1, len(module.lines)):
        line = module.lines[later]
        if line.is_blank:
            return None
        if not line.is_comment_only:
            return later
    return None



def source_line(text: str, line: int) -> str | None:
    """Line `line` (1-based) of `text` without its ending, as lark counts lines: only "\\n"
    ends one (not "\\f" or a lone "\\r"). Every error that shows a line takes it from here."""
    lines = text.split("\n")
    return lines[line - 1].removesuffix("\r") if 0 < line <= len(lines) else None


def to_json(module: Module) -> dict[str, object]:
    """Every item with its kind, text, line and column, line by line, and what it holds: a
    statement's name and operands (each with its kind), a label's name."""
    statements: list[dict[str, object]] = []
    for line in module.lines:
        if line.is_blank:
            statements.append({"kind": "blank", "text": "", "line": line.number, "column": 1})
        for item in line.items:
            statements.append({"kind": item.kind, "text": item.text, "line": item.line,
                               "column": item.column, **_item_details(item)})
    return {"path": module.path, "statements": statements,
            "counts": dict(sorted(module.kind_counts().items()))}


def _item_details(item: Item) -> dict[str, object]:
    if isinstance(item, Instruction):
        details: dict[str, object] = {"mnemonic": item.mnemonic}
        if item.predicate:
            details["predicate"] = item.predicate
        return details | {"operands": [_operand_json(op) for op in item.operands]}
    if isinstance(item, Directive):
        return {"name": item.name, "operands": [_operand_json(op) for op in item.operands]}
    if isinstance(item, MacroCall):
        return {"name": item.name, "args": list(item.args)}
    if isinstance(item, Assignment):
        return {"name": item.name, "operator": item.operator, "value": _operand_json(item.value)}
    if isinstance(item, Label):
        return {"name": item.name, "global": True} if item.is_global else {"name": item.name}
    if isinstance(item, Preprocessor):
        return {"directive": item.directive}
    return {}


# What each kind of operand says besides its kind and text.
_OPERAND_FIELDS = {ex.Symbol: ("name",), ex.Number: ("value",), ex.Float: ("literal",),
                   ex.VersionedName: ("name", "binding", "version"),
                   ex.PastedName: ("parameters",), ex.Call: ("name",), ex.Reloc: ("operator",),
                   ex.AtName: ("name",)}


def _operand_json(operand: ex.Expr) -> dict[str, object]:
    """An operand's kind, text and fields; not its subexpressions, which can nest deeper
    than a JSON writer recurses."""
    shown: dict[str, object] = {"kind": operand.kind, "text": str(operand)}
    for name in _OPERAND_FIELDS.get(type(operand), ()):
        value = getattr(operand, name)
        shown[name] = list(value) if isinstance(value, tuple) else value
    return shown
