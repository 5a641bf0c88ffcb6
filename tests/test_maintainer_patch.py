"""Issue 19: a patch a maintainer applies, on Linux 6.1 and on the 2006 shape.

The 2006 shape is the RHEL5 skeleton tree (tests/fixtures/trees/linux-2.6.18-rhel5):
relocate_new_kernel, the two stacks, then kexec_fake_sal_rendez inside the control page.
Each input is rewritten once here (`relgen rewrite --kernel-tree TREE`, the kernel checks on
where the tree has them: the message states what they found) and every point of the issue
is checked on both: a message true to its input, relgen and the input's sha256 only below
the `---`, the subject prefix of the tree's history or era, a header that reads as written
by hand, a size guard that fails in words, no page size paying more, the typedef with its
one user, the date, the notes on checkpatch.pl, and `git am`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from conftest import AUTHOR, DATE, DATE_IN_MAIL, FIXTURES, SharedRuns, require_tool
from relgen import __version__
from relgen.cli import main
from relgen.errors import RelgenError
from relgen.kernel import callers
from relgen.names import HEADER_INCLUDE, MACHINE_KEXEC_PATH, RELOCATE_KERNEL_PATH
from relgen.toolchain.assemble import assemble
from relgen.toolchain.elf import load_object
from relgen.toolchain.era import place
from relgen.toolchain.tree import KernelTree

TREE_2006 = FIXTURES / "trees" / "linux-2.6.18-rhel5"
INPUTS = ("6.1", "2006")
EACH_INPUT = pytest.mark.parametrize("name", INPUTS)
#: DATE as seconds since the epoch, for $SOURCE_DATE_EPOCH.
DATE_EPOCH = int(datetime(2026, 11, 25, 4, tzinfo=UTC).timestamp())
#: The reason the kernel checks give on the 2.6.18 trees today.

@dataclass(frozen=True)
class Rewrite:
    """One `relgen rewrite` of a tree: what it printed and wrote."""

    tree: Path
    out: Path
    status: int
    stdout: str

    @property
    def patch(self) -> str:
        return (self.out / "relocate_kernel.patch").read_text()

    @property
    def message(self) -> str:
        """The commit message: the Subject line to the Signed-off-by, without the notes."""
        head = self.patch.split("\n---\n")[0]
        return head[head.index("\nSubject: ") + 1:]

    @property
    def notes(self) -> str:
        """What the mail says below its `---`, before the diffstat."""
        return self.patch.split("\n---\n", 1)[1].split("\n\n ", 1)[0]

    @property
    def input_sha256(self) -> str:
        return hashlib.sha256((self.tree / RELOCATE_KERNEL_PATH).read_bytes()).hexdigest()


def rewrite(tree: Path, out: Path, *options: str) -> Rewrite:
    """`relgen rewrite --kernel-tree TREE -o OUT`, in this process, its output kept."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["rewrite", "--kernel-tree", str(tree), "-o", str(out), "--from", AUTHOR,
                       *options])
    return Rewrite(tree, out, status, printed.getvalue())


class Rewrites:
    """One rewrite per input for the whole session, made when a test first asks for it."""

    def __init__(self, request: pytest.FixtureRequest, shared: SharedRuns) -> None:
        self.request, self.shared = request, shared

    def tree(self, name: str) -> Path:
        self.request.getfixturevalue("toolchain")
        return self.request.getfixturevalue("upstream_tree") if name == "6.1" else TREE_2006

    def once(self, tree: Path, *options: str, again: bool = False) -> Rewrite:
        """`rewrite(tree, OUT, *options)`, made once per session (the same run as
        tests/test_pipeline.py's upstream_out where the arguments are the same); with
        `again`, a second run of them."""
        made = self.shared.rewrite("--kernel-tree", tree, "--from", AUTHOR, *options,
                                   again=again)
        return Rewrite(tree, made.out, made.status, made.stdout)

    def __call__(self, name: str) -> Rewrite:
        made = self.once(self.tree(name), "--date", DATE)
        assert made.status == 0, made.stdout
        return made


@pytest.fixture(scope="module")
def rewrites(request: pytest.FixtureRequest, shared_runs: SharedRuns) -> Rewrites:
    return Rewrites(request, shared_runs)


@pytest.fixture
def made(name: str, rewrites: Rewrites) -> Rewrite:
    return rewrites(name)


def flat(text: str) -> str:
    return " ".join(text.split())


def pristine_copy(made: Rewrite, folder: Path) -> Path:
    """The files the patch changes, as the tree has them (the whole skeleton for 2006)."""
    if made.tree == TREE_2006:
        shutil.copytree(made.tree, folder)
        return folder
    for path in re.findall(r"^--- a/(\S+)$", made.patch, re.M):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made.tree / path, folder / path)
    return folder


def applied(made: Rewrite, folder: Path) -> Path:
    """A copy of the pristine files with the mail applied by `git apply`."""
    require_tool("git")
    tree = pristine_copy(made, folder)
    subprocess.run(["git", "apply", str(made.out / "relocate_kernel.patch")], cwd=tree,
                   check=True)
    return tree


# -------------------------------------------------------- 1. true to its input


@EACH_INPUT
def test_the_message_says_what_moves(name: str, made: Rewrite) -> None:
    message = flat(made.message)
    new = (made.out / "relocate_kernel.S").read_text()
    if name == "6.1":
        assert "relocate_new_kernel already comes first and is the only code in the page, so " \
            "no code moves: take the stacks out of it." in message
        assert "Move " not in message and "follows the stacks" not in message
        assert re.findall(r"GLOBAL_ENTRY\((\w+)\)", new) == \
            ["relocate_new_kernel", "ia64_dump_cpu_regs"]
    else:
        assert "kexec_fake_sal_rendez follows the stacks." in message
        assert "Take the stacks out of the page: kexec_fake_sal_rendez then follows " \
            "relocate_new_kernel directly" in message
        # and it did move: it follows relocate_new_kernel, and no stack is left before it
        assert new.index("END(relocate_new_kernel)") < \
            new.index("GLOBAL_ENTRY(kexec_fake_sal_rendez)")
        assert ".fill" not in new
    # only the stacks leave the page, in both
    assert "memory_stack:" not in new and "register_stack:" not in new


@EACH_INPUT
def test_the_subject_says_what_the_change_does_in_the_eras_prefix(name: str,
                                                                   made: Rewrite) -> None:
    expected = {"6.1": "ia64: kexec: take the stacks out of the control page",
                "2006": "[IA64] kexec: move all code first, pass the stacks in"}[name]
    assert made.message.startswith(f"Subject: [PATCH] {expected}\n\n")


@EACH_INPUT
def test_the_checked_paragraph_states_what_was_checked(name: str, made: Rewrite) -> None:
    checked = flat(made.message.split("\nChecked:\n")[1].split("\nSigned-off-by:")[0])
    compared = re.search(r"\((\d+) instructions compared\)", made.stdout)
    assert compared is not None
    assert checked.startswith("- relocate_kernel.S before and after assembled with "
                              "ia64-linux-gnu-as -x at 4, 8, 16 and 64 KiB pages")
    assert f"and their disassembly compared instruction for instruction ({compared.group(1)} " \
        "compared): they differ in the alloc" in checked
    assert "the two rewritten instructions" in checked
    assert "- both control pages run in relgen's ia64 model on 1 kexec image of 4 pages" \
        in checked
    words = set(re.findall(r"[a-z]+", made.message.lower()))
    assert not {"boots", "booted", "builds", "built"} & words


@pytest.mark.parametrize("name", ["2006"])
def test_the_checked_paragraph_says_what_the_kernel_checks_found(name: str, made: Rewrite
                                                                 ) -> None:
    """On the 2006 shape, by the direct route; Linux 6.1's, by Kbuild, is
    test_kernelcheck.py's test_relgens_own_output_passes_the_kernel_checks."""
    checked = flat(made.message.split("\nChecked:\n")[1])
    assert "- sparse and gcc's syntax check (through a check-only ia64 compiler) on the 1 unit " \
        "that includes <asm/kexec.h> and relocate_kernel.S report nothing the unpatched tree " \
        "does not, and the 4 Coccinelle checks of where the stacks come from, who frees them " \
        "and their order report nothing." in checked


@EACH_INPUT
def test_relgen_and_the_input_sha256_only_below_the_separator(name: str, made: Rewrite,
                                                              tmp_path: Path) -> None:
    sha256 = made.input_sha256
    assert f"relgen {__version__}" not in made.message and sha256 not in made.message
    assert made.notes.startswith(f"relgen {__version__} made this patch from "
                                 f"{RELOCATE_KERNEL_PATH}\n(sha256 {sha256}).\n")
    # nothing the change puts in the tree names relgen or a checksum
    diff = made.patch[made.patch.index("\ndiff --git "):]
    added = "\n".join(line for line in diff.splitlines()
                      if line.startswith("+") and not line.startswith("+++ "))
    assert "+#define KEXEC_CONTROL_CODE_PAGE_SIZE" in added
    assert "relgen" not in added.lower() and not re.search(r"[0-9a-f]{40}", added)


# ------------------------------------------------------ 2. the prefix of its history


def record_history(git_dir: Path, work_tree: Path, subjects: list[str]) -> None:
    """Commits of `subjects` to `git_dir`, each touching machine_kexec.c in `work_tree` (a
    comment line added, then taken away again: an even number leaves the file as it was)."""
    assert len(subjects) % 2 == 0
    environment = {**os.environ, "GIT_AUTHOR_NAME": "Old Dev",
                   "GIT_AUTHOR_EMAIL": "old@example.org", "GIT_COMMITTER_NAME": "Old Dev",
                   "GIT_COMMITTER_EMAIL": "old@example.org"}

    def git(*args: str) -> None:
        subprocess.run(["git", f"--git-dir={git_dir}", f"--work-tree={work_tree}", *args],
                       check=True, capture_output=True, env=environment)

    path = work_tree / MACHINE_KEXEC_PATH
    original = path.read_bytes()
    for number, subject in enumerate(subjects):
        path.write_bytes(original + (b"/* a note */\n" if number % 2 == 0 else b""))
        git("add", MACHINE_KEXEC_PATH)
        git("commit", "-q", "-m", subject)
    assert path.read_bytes() == original


#: Three commits of one prefix and one of another, and one of none.
HISTORY = ["[IA64] kexec: a note on the control page", "ia64/kexec: drop the note",
           "ia64/kexec: a note on the stacks", "ia64/kexec: drop that note too"]


def tree_with_history(made: Rewrite, folder: Path) -> Path:
    """A git repository of the tree whose history of machine_kexec.c has HISTORY.

    The 2006 skeleton is copied and committed whole. The 6.1 tree is too big to copy: the
    repository's work tree is a folder of links to the tree's top entries, and its history
    is recorded from a scratch folder that holds machine_kexec.c alone."""
    require_tool("git")
    if made.tree == TREE_2006:
        tree = pristine_copy(made, folder / "tree")
        subprocess.run(["git", "init", "-q", str(tree)], check=True)
        record_history(tree / ".git", tree, ["Linux 2.6.18-prep", *HISTORY, "Linux again"])
        return tree
    tree = folder / "tree"
    tree.mkdir(parents=True)
    for entry in made.tree.iterdir():
        (tree / entry.name).symlink_to(entry)
    scratch = folder / "history"
    (scratch / MACHINE_KEXEC_PATH).parent.mkdir(parents=True)
    shutil.copyfile(made.tree / MACHINE_KEXEC_PATH, scratch / MACHINE_KEXEC_PATH)
    subprocess.run(["git", "init", "-q", "--bare", str(tree / ".git")], check=True)
    record_history(tree / ".git", scratch, HISTORY)
    return tree


@EACH_INPUT
def test_the_subject_prefix_follows_the_trees_history(name: str, made: Rewrite,
                                                      tmp_path: Path) -> None:
    tree = tree_with_history(made, tmp_path)
    again = rewrite(tree, tmp_path / "out", "--date", DATE, "--no-kernel-checks")
    assert again.status == 0, again.stdout
    what = made.message.splitlines()[0].split("kexec: ", 1)[1]
    assert again.message.startswith(f"Subject: [PATCH] ia64/kexec: {what}\n")


# ----------------------------------------------------------- 3. hand-written


def header_of(made: Rewrite) -> str:
    return (made.out / "kexec_control_page.h").read_text()


def without_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


@EACH_INPUT
def test_the_header_reads_as_written_by_hand(name: str, made: Rewrite) -> None:
    header = header_of(made)
    for word in ("generated", "do not edit", "regenerate", "sha256", "relgen"):
        assert word not in header.lower(), word
    assert made.input_sha256 not in header


@EACH_INPUT
def test_the_header_copies_no_number_the_assembler_measures(name: str, made: Rewrite,
                                                            tmp_path: Path) -> None:
    """Not the code's size, not an entry point's offset: an edit of the .S could leave
    them stale. Its numbers are the code page and the stacks the source reserves."""
    header = header_of(made)
    tree = KernelTree(made.tree)
    new = load_object(assemble(made.out / "relocate_kernel.S", tree, tmp_path,
                               extra_headers={HEADER_INCLUDE: header}).object_path)
    start = new.symbol("relocate_new_kernel").value
    word = new.symbol("relocate_new_kernel_size")  # data8 of the code's size, as measured
    size = int.from_bytes(new.section_data(word.section)[word.value:word.value + 8], "little")
    assert size == {"6.1": 0x330, "2006": 0x530}[name]
    measured = {size}
    measured |= {s.value - start for s in new.symbols
                 if s.binding == "GLOBAL" and s.section == ".text" and s.value > start
                 and not s.name.endswith(("_size", "_offset"))}
    for value in measured:
        assert str(value) not in header and f"{value:x}" not in header.lower(), value
    numbers = {int(n) for n in re.findall(r"\b\d+\b", without_comments(header))}
    reserved = {int(n) for n in re.findall(r"\.fill\s+(\d+)",
                                           (made.tree / RELOCATE_KERNEL_PATH).read_text())}
    assert numbers <= {4096} | reserved and numbers


@EACH_INPUT
def test_every_macro_the_header_defines_is_used_by_the_change(name: str, made: Rewrite,
                                                              tmp_path: Path) -> None:
    header = header_of(made)
    defined = re.findall(r"^#define (\w+)", header, re.M)
    guard = defined.pop(0)
    assert guard == "_ASM_IA64_KEXEC_CONTROL_PAGE_H"
    tree = applied(made, tmp_path / "tree")
    era = place(made.tree)
    others = " ".join(without_comments((tree / path).read_text())
                      for path in (RELOCATE_KERNEL_PATH, era.kexec_h, MACHINE_KEXEC_PATH))
    # used in the other files, or in the value of a macro of the header that is
    values = dict(re.findall(r"^#define (\w+)[ \t]+(.*)$", header.replace("\\\n", " "),
                             re.M))
    used = {macro for macro in defined if re.search(rf"\b{macro}\b", others)}
    while True:
        more = {macro for macro in defined if macro not in used and any(
            re.search(rf"\b{macro}\b", values[user]) for user in used)}
        if not more:
            break
        used |= more
    assert used == set(defined)


@EACH_INPUT
def test_no_assertion_compares_literals(name: str, made: Rewrite) -> None:
    code = without_comments(header_of(made))
    assert not re.search(r"static_assert|BUILD_BUG|#\s*error", code)
    defined = set(re.findall(r"^#define (\w+)", code, re.M))
    for condition in re.findall(r"^#\s*(?:if|elif|ifdef|ifndef)\b(.*)$", code, re.M):
        names = set(re.findall(r"[A-Za-z_]\w*", condition)) - {"defined"}
        # every condition tests something the header does not define itself (a
        # configuration switch, __ASSEMBLY__), or is the include guard
        assert names - defined or names == {"_ASM_IA64_KEXEC_CONTROL_PAGE_H"}, condition


# ------------------------------------------------------ 4. the guard in words


def grown(made: Rewrite, folder: Path, text: str, skip: int) -> Path:
    """A copy of the regenerated .S whose code grows by `skip` bytes, at the end of
    relocate_new_kernel's code."""
    source = text.replace("\tbr.call.sptk.many b0=b6;;\n",
                          f"\tbr.call.sptk.many b0=b6;;\n\t.skip {skip}\n", 1)
    assert source != text
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "relocate_kernel.S").write_text(source)
    return folder / "relocate_kernel.S"


def assemble_grown(made: Rewrite, out: Path, folder: Path, skip: int) -> Path:
    header = (out / "kexec_control_page.h").read_text()
    path = grown(made, folder, (out / "relocate_kernel.S").read_text(), skip)
    return assemble(path, KernelTree(made.tree), folder / "work",
                    extra_headers={HEADER_INCLUDE: header}).object_path


def with_an_align_in_the_code(made: Rewrite, folder: Path) -> Path:
    """6.1's input with an `.align 64` in its code (before `.end_loop:`, which only a branch
    reaches), rewritten: the guard then measures the code in runs around it."""
    text = (made.tree / RELOCATE_KERNEL_PATH).read_text()
    assert text.count("\n.end_loop:\n") == 1
    source = folder / "input" / "relocate_kernel.S"
    source.parent.mkdir(parents=True)
    source.write_text(text.replace("\n.end_loop:\n", "\n\t.align 64\n.end_loop:\n"))
    out = folder / "aligned"
    assert main(["rewrite", str(source), "--kernel-tree", str(made.tree), "-o", str(out),
                 "--from", AUTHOR, "--no-kernel-checks"]) == 0
    guard = (out / "relocate_kernel.S").read_text()
    assert re.search(r"\t\.if \(\.Lkexec_code_\d - relocate_new_kernel\) \+ 63 \+ ", guard)
    return out


@pytest.mark.parametrize(("name", "alignment"), [
    ("6.1", "none"), ("6.1", ".align 64"), ("2006", "GLOBAL_ENTRY")])
def test_code_that_outgrows_the_page_fails_the_build_in_words(
        name: str, alignment: str, rewrites: Rewrites, tmp_path: Path) -> None:
    made = rewrites(name)
    out = with_an_align_in_the_code(made, tmp_path) if alignment == ".align 64" else made.out
    with pytest.raises(RelgenError) as caught:
        assemble_grown(made, out, tmp_path / "grown", 4096)
    message = caught.value.message
    assert message.startswith('relocate_new_kernel outgrew KEXEC_CONTROL_CODE_PAGE_SIZE '), \
        message
    assert "too large for field" not in message and "non-constant" not in message


def test_without_an_align_the_guard_is_exact(rewrites: Rewrites, tmp_path: Path) -> None:
    """Code of exactly one page assembles; 16 bytes more (one bundle) fail."""
    made = rewrites("6.1")
    header = (made.out / "kexec_control_page.h").read_text()
    size = load_object(assemble(made.out / "relocate_kernel.S", KernelTree(made.tree),
                                tmp_path / "as-is", extra_headers={HEADER_INCLUDE: header})
                       .object_path).symbol("relocate_new_kernel_end").value
    full = load_object(assemble_grown(made, made.out, tmp_path / "full", 4096 - size))
    assert full.symbol("relocate_new_kernel_end").value == 4096
    with pytest.raises(RelgenError, match="relocate_new_kernel outgrew"):
        assemble_grown(made, made.out, tmp_path / "over", 4096 - size + 16)


# ---------------------------------------------------- 5. no page size pays more


@EACH_INPUT
def test_no_page_size_pays_more(name: str, made: Rewrite) -> None:
    rows = re.findall(r"^ +(\d+) KiB +(\d+) KiB +(\d+) KiB$", made.message, re.M)
    table = {int(page): (int(before), int(after)) for page, before, after in rows}
    assert sorted(table) == [4, 8, 16, 64]
    assert all(after <= before for before, after in table.values()), table
    expected = {"6.1": {4: (32, 20), 8: (32, 24), 16: (32, 32), 64: (64, 64)},
                "2006": {4: (32, 32), 8: (32, 32), 16: (32, 32), 64: (64, 64)}}[name]
    assert table == expected


# ------------------------------------------------------- 6. declarations


@EACH_INPUT
def test_the_typedef_stays_in_machine_kexec_c(name: str, made: Rewrite,
                                              tmp_path: Path) -> None:
    tree = applied(made, tmp_path / "tree")
    era = place(made.tree)
    old = callers.read_typedef_arguments((made.tree / MACHINE_KEXEC_PATH).read_text())
    new = callers.read_typedef_arguments((tree / MACHINE_KEXEC_PATH).read_text())
    added = {"6.1": ("unsigned long memory_stack", "unsigned long register_stack"),
             "2006": ("unsigned long", "unsigned long")}[name]
    assert new == (*old, *added)
    assert "typedef" not in header_of(made)
    assert "typedef" not in (tree / era.kexec_h).read_text()
    # the diff of the typedef is its last line and the new parameters, nothing else
    diff = made.patch.split(f"diff --git a/{MACHINE_KEXEC_PATH} ")[1].split("\ndiff --git ")[0]
    hunk = next(h for h in diff.split("\n@@ ")[1:] if "relocate_new_kernel_t)(" in h)
    lines = hunk.splitlines()[1:]  # after the hunk's header
    removed = [line for line in lines if line.startswith("-")]
    added = [line for line in lines if line.startswith("+")]
    assert len(removed) == 1 and removed[0].endswith(";")
    assert all("unsigned long" in line for line in added) and added[-1].endswith(";")


# ----------------------------------------------------------------- 7. the date


@EACH_INPUT
def test_the_date_is_pinned_by_date(name: str, made: Rewrite) -> None:
    assert f"\nDate: {DATE_IN_MAIL}\n" in made.patch


@EACH_INPUT
def test_the_same_input_and_pin_give_the_same_bytes(name: str, rewrites: Rewrites,
                                                    tmp_path: Path) -> None:
    """Pinned by --date twice, then by $SOURCE_DATE_EPOCH to the same moment: one mail. (No
    kernel checks: they change the message's words, not its date.)"""
    tree = rewrites.tree(name)
    first = rewrites.once(tree, "--date", DATE, "--no-kernel-checks")
    again = rewrites.once(tree, "--date", DATE, "--no-kernel-checks", again=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", str(DATE_EPOCH))
        epoch = rewrite(tree, tmp_path / "epoch", "--no-kernel-checks")
    assert (first.status, again.status, epoch.status) == (0, 0, 0)
    assert f"\nDate: {DATE_IN_MAIL}\n" in first.patch
    assert again.patch == first.patch and epoch.patch == first.patch
    for name_ in ("relocate_kernel.S", "kexec_control_page.h", "layout.json", "layout.txt"):
        assert (again.out / name_).read_bytes() == (first.out / name_).read_bytes()


@EACH_INPUT
def test_the_date_is_now_by_default(name: str, rewrites: Rewrites, tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    now = rewrite(rewrites.tree(name), tmp_path / "now", "--no-kernel-checks")
    after = datetime.now(UTC)
    assert now.status == 0, now.stdout
    header = re.search(r"^Date: (.*)$", now.patch, re.M)
    assert header is not None and before <= parsedate_to_datetime(header.group(1)) <= after


# --------------------------------------------------------------- 8. checkpatch


def architectures_with_the_hook(tree: Path) -> list[str]:
    return [path.parts[-4] for path in sorted(tree.glob("arch/*/include/asm/kexec.h"))
            if re.search(r"^#\s*define\s+ARCH_HAS_KIMAGE_ARCH\b", path.read_text(), re.M)]


@EACH_INPUT
def test_the_notes_say_what_checkpatch_still_reports_and_why(name: str, made: Rewrite) -> None:
    notes = flat(made.notes)
    if name == "2006":
        # 2.6.18 had no checkpatch.pl, and the change defines no hook
        assert "This tree has no scripts/checkpatch.pl: no checkpatch.pl ran." in notes
        assert "ARCH_HAS" not in made.patch
        return
    hooked = architectures_with_the_hook(made.tree)
    assert len(hooked) == 8 and "ia64" not in hooked
    assert "checkpatch.pl --strict reports only what the change cannot avoid:" in notes
    assert "- WARNING FILE_PATH_CHANGES: a new file; F: arch/ia64/ in MAINTAINERS covers it " \
        "already" in notes
    assert "- ERROR DEFINE_ARCH_HAS: ARCH_HAS_KIMAGE_ARCH is the hook include/linux/kexec.h " \
        f"offers for struct kimage_arch, used by {len(hooked)} architectures" in notes
    assert re.search(r"^F:\s*arch/ia64/\s*$", (made.tree / "MAINTAINERS").read_text(), re.M)
    # and that is all checkpatch.pl --strict says
    require_tool("perl")
    result = subprocess.run(["perl", str(made.tree / "scripts/checkpatch.pl"), "--no-tree",
                             "--strict", "--show-types", str(made.out / "relocate_kernel.patch")],
                            capture_output=True, text=True)
    assert sorted(re.findall(r"^(?:WARNING|ERROR|CHECK):(\w+):", result.stdout, re.M)) == \
        ["DEFINE_ARCH_HAS", "FILE_PATH_CHANGES"]


# ------------------------------------------------------------------ 9. git am


@EACH_INPUT
def test_git_am_takes_the_mail(name: str, made: Rewrite, tmp_path: Path) -> None:
    require_tool("git")
    repo = pristine_copy(made, tmp_path / "repo")
    environment = {**os.environ, "GIT_AUTHOR_NAME": "Base", "GIT_AUTHOR_EMAIL": "base@example.org",
                   "GIT_COMMITTER_NAME": "Maintainer",
                   "GIT_COMMITTER_EMAIL": "maintainer@example.org"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                              text=True, env=environment).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "pristine")
    # a 2.6 tree's "[IA64] " prefix is kept by --keep-non-patch, as the README says
    git("am", "-q", *(["--keep-non-patch"] if name == "2006" else []),
        str(made.out / "relocate_kernel.patch"))
    era = place(made.tree)
    assert (repo / RELOCATE_KERNEL_PATH).read_bytes() == \
        (made.out / "relocate_kernel.S").read_bytes()
    assert (repo / era.header).read_bytes() == (made.out / "kexec_control_page.h").read_bytes()
    machine_kexec = (repo / MACHINE_KEXEC_PATH).read_text()
    kexec_h = (repo / era.kexec_h).read_text()
    assert callers.entry_call_arguments(machine_kexec) == [6]
    assert len(callers.read_typedef_arguments(machine_kexec)) == 6
    assert callers.prototype_arguments(kexec_h, "relocate_new_kernel") == 6
    assert f"#include <{HEADER_INCLUDE}>" in kexec_h
    # the commit is the mail's: its author, date and message, the era's prefix in the
    # subject; the notes are gone
    author, date, body = git("log", "-1", "--format=%an <%ae>%n%aD%n%B").split("\n", 2)
    assert author == AUTHOR and date == DATE_IN_MAIL
    assert body.startswith("[IA64] kexec: " if name == "2006" else "ia64: kexec: ")
    message = re.sub(r"^Subject: \[PATCH\] ", "", made.message)
    assert body.rstrip("\n") == message.rstrip("\n")
    assert "relgen " + __version__ not in body and made.input_sha256 not in body
    assert git("status", "--porcelain") == ""


# ------------------------------------------------------ a path of this machine


def test_an_input_outside_the_tree_at_a_long_path(rewrites: Rewrites, tmp_path: Path) -> None:
    tree = rewrites.tree("6.1")
    folder = tmp_path / ("a-folder-with-a-long-name-" * 3) / "and-another-one-inside-it"
    folder.mkdir(parents=True)
    source = folder / "relocate_kernel.S"
    source.write_bytes((FIXTURES / "layout_2006_shape.S").read_bytes())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["rewrite", str(source), "--kernel-tree", str(tree), "-o",
                       str(tmp_path / "out"), "--from", AUTHOR, "--date", DATE])
    assert status == 0, printed.getvalue()
    assert str(tmp_path) not in (tmp_path / "out" / "relocate_kernel.patch").read_text()
