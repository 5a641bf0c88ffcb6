"""relgen.emit: the header builds in C and in assembly and its guards fire; the diffs apply
with git and equal git's own; the mail equals `git format-patch` and passes checkpatch.pl.

Host tools (gcc, cpp, git, perl) are part of `make setup`: missing, they skip locally and fail
under CI=true, like the fixtures in conftest.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, require_tool
from relgen import __version__
from relgen.emit import (
    DEFAULT_SUBJECT,
    FIXED_DATE,
    HEADER_PATH,
    PLACEHOLDER_IDENTITY,
    UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS,
    DataAreaFacts,
    EntryPointFacts,
    HeaderFacts,
    PatchFacts,
    _changes,
    default_funcname,
    diffstat,
    encode_patch,
    format_patch,
    git_blob_id,
    git_default_funcname,
    ia64_asm_funcname,
    new_file_diff,
    read_typedef_arguments,
    reflow,
    render_commit_message,
    render_header,
    unified_diff,
)
from relgen.errors import RelgenError

RELOCATE = "arch/ia64/kernel/relocate_kernel.S"

AREAS = (
    DataAreaFacts("memory_stack", "KEXEC_MEMORY_STACK_SIZE", 8192, "in4", "memory_stack"),
    DataAreaFacts("register_stack", "KEXEC_REGISTER_STACK_SIZE", 8192, "in5", "register_stack"),
)
HEADER_FACTS = HeaderFacts(
    relgen_version="0.1.0",
    input_path=RELOCATE,
    input_sha256="0123456789abcdef" * 4,
    entry="relocate_new_kernel",
    code_size=0x330,
    data_areas=AREAS,
    entry_points=(EntryPointFacts("relocate_new_kernel", 0, True),),
)
PATCH_FACTS = PatchFacts(
    relgen_version="0.1.0",
    input_path=RELOCATE,
    input_sha256="0123456789abcdef" * 4,
    entry="relocate_new_kernel",
    data_areas=AREAS,
    before_size=20480,
    after_size=4096,
    code_size=0x330,
    instructions_rewritten=2,
    instructions_compared=196,
    before_region_size=0x4340,
)

# the default ia64 function-name rule, in the POSIX ERE git takes as diff.<driver>.xfuncname
GIT_ASM_XFUNCNAME = r"^(([A-Za-z_.$][A-Za-z0-9_.$]*:|([A-Z_]*_)?ENTRY(_[A-Z_]+)?\().*)$"


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """git with no user or system configuration, so only what a test sets counts."""
    require_tool("git")
    env = {
        **os.environ,
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
        "GIT_AUTHOR_NAME": "relgen",
        "GIT_AUTHOR_EMAIL": "relgen@localhost",
        "GIT_COMMITTER_NAME": "relgen",
        "GIT_COMMITTER_EMAIL": "relgen@localhost",
        "GIT_AUTHOR_DATE": "1970-01-01T00:00:00+0000",
        "GIT_COMMITTER_DATE": "1970-01-01T00:00:00+0000",
    }
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stderr.decode()}")
    return result


def scratch_repo(root: Path, files: dict[str, bytes]) -> Path:
    """A git repository holding `files`, committed."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def hunks(diff: str) -> str:
    """The hunks of a diff, from its first `@@` on (headers and index lines differ by design)."""
    start = diff.find("\n@@ ")
    return diff[start + 1 :] if start >= 0 else ""


def git_diff_hunks(tmp: Path, old: bytes, new: bytes, *options: str) -> str:
    """`git diff --no-index` of two files, with our ia64 function-name rule as a diff driver."""
    work = tmp / "no-index"
    work.mkdir(exist_ok=True)
    (work / "attributes").write_text("*.S diff=ia64asm\n")
    (work / "old.S").write_bytes(old)
    (work / "new.S").write_bytes(new)
    result = git(
        work,
        "-c",
        f"core.attributesFile={work / 'attributes'}",
        "-c",
        f"diff.ia64asm.xfuncname={GIT_ASM_XFUNCNAME}",
        "diff",
        "--no-index",
        "--no-color",
        *options,
        "old.S",
        "new.S",
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr.decode()
    return hunks(result.stdout.decode("utf-8", "surrogateescape"))


def upstream_relocate(tree: Path) -> bytes:
    return (tree / RELOCATE).read_bytes()


def replace_line(data: bytes, old_line: bytes, new_lines: Sequence[bytes]) -> bytes:
    lines = data.splitlines(keepends=True)
    index = lines.index(old_line)
    return b"".join(lines[:index] + list(new_lines) + lines[index + 1 :])


# ----------------------------------------------------------------------------------------------
# Header


def test_header_text_and_determinism() -> None:
    text = render_header(HEADER_FACTS)
    assert text == render_header(dataclasses.replace(HEADER_FACTS))
    lines = text.split("\n")
    assert lines[0] == "/* SPDX-License-Identifier: GPL-2.0-only */"
    assert f"Generated by relgen 0.1.0 from {RELOCATE}" in text
    assert f"(sha256 {'0123456789abcdef' * 4})." in text
    assert "Do not edit by hand: regenerate with `relgen rewrite`." in text
    guard = "_ASM_IA64_KEXEC_CONTROL_PAGE_H"
    assert f"#ifndef {guard}\n#define {guard}\n" in text
    assert text.endswith("#endif /* _ASM_IA64_KEXEC_CONTROL_PAGE_H */\n")
    defines = dict(re.findall(r"^#define (\w+)\t+(\S+)$", text, re.MULTILINE))
    assert defines["KEXEC_CONTROL_CODE_SIZE"] == "0x0330"
    assert defines["KEXEC_CONTROL_CODE_PAGE_SIZE"] == "0x1000"
    # plain literals: the regenerated .S uses them as instruction immediates
    assert defines["KEXEC_MEMORY_STACK_SIZE"] == "8192"
    assert defines["KEXEC_REGISTER_STACK_SIZE"] == "8192"
    assert defines["KEXEC_CONTROL_STACK_ARGS"] == "2"
    assert defines["KEXEC_RELOCATE_NEW_KERNEL_OFFSET"] == "0x0000"
    assert "unsigned long memory_stack,\n" in text
    assert "unsigned long register_stack) KEXEC_CONTROL_NORETURN;" in text
    # no prototype of the entry: <asm/kexec.h> has the 4-argument one
    assert "extern" not in text
    assert str(Path(__file__).resolve().parents[1]) not in text  # no path of this checkout
    assert max(len(line.expandtabs()) for line in lines) <= 100


def test_header_code_page_size_rounds_up_to_4k() -> None:
    assert dataclasses.replace(HEADER_FACTS, code_size=4096).code_page_size == 4096
    assert dataclasses.replace(HEADER_FACTS, code_size=4097).code_page_size == 8192
    assert dataclasses.replace(HEADER_FACTS, code_size=1).code_page_size == 4096


@pytest.mark.parametrize(
    "change",
    [
        {"input_path": "/home/me/linux/arch/ia64/kernel/relocate_kernel.S"},
        {"input_path": "../linux/arch/ia64/kernel/relocate_kernel.S"},
        {"input_sha256": "not a hash"},
        {"entry_points": (("relocate_new_kernel", 0, False),)},
        {"data_areas": tuple(reversed(AREAS))},
        {"page_sizes": (4096, 12288)},
        {"code_size": 0},
    ],
)
def test_header_facts_rejected(change: dict[str, object]) -> None:
    with pytest.raises(RelgenError):
        dataclasses.replace(HEADER_FACTS, **change)


def test_header_facts_take_plain_tuples() -> None:
    facts = dataclasses.replace(
        HEADER_FACTS,
        entry_points=[("relocate_new_kernel", 0, True), ("kexec_fake_sal_rendez", 0x40, False)],
    )
    assert facts.entry_points[1].macro == "KEXEC_FAKE_SAL_RENDEZ_OFFSET"
    assert "#define KEXEC_FAKE_SAL_RENDEZ_OFFSET\t\t0x0040\n" in render_header(facts)


def compile_c(tmp: Path, header: str, body: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`gcc -fsyntax-only` (or the `flags` given) on a C file that includes the header."""
    require_tool("gcc")
    (tmp / "kexec_control_page.h").write_text(header)
    source = tmp / "use.c"
    source.write_text('struct ia64_boot_param;\n#include "kexec_control_page.h"\n' + body)
    mode = [] if "-c" in flags else ["-fsyntax-only"]
    command = ["gcc", *mode, "-std=gnu11", "-Wall", "-Wextra", "-Werror", *flags]
    return subprocess.run([*command, "-x", "c", str(source)], capture_output=True, text=True)


CALL_WITH_STACKS = """
void start(relocate_new_kernel_t rnk, struct ia64_boot_param *boot_param);
void start(relocate_new_kernel_t rnk, struct ia64_boot_param *boot_param)
{
	rnk(1, 2, boot_param, 3, KEXEC_CONTROL_CODE_PAGE_SIZE, KEXEC_MEMORY_STACK_SIZE);
}
"""


def test_header_compiles_as_c(tmp_path: Path) -> None:
    result = compile_c(tmp_path, render_header(HEADER_FACTS), CALL_WITH_STACKS)
    assert result.returncode == 0, result.stderr


def test_header_typedef_is_noreturn_under_kernel_attributes(tmp_path: Path) -> None:
    # in a kernel build __noreturn comes from compiler_attributes.h: the call then ends the
    # function, which needs no return (-Wreturn-type needs a real compile, not -fsyntax-only)
    body = "int after(relocate_new_kernel_t rnk);\nint after(relocate_new_kernel_t rnk)\n"
    body += "{\n\trnk(0, 0, 0, 0, 0, 0);\n}\n"
    compile_only = ("-c", "-o", os.devnull)
    result = compile_c(
        tmp_path,
        render_header(HEADER_FACTS),
        body,
        "-D__noreturn=__attribute__((__noreturn__))",
        *compile_only,
    )
    assert result.returncode == 0, result.stderr
    result = compile_c(tmp_path, render_header(HEADER_FACTS), body, *compile_only)
    assert result.returncode != 0 and "return-type" in result.stderr


def test_header_typedef_takes_six_arguments(tmp_path: Path) -> None:
    body = "void old(relocate_new_kernel_t rnk);\nvoid old(relocate_new_kernel_t rnk)\n"
    body += "{\n\trnk(0, 0, 0, 0);\n}\n"
    result = compile_c(tmp_path, render_header(HEADER_FACTS), body)
    assert result.returncode != 0 and "too few arguments" in result.stderr


def test_header_does_not_clash_with_asm_kexec_h(tmp_path: Path, upstream_tree: Path) -> None:
    # the 4-argument declaration of <asm/kexec.h> and this header compile together
    kexec_h = (upstream_tree / "arch/ia64/include/asm/kexec.h").read_text()
    declaration = re.search(r"extern void relocate_new_kernel\([^;]*\);", kexec_h)
    assert declaration is not None
    result = compile_c(tmp_path, render_header(HEADER_FACTS), declaration.group(0) + "\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code_size": 5000}, "kexec control code does not fit in one 4096-byte page"),
        (
            {"entry_points": (("relocate_new_kernel", 0, True), ("ia64_dump_cpu_regs", 0x18))},
            "ia64_dump_cpu_regs is not bundle aligned",
        ),
        (
            {"entry_points": (("relocate_new_kernel", 0, True), ("ia64_dump_cpu_regs", 0x400))},
            "ia64_dump_cpu_regs is not inside the control code",
        ),
        (
            {"data_areas": (dataclasses.replace(AREAS[0], size=8200), AREAS[1])},
            "memory_stack size is not a multiple of 16",
        ),
    ],
)
def test_header_guards_fire(tmp_path: Path, change: dict[str, object], message: str) -> None:
    header = render_header(dataclasses.replace(HEADER_FACTS, **change))
    result = compile_c(tmp_path, header, "")
    assert result.returncode != 0 and message in result.stderr
    result = preprocess_assembly(tmp_path, header)
    assert result.returncode != 0 and message in result.stderr


def preprocess_assembly(tmp: Path, header: str) -> subprocess.CompletedProcess[str]:
    require_tool("gcc")
    (tmp / "kexec_control_page.h").write_text(header)
    source = tmp / "use.S"
    source.write_text('#include "kexec_control_page.h"\n')
    command = ["gcc", "-E", "-P", "-x", "assembler-with-cpp", "-D__ASSEMBLY__", str(source)]
    return subprocess.run(command, capture_output=True, text=True)


def test_header_in_assembly_mode_has_no_c(tmp_path: Path) -> None:
    header = render_header(HEADER_FACTS)
    result = preprocess_assembly(tmp_path, header)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # macros and guards only: nothing left for as
    source = tmp_path / "use.S"
    command = ["gcc", "-fsyntax-only", "-x", "assembler-with-cpp", "-D__ASSEMBLY__", str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.toolchain
def test_header_macros_are_ia64_immediates(tmp_path: Path, toolchain: None) -> None:
    # the regenerated .S writes these in instructions: they must assemble as they are
    (tmp_path / "kexec_control_page.h").write_text(render_header(HEADER_FACTS))
    (tmp_path / "use.S").write_text(
        '#include "kexec_control_page.h"\n'
        "\t.text\n"
        "\tadds r12=KEXEC_MEMORY_STACK_SIZE - 16,r36\n"
        "\tadds r8=KEXEC_REGISTER_STACK_SIZE - 8192,r37\n"
        "\tmovl r9=KEXEC_CONTROL_CODE_SIZE + KEXEC_RELOCATE_NEW_KERNEL_OFFSET\n"
        "\t;;\n"
    )
    cpp = ["cpp", "-P", "-D__ASSEMBLY__", "-x", "assembler-with-cpp", str(tmp_path / "use.S")]
    preprocessed = subprocess.run(cpp, capture_output=True, text=True, check=True).stdout
    (tmp_path / "use.s").write_text(preprocessed)
    assemble = ["ia64-linux-gnu-as", "-x", "-o", str(tmp_path / "use.o"), str(tmp_path / "use.s")]
    result = subprocess.run(assemble, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dump = subprocess.run(
        ["ia64-linux-gnu-objdump", "-d", str(tmp_path / "use.o")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "adds r12=8176,r36" in dump
    assert "movl r9=0x330" in dump


@pytest.mark.upstream
def test_typedef_arguments_read_from_machine_kexec(upstream_tree: Path) -> None:
    source = (upstream_tree / "arch/ia64/kernel/machine_kexec.c").read_text()
    assert read_typedef_arguments(source) == UPSTREAM_RELOCATE_NEW_KERNEL_ARGUMENTS


# ----------------------------------------------------------------------------------------------
# Diffs


def test_asm_funcname_rule() -> None:
    for line in (
        "relocate_new_kernel:",
        ".loop:",
        ".end_loop:\t// done",
        "GLOBAL_ENTRY(x)",
        "ENTRY(y)",
        "ENTRY_MIN_ALIGN(z)",
        "memory_stack:",
    ):
        assert ia64_asm_funcname(line), line
    for line in (
        "1:",
        "\tmov r2=r3",
        " label:",
        "#define O(m) x",
        "// note: x",
        ".align 32",
        "END(relocate_new_kernel)",
    ):
        assert not ia64_asm_funcname(line), line
    assert default_funcname("a/b.S") is ia64_asm_funcname
    assert default_funcname("a/b.h") is git_default_funcname


def edits(tree: Path) -> dict[str, tuple[bytes, bytes]]:
    """Pairs of (old, new) bytes: edits of upstream relocate_kernel.S and of our fixtures."""
    upstream = upstream_relocate(tree)
    no_newline = (FIXTURES / "emit_no_final_newline.S").read_bytes()
    crlf = (FIXTURES / "emit_crlf.S").read_bytes()
    assert not no_newline.endswith(b"\n") and b"\r\n" in crlf
    pairs = {
        "replace in the middle": (
            upstream,
            replace_line(upstream, b"\t//physical mode code begin\n", [b"\t// physical mode\n"]),
        ),
        "edit after .end_loop": (
            upstream,
            replace_line(upstream, b"\tsrlz.d\n", [b"\tsrlz.d\t\t\t// data too\n"]),
        ),
        "pure insertion": (
            upstream,
            replace_line(upstream, b".loop:\n", [b".loop:\n", b"\t// next entry\n"]),
        ),
        "pure deletion": (
            upstream,
            replace_line(upstream, b"\t// purge TR entry for kernel text and data\n", []),
        ),
        "two hunks and a merged pair": (
            upstream,
            replace_line(
                replace_line(
                    replace_line(upstream, b"\tmov ar.lc=r14;;\n", [b"\tmov ar.lc=r14\n", b";;\n"]),
                    b"\tsync.i\t\t\t// for fc.i\n",
                    [b"\tsync.i\n"],
                ),
                b"        st8 [in0]=r0, 8\t\t\t// r0\n",
                [],
            ),
        ),
        "first and last line": (
            upstream,
            b"/* SPDX-License-Identifier: GPL-2.0 */\n"
            + upstream.split(b"\n", 1)[1].replace(b"END(ia64_dump_cpu_regs)\n", b""),
        ),
        "stacks removed": (
            upstream,
            upstream.replace(
                b".align  32\nmemory_stack:\n\t.fill           8192, 1, 0\nmemory_stack_end:\n"
                b"register_stack:\n\t.fill           8192, 1, 0\nregister_stack_end:\n",
                b"",
            ),
        ),
        "last line without newline edited": (no_newline, no_newline + b"_v2"),
        "final newline added": (no_newline, no_newline + b"\n"),
        "final newline removed": (no_newline + b"\n", no_newline),
        "line added after a last line without newline": (no_newline, no_newline + b"\n// end\n"),
        "CRLF edit": (crlf, crlf.replace(b"\tmov r8=r0\r\n", b"\tmov r8=r14\r\n")),
        "CRLF to LF on one line": (crlf, crlf.replace(b".done:\r\n", b".done:\n")),
        "not UTF-8": (crlf, crlf.replace(b"CRLF line", b"CRLF \xe9\xff line")),
    }
    assert list(pairs) == EDIT_NAMES
    return pairs


EDIT_NAMES = [
    "replace in the middle",
    "edit after .end_loop",
    "pure insertion",
    "pure deletion",
    "two hunks and a merged pair",
    "first and last line",
    "stacks removed",
    "last line without newline edited",
    "final newline added",
    "final newline removed",
    "line added after a last line without newline",
    "CRLF edit",
    "CRLF to LF on one line",
    "not UTF-8",
]


@pytest.mark.upstream
@pytest.mark.parametrize("name", EDIT_NAMES)
def test_diff_hunks_equal_git(tmp_path: Path, upstream_tree: Path, name: str) -> None:
    old, new = edits(upstream_tree)[name]
    ours = unified_diff(old, new, RELOCATE)
    assert hunks(ours) == git_diff_hunks(tmp_path, old, new)


@pytest.mark.upstream
@pytest.mark.parametrize("name", EDIT_NAMES)
def test_diff_applies_with_git(tmp_path: Path, upstream_tree: Path, name: str) -> None:
    old, new = edits(upstream_tree)[name]
    repo = scratch_repo(tmp_path / "repo", {RELOCATE: old})
    patch = tmp_path / "edit.patch"
    patch.write_bytes(encode_patch(unified_diff(old, new, RELOCATE)))
    git(repo, "apply", "--check", str(patch))
    git(repo, "apply", str(patch))
    assert (repo / RELOCATE).read_bytes() == new


@pytest.mark.upstream
def test_hunk_header_names_the_nearest_label(upstream_tree: Path) -> None:
    old, new = edits(upstream_tree)["edit after .end_loop"]
    header = next(line for line in unified_diff(old, new, RELOCATE).split("\n") if "@@" in line)
    assert header == "@@ -166,7 +166,7 @@ .end_loop:"
    old, new = edits(upstream_tree)["pure deletion"]
    header = next(line for line in unified_diff(old, new, RELOCATE).split("\n") if "@@" in line)
    assert header == "@@ -92,7 +92,6 @@ .reloc_entry:"  # numeric labels like `4:` name nothing


@pytest.mark.upstream
def test_patch_of_source_and_new_header_applies(tmp_path: Path, upstream_tree: Path) -> None:
    old, new = edits(upstream_tree)["stacks removed"]
    header = render_header(HEADER_FACTS).encode()
    diffs = [unified_diff(old, new, RELOCATE), new_file_diff(header, HEADER_PATH)]
    repo = scratch_repo(tmp_path / "repo", {RELOCATE: old})
    patch = tmp_path / "both.patch"
    patch.write_bytes(encode_patch("".join(diffs)))
    git(repo, "apply", "--check", str(patch))
    git(repo, "apply", "--index", str(patch))
    assert (repo / RELOCATE).read_bytes() == new
    assert (repo / HEADER_PATH).read_bytes() == header
    # the index lines name the blobs git itself stores
    listed = git(repo, "ls-files", "-s").stdout.decode()
    assert f"100644 {git_blob_id(header)} 0\t{HEADER_PATH}" in listed
    assert f"index {git_blob_id(old)[:12]}..{git_blob_id(new)[:12]} 100644" in diffs[0]


@pytest.mark.parametrize("data", [b"", b"one line\n", b"no newline", b"a\r\nb\r\n"])
def test_new_file_diff_applies_and_matches_git(tmp_path: Path, data: bytes) -> None:
    repo = scratch_repo(tmp_path / "repo", {"README": b"x\n"})
    patch = tmp_path / "new.patch"
    ours = new_file_diff(data, "dir/new.h")
    patch.write_bytes(encode_patch(ours))
    git(repo, "apply", "--index", str(patch))
    assert (repo / "dir/new.h").read_bytes() == data
    theirs = git(repo, "-c", "core.abbrev=12", "diff", "--cached", "--no-color").stdout
    assert ours == theirs.decode("utf-8", "surrogateescape")


def test_unchanged_file_gives_no_diff() -> None:
    assert unified_diff(b"a\n", b"a\n", "x.S") == ""


def test_binary_and_outside_paths_rejected() -> None:
    with pytest.raises(RelgenError):
        unified_diff(b"a\0", b"b\0", "x.S")
    with pytest.raises(RelgenError):
        unified_diff(b"a\n", b"b\n", "/abs/x.S")
    with pytest.raises(RelgenError):
        new_file_diff(b"a\n", "../x.h")


def lcs_length(a: Sequence[bytes], b: Sequence[bytes]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def apply_hunks(old: bytes, diff: str) -> bytes:
    """A small independent patch applier: rebuild the new file from the old one and the hunks."""
    lines = old.split(b"\n")
    old_lines = [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    out: list[bytes] = []
    cursor = 0
    last: list[bytes] | None = None  # the list the previous hunk line went to
    for raw in encode_patch(hunks(diff)).split(b"\n")[:-1]:
        if raw.startswith(b"@@ "):
            start = int(re.match(rb"@@ -(\d+)(?:,(\d+))?", raw).group(1))  # type: ignore[union-attr]
            count = re.match(rb"@@ -\d+(?:,(\d+))?", raw).group(1)  # type: ignore[union-attr]
            first = start - 1 if count != b"0" else start
            out += old_lines[cursor:first]
            cursor = first
        elif raw == b"\\ No newline at end of file":
            assert last is not None
            last[-1] = last[-1][:-1]
        elif raw[:1] in (b" ", b"-"):
            assert old_lines[cursor].rstrip(b"\n") == raw[1:]
            cursor += 1
            last = [raw[1:] + b"\n"]
            if raw[:1] == b" ":
                out += last
                last = out
        elif raw[:1] == b"+":
            out.append(raw[1:] + b"\n")
            last = out
    return b"".join(out + old_lines[cursor:])


line_lists = st.lists(
    st.sampled_from([b"a\n", b"b\n", b"\t;;\n", b"\n", b"c\r\n", b"b"]), max_size=14
)


@settings(max_examples=300, deadline=None)
@given(old=line_lists, new=line_lists)
def test_diff_is_minimal_and_rebuilds_new(old: list[bytes], new: list[bytes]) -> None:
    # only the last line of a file can lack its newline
    old = [line if line.endswith(b"\n") else line + b"\n" for line in old[:-1]] + old[-1:]
    new = [line if line.endswith(b"\n") else line + b"\n" for line in new[:-1]] + new[-1:]
    changes = _changes(old, new)
    changed = sum(c.a_end - c.a_start + c.b_end - c.b_start for c in changes)
    assert changed == len(old) + len(new) - 2 * lcs_length(old, new)
    old_bytes, new_bytes = b"".join(old), b"".join(new)
    for context in (0, 1, 3):
        diff = unified_diff(old_bytes, new_bytes, "x.S", context=context)
        assert apply_hunks(old_bytes, diff) == new_bytes


# ----------------------------------------------------------------------------------------------
# Diffstat, mail, commit message, checkpatch


def test_diffstat_counts_and_summary() -> None:
    diffs = [
        unified_diff(b"a\nb\nc\n", b"a\nB\nc\nd\n", "arch/ia64/kernel/relocate_kernel.S"),
        new_file_diff(b"x\n" * 3, HEADER_PATH),
    ]
    assert diffstat(diffs) == (
        " arch/ia64/kernel/relocate_kernel.S         | 3 ++-\n"
        " arch/ia64/include/asm/kexec_control_page.h | 3 +++\n"
        " 2 files changed, 5 insertions(+), 1 deletion(-)\n"
        f" create mode 100644 {HEADER_PATH}\n"
    )
    assert diffstat([unified_diff(b"a\n", b"", "x")]).endswith(" 1 file changed, 1 deletion(-)\n")


def test_reflow_keeps_tables_lists_and_trailers() -> None:
    text = (
        "A paragraph " + "that goes on " * 10 + "\nand ends.\n\n"
        "The map:\n  0x0000 relocate_new_kernel\n  0x0330 end\n\n"
        "- an item " + "with words " * 10 + "\n- another\n\n"
        "Signed-off-by: " + PLACEHOLDER_IDENTITY + "\n"
    )
    out = reflow(text)
    assert max(len(line) for line in out.split("\n")) <= 75
    assert "The map:\n  0x0000 relocate_new_kernel\n  0x0330 end\n" in out
    assert "\n  with words" in out and "\n- another\n" in out
    assert out.endswith(f"\n\nSigned-off-by: {PLACEHOLDER_IDENTITY}\n")
    assert reflow(out) == out


def test_commit_message() -> None:
    message = render_commit_message(PATCH_FACTS)
    assert message == render_commit_message(PATCH_FACTS)
    assert max(len(line) for line in message.split("\n")) <= 75
    flat = " ".join(message.split())
    assert "KEXEC_CONTROL_PAGE_SIZE, 20480 bytes: 8192 + 8192 for memory_stack and" in flat
    assert "not physically contiguous" in flat or "need not be contiguous" in flat
    assert "shrinks from 20480 to 4096 bytes" in flat
    assert "0x330 (816) bytes" in flat
    assert "ia64-linux-gnu-as -x for 4, 8, 16 and 64 KiB pages" in flat
    assert "(196 compared)" in flat and "the two rewritten instructions" in flat
    assert (
        "Callers of relocate_new_kernel (arch/ia64/kernel/machine_kexec.c) must now allocate "
        "the two stack areas with kimage_alloc_control_pages() and pass their physical "
        "addresses as the new trailing arguments" in flat
    )
    assert "KEXEC_CONTROL_PAGE_SIZE in asm/kexec.h can then shrink" in flat
    assert f"\n(sha256 {'0123456789abcdef' * 4}).\n" in message
    assert message.endswith(f"\n\nSigned-off-by: {PLACEHOLDER_IDENTITY}\n")
    shape_2006 = dataclasses.replace(PATCH_FACTS, code_after_data=("kexec_fake_sal_rendez",))
    flat = " ".join(render_commit_message(shape_2006).split())
    assert "for its code, which lies both before and after them: kexec_fake_sal_rendez " in flat
    assert "follows them." in flat


def full_patch(tree: Path) -> tuple[bytes, bytes, str]:
    """(old source, new source, mail): a comment edit a kernel developer would take + the header."""
    old = upstream_relocate(tree)
    comment = [b"\t// physical mode code begins\n"]
    new = replace_line(old, b"\t//physical mode code begin\n", comment)
    diffs = [
        unified_diff(old, new, RELOCATE),
        new_file_diff(render_header(HEADER_FACTS).encode(), HEADER_PATH),
    ]
    mail = format_patch(
        subject=DEFAULT_SUBJECT,
        author=PLACEHOLDER_IDENTITY,
        body=render_commit_message(PATCH_FACTS),
        diffs=diffs,
    )
    return old, new, mail


@pytest.mark.upstream
def test_format_patch_layout(upstream_tree: Path) -> None:
    _, _, mail = full_patch(upstream_tree)
    assert mail.startswith(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        f"From: {PLACEHOLDER_IDENTITY}\n"
        f"Date: {FIXED_DATE}\n"
        f"Subject: [PATCH] {DEFAULT_SUBJECT}\n\n"
    )
    assert f"\nSigned-off-by: {PLACEHOLDER_IDENTITY}\n---\n" in mail
    assert mail.endswith(f"-- \nrelgen {__version__}\n\n")
    # the header (a/ path order) comes before relocate_kernel.S, as git writes them
    assert mail.index(f"diff --git a/{HEADER_PATH}") < mail.index(f"diff --git a/{RELOCATE}")


@pytest.mark.upstream
@pytest.mark.parametrize("subject", [DEFAULT_SUBJECT, "ia64/kexec: " + "a long subject " * 6])
def test_format_patch_equals_git_format_patch(
    tmp_path: Path, upstream_tree: Path, subject: str
) -> None:
    old, new, _ = full_patch(upstream_tree)
    header = render_header(HEADER_FACTS).encode()
    body = render_commit_message(PATCH_FACTS)
    ours = format_patch(
        subject=subject,
        author=PLACEHOLDER_IDENTITY,
        body=body,
        diffs=[unified_diff(old, new, RELOCATE), new_file_diff(header, HEADER_PATH)],
    )
    repo = scratch_repo(tmp_path / "repo", {RELOCATE: old})
    (repo / RELOCATE).write_bytes(new)
    (repo / HEADER_PATH).parent.mkdir(parents=True)
    (repo / HEADER_PATH).write_bytes(header)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--cleanup=verbatim", "-m", f"{subject}\n\n{body}")
    theirs = git(
        repo,
        "-c",
        "core.abbrev=12",
        "-c",
        f"diff.ia64asm.xfuncname={GIT_ASM_XFUNCNAME}",
        "-c",
        f"core.attributesFile={write(tmp_path / 'attributes', '*.S diff=ia64asm')}",
        "format-patch",
        "--stdout",
        "-1",
    ).stdout.decode()
    # the commit id and git's version differ by design
    theirs = re.sub(r"\AFrom [0-9a-f]{40} ", "From " + "0" * 40 + " ", theirs)
    theirs = re.sub(r"\n-- \n.*\n\n\Z", f"\n-- \nrelgen {__version__}\n\n", theirs)
    assert ours == theirs


def write(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


@pytest.mark.upstream
def test_format_patch_goes_through_git_am(tmp_path: Path, upstream_tree: Path) -> None:
    old, new, mail = full_patch(upstream_tree)
    repo = scratch_repo(tmp_path / "repo", {RELOCATE: old})
    (tmp_path / "mail.patch").write_bytes(encode_patch(mail))
    git(repo, "am", "-q", str(tmp_path / "mail.patch"))
    assert (repo / RELOCATE).read_bytes() == new
    log = git(repo, "log", "-1", "--format=%an <%ae>%n%s%n%b").stdout.decode()
    assert log.startswith(f"{PLACEHOLDER_IDENTITY}\n{DEFAULT_SUBJECT}\n")
    assert log.rstrip().endswith(f"Signed-off-by: {PLACEHOLDER_IDENTITY}")


@pytest.mark.upstream
def test_checkpatch_finds_only_the_new_file_warning(tmp_path: Path, upstream_tree: Path) -> None:
    require_tool("perl")
    _, _, mail = full_patch(upstream_tree)
    patch = tmp_path / "relocate_kernel.patch"
    patch.write_bytes(encode_patch(mail))
    checkpatch = upstream_tree / "scripts" / "checkpatch.pl"
    result = subprocess.run(
        ["perl", str(checkpatch), "--no-tree", "--show-types", str(patch)],
        capture_output=True,
        text=True,
    )
    report = result.stdout + result.stderr
    types = re.findall(r"^(ERROR|WARNING|CHECK):([A-Z_]+):", report, re.MULTILINE)
    assert types == [("WARNING", "FILE_PATH_CHANGES")], report
    assert "total: 0 errors, 1 warnings" in report, report
    assert "does MAINTAINERS need updating?" in report


def test_format_patch_rejects_bad_input() -> None:
    diff = unified_diff(b"a\n", b"b\n", "x.S")
    with pytest.raises(RelgenError):
        format_patch(subject="two\nlines", author=PLACEHOLDER_IDENTITY, body="b", diffs=[diff])
    with pytest.raises(RelgenError):
        format_patch(subject="s", author="nobody", body="b", diffs=[diff])
    with pytest.raises(RelgenError):
        format_patch(subject="s", author=PLACEHOLDER_IDENTITY, body="b", diffs=[])
