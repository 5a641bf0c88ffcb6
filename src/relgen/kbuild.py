"""The kernel tree and the ia64 toolchain: finding them, preprocessing, assembling, disassembling.

It runs cpp, ia64-linux-gnu-as and -objdump through `relgen.tools`, the one place that starts
programs. It preprocesses a `.S` the way Kbuild does for arch/ia64, writes stand-ins for the
generated headers when the tree has never been built, and turns the tools' diagnostics into
positioned RelgenErrors that point at the original source line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relgen import tools
from relgen.errors import RelgenError, ToolError
from relgen.names import DEFAULT_PAGE_SIZE, PAGE_SIZES, RELOCATE_KERNEL_PATH
from relgen.syntax import source_line

TOOL_PREFIX = "ia64-linux-gnu-"
BINUTILS_PACKAGE = "binutils-ia64-linux-gnu"
TREE_ENVIRONMENT_VARIABLE = "RELGEN_KERNEL_TREE"
# Where `make setup` extracts the Debian linux-source-6.1 tarball, relative to the checkout.
CACHED_TREE = Path(".cache") / "linux-source-6.1"
RELOCATE_KERNEL = Path(RELOCATE_KERNEL_PATH)

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

_PAGE_SIZE_CONFIG = re.compile(r"^#define\s+CONFIG_IA64_PAGE_SIZE_(\d+)KB\s+1\s*$", re.MULTILINE)
_LINE_MARKER = re.compile(r'^(# \d+ ")([^"]*)(".*)$')
_AS_DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<kind>Error|Warning): (?P<msg>.*)$")
_CPP_DIAGNOSTIC = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?:(?P<col>\d+):)? (?:fatal )?(?P<kind>error|warning): "
    r"(?P<msg>.*)$"
)
_OBJDUMP_SYMBOL = re.compile(r"^(?P<address>[0-9a-f]+) <(?P<name>[^>]+)>:$")
_OBJDUMP_SECTION = re.compile(r"^Disassembly of section (?P<name>\S+):$")
# "     4c:\t00 f8 10 08 80 05 \t[MII]       alloc r31=ar.pfs,4,4,0"; the text part is absent on
# the continuation line of a long bundle (the second half of an MLX movl).
_OBJDUMP_SLOT = re.compile(
    r"^\s*(?P<address>[0-9a-f]+):\t(?P<bytes>(?:[0-9a-f]{2} )+)\s*(?:\t(?P<text>.*))?$"
)
_TEMPLATE = re.compile(r"^\[(?P<template>[A-Z]+)\]\s*(?P<rest>.*)$")
_BRANCH_TARGET = re.compile(r"\b[0-9a-f]+ (<[^>]+>)")


def parse_page_sizes(text: str) -> tuple[int, ...]:
    """Page sizes from "4K,16K" or "4096,65536": sorted, without repeats, each one ia64 supports."""
    sizes: set[int] = set()
    for item in text.split(","):
        word = item.strip()
        size = _parse_one_page_size(word)
        if size not in PAGE_SIZES:
            raise RelgenError(
                f"unknown page size {word!r}: ia64 pages are 4K, 8K, 16K or 64K "
                "(or 4096, 8192, 16384, 65536 bytes)"
            )
        sizes.add(size)
    return tuple(sorted(sizes))


def _parse_one_page_size(word: str) -> int | None:
    match = re.fullmatch(r"(\d+)\s*(k|kb|kib)?", word, re.IGNORECASE)
    if match is None:
        return None
    number = int(match.group(1))
    return number * 1024 if match.group(2) else number


def _page_size_text(page_size: int) -> str:
    return f"{page_size // 1024} KiB" if page_size % 1024 == 0 else f"{page_size} bytes"


@dataclass(frozen=True)
class KernelTree:
    """A Linux source tree with arch/ia64, built or not."""

    root: Path

    @property
    def relocate_kernel(self) -> Path:
        """The kexec relocation code this tool regenerates."""
        return self.root / RELOCATE_KERNEL

    @property
    def has_build(self) -> bool:
        """True when a kernel build has generated include/generated/ (no stand-ins needed)."""
        return (self.root / "include" / "generated" / "autoconf.h").is_file()

    @property
    def configured_page_size(self) -> int | None:
        """The page size a built tree is configured for; None for a tree without a build."""
        if not self.has_build:
            return None
        autoconf = (self.root / "include" / "generated" / "autoconf.h").read_text(
            encoding="utf-8", errors="replace"
        )
        match = _PAGE_SIZE_CONFIG.search(autoconf)
        return int(match.group(1)) * 1024 if match else None


def find_kernel_tree(explicit: Path | None = None, *, start: Path | None = None) -> KernelTree:
    """The tree to work on: `explicit`, else $RELGEN_KERNEL_TREE, else .cache/linux-source-6.1
    in `start` (the current directory by default) or any of its parents."""
    if explicit is not None:
        return _checked_tree(Path(explicit), "")
    from_environment = os.environ.get(TREE_ENVIRONMENT_VARIABLE)
    if from_environment:
        return _checked_tree(Path(from_environment), f" (from ${TREE_ENVIRONMENT_VARIABLE})")
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CACHED_TREE
        if candidate.is_dir():
            return _checked_tree(candidate, "")
    raise RelgenError(
        "no Linux kernel tree found: run `make setup` to extract linux-source-6.1 into "
        f"{CACHED_TREE}, or pass --kernel-tree DIR (or set ${TREE_ENVIRONMENT_VARIABLE})"
    )


def _checked_tree(path: Path, origin: str) -> KernelTree:
    if not (path / "arch" / "ia64").is_dir():
        raise RelgenError(f"{path}{origin} is not a Linux tree with arch/ia64")
    return KernelTree(path.resolve())


def find_tool(name: str) -> str:
    """The path of ia64-linux-gnu-`name` on PATH as it is now, or a ToolError naming the package."""
    program = TOOL_PREFIX + name
    found = shutil.which(program)
    if found is None:
        raise ToolError(
            f"{program} not found on PATH; install the Debian package {BINUTILS_PACKAGE}"
        )
    return found


def _find_cpp() -> str:
    found = shutil.which("cpp")
    if found is None:
        raise ToolError("cpp not found on PATH; install the Debian package cpp")
    return found


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
    assembler = find_tool("as")
    cpp = _find_cpp()
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
    standin_root = build_dir / "standins"
    standins: tuple[str, ...] = ()
    if not tree.has_build:
        standins = _write_standins(standin_root, page_size)

    command = [cpp, "-nostdinc", "-undef", "-D__ASSEMBLY__", "-D__KERNEL__", "-D__ia64__"]
    command += list(KBUILD_IA64_DEFINES)
    command += list(cpp_flags)
    command += ["-fno-diagnostics-color", "-fno-diagnostics-show-caret"]
    if extra_headers:
        command += ["-I", str(extra_dir)]
    for folder in include_dirs:
        command += ["-I", str(Path(folder).resolve())]
    command += _tree_include_flags(tree, None if tree.has_build else standin_root / "include")
    command += ["-include", "include/linux/kconfig.h", source_argument, "-o", "-"]
    result = _run(command, tree.root)
    if result.returncode != 0:
        raise _diagnostic_error("cpp", result.stderr, _CPP_DIAGNOSTIC, places)
    preprocessed.write_text(_without_build_dir(result.stdout, build_dir), encoding="utf-8")

    # -x: report instruction-group dependency violations, as the design asks of both files.
    result = _run([assembler, "-x", "-o", str(object_path), str(preprocessed)], tree.root)
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
    cpp = _find_cpp()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "header-macros.h"
    path.write_text(header, encoding="utf-8")
    result = _run([cpp, "-undef", "-dM", "-D__ASSEMBLY__", *cpp_flags, path.name], workdir)
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
            f"the kernel build in {tree.root} is configured for {_page_size_text(configured)} "
            f"pages; it cannot be assembled for {_page_size_text(requested)} pages without "
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


def _tree_include_flags(tree: KernelTree, standin_include: Path | None) -> list[str]:
    """Kbuild's LINUXINCLUDE for arch/ia64, with the stand-in folder where include/generated/
    would be found. Folders a tree without a build lacks are left out."""
    folders: list[str] = ["arch/ia64/include", "arch/ia64/include/generated"]
    folders.append(str(standin_include) if standin_include is not None else "")
    folders += [
        "include",
        "arch/ia64/include/uapi",
        "arch/ia64/include/generated/uapi",
        "include/uapi",
        "include/generated/uapi",
    ]
    flags: list[str] = []
    for folder in folders:
        if folder and (tree.root / folder).is_dir():
            flags += ["-I", folder]
    return flags


def _write_extra_headers(extra_dir: Path, headers: Mapping[str, str]) -> None:
    for name, text in headers.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise RelgenError(f"extra header {name!r} must be a relative include path")
        target = extra_dir.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _write_standins(standin_root: Path, page_size: int) -> tuple[str, ...]:
    """include/generated/{autoconf,asm-offsets}.h for a tree that was never built."""
    generated = standin_root / "include" / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    autoconf = [
        "/* relgen stand-in: this tree has no kernel build. */",
        "#define CONFIG_IA64 1",
        "#define CONFIG_64BIT 1",
        f"#define CONFIG_IA64_PAGE_SIZE_{page_size // 1024}KB 1",
        "#define CONFIG_PGTABLE_LEVELS 3",
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
        " * (arch/ia64/include/asm/processor.h, as configured with CONFIG_SMP;",
        " * they come before the SMP-only fields). ia64 instructions are",
        " * fixed-size bundles, so these values change immediates, never the layout.",
        " */",
        "#define IA64_CPUINFO_NSEC_PER_CYC_OFFSET 24",
        "#define IA64_CPUINFO_PTCE_BASE_OFFSET 72",
        "#define IA64_CPUINFO_PTCE_COUNT_OFFSET 80",
        "#define IA64_CPUINFO_PTCE_STRIDE_OFFSET 88",
    ]
    (generated / "autoconf.h").write_text("\n".join(autoconf) + "\n", encoding="utf-8")
    (generated / "asm-offsets.h").write_text("\n".join(offsets) + "\n", encoding="utf-8")
    return ("include/generated/autoconf.h", "include/generated/asm-offsets.h")


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


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return tools.run(command, cwd)


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
        folder, _, include_name = inside.partition("/")
        if folder == "standins":
            return f"{include_name} (relgen stand-in)", real
        return f"<{include_name}> (extra header)", real


def _source_line(path: Path | None, line: int) -> str | None:
    if path is None or not path.is_file():
        return None
    return source_line(path.read_text(encoding="utf-8", errors="replace"), line)


def _diagnostic_error(
    tool: str, output: str, pattern: re.Pattern[str], places: _ReportedFiles
) -> RelgenError:
    """A RelgenError at the first error the tool reported, carrying all of its output."""
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
        message = f"{tool} failed" + (":\n" + "\n".join(lines) if lines else " without a message")
        return ToolError(message)
    shown, real = places.resolve(first.group("file"))
    line_number = int(first.group("line"))
    column = first.groupdict().get("col")
    message = f"{first.group('msg')} ({tool})"
    others = [_relocated(line, pattern, places) for line in lines if line != first.group(0)]
    if others:
        message += f"\n{tool} also said:\n" + "\n".join(others)
    return RelgenError(
        message,
        path=shown,
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


def disassemble(object_path: Path) -> str:
    """`objdump -d` of the object, run beside it so that the text names it without a folder."""
    objdump = find_tool("objdump")
    object_path = Path(object_path).resolve()
    result = _run([objdump, "-d", object_path.name], object_path.parent)
    if result.returncode != 0:
        raise ToolError(
            f"{Path(objdump).name} failed:\n{result.stderr.strip()}", path=str(object_path)
        )
    return result.stdout


@dataclass(frozen=True)
class DecodedSlot:
    """One instruction slot of a bundle, as objdump shows it."""

    section: str
    symbol: str
    # Where the bundle begins, from the start of `symbol`; ia64 code moves by whole bundles.
    symbol_offset: int
    bundle: int
    slot: int
    template: str
    text: str
    stop: bool

    @property
    def address(self) -> int:
        """The slot's address in the ia64 convention (bundle address + slot number), which is
        also how relocation offsets name a slot."""
        return self.bundle + self.slot

    @property
    def unit(self) -> str:
        """The execution unit of the slot (M, I, F, B, or L for the long immediate of MLX)."""
        return self.template[self.slot] if self.slot < len(self.template) else "?"

    @property
    def comparable(self) -> str:
        """The text without absolute branch addresses ("br.few 160 <x+0x160>" -> "br.few
        <x+0x160>"), so that code that moved as a whole compares equal."""
        return _BRANCH_TARGET.sub(r"\1", self.text)


def disassemble_instructions(object_path: Path) -> list[DecodedSlot]:
    """Every instruction slot of the object's executable sections, in address order."""
    return parse_disassembly(disassemble(object_path))


def parse_disassembly(text: str) -> list[DecodedSlot]:
    """The instructions of `objdump -d` text (see disassemble_instructions)."""
    instructions: list[DecodedSlot] = []
    section = ""
    symbol, symbol_address = "", 0
    template, bundle, slot = "", 0, 0
    for line in text.splitlines():
        if match := _OBJDUMP_SECTION.match(line):
            section = match.group("name")
            continue
        if match := _OBJDUMP_SYMBOL.match(line):
            symbol, symbol_address = match.group("name"), int(match.group("address"), 16)
            continue
        match = _OBJDUMP_SLOT.match(line)
        if match is None or match.group("text") is None:
            continue  # headers, "..." for skipped zeros, the second line of an MLX long slot
        body = match.group("text").strip()
        if template_match := _TEMPLATE.match(body):
            template = template_match.group("template")
            bundle = int(match.group("address"), 16)
            slot = 0
            body = template_match.group("rest")
        else:
            slot += 1
        stop = body.endswith(";;")
        body = body.removesuffix(";;").strip()
        instructions.append(
            DecodedSlot(
                section=section,
                symbol=symbol,
                symbol_offset=bundle - symbol_address,
                bundle=bundle,
                slot=slot,
                template=template,
                text=body,
                stop=stop,
            )
        )
    return instructions
