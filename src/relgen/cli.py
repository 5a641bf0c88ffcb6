"""relgen's command line: argument parsing and wiring only; library functions do the work."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from relgen import __version__
from relgen.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, RelgenError
from relgen.names import DEFAULT_ENTRY, RELOCATE_KERNEL_PATH
from relgen.progress import for_stderr

KERNEL_FILE = RELOCATE_KERNEL_PATH
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

EXIT_CODES = """exit status:
  0  success (for --check: nothing to change)
  1  a check failed (for --check: the file would change)
  2  bad input or usage; nothing was written
  130 / 143  interrupted (Ctrl-C) / terminated (SIGTERM); nothing was left behind"""


# ------------------------------------------------------------------------------ commands


def _cmd_parse(args: argparse.Namespace) -> int:
    from relgen.source.nodes import to_json
    from relgen.source.parser import parse_module, unparse
    from relgen.source.reading import read_source, read_stream

    status = EXIT_OK
    documents = []
    for path in args.paths:
        try:
            if str(path) == "-":
                shown = "<stdin>"
                text = read_stream(sys.stdin.buffer, shown)  # bounded, like a file
            else:
                shown = str(path)
                text = read_source(path)  # a regular file only: never a FIFO or a device
            module = parse_module(text, shown)
        except RelgenError as error:
            print(error.render(), file=sys.stderr)
            status = max(status, error.exit_status)
            continue
        if args.json:
            documents.append(to_json(module))
            continue
        counts = module.kind_counts()
        summary = ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "empty"
        if args.check and unparse(module) != text:
            print(f"{shown}: round trip FAILED", file=sys.stderr)
            status = max(status, EXIT_CHECK_FAILED)
        elif args.check:
            print(f"{shown}: round trip ok ({summary})")
        else:
            print(f"{shown}: {summary}")
    if args.json:
        # one document: a file's statements, or {"files": [...]} for several files
        document = documents[0] if len(args.paths) == 1 and documents else \
            {"files": documents}
        print(json.dumps(document, indent=1))
    return status


def _tree_and_source(args: argparse.Namespace):  # noqa: ANN202 - a pair of library types
    from relgen.source.files import load_source
    from relgen.toolchain.tree import find_kernel_tree

    tree = find_kernel_tree(args.kernel_tree)
    path = args.path if args.path is not None else tree.relocate_kernel
    return tree, load_source(path, tree)


def _write(args: argparse.Namespace, folder: Path, files: dict[str, bytes],
           protected: Sequence[Path] = ()) -> None:
    from relgen.outputs import write_outputs

    result = write_outputs(folder, files, command=args.command, force=args.force,
                           protected=protected)
    for name in result.removed:
        print(f"removed {folder / name}: an earlier output of relgen that this run does not "
              "produce", file=sys.stderr)
    for name in result.kept:
        print(f"kept {folder / name}: an earlier output of relgen, changed by hand, that this "
              "run does not produce", file=sys.stderr)


def _cmd_layout(args: argparse.Namespace) -> int:
    from relgen.outputs import check_output_file
    from relgen.scratch import scratch_folder
    from relgen.toolchain import layout
    from relgen.toolchain import pictures as layout_svg
    from relgen.toolchain.measure import source_map
    from relgen.toolchain.tree import parse_page_sizes

    page_sizes = parse_page_sizes(args.page_size)
    if args.output is not None:
        check_output_file(args.output)
    standins: tuple[str, ...] = ()
    protected: tuple[Path, ...] = ()
    if args.object is not None:
        # The object alone does not say which labels are data areas: PATH's syntax tree
        # does, else --data names them (and --end-label the region's end).
        end_label, data = args.end_label or f"{args.entry}_end", args.data
        if args.path is not None:
            from relgen.source.files import load_source
            from relgen.source.region import find_region

            region = find_region(load_source(args.path, None).module, args.entry,
                                 args.end_label)
            end_label, data = region.end_label, [a.name for a in region.data_areas]
        control_map = layout.map_object_file(args.object, entry=args.entry,
                                             end_label=end_label, data_areas=data)
    else:
        tree, source = _tree_and_source(args)
        protected = (tree.root,)
        with scratch_folder() as work:
            control_map, assembled, _ = source_map(source, tree, Path(work), entry=args.entry,
                                                   include_dirs=args.include,
                                                   configuration=_configuration(args),
                                                   end_label=args.end_label)
        standins = assembled.standins
    if args.format == "json":
        text = json.dumps(layout.to_json(control_map, page_sizes), indent=2) + "\n"
    elif args.format == "svg":
        text = layout_svg.render_svg(control_map, page_sizes)
    else:
        text = layout.render_text(control_map, page_sizes)
        if standins:
            text += ("note: no kernel build in the tree; assembled with generated stand-ins "
                     f"for {', '.join(standins)}\n")
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    check_output_file(args.output, protected=protected)
    _write(args, args.output.parent, {args.output.name: text.encode("utf-8")}, protected)
    return EXIT_OK


def _cmd_rewrite(args: argparse.Namespace) -> int:
    from relgen.kernel.mail import resolve_author
    from relgen.names import SOURCE_NAME
    from relgen.outputs import check_output_folder
    from relgen.pipeline import run_rewrite, source_diff
    from relgen.source.files import kernel_path

    writing = not (args.diff or args.check)
    if writing:
        check_output_folder(args.output)
    tree, source = _tree_and_source(args)
    if writing:
        check_output_folder(args.output, protected=(tree.root,))
    author = resolve_author(args.author, tree.root)
    run = run_rewrite(source, tree, entry=args.entry, include_dirs=args.include,
                      author=author.identity, date=args.date,
                      configuration=_configuration(args),
                      kernel_skipped=_kernel_skipped(args), progress=for_stderr(args.quiet))
    if not run.passed:
        sys.stdout.write(run.report.render())
        print(f"{source.shown}: error: the regenerated file failed verification; nothing "
              "written", file=sys.stderr)
        return EXIT_CHECK_FAILED
    regen = run.regen
    if not writing:
        if args.diff and regen.changed:
            sys.stdout.buffer.write(source_diff(run))
        if args.check:
            verdict = f"would rewrite {kernel_path(source)}" if regen.changed else \
                f"{source.shown} is already in code-first layout"
            print(verdict, file=sys.stderr)
            return EXIT_CHECK_FAILED if regen.changed else EXIT_OK
        return EXIT_OK
    if author.warning and regen.changed:
        print(author.warning, file=sys.stderr)
    _write(args, args.output, run.files, (tree.root,))
    print(f"tree: {tree.era.describe()}")
    if regen.changed:
        print(f"{source.shown}: {len(regen.result.rewritten)} instructions rewritten, "
              f"{len(regen.result.data_areas)} data areas passed in as arguments")
    else:
        print(f"{source.shown}: already in code-first layout; {SOURCE_NAME} is unchanged")
    print(f"verified before writing: {run.report.summary} "
          f"({run.report.instructions_compared} instructions compared)")
    print(f"control page: {regen.before.size} bytes before, {regen.after.size} bytes after")
    if regen.standins:
        print("note: no kernel build in the tree; assembled with generated stand-ins for "
              + ", ".join(regen.standins))
    print(f"wrote {', '.join(sorted(run.files))} to {args.output}/")
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    # `relgen diff` is `relgen rewrite --diff` (or `--check`): the same pipeline, no writing
    args.diff, args.output, args.force = not args.check, None, False
    args.author, args.date, args.require_kernel_checks = None, None, False
    return _cmd_rewrite(args)


def _cmd_verify(args: argparse.Namespace) -> int:
    from relgen.checks.inputs import load_inputs
    from relgen.checks.runner import Plan, page_sizes_for, verify
    from relgen.toolchain.tree import find_kernel_tree

    tree = find_kernel_tree(args.kernel_tree)
    inputs = load_inputs(args.dir, tree, original=args.original, entry=args.entry,
                         include_dirs=args.include, configuration=_configuration(args))
    plan = Plan(page_sizes=page_sizes_for(tree), kernel_skipped=_kernel_skipped(args),
                require_kernel=args.require_kernel_checks)
    report = verify(inputs, plan, for_stderr(args.quiet or args.format == "json"))
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"tree: {tree.era.describe()}")
        sys.stdout.write(report.render())
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


# ------------------------------------------------------------------------------ arguments


def _add_tree_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--kernel-tree", type=Path, metavar="DIR",
                         help="the Linux tree (default: $RELGEN_KERNEL_TREE, else the "
                         ".cache/linux-source-6.1 that `make setup` extracted, in this folder "
                         "or a parent)")
    command.add_argument("-I", dest="include", action="append", type=Path, default=[],
                         metavar="DIR", help="an extra include folder, searched before the "
                         "tree's (repeatable)")
    command.add_argument("--entry", default=DEFAULT_ENTRY, metavar="NAME",
                         help=f"the entry procedure that opens the control page (default: "
                         f"{DEFAULT_ENTRY})")


def _kernel_skipped(args: argparse.Namespace) -> str | None:
    return "--no-kernel-checks was given" if args.no_kernel_checks else None


def _add_check_arguments(command: argparse.ArgumentParser, *, writes: bool) -> None:
    what = "writing" if writes else "failing"
    command.add_argument("--require-kernel-checks", action="store_true",
                         help="fail when the kernel checks (sparse and gcc on every unit that "
                         "includes <asm/kexec.h>, Coccinelle) cannot run, instead of saying "
                         "why they did not")
    command.add_argument("--no-kernel-checks", action="store_true",
                         help="skip the kernel checks, the slowest part; the report"
                         + (" and the commit message say" if writes else " says")
                         + " they did not run")
    command.add_argument("-q", "--quiet", action="store_true",
                         help=f"no progress line on a terminal while the checks run before "
                         f"{what}")


def _configuration(args: argparse.Namespace):  # noqa: ANN202 - a library type
    from relgen.source.configurations import from_options

    return from_options(args.define, args.undefine)


def _add_configuration_arguments(command: argparse.ArgumentParser, *, varied: bool) -> None:
    fixed = "; a switch given here is not varied" if varied else ""
    command.add_argument("-D", dest="define", action="append", default=[],
                         metavar="NAME[=VALUE]",
                         help=f"define a macro for cpp, as cpp -D does{fixed} (repeatable)")
    command.add_argument("-U", dest="undefine", action="append", default=[], metavar="NAME",
                         help=f"undefine a macro for cpp, as cpp -U does{fixed} (repeatable)"
                         + (". Every other switch that the control page's conditionals test "
                            "is checked on and off" if varied else
                            "; the map is of this one configuration"))


def _add_source_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("path", nargs="?", type=Path, metavar="PATH",
                         help=f"the .S file, a regular file: the assembler reads it by its path "
                         f"(default: the tree's {KERNEL_FILE})")
    _add_tree_arguments(command)


def _command(commands: argparse._SubParsersAction, name: str, summary: str,
             description: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=description,
                               epilog=EXIT_CODES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relgen",
        description="Regenerate the ia64 kexec control page: code first, stacks as arguments.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"relgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    parse_cmd = _command(commands, "parse", "parse ia64 assembly losslessly",
                         "Parse each PATH and print its statements by kind. Every file is "
                         "parsed and reported, also after one that fails.")
    parse_cmd.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                           help="ia64 .S files; - reads standard input")
    parse_cmd.add_argument("--check", action="store_true",
                           help="exit 1 unless unparsing gives each input back byte for byte")
    parse_cmd.add_argument("--json", action="store_true",
                           help="print the statements (kind, text, line, column) as one JSON "
                           'document ({"files": [...]} for several files)')
    parse_cmd.set_defaults(run=_cmd_parse)

    layout_cmd = _command(commands, "layout", "map the control page from the object",
                          "Assemble PATH with the real toolchain (or read --object) and "
                          "print the control-page map with its page boundaries.")
    _add_source_arguments(layout_cmd)
    layout_cmd.add_argument("--object", type=Path, metavar="FILE.o",
                            help="map an assembled object instead of assembling PATH; PATH, "
                            "if given, says which labels are data areas")
    layout_cmd.add_argument("--end-label", metavar="NAME",
                            help="the region's end label, for a file without a size word "
                            "(with --object and no PATH, default: ENTRY_end)")
    layout_cmd.add_argument("--data", action="append", default=[], metavar="NAME",
                            help="with --object and no PATH: a data area's label (repeatable)")
    layout_cmd.add_argument("--page-size", default="4K,8K,16K,64K", metavar="SIZES",
                            help="page sizes to mark, e.g. 4K,16K (default: 4K,8K,16K,64K)")
    layout_cmd.add_argument("--format", choices=("text", "json", "svg"), default="text",
                            help="text, json or svg (default: text)")
    layout_cmd.add_argument("-o", dest="output", type=Path, metavar="FILE",
                            help="write the map to FILE, atomically (default: standard "
                            "output); FILE is recorded in .relgen-output beside it")
    layout_cmd.add_argument("--force", action="store_true",
                            help="overwrite FILE even if it was changed since relgen wrote it "
                            "(a file relgen did not write is never overwritten)")
    _add_configuration_arguments(layout_cmd, varied=False)
    layout_cmd.set_defaults(run=_cmd_layout)

    rewrite_cmd = _command(
        commands, "rewrite", "write the code-first .S, header, patch and maps",
        "Rewrite PATH code first, assemble and verify the result, and write the outputs "
        "into DIR. Only relgen's named outputs are written, each atomically; a file relgen "
        "did not write is never overwritten, and no kernel tree is written into.")
    _add_source_arguments(rewrite_cmd)
    rewrite_cmd.add_argument("-o", dest="output", type=Path, default=Path("out"),
                             metavar="DIR", help="output folder, created if missing (its "
                             "parent must exist; default: out)")
    rewrite_cmd.add_argument("--force", action="store_true",
                             help="overwrite relgen's own outputs in DIR even if they were "
                             "changed by hand since (never any other file)")
    modes = rewrite_cmd.add_mutually_exclusive_group()
    modes.add_argument("--diff", action="store_true",
                       help="write nothing; print the change to PATH as a unified diff")
    modes.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if PATH would change, 0 if it is already "
                       "code-first")
    rewrite_cmd.add_argument("--from", dest="author", metavar="'NAME <EMAIL>'",
                             help="the patch's author and Signed-off-by (default: git config "
                             "user.name and user.email of the tree, else the user's, else a "
                             "placeholder with a warning)")
    rewrite_cmd.add_argument("--date", metavar="DATE",
                             help="the patch's date, in any form `git commit --date` takes "
                             "(`2001-01-01`, `yesterday`, `@1700000000 +0000` ...; default: "
                             "$SOURCE_DATE_EPOCH if set, else now)")
    _add_configuration_arguments(rewrite_cmd, varied=True)
    _add_check_arguments(rewrite_cmd, writes=True)
    rewrite_cmd.set_defaults(run=_cmd_rewrite)

    verify_cmd = _command(
        commands, "verify", "check rewrite's outputs with the toolchain",
        "Assemble the original and DIR/relocate_kernel.S at 4, 8, 16 and 64 KiB pages and "
        "run every check: the twin objects, the header, the patch.")
    verify_cmd.add_argument("dir", nargs="?", type=Path, default=Path("out"), metavar="DIR",
                            help="the output folder of relgen rewrite (default: out)")
    verify_cmd.add_argument("--original", type=Path, metavar="PATH",
                            help=f"the file DIR was made from (default: the tree's "
                            f"{KERNEL_FILE})")
    _add_tree_arguments(verify_cmd)
    verify_cmd.add_argument("--format", choices=("text", "json"), default="text",
                            help="text or json (default: text)")
    _add_configuration_arguments(verify_cmd, varied=True)
    _add_check_arguments(verify_cmd, writes=False)
    verify_cmd.set_defaults(run=_cmd_verify)

    diff_cmd = _command(commands, "diff", "print the change a rewrite would make",
                        "The same as `relgen rewrite --diff` (or `--check`): the whole "
                        "rewrite and its checks run, nothing is written.")
    _add_source_arguments(diff_cmd)
    diff_cmd.add_argument("--check", action="store_true",
                          help="print nothing; exit 1 if PATH would change, 0 if it is "
                          "already code-first")
    _add_configuration_arguments(diff_cmd, varied=True)
    diff_cmd.add_argument("--no-kernel-checks", action="store_true",
                          help="skip the kernel checks, the slowest part")
    diff_cmd.add_argument("-q", "--quiet", action="store_true",
                          help="no progress line on a terminal while the checks run")
    diff_cmd.set_defaults(run=_cmd_diff)
    return parser


# ------------------------------------------------------------------------------ the process


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that scratch folders are cleaned up."""


def _raise_terminated(signum: int, frame: object) -> NoReturn:
    raise Terminated


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave the handler alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _os_error(error: OSError) -> str:
    where = error.filename if error.filename is not None else None
    reason = error.strerror or str(error)
    return f"{where}: error: {reason}" if where is not None else f"error: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_unwinds():
            return int(args.run(args))
    except RelgenError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_status
    except BrokenPipeError:
        # the reader went away (`relgen parse --json x | head`): say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        print(_os_error(error), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("relgen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("relgen: terminated", file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
