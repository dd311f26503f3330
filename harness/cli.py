"""`harness`: the command line a test engineer uses.

Exit status: 0 every clause passed, 1 a clause failed (or was not covered, or errored), 2 the
run could not be set up (bad input, no device). Input errors never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rich.console import Console

from harness.config.errors import ConfigErrors

EXIT_SETUP = 2

# Each name is a module in harness/commands/ with register(subparsers); order is the help order.
COMMANDS = ["run", "check", "report", "site", "scorecard", "replay", "quantities", "defects"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"harness.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    console = Console(width=None if sys.stdout.isatty() else 120)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, console))
    except ConfigErrors as exc:
        for err in exc.errors:
            console.print(str(err), style="red", highlight=False, soft_wrap=True)
        return EXIT_SETUP
    except KeyboardInterrupt:
        console.print("interrupted", style="red")
        return 130


if __name__ == "__main__":
    sys.exit(main())
