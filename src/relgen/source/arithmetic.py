"""Label arithmetic over expression trees: what an operand such as `(memory_stack_end - 16 -
.reloc_entry)` computes, as `coefficients * symbols + constant` (`linear_form`), and which
names it mentions (`symbols_in`).

It reads nodes by their `kind` (`relgen.source.expressions`, which imports it), walks them
with a stack of its own (an expression can be a left-deep tree of 60,000 levels), and adds a
sum's terms into one growing form, so a sum takes work in proportion to its length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relgen.source.expressions import Expr


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


class _Sum:
    """A linear form being summed up, changed in place: `a + b + ... + z` adds each term
    once instead of copying the growing form at every `+`."""

    __slots__ = ("terms", "constant")

    def __init__(self, terms: dict[str, int], constant: int) -> None:
        self.terms = terms
        self.constant = constant

    def scale(self, factor: int) -> _Sum:
        self.terms = {k: v * factor for k, v in self.terms.items()} if factor else {}
        self.constant *= factor
        return self

    def add(self, other: _Sum, sign: int) -> _Sum:
        """self + sign * other, into the larger of the two."""
        if len(other.terms) > len(self.terms):  # fold the smaller into the larger
            other.scale(sign)
            other.add(self, 1)
            return other
        for name, coefficient in other.terms.items():
            self.terms[name] = self.terms.get(name, 0) + sign * coefficient
        self.constant += sign * other.constant
        return self


def linear_form(expr: Expr, symbol_values: Mapping[str, int] | None = None) -> LinearForm:
    """Reduce `expr` to a LinearForm; names in `symbol_values` count as constants.

    Raises NotLinear for anything else (registers inside memory operands, shifts of labels,
    macro calls): the caller then says it cannot reason about that operand.
    """
    values = symbol_values or {}
    done: list[_Sum] = []  # the forms of the subexpressions finished so far
    stack: list[tuple[Any, bool]] = [(expr, False)]
    while stack:
        node, children_done = stack.pop()
        kind = node.kind
        if kind == "number":
            done.append(_Sum({}, node.value))
        elif kind == "symbol":
            name = node.name
            done.append(_Sum({}, values[name]) if name in values else _Sum({name: 1}, 0))
        elif kind == "paren":
            stack.append((node.inner, False))
        elif kind == "unary" and node.operator in ("+", "-"):
            if children_done:
                if node.operator == "-":
                    done[-1].scale(-1)
            else:
                stack += [(node, True), (node.operand, False)]
        elif kind == "binary" and node.operator in ("+", "-", "*"):
            if not children_done:
                stack += [(node, True), (node.right, False), (node.left, False)]
                continue
            right, left = done.pop(), done.pop()
            done.append(_combined(left, node.operator, right, node))
        else:
            raise NotLinear(str(node))
    (form,) = done
    return LinearForm({k: v for k, v in form.terms.items() if v}, form.constant)


def _combined(left: _Sum, operator: str, right: _Sum, node: Expr) -> _Sum:
    if operator != "*":
        return left.add(right, 1 if operator == "+" else -1)
    if not left.terms:
        return right.scale(left.constant)
    if not right.terms:
        return left.scale(right.constant)
    raise NotLinear(str(node))


def symbols_in(expr: Expr) -> frozenset[str]:
    """Every name that occurs anywhere in `expr` (each piece of a pasted name)."""
    names: set[str] = set()
    for node in expr.walk():
        if node.kind in ("symbol", "versioned_name"):
            names.add(node.name)
        elif node.kind == "pasted_name":
            names.update(node.pieces)
    return frozenset(names)
