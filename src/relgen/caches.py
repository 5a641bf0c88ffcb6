"""Where relgen keeps files between runs: the one rule for its cache folders.

relgen keeps two things between runs: lark's compiled grammar (`source/parser.py`) and the
kernel checks' prepared pristine trees (`checks/kernel.py`). Both live under
`$XDG_CACHE_HOME/relgen`, else `~/.cache/relgen` (the XDG base directory rule), and a folder
may be named by an environment variable of its own instead (`$RELGEN_KERNEL_CHECK_CACHE`).
"""

from __future__ import annotations

import os
from pathlib import Path


class NoCacheFolder(OSError):
    """Neither the environment nor the user's home says where a cache folder could be."""


def cache_folder(name: str = "", *, variable: str | None = None) -> Path:
    """`$variable` when it is set, else `$XDG_CACHE_HOME/relgen/name` (else under ~/.cache).

    The folder is not made here: the caller makes it, and says what it does when it cannot.
    """
    explicit = os.environ.get(variable) if variable else None
    if explicit:
        return Path(explicit).resolve()
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError as error:  # no $HOME and no password entry to find one
            raise NoCacheFolder(f"no cache folder: {error}") from error
    return (Path(base) / "relgen" / name).resolve()
