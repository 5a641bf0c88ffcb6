"""GAS expressions as frozen nodes (with the label arithmetic the rewrite needs, from arithmetic).

A leaf (`Symbol`, `Number`, ...) keeps `text`, its token's exact bytes with the white space
before it. A composite node (`Paren`, `Binary`, ...) keeps only its own tokens (`(`, `+`,
each with the white space before it) and its children, and joins its `text` from those parts
when asked. No node copies the text below it, so an expression takes memory in proportion to
its length however it nests (nodes that each kept their whole text made a 60,000-term sum
take 4 GB). `str(node)` is the text without the white space in front.

Expressions can be deep: `1+1+...+1` is a left-deep tree with a level per term. Every walk
over a tree here (`text`, `walk`, `==`, `hash`, `repr`, `linear_form`, `symbols_in`) keeps
its own stack instead of recursing, so depth costs nothing but the nodes. `depth` counts the
levels of nesting (parentheses, brackets, calls, relocation operators and unary operators;
a chain of binary operators is no nesting), which the parser bounds (`MAX_NESTING`).

The label arithmetic over these trees (`linear_form`, `symbols_in`) is
`relgen.source.arithmetic`'s, and is found here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cache
from typing import ClassVar

from relgen.source.arithmetic import LinearForm, NotLinear, linear_form, symbols_in
from relgen.source.spacing import strip_space

__all__ = [
    "MAX_NESTING", "AtName", "Binary", "Call", "Composite", "Empty", "Expr", "Float", "Here",
    "Index", "Leaf", "LinearForm", "LocalRef", "Memory", "NotLinear", "Number", "Paren",
    "PastedName", "Reloc", "StringLiteral", "Symbol", "Unary", "VersionedName", "linear_form",
    "symbols_in",
]

#: How deeply an expression may nest (see `Expr.depth`); deeper is a positioned error. Real
#: code nests a few levels; the bound keeps any consumer that does recurse far from Python's
#: recursion limit.
MAX_NESTING = 100


class Expr:
    """Base of every expression node."""

    __slots__ = ()
    kind: ClassVar[str] = "expression"
    depth: ClassVar[int] = 0  # composite nodes have their own

    text: str  # a field of each leaf, joined from the parts of a composite node

    def __str__(self) -> str:
        return strip_space(self.text)

    def children(self) -> tuple[Expr, ...]:
        return ()

    def _key(self) -> tuple[object, ...]:
        """What this node holds besides its children: equal nodes have equal keys."""
        raise NotImplementedError

    def walk(self) -> Iterator[Expr]:
        """This node and all nodes below it, depth first, in source order."""
        stack: list[Expr] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Expr):
            return NotImplemented
        pending: list[tuple[Expr, Expr]] = [(self, other)]
        while pending:
            mine, theirs = pending.pop()
            if mine is theirs:
                continue
            if type(mine) is not type(theirs) or mine._key() != theirs._key():
                return False
            ours, others = mine.children(), theirs.children()
            if len(ours) != len(others):
                return False
            pending.extend(zip(ours, others, strict=True))
        return True

    def __hash__(self) -> int:
        return hash(tuple((type(node).__name__, node._key()) for node in self.walk()))

    def __repr__(self) -> str:
        """`Binary(left=Symbol(text='a', name='a'), token=' +', ...)`, written out in one pass
        over the tree (building each node's repr from its children's would copy them)."""
        pieces: list[str] = []
        stack: list[object] = [self]
        while stack:
            part = stack.pop()
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, Expr):
                stack.extend(reversed(part._repr_parts()))
            else:
                pieces.append(repr(part))
        return "".join(pieces)

    def _repr_parts(self) -> list[object]:
        """This node's repr as strings, values and child nodes, in order."""
        parts: list[object] = [f"{type(self).__name__}("]
        for number, name in enumerate(_shown_fields(type(self))):
            parts.append(f"{', ' if number else ''}{name}=")
            value = getattr(self, name)
            if isinstance(value, tuple) and any(isinstance(i, Expr) for i in value):
                parts.append("(")
                for index, item in enumerate(value):
                    parts += [", "] if index else []
                    parts.append(item)
                parts.append(",)" if len(value) == 1 else ")")
            elif isinstance(value, Expr | str):
                parts.append(value if isinstance(value, Expr) else repr(value))
            else:
                parts.append(value)
        parts.append(")")
        return parts


@cache
def _shown_fields(node_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(node_type) if f.name != "depth")


class Leaf(Expr):
    """A node of one token: its fields are all it holds."""

    __slots__ = ()

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in type(self).__slots__)


class Composite(Expr):
    """A node made of tokens of its own and child nodes, in source order (`parts`)."""

    __slots__ = ()

    def parts(self) -> tuple[str | Expr, ...]:
        raise NotImplementedError

    @property
    def text(self) -> str:  # type: ignore[override]
        parts = self.parts()
        pieces = [part if type(part) is str else part.text for part in parts  # type: ignore
                  if not isinstance(part, Composite)]
        if len(pieces) == len(parts):  # most operands: one level, `[r2]`, `a - 16`
            return "".join(pieces)
        pieces = []
        stack: list[str | Expr] = [self]
        while stack:
            part = stack.pop()
            if type(part) is str:
                pieces.append(part)  # type: ignore[arg-type]
            elif isinstance(part, Composite):
                stack.extend(reversed(part.parts()))
            else:
                pieces.append(part.text)
        return "".join(pieces)


_NODE = {"frozen": True, "eq": False, "repr": False, "slots": True}


# ----------------------------------------------------------------------------------- leaves


@dataclass(**_NODE)
class Symbol(Leaf):
    """A name: a label, a register (`r2`, `ar.pfs`, `in4`) or a C macro left for cpp.

    `name` is the symbol: a GAS `#` suffix (`memcpy#`, which says "a symbol, not a register")
    stays in `text` but not in `name`, so `foo#` and `foo` are one symbol."""

    text: str
    name: str
    kind: ClassVar[str] = "symbol"


@dataclass(**_NODE)
class Number(Leaf):
    text: str
    value: int
    kind: ClassVar[str] = "number"


@dataclass(**_NODE)
class Float(Leaf):
    """`0.2`, `1e-5`, `0d1.5`: a floating-point literal (`real4` ... `real16` take them).
    `literal` is its spelling: real10 and real16 hold more than a Python float."""

    text: str
    literal: str
    kind: ClassVar[str] = "float"


@dataclass(**_NODE)
class LocalRef(Leaf):
    """`1f` or `2b`: the next or previous numeric label `N:`."""

    text: str
    number: int
    forward: bool
    kind: ClassVar[str] = "local_ref"


@dataclass(**_NODE)
class Here(Leaf):
    """`.`, the current location."""

    text: str
    kind: ClassVar[str] = "here"


@dataclass(**_NODE)
class StringLiteral(Leaf):
    text: str
    value: str
    kind: ClassVar[str] = "string"


@dataclass(**_NODE)
class AtName(Leaf):
    """`@priunat`, `@pause`, `@mutex`: an ia64 keyword operand."""

    text: str
    name: str
    kind: ClassVar[str] = "at_name"


@dataclass(**_NODE)
class VersionedName(Leaf):
    """`memcpy@GLIBC_2.2`, `powf@@GLIBC_2.27`: a symbol version, as `.symver` names it.
    `name` is the symbol, `binding` "@" (hidden), "@@" (default) or "@@@"."""

    text: str
    name: str
    binding: str
    version: str
    kind: ClassVar[str] = "versioned_name"


_PIECE = re.compile(r"([&\\]?)([A-Za-z0-9_.$]+)")


@dataclass(**_NODE)
class PastedName(Leaf):
    """A name a macro completes by substitution: `_&n` (`.altmacro`), `uw\\type`, `.\\type`,
    `label\\@`. `parameters` are the macro parameters it names (`n`, `type`); `pieces` every
    name-like run in it, which is what `symbols_in` reports (outside a macro body GAS reads
    `a&b` as a bitwise and of `a` and `b`; either way it mentions both)."""

    text: str
    name: str
    kind: ClassVar[str] = "pasted_name"

    @property
    def pieces(self) -> tuple[str, ...]:
        return tuple(match.group(2).strip(".") for match in _PIECE.finditer(self.name)
                     if match.group(2).strip("."))

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(match.group(2) for match in _PIECE.finditer(self.name)
                     if match.group(1))


@dataclass(**_NODE)
class Empty(Leaf):
    """An operand left out: the empty last argument of `m1 mov, r2 =` (a GAS macro call), or
    of `.xreal8 ".xreal+2",`. Its text is empty: the white space goes with what follows."""

    text: str = ""
    kind: ClassVar[str] = "empty"


# --------------------------------------------------------------------------- composite nodes


@dataclass(**_NODE)
class Paren(Composite):
    opening: str
    inner: Expr
    closing: str
    depth: int
    kind: ClassVar[str] = "paren"

    def parts(self) -> tuple[str | Expr, ...]:
        return (self.opening, self.inner, self.closing)

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def _key(self) -> tuple[object, ...]:
        return (self.opening, self.closing)


@dataclass(**_NODE)
class Memory(Composite):
    """`[r2]`: the memory operand of a load or store."""

    opening: str
    address: Expr
    closing: str
    depth: int
    kind: ClassVar[str] = "memory"

    def parts(self) -> tuple[str | Expr, ...]:
        return (self.opening, self.address, self.closing)

    def children(self) -> tuple[Expr, ...]:
        return (self.address,)

    def _key(self) -> tuple[object, ...]:
        return (self.opening, self.closing)


@dataclass(**_NODE)
class Index(Composite):
    """`rr[r8]`, `t1[PIPE_DEPTH]`, `p#[0]`: an indexed register file or rotating register."""

    base: Expr
    opening: str
    index: Expr
    closing: str
    depth: int
    kind: ClassVar[str] = "index"

    def parts(self) -> tuple[str | Expr, ...]:
        return (self.base, self.opening, self.index, self.closing)

    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.index)

    def _key(self) -> tuple[object, ...]:
        return (self.opening, self.closing)


@dataclass(**_NODE)
class Call(Composite):
    """`IA64_KR(CURRENT_STACK)`, `SYS_ify (clone)`: a C macro used inside an operand.
    `token` is the name with the white space before it; `separators` the commas."""

    token: str
    opening: str
    args: tuple[Expr, ...]
    separators: tuple[str, ...]
    closing: str
    depth: int
    kind: ClassVar[str] = "call"

    @property
    def name(self) -> str:
        return strip_space(self.token)

    def parts(self) -> tuple[str | Expr, ...]:
        parts: list[str | Expr] = [self.token, self.opening]
        for number, arg in enumerate(self.args):
            if number:
                parts.append(self.separators[number - 1])
            parts.append(arg)
        parts.append(self.closing)
        return tuple(parts)

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def _key(self) -> tuple[object, ...]:
        return (self.token, self.opening, self.separators, self.closing)


@dataclass(**_NODE)
class Reloc(Composite):
    """`@gprel(sym)`, `@ltoff(@fptr(f#))`: a relocation operator."""

    token: str
    opening: str
    operand: Expr
    closing: str
    depth: int
    kind: ClassVar[str] = "reloc"

    @property
    def operator(self) -> str:
        return strip_space(self.token)

    def parts(self) -> tuple[str | Expr, ...]:
        return (self.token, self.opening, self.operand, self.closing)

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def _key(self) -> tuple[object, ...]:
        return (self.token, self.opening, self.closing)


@dataclass(**_NODE)
class Unary(Composite):
    token: str
    operand: Expr
    depth: int
    kind: ClassVar[str] = "unary"

    @property
    def operator(self) -> str:
        return strip_space(self.token)

    def parts(self) -> tuple[str | Expr, ...]:
        return (self.token, self.operand)

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def _key(self) -> tuple[object, ...]:
        return (self.token,)


@dataclass(**_NODE)
class Binary(Composite):
    left: Expr
    token: str
    right: Expr
    depth: int
    kind: ClassVar[str] = "binary"

    @property
    def operator(self) -> str:
        return strip_space(self.token)

    def parts(self) -> tuple[str | Expr, ...]:
        return (self.left, self.token, self.right)

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def _key(self) -> tuple[object, ...]:
        return (self.token,)
