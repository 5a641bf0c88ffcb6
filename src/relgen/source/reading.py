"""Reading assembly source: regular files and standard input, bounded, as strict UTF-8.

A path that is not a regular file (a FIFO, `/dev/zero`, a device, a socket) is refused
before a byte of it is read, and so is a file larger than `MAX_SOURCE_BYTES`; standard
input is read up to that bound and refused beyond it. Nothing relgen reads can make it
wait for a writer or fill its memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from relgen.errors import RelgenError

#: The largest source relgen reads, in bytes: 70 times the largest ia64 assembly file of
#: Linux, glibc, libgcc and binutils' tests (glibc's libm_lgammal.S, 227 KB). A parse takes
#: about 30 bytes of memory per byte of input, so this bounds it near 500 MB.
MAX_SOURCE_BYTES = 16 * 1024 * 1024

_CHUNK = 1 << 16

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def _refuse_unless_regular(mode: int, shown: str) -> None:
    if stat.S_ISDIR(mode):
        raise RelgenError("is a directory, not an assembly file", shown)
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise RelgenError(f"not a regular file ({kind}): relgen reads sources from regular "
                          "files, so save it to a file first", shown)


def _too_large(shown: str, size: int | None = None) -> RelgenError:
    what = f"{size} bytes" if size is not None else "larger"
    return RelgenError(f"too large: {what}, and relgen reads at most {MAX_SOURCE_BYTES} bytes "
                       "(MAX_SOURCE_BYTES)", shown)


def _read_bounded(stream: BinaryIO, shown: str) -> bytes:
    """All of `stream`, or an error once it holds more than MAX_SOURCE_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(_CHUNK, MAX_SOURCE_BYTES + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_SOURCE_BYTES:
            raise _too_large(shown)
    return b"".join(chunks)


def _os_error(error: OSError, shown: str) -> RelgenError:
    if isinstance(error, FileNotFoundError):
        return RelgenError("no such file", shown)
    if isinstance(error, PermissionError):
        return RelgenError("cannot read the file (permission denied)", shown)
    return RelgenError(f"cannot read the file ({error.strerror})", shown)


def read_source(path: Path) -> str:
    """Read a file as text for parsing, with relgen's errors for what is not a text file."""
    shown = str(path)
    try:
        # stat first, so that a FIFO or a device is not even opened (opening some devices
        # does something); then the opened file is checked again, whatever the path now is
        _refuse_unless_regular(os.stat(path).st_mode, shown)
        # O_NONBLOCK: had a FIFO taken the path's place, opening it does not wait for a writer
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
        descriptor = os.open(path, flags)
    except OSError as error:
        raise _os_error(error, shown) from None
    with open(descriptor, "rb", closefd=True) as stream:
        status = os.fstat(descriptor)
        _refuse_unless_regular(status.st_mode, shown)
        if status.st_size > MAX_SOURCE_BYTES:
            raise _too_large(shown, status.st_size)
        try:
            data = _read_bounded(stream, shown)
        except OSError as error:
            raise _os_error(error, shown) from None
    return decode_source(data, shown)


def read_stream(stream: BinaryIO, shown: str = "<stdin>") -> str:
    """Read standard input (or any stream) as text for parsing, at most MAX_SOURCE_BYTES."""
    return decode_source(_read_bounded(stream, shown), shown)


def decode_source(data: bytes, path: str) -> str:
    """Bytes -> text, strictly UTF-8; a NUL byte or bad UTF-8 is a positioned error."""
    if b"\0" in data:
        offset = data.index(b"\0")
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise RelgenError("not a text file (it holds a NUL byte)", path, line, column)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        line_start = data.rfind(b"\n", 0, error.start) + 1
        # in characters, so that the caret stands under the byte in the decoded line
        column = len(data[line_start:error.start].decode("utf-8", "replace")) + 1
        bad = data[error.start:error.start + 1].hex()
        line_end = data.find(b"\n", error.start)
        source = data[line_start:None if line_end < 0 else line_end]
        raise RelgenError(f"not UTF-8: byte 0x{bad} cannot be decoded", path, line, column,
                          source.decode("utf-8", "replace").rstrip("\r")) from None
