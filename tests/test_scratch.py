"""Scratch folders and signals: a Ctrl-C at the moment a scratch folder is made, or while it
is removed, still leaves nothing behind (the race test_outputs.py's signal test met now and
then on a loaded machine), and the signal still stops the work."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from relgen import scratch


def test_a_signal_while_the_folder_is_made_removes_it(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_then_interrupted(**options: str) -> str:
        folder = real_mkdtemp(dir=tmp_path, **options)
        made.append(folder)
        os.kill(os.getpid(), signal.SIGINT)
        return folder

    monkeypatch.setattr(scratch.tempfile, "mkdtemp", mkdtemp_then_interrupted)
    with pytest.raises(KeyboardInterrupt), scratch.scratch_folder():
        pytest.fail("the block runs after the signal")
    assert made and not Path(made[0]).exists()


def test_a_signal_while_the_folder_is_removed_waits_for_the_removal(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_rmtree = shutil.rmtree

    def interrupted_rmtree(path: str, **options: bool) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        real_rmtree(path, **options)

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(scratch.shutil, "rmtree", interrupted_rmtree)
    with pytest.raises(KeyboardInterrupt), scratch.scratch_folder() as folder:
        (Path(folder) / "work").mkdir()
        (Path(folder) / "work" / "file").write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_held_signals_act_after_the_block() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with scratch.held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
