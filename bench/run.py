"""relgen's benchmark: how relgen's own work compares with the toolchain it sits next to.

It prints ratios in plain text and asserts nothing (no timed tests: timings belong to the
machine, not to the code). Sections:

  (a) the in-process round trip (read + parse + unparse, grammar loaded once, after a warm-up)
      of the 33-file Linux 6.1 arch/ia64 corpus versus preprocessing and assembling the same
      files with cpp + ia64-linux-gnu-as -x, one subprocess after another (relgen.kbuild's
      assemble(), the recipe relgen itself uses);
  (b) `relgen rewrite` end to end on relocate_kernel.S versus cpp + as of that one file;
  (c) start-up: interpreter, `import lark`, `import relgen.source.parser`, and the grammar load with
      lark's cache file absent (cold) and present (warm), each in a fresh interpreter;
  (d) a cProfile of the corpus parse: the top functions by own time, and the split between
      lark's lexer, relgen's node building and lark's LALR parser;
  (e) `relgen parse --check` of relocate_kernel.S as a whole process versus cpp + as of that
      file, with the part of it that is start-up (interpreter, imports, grammar load);
  (f) growth: relocate_kernel.S repeated 1, 10 and 100 times, parsed and run through the
      rewrite passes in this process, each time as a ratio to the single copy's time per copy
      (1.00 for every row means the work grows linearly with the input);
  (g) the interpreter of the execution checks: slots per second, time and slots per run, and
      what the execution checks add to `verify` (all images) and to `rewrite` (fewer);
  (h) the kernel checks, warm, against their floor: the same recorded sparse and gcc
      commands run directly on all cores (bench/kernel_checks.py).

Every figure is the best of --repeat runs. A section that fails says so in one line and the
others still run. Run it with `make bench` (or
`.venv/bin/python bench/run.py [--repeat N] [--kernel-tree DIR] [--sections LETTERS]`).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import itertools
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel_checks import report_kernel_checks
from relgen.errors import RelgenError
from relgen.source.parser import parse_module, read_source, unparse
from relgen.toolchain.assemble import assemble
from relgen.toolchain.tree import KernelTree, find_kernel_tree

ROOT = Path(__file__).resolve().parent.parent
# the venv's scripts sit next to its interpreter, which is the one running this file
BIN = Path(sys.executable).parent
RELGEN = BIN / "relgen"
RELOCATE_KERNEL = Path("arch") / "ia64" / "kernel" / "relocate_kernel.S"


def corpus(tree: Path) -> list[Path]:
    """The 33 ia64 assembly files (as tests/conftest.py picks them; the .lds.S linker scripts
    are not assembly). Not imported from there: conftest needs pytest."""
    return sorted(
        p for p in (tree / "arch" / "ia64").rglob("*.S") if not p.name.endswith(".lds.S")
    )


# ---------------------------------------------------------------------------- helpers


def best_of(repeat: int, run: Callable[[], object]) -> float:
    """The shortest of `repeat` timed calls: the least disturbed by the rest of the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def ratio(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.2f}" if theirs > 0 else "n/a"


def first_line(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    return (result.stdout or result.stderr).splitlines()[0] if result.stdout or result.stderr \
        else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def print_header(tree: KernelTree, repeat: int) -> None:
    from importlib.metadata import version

    # the CPUs this process may run on, which is what `nproc` prints
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print("relgen benchmark")
    print(f"date:       {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}")
    print(f"machine:    {platform.machine()}, nproc {nproc}, {cpu_model()}")
    print(f"system:     {platform.platform()}")
    print(f"python:     {platform.python_version()} ({sys.executable})")
    print(f"lark:       {version('lark')}")
    print(f"assembler:  {first_line(['ia64-linux-gnu-as', '--version'])}")
    print(f"cpp:        {first_line(['cpp', '--version'])}")
    print(f"tree:       {tree.root}")
    print(f"method:     best of {repeat} runs, time.perf_counter")


# ---------------------------------------------------------------------------- (a) corpus


@dataclass
class CorpusTimes:
    files: list[Path]
    # per repetition, per file: seconds
    relgen: list[list[float]]
    toolchain: list[list[float]]
    # file -> "ok" or the stage and first line of the error that stopped it
    outcome: dict[Path, str]

    def best(self, side: list[list[float]], keep: Sequence[int]) -> float:
        """The best repetition's total over the files at the indices `keep`."""
        return min(sum(run[i] for i in keep) for run in side)


def round_trip(path: Path) -> None:
    text = read_source(path)
    if unparse(parse_module(text, str(path))) != text:
        raise SystemExit(f"bench: round trip failed on {path}; fix the parser first")


def toolchain_one(path: Path, tree: KernelTree, workdir: Path) -> str:
    """cpp + as -x on one file; files that need a real kernel build fail in cpp or as, and
    what they cost up to there is still counted."""
    try:
        assemble(path, tree, workdir)
    except RelgenError as error:
        # kbuild names the failing tool at the end of the message's first line
        message = error.message.splitlines()[0] if error.message else "?"
        stage = "cpp" if message.endswith("(cpp)") else "as"
        return f"{stage} error: {message}"
    return "ok"


def measure_corpus(tree: KernelTree, repeat: int) -> CorpusTimes:
    files = corpus(tree.root)
    outcome: dict[Path, str] = {}
    # warm-up: loads the grammar, fills the page cache, and learns each file's outcome
    for path in files:
        round_trip(path)
    with tempfile.TemporaryDirectory(prefix="relgen-bench-") as folder:
        for index, path in enumerate(files):
            outcome[path] = toolchain_one(path, tree, Path(folder) / f"w{index}")
        relgen_runs: list[list[float]] = []
        toolchain_runs: list[list[float]] = []
        for run in range(repeat):
            times = []
            for path in files:
                start = time.perf_counter()
                round_trip(path)
                times.append(time.perf_counter() - start)
            relgen_runs.append(times)
            times = []
            for index, path in enumerate(files):
                # a fresh workdir per file and run, as a one-off `relgen` call would have
                workdir = Path(folder) / f"r{run}-{index}"
                start = time.perf_counter()
                toolchain_one(path, tree, workdir)
                times.append(time.perf_counter() - start)
            toolchain_runs.append(times)
    return CorpusTimes(files, relgen_runs, toolchain_runs, outcome)


def report_corpus(times: CorpusTimes, tree: KernelTree) -> None:
    everything = range(len(times.files))
    assembled = [i for i, p in enumerate(times.files) if times.outcome[p] == "ok"]
    size = sum(p.stat().st_size for p in times.files)
    print()
    print(f"(a) corpus round trip: {len(times.files)} files, {size} bytes, arch/ia64 of Linux 6.1")
    print("    relgen:    read + parse + unparse in this process, grammar already loaded")
    print("    toolchain: cpp + ia64-linux-gnu-as -x per file, sequential subprocesses")
    print(f"    {'files':<34} {'relgen s':>9} {'toolchain s':>12} {'relgen/toolchain':>17}")
    rows = [(f"all {len(everything)}", everything),
            (f"the {len(assembled)} that assemble", assembled)]
    for label, keep in rows:
        mine = times.best(times.relgen, keep)
        theirs = times.best(times.toolchain, keep)
        print(f"    {label:<34} {mine:>9.3f} {theirs:>12.3f} {ratio(mine, theirs):>17}")
    print("    (ratio <= 1.00 means relgen is no slower than the toolchain)")
    failed = [p for p in times.files if times.outcome[p] != "ok"]
    if failed:
        print(f"    {len(failed)} files do not assemble without a kernel build (stand-in "
              "headers only); their")
        print("    toolchain time counts cpp, and as where cpp got through:")
        for path in failed:
            name = str(path.relative_to(tree.root))
            print(f"      {name:<30} {times.outcome[path][:64]}")
    slowest = sorted(everything, key=lambda i: -min(run[i] for run in times.relgen))[:5]
    print("    slowest files for relgen (best s, relgen / toolchain):")
    for i in slowest:
        mine = min(run[i] for run in times.relgen)
        theirs = min(run[i] for run in times.toolchain)
        name = str(times.files[i].relative_to(tree.root))
        print(f"      {name:<40} {mine:>7.4f} {theirs:>7.4f}")


# ---------------------------------------------------------------------------- (b) rewrite


def rewrite_available() -> bool:
    """Whether this relgen has the rewrite subcommand: its --help lists it."""
    if not RELGEN.is_file():
        return False
    result = subprocess.run([str(RELGEN), "--help"], capture_output=True, text=True,
                            check=False)
    return any(line.split()[:1] == ["rewrite"] for line in result.stdout.splitlines())


def best_process(repeat: int, command: Sequence[str], env: dict[str, str] | None = None
                 ) -> float:
    """Best wall time of `command` as a subprocess (its output thrown away)."""
    def run() -> None:
        subprocess.run(list(command), capture_output=True, check=False, env=env)

    run()  # warm-up: page cache, compiled modules
    return best_of(repeat, run)


# What every `relgen rewrite` imports before it reads a byte.
_REWRITE_IMPORTS = ("import relgen.cli, relgen.pipeline, relgen.checks.runner, "
                    "relgen.checks.execution.evidence")


def report_rewrite(tree: KernelTree, repeat: int) -> None:
    print()
    if not rewrite_available():
        print("(b) skipped: relgen rewrite not available")
        return
    source = tree.root / RELOCATE_KERNEL
    with tempfile.TemporaryDirectory(prefix="relgen-bench-") as folder:
        out = Path(folder) / "out"
        command = [str(RELGEN), "rewrite", str(source), "--kernel-tree", str(tree.root),
                   "-o", str(out), "--force"]
        failure: list[str] = []

        def rewrite() -> None:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0 and not failure:
                failure.append(f"exit {result.returncode}: "
                               + (result.stderr.strip().splitlines() or ["?"])[0])

        rewrite()  # warm-up: the grammar cache and the page cache
        mine = best_of(repeat, rewrite)
        # a fresh workdir per run, as relgen's own assembling has
        workdirs = (Path(folder) / f"t{n}" for n in itertools.count())
        toolchain_one(source, tree, next(workdirs))
        theirs = best_of(repeat, lambda: toolchain_one(source, tree, next(workdirs)))
        # Two parts of every rewrite that relgen's own code does not make faster: Python with
        # the modules of the rewrite, and checkpatch.pl on the patch (issue 9: rewrite checks
        # the mail as verify does), which can start only once the mail is made.
        imports = best_process(repeat, [sys.executable, "-c", _REWRITE_IMPORTS],
                               user_environment())
        patch = out / "relocate_kernel.patch"
        checkpatch = best_process(repeat, [
            "perl", str(tree.root / "scripts" / "checkpatch.pl"), "--no-tree", "--strict",
            "--show-types", str(patch)]) if patch.is_file() else None
    print(f"(b) relgen rewrite end to end vs cpp + as, {RELOCATE_KERNEL}")
    print("    relgen:    `relgen rewrite FILE --kernel-tree TREE -o DIR --force`, a subprocess")
    print("               (interpreter start, parse, rewrite, spatch, assembling both at 4 page")
    print("               sizes, execution on a kexec image, git format-patch, git apply,")
    print("               checkpatch.pl, outputs)")
    print("    toolchain: cpp + ia64-linux-gnu-as -x of the same file")
    if failure:
        print(f"    relgen rewrite FAILED ({failure[0][:80]}); its time is not meaningful")
    print(f"    {'':<52} {'s':>7} {'/toolchain':>11}")
    rows = [("relgen rewrite", mine),
            ("  part: python importing the rewrite's modules", imports)]
    if checkpatch is not None:
        rows.append(("  part: checkpatch.pl --strict on the written patch", checkpatch))
    rows.append(("cpp + as", theirs))
    for label, seconds in rows:
        print(f"    {label:<52} {seconds:>7.3f} {ratio(seconds, theirs):>11}")


# ---------------------------------------------------------------------------- (c) start-up

_STARTUP = """
import json, time
start = time.perf_counter()
import lark
with_lark = time.perf_counter()
import relgen.source.parser as syntax
imported = time.perf_counter()
syntax.parse_module("", "<bench>")  # the first parse loads the grammar; "" costs nothing more
loaded = time.perf_counter()
print(json.dumps({"lark": with_lark - start, "relgen": imported - with_lark,
                  "grammar": loaded - imported}))
"""


def user_environment() -> dict[str, str]:
    """This environment, but Python may keep compiled modules (__pycache__, ignored by git)
    as on a user's machine: without them every fresh interpreter compiles relgen again."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def startup_run(tmpdir: str) -> dict[str, float]:
    # relgen keeps lark's compiled grammar in $XDG_CACHE_HOME/relgen: a private
    # XDG_CACHE_HOME gives a cold or warm cache without touching the user's one
    env = dict(user_environment(), XDG_CACHE_HOME=tmpdir)
    result = subprocess.run([sys.executable, "-c", _STARTUP], check=True, env=env,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def heaviest_imports(count: int = 3) -> list[tuple[int, str]]:
    """The modules with the most own import time in `import relgen.source.parser`
    (-X importtime)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c",
                             "import relgen.source.parser"],
                            capture_output=True, text=True, check=True, env=user_environment())
    rows: list[tuple[int, str]] = []
    for line in result.stderr.splitlines():
        # "import time:   self [us] | cumulative | imported package"
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            rows.append((int(parts[0]), parts[2].strip()))
    return sorted(rows, reverse=True)[:count]


def report_startup(repeat: int) -> None:
    # a fresh interpreter doing nothing: the floor of any `relgen` command
    interpreter = best_process(repeat, [sys.executable, "-c", "pass"])
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    cache_written = False
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="relgen-bench-tmp-") as tmpdir:
            cold.append(startup_run(tmpdir))
            cache_written = cache_written or any(Path(tmpdir).glob("relgen/*.cache"))
            warm.append(startup_run(tmpdir))
    runs = cold + warm
    lark_import = min(r["lark"] for r in runs)
    relgen_import = min(r["relgen"] for r in runs)
    cold_load = min(r["grammar"] for r in cold)
    warm_load = min(r["grammar"] for r in warm)
    print()
    print("(c) start-up, in fresh interpreters (best s)")
    rows = [
        ("interpreter start (python -c pass, wall)", interpreter),
        ("import lark", lark_import),
        ("import relgen.source.parser, lark already imported", relgen_import),
        ("import relgen.source.parser in all", min(r["lark"] + r["relgen"] for r in runs)),
        ("grammar load, cold (no lark cache file)", cold_load),
        ("grammar load, warm (lark cache file present)", warm_load),
    ]
    for label, seconds in rows:
        print(f"    {label:<46} {seconds:>8.4f}")
    print(f"    cache speed-up: {ratio(cold_load, warm_load)}x; cache file written by the cold "
          f"run: {'yes' if cache_written else 'NO'}")
    print("    heaviest modules of `import relgen.source.parser`, own time "
          "(-X importtime, one run):")
    for micros, module in heaviest_imports():
        print(f"      {module:<44} {micros / 1e6:>8.4f}")


# ---------------------------------------------------------------------------- (d) profile


def _where(key: tuple[str, int, str]) -> str:
    """`package/module.py:line(function)`, without the machine's own folders."""
    filename, line, function = key
    if filename == "~":
        return function  # a built-in
    path = Path(filename)
    for anchor in ("site-packages", "src", "lib"):
        if anchor in path.parts:
            path = Path(*path.parts[len(path.parts) - path.parts[::-1].index(anchor):])
            break
    return f"{path.as_posix()}:{line}({function})"


def report_profile(tree: KernelTree, top: int = 5) -> None:
    texts = [(str(p), read_source(p)) for p in corpus(tree.root)]
    for path, text in texts:  # warm-up, so the profile holds no grammar load
        parse_module(text, path)
    profiler = cProfile.Profile()
    profiler.enable()
    for path, text in texts:
        parse_module(text, path)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table here
    total = stats.total_tt  # type: ignore[attr-defined]
    print()
    print(f"(d) cProfile of parse() over the corpus (one pass, {total:.3f} s under the profiler)")
    print(f"    top {top} functions by own time:")
    print(f"    {'ncalls':>9} {'own s':>7} {'own %':>6} {'cum s':>7}  function")
    by_own = sorted(entries.items(), key=lambda kv: (-kv[1][2], _where(kv[0])))
    for key, (_, calls, own, cumulative, _) in by_own[:top]:
        share = 100 * own / total if total else 0.0
        print(f"    {calls:>9} {own:>7.3f} {share:>5.1f}% {cumulative:>7.3f}  {_where(key)}")
    # where the time goes: lark's lexer, relgen's nodes (built during the parse, in the
    # callbacks lark calls), and the rest, which is lark's LALR loop
    lexer = max((value[3] for key, value in entries.items()
                 if key[0].endswith("lexer.py") and key[2] == "next_token"), default=0.0)
    nodes = sum(value[3] for key, value in entries.items()
                if _in_package(key, "relgen") and any(_in_package(c, "lark") for c in value[4]))
    print("    by phase (cumulative):")
    for label, seconds in (("lark lexer (contextual, regex scanners)", lexer),
                           ("relgen nodes (NodeBuilder, called by lark)", nodes),
                           ("lark LALR parser (the rest)", total - lexer - nodes)):
        share = 100 * seconds / total if total else 0.0
        print(f"      {label:<40} {seconds:>7.3f} s {share:>5.1f}%")


def _in_package(key: tuple[str, int, str], package: str) -> bool:
    """Whether the profile entry `key` is a function of `package` (relgen, lark)."""
    return package in Path(key[0]).parts


# ---------------------------------------------------------------------------- (e) parse --check

# What `relgen parse` costs before it reads a byte: the interpreter, the imports of its code
# path and the grammar (from lark's cache file).
_PARSE_START_UP = "import relgen.cli, relgen.source.parser as syntax; syntax.parse_module('')"


def report_parse_check(tree: KernelTree, repeat: int) -> None:
    source = tree.root / RELOCATE_KERNEL
    check = [str(RELGEN), "parse", "--check", str(source)]
    start_up = [sys.executable, "-c", _PARSE_START_UP]
    statuses: set[int] = set()
    env = user_environment()

    def run(command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, check=False, env=env)
        statuses.add(result.returncode)

    run(check)  # warm-up: lark's cache file, the compiled modules and the page cache
    mine = best_of(repeat, lambda: run(check))
    floor = best_of(repeat, lambda: run(start_up))
    # what no Python program that parses with lark can go below: the interpreter, then lark
    interpreter = best_process(repeat, [sys.executable, "-c", "pass"], env)
    lark_floor = best_process(repeat, [sys.executable, "-c", "import lark"], env)
    with tempfile.TemporaryDirectory(prefix="relgen-bench-") as folder:
        # a fresh workdir per run, as relgen's own assembling has
        workdirs = (Path(folder) / f"t{n}" for n in itertools.count())
        toolchain_one(source, tree, next(workdirs))
        theirs = best_of(repeat, lambda: toolchain_one(source, tree, next(workdirs)))
    print()
    print(f"(e) relgen parse --check as a whole process vs cpp + as, {RELOCATE_KERNEL}")
    print("    relgen:    `relgen parse --check FILE`, a subprocess (interpreter start, imports,")
    print("               grammar from lark's cache, parse, round-trip check), with Python's")
    print("               compiled modules kept as usual (PYTHONDONTWRITEBYTECODE unset)")
    print("    toolchain: cpp + ia64-linux-gnu-as -x of the same file")
    if statuses != {0}:
        print(f"    relgen parse --check FAILED (exit {sorted(statuses)}); its time is not "
              "meaningful")
    print(f"    {'':<40} {'s':>7} {'/toolchain':>11}")
    for label, seconds in (("relgen parse --check", mine),
                           ("  of which start-up (python -c, no parse)", floor),
                           ("  floor: python -c 'import lark'", lark_floor),
                           ("  floor: python -c pass", interpreter),
                           ("cpp + as", theirs)):
        print(f"    {label:<40} {seconds:>7.3f} {ratio(seconds, theirs):>11}")


# ---------------------------------------------------------------------------- (f) growth

GROWTH_COPIES = (1, 10, 100)


def rewrite_passes(module: object) -> None:
    """The rewrite passes; an input they refuse (the copies define every label again) stops
    with a positioned error, and what it cost up to there is what is measured."""
    from relgen.rewrite import rewrite_control_page

    try:
        rewrite_control_page(module)  # type: ignore[arg-type]
    except RelgenError:
        pass


def report_growth(tree: KernelTree, repeat: int) -> None:
    text = read_source(tree.root / RELOCATE_KERNEL)
    print()
    print(f"(f) growth with the input: {RELOCATE_KERNEL} repeated, parse + rewrite passes")
    print("    ratio: seconds per copy against the single copy's (1.00 = linear)")
    print(f"    {'copies':>6} {'bytes':>9} {'parse s':>9} {'ratio':>6} {'rewrite s':>10} "
          f"{'ratio':>6}")
    base: tuple[float, float] | None = None
    for copies in GROWTH_COPIES:
        big = text * copies
        module = parse_module(big)
        parse_s = best_of(repeat, lambda big=big: parse_module(big))
        rewrite_s = best_of(repeat, lambda module=module: rewrite_passes(module))
        if base is None:
            base = (parse_s, rewrite_s)
        print(f"    {copies:>6} {len(big):>9} {parse_s:>9.3f} "
              f"{ratio(parse_s / copies, base[0]):>6} {rewrite_s:>10.4f} "
              f"{ratio(rewrite_s / copies, base[1]):>6}")


# ---------------------------------------------------------------------------- (g) execution


def report_execution(tree: KernelTree, repeat: int) -> None:
    from relgen.checks.execution.evidence import FULL, QUICK, execution_evidence
    from relgen.checks.inputs import load_inputs
    from relgen.checks.runner import Plan, page_sizes_for, run_checks, verify
    from relgen.checks.twins import assemble_twins

    print()
    source = tree.root / RELOCATE_KERNEL
    with tempfile.TemporaryDirectory(prefix="relgen-bench-") as folder:
        out = Path(folder) / "out"
        made = subprocess.run([str(RELGEN), "rewrite", str(source), "--kernel-tree",
                               str(tree.root), "-o", str(out), "--no-kernel-checks", "--from",
                               "bench <bench@relgen.invalid>"], capture_output=True,
                              check=False)
        if made.returncode != 0:
            print("(g) skipped: relgen rewrite failed")
            return
        inputs = load_inputs(out, tree, original=source, entry="relocate_new_kernel")
        (twin,), _ = assemble_twins(inputs, Path(folder) / "twins", (16384,))
        registers = inputs.expected.argument_registers if inputs.expected else {}

        def evidence(plan: object) -> Callable[[], object]:
            return lambda: execution_evidence(twin.original_object, twin.new_object,
                                              twin.before, twin.after, registers, plan,
                                              page_size=twin.page_size)
        full = evidence(FULL)()
        full_s = best_of(repeat, evidence(FULL))
        quick_s = best_of(repeat, evidence(QUICK))
        # verify without the kernel checks (Kbuild, sparse: about 17 s warm), which would hide
        # every other share
        no_kernel = Plan(page_sizes=page_sizes_for(tree), kernel=False)
        verify_s = best_of(repeat, lambda: verify(inputs, no_kernel))

        def rewrite_check() -> None:
            """The checks `relgen rewrite` runs on its staged files before the mail, as
            pipeline.run_rewrite plans them (without the kernel checks)."""
            with tempfile.TemporaryDirectory(prefix="relgen-bench-") as scratch:
                run_checks(inputs, Plan(page_sizes=page_sizes_for(tree), execution=QUICK,
                                        patch=False, kernel=False), Path(scratch))

        before_write_s = best_of(repeat, rewrite_check)
    runs = 2 * FULL.images
    summary = full.checks[0][2][0]
    rate = summary.split("(")[-1].split(" slots/s")[0]
    print("(g) execution checks: both control pages run by relgen's interpreter, in process")
    print(f"    verify's plan:  {FULL.images} images of {FULL.pages} pages (16 KiB), 2 versions; "
          f"rewrite's: {QUICK.images} image of {QUICK.pages} pages")
    print(f"    slots run:      {full.slots} ({full.slots // runs} per run), {rate} slots/s "
          "in the runs alone")
    print(f"    per run:        {full_s / (runs + 1):.3f} s (the {runs} compared runs and one "
          "with ar.ec=2 for the note, decoding included)")
    print(f"    {'':20} {'execution s':>12} {'whole s':>9} {'share':>7}")
    print(f"    {'verify (no Kbuild)':<20} {full_s:>12.3f} {verify_s:>9.3f} "
          f"{100 * full_s / verify_s:>6.1f}%")
    print(f"    {'rewrite check':<20} {quick_s:>12.3f} {before_write_s:>9.3f} "
          f"{100 * quick_s / before_write_s:>6.1f}%")


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, metavar="N",
                        help="runs per figure; the best is shown (default 5)")
    parser.add_argument("--kernel-tree", type=Path, metavar="DIR",
                        help="Linux 6.1 tree (default: as relgen finds it)")
    parser.add_argument("--sections", default="", metavar="LETTERS",
                        help="run only these sections, e.g. `h` or `abh` (default: all)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    for tool in ("cpp", "ia64-linux-gnu-as"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} not found; run `make setup`", file=sys.stderr)
            return 2
    try:
        tree = find_kernel_tree(args.kernel_tree, start=ROOT)
    except RelgenError as error:
        print(f"bench: {error.render()}", file=sys.stderr)
        return 2
    print_header(tree, args.repeat)
    sections: list[tuple[str, Callable[[], object]]] = [
        ("a", lambda: report_corpus(measure_corpus(tree, args.repeat), tree)),
        ("b", lambda: report_rewrite(tree, args.repeat)),
        ("c", lambda: report_startup(args.repeat)),
        ("d", lambda: report_profile(tree)),
        ("e", lambda: report_parse_check(tree, args.repeat)),
        ("f", lambda: report_growth(tree, args.repeat)),
        ("g", lambda: report_execution(tree, args.repeat)),
        ("h", lambda: report_kernel_checks(tree, args.repeat)),
    ]
    failed = []
    for letter, section in sections:
        if args.sections and letter not in args.sections:
            continue
        # a section that breaks says so in one line, and the others still run
        try:
            section()
        except Exception as error:  # noqa: BLE001 - any failure of one section
            print(f"\n({letter}) FAILED: {type(error).__name__}: {error}")
            failed.append(letter)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
