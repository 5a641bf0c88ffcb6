"""Scratch folders that an interruption never leaves behind.

relgen works in temporary folders (the twins, git, spatch, the check-only compiler). Ctrl-C
and SIGTERM (which the command line turns into an exception) unwind through every `with`, so
each folder is removed on the way out; but a signal that arrives between the folder's creation
and the start of its `with`, or in the middle of its removal, would leave it, or part of it,
behind. `scratch_folder` holds those two signals over both moments and acts on a signal that
came meanwhile right after. Python runs signal handlers in the main thread only, so a folder
of a worker thread needs no holding: the main thread's unwinding waits for its work.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda n, _frame: caught.append(n))
                for number in HELD}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


@contextmanager
def scratch_folder(prefix: str = "relgen-") -> Iterator[str]:
    """A new folder in the system's temporary folder, removed with all it holds on the way
    out, however the block ends."""
    folder = None
    try:
        with held_signals():
            folder = tempfile.mkdtemp(prefix=prefix)
        yield folder
    finally:
        if folder is not None:
            with held_signals():
                shutil.rmtree(folder, ignore_errors=True)
