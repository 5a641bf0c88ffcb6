"""Writing an output folder all at once: through a temporary folder, moved into place.

A folder that relgen wrote holds a marker file listing what it wrote; a non-empty folder
without it is refused unless forced, so relgen never overwrites a folder it does not own.
Nothing is written outside the output folder (and its temporary sibling).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import RelgenError

MARKER = ".relgen-output"


def check_output_folder(folder: Path, *, force: bool) -> None:
    """Refuse a non-empty folder that relgen did not write, unless `force`."""
    if folder.exists() and not folder.is_dir():
        raise RelgenError("the output path exists and is not a folder", str(folder))
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file() \
            and not force:
        raise RelgenError("the output folder is not empty and was not written by relgen; "
                          "choose another with -o or pass --force", str(folder))


def write_output_folder(folder: Path, files: Mapping[str, bytes], *, force: bool) -> None:
    """Replace `folder` with exactly `files` (name -> bytes), or leave it untouched on error."""
    check_output_folder(folder, force=force)
    folder = folder.absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, data in sorted(files.items()):
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise RelgenError(f"refusing to write {name!r} outside the output folder")
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (staging / MARKER).write_text("".join(f"{n}\n" for n in sorted(files)),
                                      encoding="utf-8")
        os.chmod(staging, 0o755)
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, retired / "old")
            os.replace(staging, folder)
            shutil.rmtree(retired)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
