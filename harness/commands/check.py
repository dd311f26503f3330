"""`harness check`: validate site, contract, profile and DBC files and say what they contain."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.config.errors import ConfigErrors

EXIT_SETUP = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = sub.add_parser("check", help="validate site, contract, profile, map and DBC files")
    check.add_argument("files", nargs="+")
    check.set_defaults(handler=cmd_check)


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from harness.checks import check_file

    status = 0
    for name in args.files:
        try:
            summary = check_file(Path(name))
        except ConfigErrors as exc:
            for err in exc.errors:
                console.print(str(err), style="red", highlight=False, soft_wrap=True)
            status = EXIT_SETUP
        else:
            console.print(f"[green]OK[/green] {name}: {summary}", highlight=False, soft_wrap=True)
    return status
