"""Writing relgen's named outputs without ever losing a user's file.

relgen writes the files it names and nothing else. Beside them it keeps a manifest,
`.relgen-output`, in `sha256sum` format (`<sha256>  <name>` a line): what it wrote, byte for
byte. From that manifest follow the rules:

- a file that exists but is not in the manifest was not written by relgen: it is never
  overwritten, `--force` or not;
- a file in the manifest whose bytes changed since (a Signed-off-by edited by hand) is
  overwritten only with `force`, which means exactly "overwrite relgen's own outputs";
- an earlier output that this run does not produce is removed only while it is unchanged;
- a folder inside a kernel source tree is refused: relgen writes no file into a tree.

Every check runs before the first byte is written. Each file is written to a temporary file
in its own folder and renamed into place, so a reader sees the old file or the new one, and
an error or a signal leaves neither temporary files nor a folder relgen created.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from relgen.errors import RelgenError

MARKER = ".relgen-output"
# A folder holding these is a Linux source tree (the root has all of them).
KERNEL_TREE_SIGNS = (("arch", True), ("MAINTAINERS", False))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What relgen wrote into one folder: name -> sha256 (None: written by an older relgen
    that recorded no digest, so a change by hand cannot be ruled out)."""

    entries: Mapping[str, str | None]

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MARKER
        if not path.is_file():
            return cls({})
        entries: dict[str, str | None] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            digest, separator, name = line.partition("  ")
            if separator and len(digest) == 64:
                entries[name] = digest
            elif line.strip():
                entries[line.strip()] = None
        return cls(entries)

    def text(self) -> bytes:
        return "".join(f"{digest}  {name}\n" for name, digest in sorted(self.entries.items())
                       if digest is not None).encode("utf-8")


def kernel_tree_holding(folder: Path) -> Path | None:
    """The Linux source tree that `folder` lies in (or is), if any."""
    for candidate in (folder, *folder.parents):
        if all((candidate / name).is_dir() if is_dir else (candidate / name).is_file()
               for name, is_dir in KERNEL_TREE_SIGNS):
            return candidate
    return None


@dataclass(frozen=True)
class WriteResult:
    written: tuple[str, ...]
    removed: tuple[str, ...]  # earlier outputs of relgen, unchanged, no longer produced
    kept: tuple[str, ...]  # earlier outputs no longer produced but changed by hand: left alone


def _plan(folder: Path, files: Mapping[str, bytes], manifest: Manifest, force: bool
          ) -> tuple[list[str], list[str]]:
    """Refuse what must not be overwritten; return (stale unchanged, stale edited) names."""
    refusals: list[str] = []
    for name in sorted(files):
        if not name or "/" in name or name in (".", "..", MARKER):
            raise RelgenError(f"refusing to write {name!r}: not a plain file name")
        target = folder / name
        if not (target.exists() or target.is_symlink()):
            continue
        if target.is_symlink() or not target.is_file():
            refusals.append(f"{name} exists and is not a regular file")
        elif name not in manifest.entries:
            refusals.append(f"{name} exists and was not written by relgen; relgen never "
                            "overwrites it, even with --force")
        elif not force and manifest.entries[name] != _sha256(target.read_bytes()):
            refusals.append(f"{name} was changed since relgen wrote it; pass --force to "
                            "overwrite relgen's own outputs")
    if refusals:
        raise RelgenError("; ".join(refusals), str(folder))
    stale = [n for n in manifest.entries if n not in files and (folder / n).is_file()
             and not (folder / n).is_symlink()]
    unchanged = [n for n in stale if manifest.entries[n] == _sha256((folder / n).read_bytes())]
    return unchanged, [n for n in stale if n not in unchanged]


def check_output_folder(folder: Path, *, protected: Iterable[Path] = ()) -> None:
    """What can be said before any work: the folder's place (not its files)."""
    if folder.exists() and not folder.is_dir():
        raise RelgenError("the output path exists and is not a folder", str(folder))
    parent = folder.absolute().parent
    if not folder.exists() and not parent.is_dir():
        raise RelgenError(f"the output folder's parent {parent} does not exist", str(folder))
    resolved = (folder if folder.exists() else parent).resolve()
    for root in (*protected, kernel_tree_holding(resolved)):
        if root is None:
            continue
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            raise RelgenError(f"the output folder lies in the kernel source tree {root}; "
                              "relgen does not write into a kernel tree: choose another -o",
                              str(folder))


def check_output_file(path: Path, *, protected: Iterable[Path] = ()) -> None:
    """A single named output (`layout -o FILE`): its folder must exist already."""
    if path.is_dir():
        raise RelgenError("the output path is a folder; name a file", str(path))
    if not path.absolute().parent.is_dir():
        raise RelgenError(f"the folder {path.absolute().parent} does not exist", str(path))
    check_output_folder(path.parent, protected=protected)


def _mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_temporary(folder: Path, name: str, data: bytes, mode: int) -> Path:
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".relgen-tmp", dir=folder)
    path = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(path, mode)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def write_outputs(folder: Path, files: Mapping[str, bytes], *, force: bool,
                  protected: Iterable[Path] = ()) -> WriteResult:
    """Write `files` (name -> bytes) into `folder`, each atomically; touch nothing else."""
    protected = tuple(protected)
    check_output_folder(folder, protected=protected)
    manifest = Manifest.read(folder) if folder.is_dir() else Manifest({})
    unchanged, edited = _plan(folder, files, manifest, force)
    created = False
    temporaries: dict[str, Path] = {}
    try:
        if not folder.is_dir():
            folder.mkdir()
            created = True
        mode = _mode()
        for name in sorted(files):
            temporaries[name] = _write_temporary(folder, name, files[name], mode)
        entries = {n: d for n, d in manifest.entries.items() if n not in unchanged}
        entries.update({name: _sha256(data) for name, data in files.items()})
        temporaries[MARKER] = _write_temporary(folder, MARKER, Manifest(entries).text(), mode)
        # every byte is on disk: only renames are left, each atomic
        for name, temporary in sorted(temporaries.items()):
            os.replace(temporary, folder / name)
            del temporaries[name]
    except BaseException as error:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()
        if isinstance(error, OSError):
            raise RelgenError(f"cannot write the outputs here ({error.strerror or error}); "
                              "nothing was written", str(folder)) from error
        raise
    for name in unchanged:
        (folder / name).unlink(missing_ok=True)
    return WriteResult(tuple(sorted(files)), tuple(sorted(unchanged)), tuple(sorted(edited)))
