"""relgen.kernel.mail: the mail is git's own, the same bytes for the same input, options and
pinned date, dated now unless `--date` or $SOURCE_DATE_EPOCH pins it, with notes below its
`---` that `git am` drops, and the author from --from, git config or (with a warning) the
placeholder."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from conftest import DATE, DATE_IN_MAIL, require_tool
from relgen.errors import RelgenError
from relgen.kernel import mail as patch

CHANGES = [
    patch.FileChange("arch/ia64/kernel/relocate_kernel.S",
                     b"GLOBAL_ENTRY(relocate_new_kernel)\n\t.prologue\n\t.body\n\tnop.m 0\n"
                     b"\talloc r31=ar.pfs,4,0,0,0\n\tbr.ret.sptk.many b0\n"
                     b"END(relocate_new_kernel)\n",
                     b"GLOBAL_ENTRY(relocate_new_kernel)\n\t.prologue\n\t.body\n\tnop.m 0\n"
                     b"\talloc r31=ar.pfs,6,0,0,0\n\tbr.ret.sptk.many b0\n"
                     b"END(relocate_new_kernel)\n"),
    patch.FileChange("arch/ia64/include/asm/kexec_control_page.h", None, b"#define X 1\n"),
    patch.FileChange("arch/ia64/kernel/machine_kexec.c",
                     b"int machine_kexec_prepare(void)\n{\n\tint a;\n\n\ta = 0;\n\treturn a;\n}\n",
                     b"int machine_kexec_prepare(void)\n{\n\tint a;\n\n\ta = 1;\n\treturn a;\n}\n"),
]
BODY = "Why the change.\n\nSigned-off-by: Ann Dev <ann@example.org>\n"
AUTHOR = "Ann Dev <ann@example.org>"
NOTES = "made by a test from nothing in particular\n(sha256 " + "ab" * 32 + ")."
#: The committer date of the repositories these tests make themselves.
COMMITTED = "2026-11-26T00:00:00+0000"


def mail(**options: str | None) -> bytes:
    """The mail of CHANGES; pinned to DATE unless the test says otherwise (date=None: now)."""
    require_tool("git")
    return patch.format_patch(CHANGES, subject="ia64/kexec: a change", body=BODY,
                              **{"author": AUTHOR, "date": DATE, **options})


def mail_date(text: bytes) -> datetime:
    header = next(line for line in text.decode().splitlines() if line.startswith("Date: "))
    return parsedate_to_datetime(header.removeprefix("Date: "))


def git(cwd: Path, *args: str) -> bytes:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "HOME": str(cwd), "GIT_AUTHOR_NAME": "Base", "GIT_AUTHOR_EMAIL": "base@example.org",
           "GIT_COMMITTER_NAME": "Ann Dev",
           "GIT_COMMITTER_EMAIL": "ann@example.org", "GIT_COMMITTER_DATE": COMMITTED}
    return subprocess.run(["git", "-c", "core.abbrev=12", "-c", "init.defaultBranch=master",
                           *args], cwd=cwd, env=env, capture_output=True, check=True).stdout


def test_mail_headers_and_files() -> None:
    text = mail().decode()
    assert text.startswith(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        f"From: {AUTHOR}\nDate: {DATE_IN_MAIL}\n"
        "Subject: [PATCH] ia64/kexec: a change\n\nWhy the change.\n")
    assert " 3 files changed, 3 insertions(+), 2 deletions(-)\n" in text
    assert " create mode 100644 arch/ia64/include/asm/kexec_control_page.h\n" in text
    assert "index 000000000000.." in text  # core.abbrev=12, whatever the user's config says
    # hunk headers name the function as the kernel's .gitattributes (diff=cpp) and the ia64
    # label rule do
    assert "@@ -2,6 +2,6 @@ int machine_kexec_prepare(void)\n" in text
    # no signature: relgen names itself in the notes below the `---`, where it is asked to
    assert "\n-- \n" not in text and "relgen" not in text
    assert text.endswith("\n END(relocate_new_kernel)\n")  # the last hunk, then nothing


def test_notes_go_below_the_separator_before_the_diffstat() -> None:
    text = mail(notes=NOTES).decode()
    message, separator, rest = text.partition("\n---\n")
    assert separator and NOTES not in message
    assert rest.startswith(NOTES + "\n\n arch/ia64/include/asm/kexec_control_page.h ")


def test_same_input_same_bytes_and_options_change_them() -> None:
    first = mail()
    assert first == mail()
    dated = mail(date="2026-11-25T05:00:00+0000").decode()
    assert "\nDate: Wed, 25 Nov 2026 05:00:00 +0000\n" in dated
    assert "\nFrom: Bob <bob@example.org>\n" in mail(author="Bob <bob@example.org>").decode()


def test_the_date_is_now_unless_pinned() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    made = mail_date(mail(date=None))
    after = datetime.now(UTC)
    assert before <= made <= after


def test_source_date_epoch_pins_the_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764043200")
    first = mail(date=None)
    assert mail_date(first) == datetime(2025, 11, 25, 4, 0, tzinfo=UTC)
    assert mail(date=None) == first
    # --date wins over the environment
    assert f"\nDate: {DATE_IN_MAIL}\n".encode() in mail()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(RelgenError, match="SOURCE_DATE_EPOCH must be a number of seconds"):
        mail(date=None)


@pytest.mark.parametrize("given", ["yesterday", "2001-01-01", "@1700000000 +0000",
                                   "2026-11-25 04:00 +0000"])
def test_dates_git_commit_takes_are_taken(given: str) -> None:
    assert mail(date=given).startswith(b"From 0000000000000000000000000000000000000000 ")


def test_the_date_as_git_commit_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert patch.patch_date("2001-01-01") == "2001-01-01"
    assert patch.patch_date(None) == "now"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert patch.patch_date(None) == "@0 +0000"
    assert patch.patch_date("yesterday") == "yesterday"


def test_git_am_drops_the_notes_and_keeps_the_date(tmp_path: Path) -> None:
    text = mail(notes=NOTES)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for change in CHANGES:
        if change.old is not None:
            (repo / change.path).parent.mkdir(parents=True, exist_ok=True)
            (repo / change.path).write_bytes(change.old)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (tmp_path / "mail").write_bytes(text)
    git(repo, "am", "-q", str(tmp_path / "mail"))
    message = git(repo, "log", "-1", "--format=%B").decode()
    assert message == "ia64/kexec: a change\n\n" + BODY + "\n"
    assert git(repo, "log", "-1", "--format=%aI").decode().strip() == "2026-11-25T04:00:00+00:00"


def test_mail_equals_what_git_makes_of_it_again(tmp_path: Path) -> None:
    # git am takes the mail into a repository holding the originals; format-patch with the
    # same options gives the mail back byte for byte
    first = mail()
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for change in CHANGES:
        if change.old is not None:
            (repo / change.path).parent.mkdir(parents=True, exist_ok=True)
            (repo / change.path).write_bytes(change.old)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q", "-m", "base")
    (tmp_path / "mail").write_bytes(first)
    git(repo, "am", "-q", "--committer-date-is-author-date", str(tmp_path / "mail"))
    for change in CHANGES:
        assert (repo / change.path).read_bytes() == change.new
    again = git(repo, "format-patch", "-1", "--stdout", "--zero-commit", "--no-signature")
    assert again.split(b"\n@@")[1:] == first.split(b"\n@@")[1:]
    assert again.split(b"\n---\n")[0] == first.split(b"\n---\n")[0]


def test_git_config_of_the_user_does_not_change_the_mail(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = mail()
    config = tmp_path / "gitconfig"
    config.write_text("[diff]\n\tnoprefix = true\n\tmnemonicPrefix = true\n[core]\n"
                      "\tabbrev = 7\n[format]\n\tsignature = mine\n\tnumbered = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mail() == first


@pytest.mark.parametrize("author", ["Ann Dev", "<ann@example.org>", "Ann <a b@c>", ""])
def test_bad_author_rejected(author: str) -> None:
    with pytest.raises(RelgenError, match="Name <address>"):
        patch.parse_identity(author)


def test_bad_date_is_an_error() -> None:
    with pytest.raises(RelgenError, match="date"):
        mail(date="not a date")


def test_author_from_option_config_or_placeholder(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("git")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    tree = tmp_path / "tree"
    tree.mkdir()
    given = patch.resolve_author("  Ann   Dev <ann@example.org> ", tree)
    assert given == patch.Author("Ann Dev <ann@example.org>") and given.warning is None
    nothing = patch.resolve_author(None, tree)
    assert nothing.identity == patch.PLACEHOLDER_IDENTITY and nothing.placeholder
    assert nothing.warning is not None and "placeholder" in nothing.warning
    (tmp_path / "user").write_text("[user]\n\tname = User Name\n\temail = user@example.org\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "user"))
    assert patch.resolve_author(None, tree) == patch.Author("User Name <user@example.org>")
    # a tree that is a git repository with its own identity wins over the user's
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "config", "user.name", "Tree Dev"], check=True)
    subprocess.run(["git", "-C", str(tree), "config", "user.email", "tree@example.org"],
                   check=True)
    assert patch.resolve_author(None, tree).identity == "Tree Dev <tree@example.org>"


def test_diff_of_one_file_applies(tmp_path: Path) -> None:
    change = CHANGES[0]
    text = patch.diff(change.old or b"", change.new, change.path)
    assert text.startswith(f"diff --git a/{change.path} b/{change.path}\n".encode())
    assert b"@@ -2,6 +2,6 @@ GLOBAL_ENTRY(relocate_new_kernel)\n" in text
    (tmp_path / change.path).parent.mkdir(parents=True)
    (tmp_path / change.path).write_bytes(change.old or b"")
    (tmp_path / "d.patch").write_bytes(text)
    subprocess.run(["git", "apply", "d.patch"], cwd=tmp_path, check=True)
    assert (tmp_path / change.path).read_bytes() == change.new
    assert patch.diff(b"same\n", b"same\n", change.path) == b""


def test_paths_outside_the_tree_rejected() -> None:
    with pytest.raises(RelgenError, match="inside the kernel tree"):
        patch.format_patch([patch.FileChange("/etc/passwd", None, b"x\n")], subject="s",
                           body="b\n", author=AUTHOR)
