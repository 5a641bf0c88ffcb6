"""relgen's command line: argument parsing only; the work is done by library functions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import EXIT_OK, RelgenError


def _cmd_parse(args: argparse.Namespace) -> int:
    from .syntax import parse_file, to_json, unparse

    status = EXIT_OK
    for path in args.paths:
        module = parse_file(path)
        if args.json:
            print(json.dumps(to_json(module), indent=1))
            continue
        counts = module.kind_counts()
        summary = ", ".join(f"{counts[k]} {k}" for k in sorted(counts))
        if args.check:
            if unparse(module) != path.read_bytes().decode("utf-8"):
                print(f"{path}: round trip FAILED", file=sys.stderr)
                status = 1
                continue
            print(f"{path}: round trip ok ({summary})")
        else:
            print(f"{path}: {summary}")
    return status


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
