"""The configurations relgen checks: -D/-U as cpp takes them, each open switch on and off."""

from __future__ import annotations

import pytest

from relgen import source
from relgen.errors import RelgenError
from relgen.source.configurations import MAX_SWITCHES, enumerate_configurations, from_options
from relgen.source.region import conditional_switches


def test_options_as_cpp_takes_them() -> None:
    given = from_options(["CONFIG_XEN", "PAGE_SHIFT=14"], ["CONFIG_SMP"])
    assert given.cpp_flags == ("-DCONFIG_XEN", "-DPAGE_SHIFT=14", "-UCONFIG_SMP")
    assert given.describe() == "-DCONFIG_XEN, -DPAGE_SHIFT=14, -UCONFIG_SMP"
    with pytest.raises(RelgenError, match="not a macro name"):
        from_options(["1X"])


def test_each_open_switch_on_and_off_and_given_ones_fixed() -> None:
    found = enumerate_configurations(from_options(["CONFIG_XEN"]), ["CONFIG_XEN", "A", "B"])
    assert found.complete and found.switches == ("A", "B")
    assert [c.condition for c in found.each] == [
        "!defined(A) && !defined(B)", "!defined(A) && defined(B)",
        "defined(A) && !defined(B)", "defined(A) && defined(B)"]
    assert all("-DCONFIG_XEN" in c.cpp_flags for c in found.each)


def test_too_many_switches_are_bounded_and_say_so() -> None:
    names = [f"S{i}" for i in range(MAX_SWITCHES + 2)]
    found = enumerate_configurations(from_options(), names)
    assert not found.complete and len(found.each) == len(names) + 2
    assert "8 of the 64 configurations of 6 switches" in found.describe()
    assert "only all off, each one alone on, and all on" in found.describe()


@pytest.mark.parametrize(("line", "names"), [
    ("#ifdef CONFIG_XEN\n", ["CONFIG_XEN"]),
    ("#ifndef CONFIG_XEN /* not Xen */\n", ["CONFIG_XEN"]),
    ("#if defined(CONFIG_A) && CONFIG_B > 1 // both\n", ["CONFIG_A", "CONFIG_B"]),
    ("#else\n", []),
])
def test_switches_a_conditional_names(line: str, names: list[str]) -> None:
    (item,) = source.parse_module(line).lines[0].items
    assert conditional_switches(item) == names  # type: ignore[arg-type]
