"""The header's macro names: one rule, used by the rewrite, the header and its verification."""

from __future__ import annotations

MACRO_PREFIX = "KEXEC_"


def kexec_macro(symbol: str, what: str) -> str:
    """memory_stack, SIZE -> KEXEC_MEMORY_STACK_SIZE; kexec_fake_sal_rendez, OFFSET ->
    KEXEC_FAKE_SAL_RENDEZ_OFFSET (a symbol that already starts with kexec_ is not prefixed
    twice)."""
    stem = symbol.lstrip(".").upper()
    if not stem.startswith(MACRO_PREFIX):
        stem = MACRO_PREFIX + stem
    return f"{stem}_{what}"


def size_macro(area: str) -> str:
    return kexec_macro(area, "SIZE")


def offset_macro(entry_point: str) -> str:
    return kexec_macro(entry_point, "OFFSET")
