"""Where long work says what it is doing: one updating line on a terminal, nothing elsewhere.

`relgen verify` and `relgen rewrite` can take a minute (the kernel checks); on a terminal
they show the phase they are in on stderr, with the seconds it has taken so far, as one line
that is rewritten in place (`kernel checks: sparse and gcc 14/32 units, 9 s`) and cleared at
the end. When stderr is not a terminal, or with `-q`, `QUIET` prints nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """Says nothing: the default, and what `-q` and a non-terminal get."""

    def phase(self, text: str) -> None:
        """The work now under way."""

    def done(self) -> None:
        """The work is over: take the line away."""


QUIET = Progress()


class TerminalProgress(Progress):
    """One line on a terminal, redrawn when the phase changes and once a second."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._text = ""
        self._since = time.monotonic()
        self._shown = 0
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _draw(self) -> None:
        line = f"{self._text}, {time.monotonic() - self._since:.0f} s" if self._text else ""
        padding = " " * max(0, self._shown - len(line))
        self._stream.write("\r" + line + padding + ("\r" + line if padding else ""))
        self._stream.flush()
        self._shown = len(line)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self._text:
                    self._draw()

    def phase(self, text: str) -> None:
        with self._lock:
            if text != self._text:
                self._since = time.monotonic() if text.split(":")[0] != \
                    self._text.split(":")[0] else self._since
                self._text = text
                self._draw()

    def done(self) -> None:
        with self._lock:
            self._text = ""
            if self._shown:
                self._stream.write("\r" + " " * self._shown + "\r")
                self._stream.flush()
            self._shown = 0


def for_stderr(quiet: bool) -> Progress:
    """A progress line on stderr where it is a terminal and `quiet` was not asked for."""
    return TerminalProgress(sys.stderr) if not quiet and sys.stderr.isatty() else QUIET
