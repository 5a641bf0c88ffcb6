"""Preprocessor configurations: the `-D`/`-U` a user gives, and those relgen checks.

The region's conditionals name switches (`#ifdef CONFIG_XEN`). Every switch the user did not
fix with `-D`/`-U` is checked on and off: all combinations up to `MAX_SWITCHES` switches,
beyond that a bounded set (all off, each one alone on, all on) that the outputs state.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from relgen.errors import RelgenError

MAX_SWITCHES = 4  # 2**4 = 16 configurations, each assembled at every page size
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Configuration:
    """cpp's view of one build: what the user gave, and the switches relgen set."""

    defines: tuple[tuple[str, str | None], ...] = ()  # -D NAME[=VALUE], in order
    undefines: tuple[str, ...] = ()  # -U NAME
    switches: tuple[tuple[str, bool], ...] = ()  # set by relgen: (name, on)

    @property
    def given_flags(self) -> list[str]:
        """The user's -D and -U, as cpp takes them."""
        flags = [f"-D{name}" if value is None else f"-D{name}={value}"
                 for name, value in self.defines]
        return flags + [f"-U{name}" for name in self.undefines]

    @property
    def cpp_flags(self) -> tuple[str, ...]:
        switched = [f"-D{name}" if on else f"-U{name}" for name, on in self.switches]
        return tuple(self.given_flags + switched)

    @property
    def fixed(self) -> frozenset[str]:
        return frozenset([name for name, _ in self.defines] + list(self.undefines))

    @property
    def condition(self) -> str | None:
        """The C condition that holds in this configuration: `defined(CONFIG_XEN)`."""
        if not self.switches:
            return None
        return " && ".join(f"defined({name})" if on else f"!defined({name})"
                           for name, on in self.switches)

    def describe(self) -> str:
        """`CONFIG_XEN on`, `CONFIG_XEN off, CONFIG_SMP on`, or `as given`."""
        words = [f"{name} {'on' if on else 'off'}" for name, on in self.switches]
        words += self.given_flags
        return ", ".join(words) or "as given"

    @property
    def folder(self) -> str:
        """A folder name for its scratch files: `default`, `CONFIG_XEN-on` ..."""
        return "-".join(f"{name}-{'on' if on else 'off'}" for name, on in self.switches) \
            or "default"

    def switched_on(self, names: Sequence[str]) -> bool:
        """Whether any of `names` is defined here (switched on by relgen or by -D)."""
        on = {name for name, value in self.switches if value}
        on |= {name for name, _ in self.defines}
        return any(name in on for name in names)

    def with_switches(self, switches: Sequence[tuple[str, bool]]) -> Configuration:
        return Configuration(self.defines, self.undefines, tuple(switches))


def from_options(defines: Sequence[str] = (), undefines: Sequence[str] = ()) -> Configuration:
    """`-D NAME[=VALUE]` and `-U NAME` as cpp takes them; a bad name is an error."""
    parsed: list[tuple[str, str | None]] = []
    for text in defines:
        name, equals, value = text.partition("=")
        _check_name(name, "-D")
        parsed.append((name, value if equals else None))
    for name in undefines:
        _check_name(name, "-U")
    return Configuration(tuple(parsed), tuple(undefines))


def _check_name(name: str, option: str) -> None:
    if not _NAME.match(name):
        raise RelgenError(f"{option} {name!r}: not a macro name (letters, digits and _, not "
                          "starting with a digit)")


@dataclass(frozen=True)
class Configurations:
    """The configurations to assemble, and whether they are every combination."""

    each: tuple[Configuration, ...]
    complete: bool
    switches: tuple[str, ...]  # the switches varied

    def in_words(self) -> str:
        """The configurations as a commit message says them: "with CONFIG_XEN off and on"."""
        names = " and ".join(self.switches)
        if not self.switches:
            return f"in one configuration ({self.each[0].describe()})"
        if self.complete and len(self.switches) == 1:
            return f"with {names} off and on"
        if self.complete:
            return f"in all {len(self.each)} configurations of {names}"
        return (f"in {len(self.each)} of the {2 ** len(self.switches)} configurations of "
                f"{names} (all off, each alone on, all on)")

    def describe(self) -> str:
        """One line for the map and the verification."""
        if not self.switches:
            return f"one configuration ({self.each[0].describe()})"
        names = ", ".join(self.switches)
        if self.complete:
            return (f"{len(self.each)} configurations: {names} each on and off "
                    f"({'; '.join(c.describe() for c in self.each)})")
        return (f"{len(self.each)} of the {2 ** len(self.switches)} configurations of "
                f"{len(self.switches)} switches ({names}; more than {MAX_SWITCHES}, so only "
                "all off, each one alone on, and all on)")


def enumerate_configurations(base: Configuration, switches: Sequence[str]) -> Configurations:
    """Every configuration of the switches the user did not fix (bounded beyond four)."""
    free = tuple(name for name in switches if name not in base.fixed)
    if len(free) <= MAX_SWITCHES:
        combinations = list(itertools.product((False, True), repeat=len(free)))
    else:
        combinations = [tuple(False for _ in free)]
        combinations += [tuple(i == j for j in range(len(free))) for i in range(len(free))]
        combinations.append(tuple(True for _ in free))
    each = tuple(base.with_switches(tuple(zip(free, on, strict=True))) for on in combinations)
    return Configurations(each, len(free) <= MAX_SWITCHES, free)


AS_GIVEN = Configuration()  # no -D/-U: the configuration of the tree alone
