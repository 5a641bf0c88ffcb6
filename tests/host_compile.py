"""What a host gcc needs to compile the kernel headers relgen writes, outside a kernel build:
the one attribute macro of <linux/compiler_attributes.h> they use, and <linux/build_bug.h>
reduced to the kernel's static_assert (its message optional)."""

from __future__ import annotations

from pathlib import Path

KERNEL_DEFINES = ("-D__noreturn=__attribute__((__noreturn__))",)

BUILD_BUG = """#define static_assert(expr, ...) __static_assert(expr, ##__VA_ARGS__, #expr)
#define __static_assert(expr, msg, ...) _Static_assert(expr, msg)
"""


def write_kernel_headers(include_dir: Path) -> None:
    """<linux/build_bug.h> under `include_dir`."""
    (include_dir / "linux").mkdir(parents=True, exist_ok=True)
    (include_dir / "linux" / "build_bug.h").write_text(BUILD_BUG, encoding="utf-8")
