"""The kernel checks' copy of the user's tree: made once per tree, changed per check, put back.

The checkers never run in the user's tree. Each prepared tree in the cache has `source/`, a
hard-linked copy of it (`cp -al`: 1.5 GB in about a second, no data copied), or a plain copy
where hard links cannot be made (a cache on another filesystem than the tree). A check
writes each changed file as a new file (unlinked first, so that the user's file, the other
link, keeps its bytes) and puts the tree's own file back afterwards. The names are noted
beside the copy first, so that a run killed halfway is put right by the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from relgen import tools
from relgen.errors import ToolError

HARD_LINKED = "a hard-linked copy of the tree"
COPIED = "a copy of the tree (hard links cannot reach the cache from the tree's filesystem)"


def _one_line(text: str) -> str:
    """The first line of a program's complaint, and how many more there were."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return lines[0] + more


def make_copy(tree: Path, target: Path) -> str:
    """Copy `tree` to `target` (which must not exist): hard links where the filesystems
    allow them, else a real copy. Returns which of the two it made; raises ToolError, in one
    line, when neither can be made."""
    if _same_filesystem(tree, target.parent):
        result = tools.run(["cp", "-al", "--", str(tree), str(target)])
        if result.returncode == 0:
            return HARD_LINKED
        shutil.rmtree(target, ignore_errors=True)
    result = tools.run(["cp", "-a", "--", str(tree), str(target)])
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise ToolError(f"cannot copy {tree} into the cache at {target.parent}: "
                        + _one_line(result.stderr))
    return COPIED


def _same_filesystem(first: Path, second: Path) -> bool:
    return os.stat(first).st_dev == os.stat(second).st_dev


def changed_note(copy: Path) -> Path:
    """Where a run notes the files it changed in `copy` until it has put them back."""
    return copy.parent / "changed-files.json"


@contextlib.contextmanager
def changed_files(tree: Path, copy: Path, changed: Mapping[str, bytes]
                  ) -> Iterator[dict[str, Path]]:
    """The changed files written into `copy` (kernel path -> file there), put back after.

    Each file is unlinked before it is written, so the write makes a new inode and the
    tree's file keeps its bytes; afterwards `restore` puts the tree's own file back, and
    removes a file the tree does not have.
    """
    note = changed_note(copy)
    note.write_text(json.dumps(sorted(changed)), encoding="utf-8")
    written = {}
    try:
        for name, data in changed.items():
            path = copy / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_bytes(data)
            written[name] = path
        yield written
    finally:
        restore(tree, copy)


def restore(tree: Path, copy: Path) -> None:
    """Put the tree's files back where a run (finished or killed) wrote its changed ones."""
    note = changed_note(copy)
    if not note.is_file():
        return
    try:
        names = json.loads(note.read_text(encoding="utf-8"))
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ToolError(f"{note} is not a list of file names: remove {copy.parent} "
                        "and the kernel checks will prepare the tree again")
    for name in names:
        path = copy / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            continue  # never anything outside the copy
        path.unlink(missing_ok=True)
        original = tree / name
        if original.is_file():
            try:
                os.link(original, path)
            except OSError:
                shutil.copy2(original, path)
    note.unlink()
