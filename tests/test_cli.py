"""The command line a kernel developer expects: help, exit codes, several files, one pipeline."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, QUICK_OPTIONS, ROOT, SharedRuns
from relgen.cli import build_parser, main

FIXTURE_2006 = FIXTURES / "layout_2006_shape.S"
#: The kernel checks say nothing of the command line: tests/test_kernelcheck.py runs them.
QUICK = "--no-kernel-checks"
COMMANDS = ("parse", "layout", "rewrite", "verify", "diff")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_help_states_exit_codes(command: str) -> None:
    parser = subcommands()[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    text = " ".join(parser.format_help().split())
    for status in ("0 success", "1 a check failed", "2 bad input"):
        assert status in text, f"`relgen {command} --help` does not state exit status {status}"
    if any(a.dest == "entry" for a in parser._actions):
        assert "(default: relocate_new_kernel)" in text


def test_readme_synopsis_lists_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    for command, parser in subcommands().items():
        row = " ".join(line for line in readme.splitlines()
                       if line.startswith(f"| `relgen {command}"))
        assert row, f"the README has no synopsis row for relgen {command}"
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in row, f"the README's relgen {command} row lacks {option}"


def test_parse_reports_every_file_and_fails_if_any_failed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.S"
    bad.write_text("\tmov r8=08\n")
    assert main(["parse", str(bad), str(FIXTURE_2006), str(tmp_path / "missing.S")]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{FIXTURE_2006}: ") and captured.out.count("\n") == 1
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert [line.split(": error: ")[0] for line in errors] == [
        f"{bad}:1:9", f"{tmp_path / 'missing.S'}"]


def test_parse_json_of_several_files_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    second = FIXTURES / "syntax_edge_cases.S"
    assert main(["parse", "--json", str(FIXTURE_2006), str(second)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [f["path"] for f in document["files"]] == [str(FIXTURE_2006), str(second)]
    assert main(["parse", "--json", str(second)]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(second)


def test_parse_reads_standard_input() -> None:
    child = subprocess.run([sys.executable, "-m", "relgen.cli", "parse", "--check", "-"],
                           input=FIXTURE_2006.read_bytes(), capture_output=True, check=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.decode().startswith("<stdin>: round trip ok (")


def test_object_errors_name_the_object(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    notelf = tmp_path / "x.o"
    notelf.write_bytes(b"not an object")
    assert main(["layout", "--object", str(notelf)]) == 2
    assert capsys.readouterr().err.startswith(f"{notelf}: error: not an ELF object")


def test_layout_of_a_device_names_no_other_command(capsys: pytest.CaptureFixture[str],
                                                   upstream_tree: Path) -> None:
    assert main(["layout", "/dev/null", "--kernel-tree", str(upstream_tree)]) == 2
    err = capsys.readouterr().err
    assert "rewrite" not in err and err.startswith("/dev/null: error: ")


# ------------------------------------------------ rewrite, diff and check: one pipeline


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("fixture", ["malformed_offset_too_far.S", "malformed_no_end.S",
                                     "malformed_early_version.S"])
def test_rewrite_diff_and_check_refuse_alike(fixture: str, upstream_tree: Path,
                                             toolchain: None, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / fixture
    tree = ("--kernel-tree", upstream_tree)
    results = {
        "rewrite": run(capsys, "rewrite", path, *tree, "-o", tmp_path / "out"),
        "rewrite --diff": run(capsys, "rewrite", path, *tree, "--diff"),
        "rewrite --check": run(capsys, "rewrite", path, *tree, "--check"),
        "diff": run(capsys, "diff", path, *tree),
        "diff --check": run(capsys, "diff", path, *tree, "--check"),
    }
    first = results["rewrite"]
    assert first[0] == 2 and first[2].startswith(f"{path}:")
    assert {mode: result for mode, result in results.items() if result != first} == {}
    assert not (tmp_path / "out").exists()


def rewritten_2006(shared_runs: SharedRuns, tree: Path) -> Path:
    """`relgen rewrite` of the 2006 fixture: its output folder, made once per session (the
    author and the date it is given change the mail only, not the .S or the header)."""
    made = shared_runs.rewrite(FIXTURE_2006, "--kernel-tree", tree, *QUICK_OPTIONS)
    assert made.status == 0, made.stdout
    return made.out


@pytest.mark.usefixtures("pipeline_once")  # diff, rewrite and rewrite --check: one computation
def test_diff_equals_what_rewrite_writes(upstream_tree: Path, toolchain: None, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    status, diff, _ = run(capsys, "diff", FIXTURE_2006, "--kernel-tree", upstream_tree,
                          QUICK)
    assert status == 0
    assert run(capsys, "rewrite", FIXTURE_2006, "--kernel-tree", upstream_tree, "-o",
               tmp_path / "out", QUICK)[0] == 0
    # apply the printed diff to a copy of the input: it gives the written file
    work = tmp_path / "apply"
    target = work / "arch" / "ia64" / "kernel" / "relocate_kernel.S"
    target.parent.mkdir(parents=True)
    target.write_bytes(FIXTURE_2006.read_bytes())
    for caller in ("arch/ia64/include/asm/kexec.h", "arch/ia64/kernel/machine_kexec.c"):
        (work / caller).parent.mkdir(parents=True, exist_ok=True)
        (work / caller).write_bytes((upstream_tree / caller).read_bytes())
    subprocess.run(["git", "apply", "-"], input=diff.encode(), cwd=work, check=True)
    assert target.read_bytes() == (tmp_path / "out" / "relocate_kernel.S").read_bytes()
    header = work / "arch" / "ia64" / "include" / "asm" / "kexec_control_page.h"
    assert header.read_bytes() == (tmp_path / "out" / "kexec_control_page.h").read_bytes()
    assert "page_to_phys" in diff
    assert run(capsys, "rewrite", FIXTURE_2006, "--kernel-tree", upstream_tree,
               "--check", QUICK) == (1, "", "would rewrite arch/ia64/kernel/relocate_kernel.S\n")


def test_verify_of_a_rewrite_of_its_own_output(upstream_tree: Path, toolchain: None,
                                               tmp_path: Path, shared_runs: SharedRuns,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    first, again = rewritten_2006(shared_runs, upstream_tree), tmp_path / "again"
    tree = ("--kernel-tree", upstream_tree, QUICK)
    assert run(capsys, "rewrite", first / "relocate_kernel.S", *tree, "-o", again)[0] == 0
    assert not (again / "relocate_kernel.patch").exists()
    status, out, _ = run(capsys, "verify", again, "--original", first / "relocate_kernel.S",
                         *tree)
    assert status == 0, out
    assert "PASS  no patch: the input is already in code-first layout" in out


def test_verify_names_the_input_the_output_was_made_from(
        upstream_tree: Path, toolchain: None, shared_runs: SharedRuns,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = rewritten_2006(shared_runs, upstream_tree)
    status, stdout, err = run(capsys, "verify", out, "--kernel-tree", upstream_tree)
    assert (status, stdout) == (2, "")
    # the mail says below its `---` which input it was made from (the header no longer does)
    assert re.fullmatch(
        rf"{out}: error: relocate_kernel.patch was made from an input with sha256 "
        r"[0-9a-f]{16}"
        r"\.\.\., but arch/ia64/kernel/relocate_kernel.S has sha256 [0-9a-f]{16}\.\.\.; pass "
        r"--original with that file\n", err)


def test_broken_pipe_is_quiet() -> None:
    child = subprocess.Popen([sys.executable, "-m", "relgen.cli", "parse", "--json",
                              str(FIXTURE_2006)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.read(10)
    child.stdout.close()
    err = io.TextIOWrapper(child.stderr).read()
    assert (child.wait(), err) == (0, "")


@pytest.mark.usefixtures("pipeline_once")  # the three modes: one computation
def test_a_crlf_input_fails_the_same_check_everywhere_with_its_reason(
        upstream_tree: Path, toolchain: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The patch keeps the input's CRLF; checkpatch rejects it, in rewrite as in verify."""
    source = tmp_path / "relocate_kernel.S"
    source.write_bytes(FIXTURE_2006.read_bytes().replace(b"\n", b"\r\n"))
    # the kernel checks are not the point: checkpatch.pl runs without them
    tree = ("--kernel-tree", upstream_tree, "--no-kernel-checks")
    for argv in (("-o", tmp_path / "out"), ("--check",), ("--diff",)):
        status, out, err = run(capsys, "rewrite", source, *tree, *argv)
        assert status == 1
        assert re.search(r"FAIL: ERROR:DOS_LINE_ENDINGS \(\d+ times\): the input's lines end "
                         "in CRLF", out), out
        assert err == f"{source}: error: the regenerated file failed verification; nothing " \
            "written\n"
    assert not (tmp_path / "out").exists()
