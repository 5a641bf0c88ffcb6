"""The parser's public corpus (issue 21): where it lies, which of its files each package gives,
and fetching it. The files come from `scripts/fetch-corpus.sh` (apt-get download, dpkg, only
the ia64 files) into the ignored `.cache/corpus`; `make setup` fetches them, and so does
`require_public_corpus` when they are missing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import ROOT, missing

CORPUS = ROOT / ".cache" / "corpus"
STAMP = CORPUS / ".relgen-corpus"
FETCH = ROOT / "scripts" / "fetch-corpus.sh"

#: package -> its files that are the corpus
PACKAGES: dict[str, Callable[[], list[Path]]] = {
    "binutils-source": lambda: sorted((CORPUS / "binutils" / "gas" / "testsuite" / "gas"
                                       / "ia64").glob("*.s")),
    "glibc-source": lambda: sorted(p for p in (CORPUS / "glibc").rglob("*.S")
                                   if "ia64" in p.relative_to(CORPUS).parts),
    "gcc-12-source": lambda: sorted((CORPUS / "gcc" / "libgcc" / "config" / "ia64").glob("*.S")),
}


def require_public_corpus() -> Path:
    """The corpus folder, fetched now if it is not there yet; without it (no network) the
    caller skips on a developer machine and fails under CI=true."""
    if not STAMP.is_file():
        try:
            subprocess.run(["bash", str(FETCH)], cwd=ROOT, capture_output=True, timeout=900,
                           check=False)
        except subprocess.TimeoutExpired:
            pass
    if not STAMP.is_file():
        missing(f"the public ia64 corpus in {CORPUS} (scripts/fetch-corpus.sh could not fetch "
                "it)")
    return CORPUS
