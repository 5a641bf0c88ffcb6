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

import errno
import fcntl
import hashlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from relgen.errors import RelgenError
from relgen.names import REWRITE_OUTPUT_NAMES

MARKER = ".relgen-output"
MANIFEST_SIGNATURE = "# relgen-output "  # then the format's version
MANIFEST_HEADER = ("# relgen-output 2: the files relgen wrote here, in sha256sum format "
                   "(sha256sum -c skips the lines that start with #)")
COMMAND_TAG = "# command: "
TEMPORARY_TAG = "# temporary: "
TEMPORARY_SUFFIX = ".relgen-tmp"
MARKER_TEMPORARY = MARKER + TEMPORARY_SUFFIX

REWRITE = "rewrite"
LAYOUT = "layout"
#: The names each command writes: rewrite a fixed set, layout any plain file name (None).
COMMAND_OUTPUTS: Mapping[str, frozenset[str] | None] = {
    REWRITE: REWRITE_OUTPUT_NAMES, LAYOUT: None}

# A folder holding these is a Linux source tree (the root has all of them).
KERNEL_TREE_SIGNS = (("arch", True), ("MAINTAINERS", False))
DIGEST_LINE = re.compile(r"([0-9a-f]{64})  (.*)", re.DOTALL)
# flock errors of file systems without it (NFS, for a folder): those write unlocked
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF)

Warn = Callable[[str], None]


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(path: Path) -> str:
    return _sha256(path.read_bytes())


def _is_regular(path: Path) -> bool:
    """A regular file itself, not a symlink to one."""
    return path.is_file() and not path.is_symlink()


def temporary_name(name: str) -> str:
    """The file that output `name` is written to before it is renamed into place."""
    return f".{name}{TEMPORARY_SUFFIX}"


# ------------------------------------------------------------------------------ names


def _plain_name_problem(name: str) -> str | None:
    """Why `name` cannot be a file relgen writes in its folder, or None if it can be."""
    if name in ("", ".", "..") or "/" in name:
        return "not a plain file name"
    # no control character: a warning shows the name on one line; no backslash: sha256sum
    # would take the line for an escaped one; UTF-8: the manifest is UTF-8
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in name) or not _encodes(name):
        return "not a plain file name"
    # "relgen-output" would have the manifest's temporary as its own
    if name in (MARKER, MARKER.lstrip(".")) or name.endswith(TEMPORARY_SUFFIX):
        return "a name relgen keeps for its own bookkeeping"
    return None


def _encodes(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_problem(command: str, name: str) -> str | None:
    """Why `command` cannot write (or own) a file `name`, or None if it can."""
    problem = _plain_name_problem(name)
    own = COMMAND_OUTPUTS[command]
    if problem is None and own is not None and name not in own:
        return f"relgen {command} never writes it"
    return problem


def _check_names(command: str, files: Iterable[str], folder: Path) -> None:
    if command not in COMMAND_OUTPUTS:
        raise ValueError(f"no relgen command {command!r} writes outputs")
    for name in sorted(files):
        problem = _name_problem(command, name)
        if problem is not None:
            raise RelgenError(f"refusing to write {name!r}: {problem}", str(folder))


# ------------------------------------------------------------------------------ the manifest


@dataclass(frozen=True)
class Entry:
    """A file relgen wrote: the command that wrote it and the digests that are relgen's own
    (one; two while a run replaces it; none from relgen 0.1, which recorded no digest, so that
    a change by hand cannot be ruled out)."""

    command: str
    digests: frozenset[str]


@dataclass(frozen=True)
class Manifest:
    """What relgen wrote into one folder (name -> entry), the temporaries of a run under way,
    and a warning for each line of the file that was ignored."""

    entries: Mapping[str, Entry]
    temporaries: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.parse(_manifest_bytes(folder) or b"", str(folder / MARKER))

    @classmethod
    def parse(cls, data: bytes, shown: str) -> Manifest:
        return _ManifestParser(shown).parse(data)

    def text(self) -> bytes:
        lines = [MANIFEST_HEADER]
        for command in sorted(COMMAND_OUTPUTS):
            names = sorted(name for name, entry in self.entries.items()
                           if entry.command == command and entry.digests)
            lines += [COMMAND_TAG + command] if names else []
            lines += [f"{digest}  {name}" for name in names
                      for digest in sorted(self.entries[name].digests)]
        lines += [TEMPORARY_TAG + name for name in sorted(self.temporaries)]
        return ("\n".join(lines) + "\n").encode("utf-8")


def _manifest_bytes(folder: Path) -> bytes | None:
    path = folder / MARKER
    return path.read_bytes() if _is_regular(path) else None


class _ManifestParser:
    """Reads a manifest line by line, honouring only what relgen itself would have written."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.entries: dict[str, Entry] = {}
        self.temporaries: list[tuple[int, str]] = []
        self.warnings: list[str] = []

    def ignore(self, number: int, what: str, why: str) -> None:
        self.warnings.append(f"{self.shown}:{number}: warning: ignoring {what}: {why}")

    def parse(self, data: bytes) -> Manifest:
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        versioned = bool(lines) and lines[0].startswith(MANIFEST_SIGNATURE.encode())
        command = ""
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.ignore(number, "the line", "not UTF-8")
                continue
            if (versioned and number == 1) or not line.strip():
                continue
            if not versioned:
                self.unversioned_line(number, line)
            elif line.startswith(COMMAND_TAG):
                command = line[len(COMMAND_TAG):]
                if command not in COMMAND_OUTPUTS:
                    self.ignore(number, repr(command), "no relgen command writes outputs so")
                    command = ""
            elif line.startswith(TEMPORARY_TAG):
                self.temporaries.append((number, line[len(TEMPORARY_TAG):]))
            elif not line.startswith("#"):  # lines starting with # are comments
                match = DIGEST_LINE.fullmatch(line)
                if match is None:
                    self.ignore(number, "the line", 'not "<sha256>  <name>"')
                elif not command:
                    self.ignore(number, repr(match[2]), 'after no "# command:" line')
                else:
                    self.add(number, command, match[2], match[1])
        return Manifest(self.entries, self.honoured_temporaries(), tuple(self.warnings))

    def unversioned_line(self, number: int, line: str) -> None:
        """relgen 0.1: `<sha256>  <name>` or a bare name, and no command: a name that rewrite
        writes is rewrite's, any other layout's."""
        match = DIGEST_LINE.fullmatch(line)
        digest, name = (match[1], match[2]) if match else (None, line.strip())
        self.add(number, REWRITE if name in REWRITE_OUTPUT_NAMES else LAYOUT, name, digest)

    def add(self, number: int, command: str, name: str, digest: str | None) -> None:
        """One more digest (None: not known) of a file that `command` wrote, if it can have."""
        problem = _name_problem(command, name)
        known = self.entries.get(name)
        if problem is None and known is not None and known.command != command:
            problem = f"recorded for relgen {known.command} already"
        if problem is not None:
            self.ignore(number, repr(name), problem)
            return
        digests = known.digests if known is not None else frozenset()
        self.entries[name] = Entry(command, (digests | {digest}) if digest else digests)

    def honoured_temporaries(self) -> frozenset[str]:
        """Only the temporary of a file in this manifest, by its one possible name."""
        possible = {temporary_name(name) for name in self.entries}
        for number, name in self.temporaries:
            if name not in possible:
                self.ignore(number, repr(name), "not the temporary of a file in this manifest")
        return frozenset(name for _, name in self.temporaries if name in possible)


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
