"""cpp and `ia64-linux-gnu-as -x` on a `.S`, the way Kbuild runs them for arch/ia64.

It preprocesses a `.S` the way Kbuild does for arch/ia64, writes stand-ins for the
generated headers when the tree has never been built, and turns the tools' diagnostics into
positioned RelgenErrors that point at the original source line.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relgen import tools
from relgen.errors import RelgenError, ToolError
from relgen.names import DEFAULT_PAGE_SIZE, PAGE_SIZES
from relgen.source.nodes import source_line
from relgen.toolchain.era import OLD_ASM, Era
from relgen.toolchain.tree import KernelTree, page_size_text

ASSEMBLER = tools.IA64_PREFIX + "as"

# Kbuild's KBUILD_CPPFLAGS for ia64 (arch/ia64/Makefile): every binutils of this century has these
# features, and TEXT_ALIGN() in asm/asmmacro.h expands to nothing without the first one, which
# would change the layout of the files that use it.
KBUILD_IA64_DEFINES = (
    "-DHAVE_WORKING_TEXT_ALIGN",
    "-DHAVE_MODEL_SMALL_ATTRIBUTE",
    "-DHAVE_SERIALIZE_DIRECTIVE",
)

# Line markers in the preprocessed file name our own temporary folders by this prefix instead of
# their absolute path, so that a .s is the same on every machine and leaks no local path.
BUILD_DIR_MARKER = "<relgen>"

_LINE_MARKER = re.compile(r'^(# \d+ ")([^"]*)(".*)$')
_AS_DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<kind>Error|Warning): (?P<msg>.*)$")
_CPP_DIAGNOSTIC = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?:(?P<col>\d+):)? (?:fatal )?(?P<kind>error|warning): "
    r"(?P<msg>.*)$"
)


@dataclass(frozen=True)
class Assembled:
    """What assemble() made: the object, the preprocessed text it came from, and how."""

    object_path: Path
    preprocessed_path: Path
    page_size: int
    # The generated files this assembly stood in for ("include/generated/autoconf.h" ...);
    # empty when the tree has a real build.
    standins: tuple[str, ...]
    # The assembler's warnings (dependency violations under -x among them), as
    # "path:line: warning: message"; the object was written all the same.
    warnings: tuple[str, ...] = ()


def assemble(
    source: Path,
    tree: KernelTree,
    workdir: Path,
    *,
    page_size: int | None = None,
    include_dirs: Sequence[Path] = (),
    extra_headers: Mapping[str, str] | None = None,
    fatal_warnings: bool = False,
    cpp_flags: Sequence[str] = (),
) -> Assembled:
    """Preprocess `source` like Kbuild does for arch/ia64 and assemble it with `as -x`.

    `page_size` picks CONFIG_IA64_PAGE_SIZE_* for the stand-in configuration (16 KiB when None);
    a built tree has its own and asking for another one is an error. `include_dirs` come before
    the tree's include folders, and `extra_headers` ("asm/kexec_control_page.h" -> text) before
    everything. The files go to `workdir`, named after the source and the page size, so one
    workdir holds one source (at any number of page sizes). With `fatal_warnings` an assembler
    warning is an error like any other. `cpp_flags` are the configuration's `-DNAME[=VALUE]`
    and `-UNAME`, given after Kbuild's own.
    """
    assembler = tools.find(ASSEMBLER)
    page_size = _chosen_page_size(tree, page_size)
    source_path = Path(source)
    if not source_path.is_file():
        raise RelgenError("no such source file", path=str(source_path))
    workdir = Path(workdir).resolve()
    stem = f"{source_path.stem}.{page_size // 1024}k"
    build_dir = workdir / f"{stem}.d"
    build_dir.mkdir(parents=True, exist_ok=True)
    preprocessed = workdir / f"{stem}.s"
    object_path = workdir / f"{stem}.o"

    source_argument = _tree_relative(source_path, tree)
    places = _ReportedFiles(source_argument, source_path, tree, build_dir)

    extra_dir = build_dir / "extra-include"
    # A header left from an earlier call in this workdir must not be found by this one.
    shutil.rmtree(extra_dir, ignore_errors=True)
    object_path.unlink(missing_ok=True)
    if extra_headers:
        _write_extra_headers(extra_dir, extra_headers)
    era = tree.era
    layout = build_dir / "kbuild"
    shutil.rmtree(layout, ignore_errors=True)
    standins: tuple[str, ...] = ()
    if not tree.has_build:
        standins = write_standins(layout / "standins", era, page_size)

    command = ["cpp", "-nostdinc", "-undef", "-D__ASSEMBLY__", "-D__KERNEL__", "-D__ia64__"]
    command += list(KBUILD_IA64_DEFINES)
    command += list(cpp_flags)
    command += ["-fno-diagnostics-color", "-fno-diagnostics-show-caret"]
    if extra_headers:
        command += ["-I", str(extra_dir)]
    for folder in include_dirs:
        command += ["-I", str(Path(folder).resolve())]
    command += kbuild_include_flags(tree, layout)
    command += [tools.operand(source_argument), "-o", "-"]
    result = tools.run(command, tree.root)
    if result.returncode != 0:
        raise _diagnostic_error("cpp", result.stderr, _CPP_DIAGNOSTIC, places)
    preprocessed.write_text(_without_build_dir(result.stdout, build_dir), encoding="utf-8")

    # -x: report instruction-group dependency violations, as the design asks of both files.
    result = tools.run([assembler, "-x", "-o", tools.operand(object_path),
                        tools.operand(preprocessed)], tree.root)
    if result.returncode != 0:
        raise _diagnostic_error(Path(assembler).name, result.stderr, _AS_DIAGNOSTIC, places)
    warnings = _warnings(result.stderr, places)
    if warnings and fatal_warnings:
        raise _diagnostic_error(Path(assembler).name, result.stderr, _AS_DIAGNOSTIC, places)
    return Assembled(object_path, preprocessed, page_size, standins, warnings)


_MACRO_DEFINITION = re.compile(r"^#define (\w+) (.*)$", re.MULTILINE)


def header_macros(header: str, workdir: Path, cpp_flags: Sequence[str] = ()) -> dict[str, str]:
    """The object-like macros `header` defines under `cpp_flags`, as `cpp -dM` sees them in
    assembly (each configuration of a conditional header gives its own numbers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "header-macros.h"
    path.write_text(header, encoding="utf-8")
    result = tools.run(["cpp", "-undef", "-dM", "-D__ASSEMBLY__", *cpp_flags, path.name], workdir)
    if result.returncode != 0:
        raise _diagnostic_error("cpp", result.stderr, _CPP_DIAGNOSTIC,
                                _ReportedFiles(path.name, path, KernelTree(workdir), workdir))
    return dict(_MACRO_DEFINITION.findall(result.stdout))


def _chosen_page_size(tree: KernelTree, requested: int | None) -> int:
    configured = tree.configured_page_size
    if requested is None:
        return configured or DEFAULT_PAGE_SIZE
    if requested not in PAGE_SIZES:
        raise RelgenError(f"unknown page size {requested}: ia64 pages are 4, 8, 16 or 64 KiB")
    if configured is not None and requested != configured:
        # A real build is used as it is: its configuration, not ours, decides PAGE_SIZE.
        raise RelgenError(
            f"the kernel build in {tree.root} is configured for {page_size_text(configured)} "
            f"pages; it cannot be assembled for {page_size_text(requested)} pages without "
            "reconfiguring it"
        )
    return requested


def _tree_relative(source: Path, tree: KernelTree) -> str:
    """The source as the tools see it: relative to the tree root when inside it (the tools run
    there, so no absolute path reaches their output), else absolute."""
    absolute = source.resolve()
    try:
        return absolute.relative_to(tree.root.resolve()).as_posix()
    except ValueError:
        return str(absolute)


def kbuild_include_flags(tree: KernelTree, layout: Path) -> list[str]:
    """Kbuild's LINUXINCLUDE for arch/ia64 in the tree's era, and its forced `-include`.

    What Kbuild would have made in the tree (the `include/asm` link of 2.6.26 and before,
    the configuration, asm-offsets.h) is made in `layout`, a scratch folder: `standins/`
    (written by `write_standins` for a tree without a build) and `links/asm`; the tree
    itself is never written. Folders a tree lacks are left out.
    """
    era = tree.era
    standins = layout / "standins"
    links: list[str] = []
    if era.links_asm and not (tree.root / "include" / "asm").exists():
        (layout / "links").mkdir(parents=True, exist_ok=True)
        (layout / "links" / "asm").symlink_to(tree.root / era.asm_dir)
        links.append(str(layout / "links"))
    if era.asm_dir == OLD_ASM:
        folders = [str(standins), *links, "include"]
    elif era.release < (2, 6, 33):
        folders = [str(standins), "arch/ia64/include", "include"]
    else:
        folders = ["arch/ia64/include", "arch/ia64/include/generated", str(standins),
                   "include", "arch/ia64/include/uapi", "arch/ia64/include/generated/uapi",
                   "include/uapi", "include/generated/uapi"]
    flags: list[str] = []
    for folder in folders:
        if (tree.root / folder).is_dir():
            flags += ["-I", folder]
    forced = era.forced_include
    standin = standins / forced.removeprefix("include/")
    if not (tree.root / forced).is_file() and standin.is_file():
        forced = str(standin)
    return [*flags, "-include", forced]


def _write_extra_headers(extra_dir: Path, headers: Mapping[str, str]) -> None:
    for name, text in headers.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise RelgenError(f"extra header {name!r} must be a relative include path")
        target = extra_dir.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def write_standins(standins: Path, era: Era, page_size: int) -> tuple[str, ...]:
    """The configuration and asm-offsets.h of a tree that was never built, where the tree's
    era has Kbuild write them (the kernel checks' direct route writes its own configuration
    over the first)."""
    autoconf = [
        "/* relgen stand-in: this tree has no kernel build. */",
        "#define CONFIG_IA64 1",
        "#define CONFIG_64BIT 1",
        f"#define CONFIG_IA64_PAGE_SIZE_{page_size // 1024}KB 1",
        "#define CONFIG_PGTABLE_LEVELS 3",
        "#define CONFIG_PGTABLE_3 1",
        "#define CONFIG_IA64_GRANULE_16MB 1",
        "#define CONFIG_ARCH_FORCE_MAX_ORDER 11",
        "#define CONFIG_FORCE_MAX_ZONEORDER 11",
        "#define CONFIG_KEXEC 1",
        "#define CONFIG_SMP 1",
        "#define CONFIG_NR_CPUS 64",
    ]
    offsets = [
        "/* relgen stand-in: this tree has no kernel build.",
        " * The LP64 offsets of these fields of struct cpuinfo_ia64",
        " * (asm/processor.h, as configured with CONFIG_SMP;",
        " * they come before the SMP-only fields). ia64 instructions are",
        " * fixed-size bundles, so these values change immediates, never the layout.",
        " */",
        "#define IA64_CPUINFO_NSEC_PER_CYC_OFFSET 24",
        "#define IA64_CPUINFO_PTCE_BASE_OFFSET 72",
        "#define IA64_CPUINFO_PTCE_COUNT_OFFSET 80",
        "#define IA64_CPUINFO_PTCE_STRIDE_OFFSET 88",
    ]
    config = era.config_header.removeprefix("include/")
    written = {config: autoconf, era.asm_offsets: offsets}
    for name, lines in written.items():
        path = standins / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tuple(f"include/{name}" if name.startswith(("linux/", "generated/")) else
                 f"{era.asm_dir}/{name.removeprefix('asm/')}" for name in written)


def _without_build_dir(text: str, build_dir: Path) -> str:
    """Line markers name our temporary folders by BUILD_DIR_MARKER instead of their path."""
    prefix = str(build_dir) + "/"
    lines = []
    for line in text.splitlines(keepends=True):
        match = _LINE_MARKER.match(line)
        if match and match.group(2).startswith(prefix):
            name = BUILD_DIR_MARKER + "/" + match.group(2)[len(prefix) :]
            line = match.group(1) + name + match.group(3) + "\n"
        lines.append(line)
    return "".join(lines)


@dataclass(frozen=True)
class _ReportedFiles:
    """Turns a file name as a tool printed it into one for the user and one to read lines from."""

    source_argument: str
    source: Path
    tree: KernelTree
    build_dir: Path

    def resolve(self, reported: str) -> tuple[str, Path]:
        if reported == self.source_argument:
            return str(self.source), self.source
        marker = BUILD_DIR_MARKER + "/"
        if reported.startswith(marker):
            real = self.build_dir / reported[len(marker) :]
        else:
            real = Path(reported) if Path(reported).is_absolute() else self.tree.root / reported
        try:
            inside = real.relative_to(self.build_dir).as_posix()
        except ValueError:
            return str(real), real
        folder, _, include_name = inside.removeprefix("kbuild/").partition("/")
        if folder == "standins":
            return f"{include_name} (relgen stand-in)", real
        return f"<{include_name}> (extra header)", real


def _source_line(path: Path | None, line: int) -> str | None:
    if path is None or not path.is_file():
        return None
    return source_line(path.read_text(encoding="utf-8", errors="replace"), line)


def _diagnostic_error(
    tool: str, output: str, pattern: re.Pattern[str], places: _ReportedFiles, shown: int = 3
) -> RelgenError:
    """A RelgenError at the first error the tool reported, then at most `shown` more of the
    tool's lines and how many it said besides: a few lines, however much it said (an input
    with an error on every line made 152,884 lines of them)."""
    lines = [line for line in output.splitlines() if line.strip()]
    # as opens with "FILE: Assembler messages:" and cpp closes with "compilation terminated.":
    # neither says anything the positioned lines do not.
    lines = [
        line
        for line in lines
        if not line.endswith(": Assembler messages:") and line != "compilation terminated."
    ]
    first = None
    for line in lines:
        match = pattern.match(line)
        if match and match.group("kind").lower() == "error":
            first = match
            break
    if first is None:
        first = next((m for m in map(pattern.match, lines) if m), None)
    if first is None:
        said = lines[:shown + 1] + ([f"and {len(lines) - shown - 1} more"]
                                    if len(lines) > shown + 1 else [])
        message = f"{tool} failed" + (":\n" + "\n".join(said) if lines else " without a message")
        return ToolError(message)
    shown_file, real = places.resolve(first.group("file"))
    line_number = int(first.group("line"))
    column = first.groupdict().get("col")
    message = f"{first.group('msg')} ({tool})"
    others = [line for line in lines if line != first.group(0)]
    if others:
        message += f"\n{tool} also said:\n" + "\n".join(
            _relocated(line, pattern, places) for line in others[:shown])
        if len(others) > shown:
            message += f"\nand {len(others) - shown} more"
    return RelgenError(
        message,
        path=shown_file,
        line=line_number,
        column=int(column) if column else None,
        source_line=_source_line(real, line_number),
    )


def _relocated(line: str, pattern: re.Pattern[str], places: _ReportedFiles) -> str:
    """A diagnostic line with its file named the way the user knows it."""
    match = pattern.match(line)
    if match is None:
        return line
    shown, _ = places.resolve(match.group("file"))
    return shown + line[match.end("file") :]


def _warnings(output: str, places: _ReportedFiles) -> tuple[str, ...]:
    found = []
    for line in output.splitlines():
        match = _AS_DIAGNOSTIC.match(line)
        if match and match.group("kind") == "Warning":
            shown, _ = places.resolve(match.group("file"))
            found.append(f"{shown}:{match.group('line')}: warning: {match.group('msg')}")
    return tuple(found)


