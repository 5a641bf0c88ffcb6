"""Writing relgen's named outputs without ever losing a user's file.

relgen writes the files it names and nothing else. Beside them it keeps a manifest,
`.relgen-output`, in the format that `sha256sum -c` checks (it skips lines that start with #):

    # relgen-output 2: the files relgen wrote here, in sha256sum format (sha256sum -c ...)
    # command: layout
    <sha256>  map.svg
    # command: rewrite
    <sha256>  kexec_control_page.h
    <sha256>  relocate_kernel.S

Each `<sha256>  <name>` line is a file that relgen wrote, byte for byte; the `# command: NAME`
line above it says which command wrote it. While a run puts its files in place, the manifest
is its journal: a name may have two lines, its old and its new digest (either is relgen's
own), and `# temporary: NAME` lines name that run's temporary files. A manifest without the
first line is from relgen 0.1 (`<sha256>  <name>` or a bare name a line, no command): a name
that rewrite writes is taken as rewrite's, any other as layout's.

What relgen reads back is untrusted input. A line counts only if it names a plain file (no
`/`, not `.` or `..`, no control character or backslash) that its command writes: one of
rewrite's fixed names (`names.REWRITE_OUTPUT_NAMES`), or any such name for layout. Every other
line is ignored with a one-line warning and never acted on. From the manifest follow the
rules:

- a file that exists but is not in the manifest was not written by relgen: it is never
  overwritten, `--force` or not;
- a file whose bytes match none of its digests (a Signed-off-by edited by hand) is
  overwritten only with `force`, which means exactly "overwrite relgen's own outputs";
- a command never replaces or removes another command's file;
- an earlier output of rewrite that this run does not produce is removed only while
  unchanged; nothing removes a layout file (its name is the user's choice);
- a folder inside a kernel source tree is refused: relgen writes no file into a tree.

A run holds an flock on the folder itself (no lock file), so that runs into one folder take
turns. Every check runs before the first byte is written. Then, with Ctrl-C and SIGTERM held
back until it is done, the run removes the temporaries that a killed run left (those the
manifest names), writes the journal, writes each output to `.NAME.relgen-tmp`, renames each
into place, removes its stale outputs and writes the final manifest. Killed at any moment
(kill -9), it leaves files that the manifest takes as relgen's and temporaries that it names,
and the next run finishes the job. An error before the renames puts the old manifest back and
removes the temporaries: nothing has changed. The manifest's own temporary
(`.relgen-output.relgen-tmp`) cannot be named before it exists; it is taken as relgen's when
it holds the start of a manifest or nothing, as a run killed while writing it leaves it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from relgen.errors import RelgenError
from relgen.outputs.manifest import (
    COMMAND_OUTPUTS,
    KERNEL_TREE_SIGNS,
    LAYOUT,
    MANIFEST_HEADER,
    MARKER,
    MARKER_TEMPORARY,
    NO_FLOCK,
    REWRITE,
    Entry,
    Manifest,
    Warn,
    _check_names,
    _digest,
    _is_regular,
    _manifest_bytes,
    _print_warning,
    _sha256,
    temporary_name,
)

__all__ = ["LAYOUT", "MANIFEST_HEADER", "MARKER", "REWRITE", "Entry", "Manifest", "WriteResult",
           "check_output_file", "check_output_folder", "kernel_tree_holding", "write_outputs"]


# ------------------------------------------------------------------------------ the plan


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


@dataclass(frozen=True)
class _Plan:
    """What one run does, worked out before it changes anything."""

    leftovers: tuple[Path, ...]  # temporaries of a killed run, removed first
    journal: Manifest  # in place during the renames: old and new digests, the temporaries
    final: Manifest
    removed: tuple[str, ...]
    kept: tuple[str, ...]


def _refusal(folder: Path, name: str, command: str, entry: Entry | None,
             force: bool) -> str | None:
    """Why `command` must not write `name` over what is there now, or None."""
    target = folder / name
    if not os.path.lexists(target):
        return None
    if not _is_regular(target):
        return f"{name} exists and is not a regular file"
    if entry is None:
        return (f"{name} exists and was not written by relgen; relgen never overwrites it, "
                "even with --force")
    if entry.command != command:
        return (f"{name} was written by relgen {entry.command}; relgen {command} never "
                "replaces another command's output, even with --force")
    if not force and _digest(target) not in entry.digests:
        return (f"{name} was changed since relgen wrote it; pass --force to overwrite "
                "relgen's own outputs")
    return None


def _is_manifest_start(path: Path) -> bool:
    """Whether `path` holds a manifest, or its start, or nothing."""
    header = MANIFEST_HEADER.encode()
    with path.open("rb") as stream:
        return header.startswith(stream.read(len(header)))


def _leftovers(folder: Path, files: Iterable[str], manifest: Manifest
               ) -> tuple[list[Path], list[str]]:
    """The temporaries a killed run left, and refusals for temporary names taken otherwise."""
    leftovers = [folder / name for name in sorted(manifest.temporaries)
                 if _is_regular(folder / name)]
    refusals = []
    for name in [temporary_name(name) for name in sorted(files)]:
        if os.path.lexists(folder / name) and folder / name not in leftovers:
            refusals.append(f"{name} exists and was not written by relgen; relgen never "
                            "overwrites it, even with --force")
    marker_temporary = folder / MARKER_TEMPORARY
    if _is_regular(marker_temporary) and _is_manifest_start(marker_temporary):
        leftovers.append(marker_temporary)
    elif os.path.lexists(marker_temporary):
        refusals.append(f"{MARKER_TEMPORARY} exists and was not written by relgen; relgen "
                        "never overwrites it, even with --force")
    if os.path.lexists(folder / MARKER) and not _is_regular(folder / MARKER):
        refusals.append(f"{MARKER} exists and is not a regular file")
    return leftovers, refusals


def _journal(folder: Path, carried: Mapping[str, Entry], command: str,
             new: Mapping[str, str]) -> Manifest:
    """The manifest while the renames run: each file with its new digest and, while the file
    there now is still relgen's own, its old one too; and the temporaries, by name."""
    entries = dict(carried)
    for name, digest in new.items():
        known = carried.get(name)  # the command's own: another's was refused
        old = known.digests & {_digest(folder / name)} if known else frozenset()
        entries[name] = Entry(command, old | {digest})
    return Manifest(entries, frozenset(temporary_name(name) for name in new))


def _plan(folder: Path, files: Mapping[str, bytes], command: str, manifest: Manifest,
          force: bool) -> _Plan:
    """Refuse what must not be overwritten; else say what the run will do."""
    # an entry whose file is gone (or is no longer a file) protects nothing
    carried = {name: entry for name, entry in manifest.entries.items()
               if _is_regular(folder / name)}
    leftovers, refusals = _leftovers(folder, files, manifest)
    refusals[:0] = [refusal for name in sorted(files)
                    if (refusal := _refusal(folder, name, command, carried.get(name), force))]
    if refusals:
        raise RelgenError("; ".join(refusals), str(folder))
    # rewrite's names are a fixed set, so one it does not write now is an earlier output no
    # longer produced; any name can be layout's, so none of layout's is
    fixed_names = COMMAND_OUTPUTS[command] is not None
    stale = [name for name, entry in sorted(carried.items())
             if fixed_names and entry.command == command and name not in files]
    removed = [name for name in stale if _digest(folder / name) in carried[name].digests]
    new = {name: _sha256(data) for name, data in files.items()}
    final = {name: entry for name, entry in carried.items() if name not in removed}
    final.update({name: Entry(command, frozenset({digest})) for name, digest in new.items()})
    return _Plan(tuple(leftovers), _journal(folder, carried, command, new), Manifest(final),
                 tuple(removed), tuple(name for name in stale if name not in removed))


# ------------------------------------------------------------------------------ the folder


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


def _make_folder(folder: Path) -> bool:
    """Create `folder` unless it exists (perhaps made a moment ago by a concurrent run)."""
    try:
        folder.mkdir()
    except FileExistsError:
        return False
    return True


def _lock(descriptor: int) -> None:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in NO_FLOCK:
            raise


def _still_at(descriptor: int, folder: Path) -> bool:
    """Whether the folder held open is still the one at `folder`."""
    try:
        now = os.stat(folder)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


@contextmanager
def _locked_folder(folder: Path) -> Iterator[tuple[int, bool]]:
    """The folder, created if missing, under this run's flock: (its descriptor, whether this
    run created it). A second run into the same folder waits here until the first is done."""
    while True:
        created = _make_folder(folder)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _lock(descriptor)
            if _still_at(descriptor, folder):
                break
        except BaseException:
            os.close(descriptor)
            raise
        # the run that created it removed it again on an error while we waited: once more
        os.close(descriptor)
    try:
        yield descriptor, created
    finally:
        os.close(descriptor)  # which releases the lock


@contextmanager
def _signals_held_back() -> Iterator[None]:
    """Ctrl-C and SIGTERM take effect when the block is done: once the folder starts to
    change, the run takes it to a state the manifest describes (kill -9 is the journal's)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


# ------------------------------------------------------------------------------ writing
# Each step of a run that changes the folder goes through one of these three (the clean-up
# after an exception aside), so that a test can stop a run between any two, as kill -9 would.


def _create(path: Path, data: bytes) -> None:
    """Write a new file, never an existing one, and flush it to the disk."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _rename(source: Path, target: Path) -> None:
    os.replace(source, target)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _replace_manifest(folder: Path, text: bytes | None) -> None:
    """Put `text` in place as the manifest, atomically (None: no manifest)."""
    if text is None:
        _unlink(folder / MARKER)
        return
    temporary = folder / MARKER_TEMPORARY
    _create(temporary, text)
    try:
        _rename(temporary, folder / MARKER)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _stage(folder: Path, files: Mapping[str, bytes], plan: _Plan, old_manifest: bytes | None
           ) -> dict[str, Path]:
    """Everything up to the first rename of an output: the journal and the temporaries. On an
    error, the folder is put back as it was (but for a killed run's temporaries)."""
    temporaries: dict[str, Path] = {}
    journal_in_place = False
    try:
        for path in plan.leftovers:
            _unlink(path)
        _replace_manifest(folder, plan.journal.text())
        journal_in_place = True
        for name in sorted(files):
            _create(folder / temporary_name(name), files[name])
            temporaries[name] = folder / temporary_name(name)
    except BaseException:
        for path in temporaries.values():
            path.unlink(missing_ok=True)
        if journal_in_place:
            with suppress(OSError):  # if even that fails, the journal is a manifest too
                _replace_manifest(folder, old_manifest)
        raise
    return temporaries


def _commit(folder: Path, temporaries: Mapping[str, Path], plan: _Plan) -> None:
    """The renames, the stale outputs, the final manifest; an error leaves the journal."""
    try:
        for name, temporary in sorted(temporaries.items()):
            _rename(temporary, folder / name)
        for name in plan.removed:
            _unlink(folder / name)
        _replace_manifest(folder, plan.final.text())
    except BaseException as error:
        for temporary in temporaries.values():
            with suppress(OSError):
                temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise RelgenError(f"writing the outputs stopped half-way ({error.strerror or error});"
                              " run relgen again to finish", str(folder)) from error
        raise


def _sync(folder_descriptor: int) -> None:
    """Make the renames in the folder durable, where the file system can."""
    with suppress(OSError):
        os.fsync(folder_descriptor)


def _write_locked(folder: Path, descriptor: int, files: Mapping[str, bytes], command: str,
                  force: bool, warn: Warn) -> WriteResult:
    old_manifest = _manifest_bytes(folder)
    manifest = Manifest.parse(old_manifest or b"", str(folder / MARKER))
    for message in manifest.warnings:
        warn(message)
    plan = _plan(folder, files, command, manifest, force)
    with _signals_held_back():
        temporaries = _stage(folder, files, plan, old_manifest)
        _sync(descriptor)  # the journal is on the disk before any output is replaced
        _commit(folder, temporaries, plan)
        _sync(descriptor)
    return WriteResult(tuple(sorted(files)), plan.removed, plan.kept)


def write_outputs(folder: Path, files: Mapping[str, bytes], *, command: str, force: bool,
                  protected: Iterable[Path] = (), warn: Warn = _print_warning) -> WriteResult:
    """Write `files` (name -> bytes) of relgen `command` into `folder`, each atomically;
    touch nothing else. Each ignored manifest line is one call of `warn`."""
    _check_names(command, files, folder)
    check_output_folder(folder, protected=tuple(protected))
    try:
        with _locked_folder(folder) as (descriptor, created):
            try:
                return _write_locked(folder, descriptor, files, command, force, warn)
            except BaseException:
                if created:
                    with suppress(OSError):  # only while empty: rmdir removes nothing else
                        folder.rmdir()
                raise
    except OSError as error:
        raise RelgenError(f"cannot write the outputs here ({error.strerror or error}); "
                          "nothing was written", str(folder)) from error
