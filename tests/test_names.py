"""The header's macro names: one rule, no doubled KEXEC_ prefix."""

from __future__ import annotations

import pytest

from relgen.names import offset_macro, size_macro


@pytest.mark.parametrize(("symbol", "macro"), [
    ("relocate_new_kernel", "KEXEC_RELOCATE_NEW_KERNEL_OFFSET"),
    ("kexec_fake_sal_rendez", "KEXEC_FAKE_SAL_RENDEZ_OFFSET"),
    ("KEXEC_already_upper", "KEXEC_ALREADY_UPPER_OFFSET"),
    (".helper", "KEXEC_HELPER_OFFSET"),
])
def test_offset_macro(symbol: str, macro: str) -> None:
    assert offset_macro(symbol) == macro


def test_size_macro() -> None:
    assert size_macro("memory_stack") == "KEXEC_MEMORY_STACK_SIZE"
    assert size_macro("kexec_stack") == "KEXEC_STACK_SIZE"
