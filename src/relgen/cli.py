"""relgen's command line: argument parsing only; the work is done by library functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import EXIT_CHECK_FAILED, EXIT_OK, RelgenError

KERNEL_FILE = "arch/ia64/kernel/relocate_kernel.S"


def _cmd_parse(args: argparse.Namespace) -> int:
    from .syntax import parse, read_source, to_json, unparse

    status = EXIT_OK
    for path in args.paths:
        text = read_source(path)  # once: PATH may be a pipe
        module = parse(text, str(path))
        if args.json:
            print(json.dumps(to_json(module), indent=1))
            continue
        counts = module.kind_counts()
        summary = ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "empty"
        if args.check:
            if unparse(module) != text:
                print(f"{path}: round trip FAILED", file=sys.stderr)
                status = EXIT_CHECK_FAILED
                continue
            print(f"{path}: round trip ok ({summary})")
        else:
            print(f"{path}: {summary}")
    return status


def _tree_and_source(args: argparse.Namespace):  # noqa: ANN202 - a pair of library types
    from .kbuild import find_kernel_tree
    from .pipeline import load_source

    tree = find_kernel_tree(args.kernel_tree)
    path = args.path if args.path is not None else tree.relocate_kernel
    return tree, load_source(path, tree)


def _cmd_layout(args: argparse.Namespace) -> int:
    from . import layout
    from .kbuild import parse_page_sizes
    from .pipeline import scratch_folder, source_map

    page_sizes = parse_page_sizes(args.page_size)
    if args.object is not None:
        # The object alone does not say which labels are data areas: PATH's syntax tree
        # does, else --data names them (and --end-label the region's end).
        end_label, data = args.end_label or f"{args.entry}_end", args.data
        if args.path is not None:
            from .pipeline import load_source
            from .region import find_region

            region = find_region(load_source(args.path, None).module, args.entry)
            end_label, data = region.end_label, [a.name for a in region.data_areas]
        control_map = layout.map_object_file(args.object, entry=args.entry,
                                             end_label=end_label, data_areas=data)
        standins: tuple[str, ...] = ()
    else:
        tree, source = _tree_and_source(args)
        with scratch_folder() as work:
            control_map, assembled, _ = source_map(source, tree, Path(work), entry=args.entry,
                                                   include_dirs=args.include)
        standins = assembled.standins
    if args.format == "json":
        text = json.dumps(layout.to_json(control_map, page_sizes), indent=2) + "\n"
    elif args.format == "svg":
        text = layout.render_svg(control_map, page_sizes)
    else:
        text = layout.render_text(control_map, page_sizes)
        if standins:
            text += ("note: no kernel build in the tree; assembled with generated stand-ins "
                     f"for {', '.join(standins)}\n")
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_rewrite(args: argparse.Namespace) -> int:
    from .outputs import check_output_folder, write_output_folder
    from .pipeline import primary_outputs, regenerate, rewrite_outputs, scratch_folder
    from .verify import load_inputs, verify

    check_output_folder(args.output, force=args.force)
    tree, source = _tree_and_source(args)
    with scratch_folder() as work:
        regen = regenerate(source, tree, Path(work), entry=args.entry,
                           include_dirs=args.include)
        # Verify before writing: the patch's commit message states what was checked.
        staged = Path(work) / "staged"
        staged.mkdir()
        for name, data in primary_outputs(regen).items():
            (staged / name).write_bytes(data)
        inputs = load_inputs(staged, tree, original=source.path, entry=args.entry,
                             include_dirs=args.include)
        report = verify(inputs, with_patch=False)
        if not report.passed:
            sys.stdout.write(report.render())
            print("relgen rewrite: the regenerated file failed verification; nothing written",
                  file=sys.stderr)
            return EXIT_CHECK_FAILED
        files = rewrite_outputs(regen, tree, instructions_compared=report.instructions_compared)
    write_output_folder(args.output, files, force=args.force)
    if regen.changed:
        print(f"{source.shown}: {len(regen.result.rewritten)} instructions rewritten, "
              f"{len(regen.result.data_areas)} data areas passed in as arguments")
    else:
        print(f"{source.shown}: already in code-first layout; nothing to change")
    passed = sum(check.passed for check in report.checks)
    print(f"verified before writing: {passed} checks passed ({report.instructions_compared} "
          "instructions compared)")
    print(f"control page: {regen.before.size} bytes before, {regen.after.size} bytes after")
    if regen.standins:
        print("note: no kernel build in the tree; assembled with generated stand-ins for "
              + ", ".join(regen.standins))
    print(f"wrote {', '.join(sorted(files))} to {args.output}/")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from .kbuild import find_kernel_tree
    from .verify import load_inputs, verify

    tree = find_kernel_tree(args.kernel_tree)
    inputs = load_inputs(args.dir, tree, original=args.original, entry=args.entry,
                         include_dirs=args.include)
    report = verify(inputs, require_kernel_checks=args.require_kernel_checks)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        sys.stdout.write(report.render())
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


def _cmd_diff(args: argparse.Namespace) -> int:
    from .emit import unified_diff
    from .kbuild import find_kernel_tree
    from .pipeline import load_source
    from .region import check_procedures_closed
    from .rewrite import rewrite_control_page
    from .syntax import unparse

    if args.path is None:
        path = find_kernel_tree(args.kernel_tree).relocate_kernel
        shown = KERNEL_FILE
    else:
        path, shown = args.path, KERNEL_FILE
    source = load_source(path, None)
    check_procedures_closed(source.module)
    result = rewrite_control_page(source.module, args.entry)
    if args.check:
        return EXIT_OK if result.already_code_first else EXIT_CHECK_FAILED
    new = unparse(result.module)
    if new != source.text:
        sys.stdout.write(unified_diff(source.text.encode("utf-8"), new.encode("utf-8"), shown))
    return EXIT_OK


def _add_source_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("path", nargs="?", type=Path, metavar="PATH",
                         help="the .S file (default: the tree's " + KERNEL_FILE + ")")
    command.add_argument("--kernel-tree", type=Path, metavar="DIR",
                         help="Linux tree (default: $RELGEN_KERNEL_TREE, else the one "
                         "`make setup` extracted)")
    command.add_argument("-I", dest="include", action="append", type=Path, default=[],
                         metavar="DIR", help="extra include folder, searched first")
    command.add_argument("--entry", default="relocate_new_kernel", metavar="NAME",
                         help="the entry procedure that opens the control page")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relgen",
        description="Regenerate the ia64 kexec control page: code first, stacks as arguments.",
    )
    parser.add_argument("--version", action="version", version=f"relgen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    parse_cmd = commands.add_parser("parse", help="parse ia64 assembly losslessly")
    parse_cmd.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parse_cmd.add_argument("--check", action="store_true",
                           help="exit 0 only if unparsing gives the input back byte for byte")
    parse_cmd.add_argument("--json", action="store_true",
                           help="print the statements (kind, text, line, column) as JSON")
    parse_cmd.set_defaults(run=_cmd_parse)

    layout_cmd = commands.add_parser("layout", help="map the control page from the object")
    _add_source_arguments(layout_cmd)
    layout_cmd.add_argument("--object", type=Path, metavar="FILE.o",
                            help="map an assembled object instead of assembling PATH")
    layout_cmd.add_argument("--end-label", metavar="NAME",
                            help="with --object and no PATH: the region's end label "
                            "(default: ENTRY_end)")
    layout_cmd.add_argument("--data", action="append", default=[], metavar="NAME",
                            help="with --object and no PATH: a data area's label (repeatable)")
    layout_cmd.add_argument("--page-size", default="4K,8K,16K,64K", metavar="SIZES",
                            help="page sizes to mark, e.g. 4K,16K (default: all four)")
    layout_cmd.add_argument("--format", choices=("text", "json", "svg"), default="text")
    layout_cmd.add_argument("-o", dest="output", type=Path, metavar="FILE")
    layout_cmd.set_defaults(run=_cmd_layout)

    rewrite_cmd = commands.add_parser("rewrite", help="write the code-first .S, header, patch")
    _add_source_arguments(rewrite_cmd)
    rewrite_cmd.add_argument("-o", dest="output", type=Path, default=Path("out"),
                             metavar="DIR", help="output folder (default: out)")
    rewrite_cmd.add_argument("--force", action="store_true",
                             help="replace an output folder relgen did not write")
    rewrite_cmd.set_defaults(run=_cmd_rewrite)

    verify_cmd = commands.add_parser("verify", help="check the outputs with the toolchain")
    verify_cmd.add_argument("dir", nargs="?", type=Path, default=Path("out"), metavar="DIR",
                            help="the output folder of relgen rewrite (default: out)")
    verify_cmd.add_argument("--original", type=Path, metavar="PATH",
                            help="the file DIR was made from (default: the tree's "
                            + KERNEL_FILE + ")")
    verify_cmd.add_argument("--kernel-tree", type=Path, metavar="DIR")
    verify_cmd.add_argument("-I", dest="include", action="append", type=Path, default=[],
                            metavar="DIR")
    verify_cmd.add_argument("--entry", default="relocate_new_kernel", metavar="NAME")
    verify_cmd.add_argument("--format", choices=("text", "json"), default="text")
    verify_cmd.add_argument("--require-kernel-checks", action="store_true",
                            help="fail when the kernel checks (Kbuild with sparse and gcc, "
                            "Coccinelle) cannot run, instead of saying why they did not")
    verify_cmd.set_defaults(run=_cmd_verify)

    diff_cmd = commands.add_parser("diff", help="print the change a rewrite would make")
    _add_source_arguments(diff_cmd)
    diff_cmd.add_argument("--check", action="store_true",
                          help="print nothing; exit 1 if the file is not code-first yet")
    diff_cmd.set_defaults(run=_cmd_diff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except RelgenError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_status
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
