"""Patches made by git itself: the `git format-patch` mail and the diff `relgen diff` prints.

`format_patch` commits the original files to a scratch repository, then their new versions
as one commit, and takes `git format-patch -1 --stdout` of it. git runs without the user's
or the system's configuration (`GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM=1`) and
with every option that shapes the mail given here (abbreviation, function-name rules like
the kernel's `.gitattributes`, signature, dates and identities), so the same files and
options give the same bytes on any machine. The author is `--from`, else the tree's or the
user's `git config user.name`/`user.email` (read once, explicitly), else a placeholder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from relgen import tools
from relgen.errors import RelgenError
from relgen.scratch import scratch_folder

#: Author and sign-off when nothing better is known: an identity nobody can mistake for a
#: person, to be replaced by the one of whoever sends the patch.
PLACEHOLDER_IDENTITY = "relgen <relgen@localhost>"

#: The reproducible-builds convention: a date pinned by the environment, in seconds.
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
#: The date of scratch commits whose date shows nowhere (`git diff`).
SCRATCH_DATE = "1970-01-01T00:00:00+0000"

#: The kernel's core.abbrev (Documentation/process/submitting-patches.rst).
ABBREV = 12

# git's function-name rule per path, as the kernel's .gitattributes sets it for C (the
# built-in `cpp` driver) and relgen's for ia64 assembly: a label at column 0 or GLOBAL_ENTRY(
_ATTRIBUTES = "*.c diff=cpp\n*.h diff=cpp\n*.S diff=ia64asm\n*.s diff=ia64asm\n"
IA64_ASM_XFUNCNAME = r"^(([A-Za-z_.$][A-Za-z0-9_.$]*:|([A-Z_]*_)?ENTRY(_[A-Z_]+)?\().*)$"

_IDENTITY = re.compile(r"([^<>\n]*[^<>\s])\s*<([^<>\s]+@[^<>\s]+)>")


@dataclass(frozen=True)
class FileChange:
    """One file of the commit, by its path from the kernel root; `old` None for a new file."""

    path: str
    old: bytes | None
    new: bytes


@dataclass(frozen=True)
class Author:
    identity: str  # "Name <address>"
    placeholder: bool = False  # no --from and no git config: the identity is relgen's

    @property
    def warning(self) -> str | None:
        if not self.placeholder:
            return None
        return (f"warning: no --from and no git config user.name/user.email; the patch's "
                f"author and Signed-off-by are the placeholder {self.identity}")


def parse_identity(text: str) -> str:
    """`Name <address>`, white space normalised; anything else is an error."""
    match = _IDENTITY.fullmatch(text.strip())
    if match is None:
        raise RelgenError(f"an author is `Name <address>`, not {text!r}")
    return f"{' '.join(match.group(1).split())} <{match.group(2)}>"


def configured_identity(tree_root: Path | None) -> str | None:
    """`user.name <user.email>` as git sees it in the tree (its repository, else the user's)."""
    if tools.missing(["git"]):
        return None  # the mail itself needs git: that step says it is missing
    values = []
    for key in ("user.name", "user.email"):
        run = tools.run(["git", "config", "--get", key], tree_root)
        values.append(run.stdout.strip())
    name, email = values
    if not name or not email:
        return None
    return parse_identity(f"{name} <{email}>")


def resolve_author(given: str | None, tree_root: Path | None) -> Author:
    """--from, else git config, else the placeholder (whose warning the caller prints)."""
    if given is not None:
        return Author(parse_identity(given))
    configured = configured_identity(tree_root)
    if configured is not None:
        return Author(configured)
    return Author(PLACEHOLDER_IDENTITY, placeholder=True)


def _check_path(path: str) -> None:
    # the patch must not depend on where the tree was on this machine
    if not path or path.startswith("/") or "\\" in path or ".." in path.split("/") or \
            not re.fullmatch(r"[A-Za-z0-9_.+/-]+", path):
        raise RelgenError(f"{path!r} is not a plain path inside the kernel tree")


class _Git:
    """git in a scratch folder, with no configuration but the options given here."""

    def __init__(self, work: Path, author: str) -> None:
        self.git = tools.find("git")
        self.work = work
        name, email = _IDENTITY.fullmatch(author).groups()  # type: ignore[union-attr]
        (work / "attributes").write_text(_ATTRIBUTES, encoding="utf-8")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "LC_ALL": "C",
            "TZ": "UTC",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            # the committer date shows nowhere in a mail; fixed, it keeps runs alike
            "GIT_COMMITTER_DATE": SCRATCH_DATE,
            "GIT_AUTHOR_DATE": SCRATCH_DATE,
        }
        self.options = [
            "-c", f"core.attributesFile={work / 'attributes'}",
            "-c", f"diff.ia64asm.xfuncname={IA64_ASM_XFUNCNAME}",
            "-c", f"core.abbrev={ABBREV}",
            "-c", "init.defaultBranch=master",
            "-c", "core.autocrlf=false",
        ]

    def run(self, *args: str, cwd: Path, ok: Sequence[int] = (0,)) -> bytes:
        run = tools.run_bytes([self.git, *self.options, *args], cwd, env=self.env)
        if run.returncode not in ok:
            message = run.stderr.decode("utf-8", "replace").strip()
            if "date" in message:
                raise RelgenError(f"git does not take this date: {message}")
            raise RelgenError(f"git {args[0]} failed: {message}")
        return run.stdout


def _write(root: Path, files: Mapping[str, bytes | None]) -> None:
    for path, data in files.items():
        target = root / path
        if data is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def patch_date(given: str | None) -> str:
    """The mail's date as `git commit --date` takes it: `given` (any form git takes), else
    $SOURCE_DATE_EPOCH (seconds, the reproducible-builds convention), else now."""
    if given is not None:
        return given
    epoch = os.environ.get(SOURCE_DATE_EPOCH)
    if epoch is not None:
        if not epoch.isdigit():
            raise RelgenError(f"${SOURCE_DATE_EPOCH} must be a number of seconds, not "
                              f"{epoch!r}")
        return f"@{epoch} +0000"
    return "now"


def format_patch(changes: Sequence[FileChange], *, subject: str, body: str, author: str,
                 date: str | None = None, notes: str = "") -> bytes:
    """One `git format-patch` mail: one commit of `changes`, `body` as its message.

    `subject` goes after `[PATCH] `; `body` (the message after the subject) ends with the
    trailers, `Signed-off-by:` included; `notes` go below the `---`, before the diffstat,
    where `git am` drops them. `date` is the author date in any form `git commit --date`
    takes (see `patch_date`).
    """
    if "\n" in subject.strip() or not subject.strip():
        raise RelgenError("the subject must be one non-empty line")
    author = parse_identity(author)
    if not changes:
        raise RelgenError("a patch needs at least one changed file")
    for change in changes:
        _check_path(change.path)
    with scratch_folder("relgen-git-") as scratch:
        work = Path(scratch)
        repo = work / "repo"
        repo.mkdir()
        git = _Git(work, author)
        git.run("init", "-q", cwd=repo)
        _write(repo, {c.path: c.old for c in changes if c.old is not None})
        git.run("add", "-A", cwd=repo)
        git.run("commit", "-q", "--allow-empty", "-m", "original files", cwd=repo)
        _write(repo, {c.path: c.new for c in changes})
        git.run("add", "-A", cwd=repo)
        message = work / "message"
        message.write_text(" ".join(subject.split()) + "\n\n" + body, encoding="utf-8")
        git.run("commit", "-q", "--cleanup=whitespace", f"--date={patch_date(date)}", "-F",
                str(message), cwd=repo)
        mail = git.run("format-patch", "-1", "--stdout", "--zero-commit", "--no-numbered",
                       "--subject-prefix=PATCH", "--no-thread", "--no-attach",
                       "--no-cover-letter", "--no-renames", "--no-signature", cwd=repo)
    return _with_notes(mail, notes)


def _with_notes(mail: bytes, notes: str) -> bytes:
    """`notes` right after the `---` that ends the commit message."""
    if not notes:
        return mail
    head, separator, rest = mail.partition(b"\n---\n")
    if not separator:
        raise RelgenError("git format-patch wrote a mail without a `---` line")
    return head + separator + notes.rstrip("\n").encode("utf-8") + b"\n\n" + rest


def diff(old: bytes, new: bytes, path: str) -> bytes:
    """`git diff` of one file changed in place, a/ and b/ paths from the kernel root."""
    return diff_files([FileChange(path, old, new)])


def diff_files(changes: Sequence[FileChange]) -> bytes:
    """`git diff` of the whole change (new files as such), a/ and b/ paths from the root."""
    for change in changes:
        _check_path(change.path)
    if all(change.old == change.new for change in changes):
        return b""
    with scratch_folder("relgen-git-") as scratch:
        work = Path(scratch)
        git = _Git(work, PLACEHOLDER_IDENTITY)
        (work / "a").mkdir()
        _write(work / "a", {c.path: c.old for c in changes})
        _write(work / "b", {c.path: c.new for c in changes})
        # --no-index names the files as given (a/PATH, b/PATH): no prefixes of git's own
        return git.run("diff", "--no-index", "--no-color", "--no-renames", "--src-prefix=",
                       "--dst-prefix=", "a", "b", cwd=work, ok=(0, 1))
