"""`harness run | check`: the command line a test engineer uses.

Exit status: 0 every clause passed, 1 a clause failed (or was not covered, or errored), 2 the
run could not be set up (bad input, no device). Input errors never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from harness.config.errors import ConfigErrors
from harness.runinfo import default_out, point_latest

EXIT_SETUP = 2


def _testplans() -> Path:
    local = Path("testplans")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[1] / "testplans"


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    import pytest

    from harness.checks import check_run_inputs
    from harness.report.progress import ProgressReporter
    from harness.report.results import exit_status, read_verdicts
    from harness.report.table import print_verdicts

    check_run_inputs(Path(args.site), Path(args.contract))
    out = Path(args.out) if args.out else default_out()
    out.mkdir(parents=True, exist_ok=True)
    pytest_args = [
        str(_testplans()),
        "--site",
        args.site,
        "--contract",
        args.contract,
        "--out",
        str(out),
        f"--junitxml={out / 'junit.xml'}",
        f"--alluredir={out / 'allure-results'}",
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "-rN",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if args.campaign:
        pytest_args += ["--campaign", args.campaign]
    if args.workers:
        pytest_args += ["-n", str(args.workers)]
    pytest_args += args.pytest_args
    console.print(f"[bold]harness run[/bold]: site {args.site}, contract {args.contract} -> {out}")
    code = pytest.main(pytest_args, plugins=[ProgressReporter(console)])
    if not (out / "verdicts.json").is_file():
        console.print(f"[bold red]no verdicts were produced (pytest exit {int(code)})[/bold red]")
        return EXIT_SETUP
    if out.parent.name == "reports":
        point_latest(out)
    run, verdicts = read_verdicts(out)
    print_verdicts(run, verdicts, console)
    console.print(f"results: {out}")
    return exit_status(verdicts)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the acceptance scenarios against a site and a contract")
    run.add_argument("--site", default="fixtures/sites/virtual-home.yaml")
    run.add_argument("--contract", default="fixtures/contracts/example.yaml")
    run.add_argument(
        "--out", help="results folder (default reports/<timestamp>, plus reports/latest)"
    )
    run.add_argument("--campaign", help="factory, field or ci: run that campaign's scenarios only")
    run.add_argument("-n", "--workers", type=int, default=0, help="parallel pytest-xdist workers")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    check = sub.add_parser("check", help="validate site, contract, profile, map and DBC files")
    check.add_argument("files", nargs="+")
    return parser


def main(argv: list[str] | None = None) -> int:
    console = Console(width=None if sys.stdout.isatty() else 120)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, console)
        return cmd_check(args, console)
    except ConfigErrors as exc:
        for err in exc.errors:
            console.print(str(err), style="red", highlight=False, soft_wrap=True)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
