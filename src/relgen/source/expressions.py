"""GAS expressions as frozen nodes, and the label arithmetic the rewrite needs.

Every node keeps `text`, its exact source bytes including the white space before it, so an
expression prints back as it was read. `str(node)` is the text without that white space.
`linear_form` reduces an expression of labels and numbers joined by + and - (and constant
products) to `coefficients * symbols + constant`, which is how relgen reasons about what an
operand such as `(memory_stack_end - 16 - .reloc_entry)` computes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Expr:
    """Base of every expression node."""

    text: str

    def __str__(self) -> str:
        return self.text.lstrip(" \t\f\v\\\r\n")

    def children(self) -> tuple[Expr, ...]:
        return ()

    def walk(self) -> Iterator[Expr]:
        """This node and all nodes below it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True)
class Symbol(Expr):
    """A name: a label, a register (`r2`, `ar.pfs`, `in4`) or a C macro left for cpp."""

    name: str


@dataclass(frozen=True)
class Number(Expr):
    value: int


@dataclass(frozen=True)
class LocalRef(Expr):
    """`1f` or `2b`: the next or previous numeric label `N:`."""

    number: int
    forward: bool


@dataclass(frozen=True)
class Here(Expr):
    """`.`, the current location."""


@dataclass(frozen=True)
class StringLiteral(Expr):
    value: str


@dataclass(frozen=True)
class AtName(Expr):
    """`@priunat`, `@pause`: an ia64 keyword operand."""

    name: str


@dataclass(frozen=True)
class Paren(Expr):
    inner: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)


@dataclass(frozen=True)
class Memory(Expr):
    """`[r2]`: the memory operand of a load or store."""

    address: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.address,)


@dataclass(frozen=True)
class Index(Expr):
    """`rr[r8]`, `t1[PIPE_DEPTH]`: an indexed register file or rotating register."""

    base: Expr
    index: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.index)


@dataclass(frozen=True)
class Call(Expr):
    """`IA64_KR(CURRENT_STACK)`: a C macro used inside an operand."""

    name: str
    args: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True)
class Reloc(Expr):
    """`@gprel(sym)`, `@ltoff(sym)`: a relocation operator."""

    operator: str
    operand: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Unary(Expr):
    operator: str
    operand: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Binary(Expr):
    operator: str
    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class LinearForm:
    """`sum(coefficient * symbol) + constant`; symbols with coefficient 0 are dropped."""

    terms: Mapping[str, int]
    constant: int

    def __add__(self, other: LinearForm) -> LinearForm:
        terms = dict(self.terms)
        for name, coefficient in other.terms.items():
            terms[name] = terms.get(name, 0) + coefficient
        return LinearForm({k: v for k, v in terms.items() if v}, self.constant + other.constant)

    def scaled(self, factor: int) -> LinearForm:
        if factor == 0:
            return LinearForm({}, 0)
        return LinearForm({k: v * factor for k, v in self.terms.items()}, self.constant * factor)

    def describe(self) -> str:
        """The form as a reader writes it: `memory_stack_end - .reloc_entry - 16`."""
        parts: list[str] = []
        # positive terms first, so that the form reads as "a - b" rather than "-b + a"
        ordered = sorted(self.terms.items(), key=lambda term: term[1] < 0)
        for name, coefficient in ordered:
            sign = "-" if coefficient < 0 else "+"
            magnitude = abs(coefficient)
            term = name if magnitude == 1 else f"{magnitude}*{name}"
            parts.append(f"{sign} {term}")
        if self.constant or not parts:
            parts.append(f"{'-' if self.constant < 0 else '+'} {abs(self.constant)}")
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else "-" + text[2:]


class NotLinear(ValueError):
    """The expression is not labels and numbers joined by + and - (and constant products)."""


def linear_form(expr: Expr, symbol_values: Mapping[str, int] | None = None) -> LinearForm:
    """Reduce `expr` to a LinearForm; names in `symbol_values` count as constants.

    Raises NotLinear for anything else (registers inside memory operands, shifts of labels,
    macro calls): the caller then says it cannot reason about that operand.
    """
    values = symbol_values or {}
    if isinstance(expr, Number):
        return LinearForm({}, expr.value)
    if isinstance(expr, Symbol):
        if expr.name in values:
            return LinearForm({}, values[expr.name])
        return LinearForm({expr.name: 1}, 0)
    if isinstance(expr, Paren):
        return linear_form(expr.inner, values)
    if isinstance(expr, Unary) and expr.operator in "+-":
        inner = linear_form(expr.operand, values)
        return inner if expr.operator == "+" else inner.scaled(-1)
    if isinstance(expr, Binary) and expr.operator in ("+", "-"):
        left = linear_form(expr.left, values)
        right = linear_form(expr.right, values)
        return left + (right if expr.operator == "+" else right.scaled(-1))
    if isinstance(expr, Binary) and expr.operator == "*":
        left = linear_form(expr.left, values)
        right = linear_form(expr.right, values)
        if not left.terms:
            return right.scaled(left.constant)
        if not right.terms:
            return left.scaled(right.constant)
    raise NotLinear(str(expr))


def symbols_in(expr: Expr) -> frozenset[str]:
    """Every name that occurs anywhere in `expr`."""
    return frozenset(node.name for node in expr.walk() if isinstance(node, Symbol))
