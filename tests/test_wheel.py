"""`pip install .` gives a working relgen: the wheel carries the grammar, templates and
semantic patches."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_carries_grammar_templates_semantic_patches_and_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("relgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "relgen/_data/grammars/ia64.lark" in names
    assert {"relgen/_data/templates/kexec_control_page.h.j2",
            "relgen/_data/templates/patch_message.j2"} <= names
    assert {"relgen/_data/cocci/kexec_h.cocci.j2",
            "relgen/_data/cocci/machine_kexec_c.cocci.j2"} <= names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "relgen = relgen.cli:main" in text
    # the kernel checks: the Coccinelle report scripts and the check-only compiler stand-in
    assert "relgen/_data/cocci/checks/stacks_order.cocci" in names
    assert "relgen-checkcc = relgen.checkcc:main" in text
