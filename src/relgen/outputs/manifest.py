"""The manifest `.relgen-output`: what relgen wrote into a folder, and which command wrote it.

Its format, and why it is read as untrusted input, are in `relgen.outputs`. A line counts only
if it names a plain file that its command writes; every other line is ignored with a one-line
warning and never acted on.
"""

from __future__ import annotations

import errno
import hashlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
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


