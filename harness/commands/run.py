"""`harness run`: the acceptance scenarios against a site and a contract, ending in verdicts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from harness.config.site import Site
from harness.runinfo import default_out, point_latest

EXIT_SETUP = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the acceptance scenarios against a site and a contract")
    run.add_argument("--site", default="fixtures/sites/virtual-cluster.yaml")
    run.add_argument("--contract", default="fixtures/contracts/example.yaml")
    run.add_argument(
        "--out", help="results folder (default reports/<timestamp>, plus reports/latest)"
    )
    run.add_argument("--campaign", help="factory, field or ci: run that campaign's scenarios only")
    run.add_argument("--operator", help="operator's name, printed on the witness report")
    run.add_argument("--witness", help="witness's name, printed on the witness report")
    run.add_argument(
        "--dry-run", action="store_true", help="send no write to any device; log what would be sent"
    )
    run.add_argument(
        "--allow-switching",
        action="store_true",
        help="let 'switching' scenarios open breakers and island a live site",
    )
    run.add_argument(
        "-n",
        "--workers",
        type=int,
        help="parallel pytest-xdist workers (default: on a virtual site of several homes, one "
        "per CPU up to one per home; otherwise 0, so a live site's operator prompts reach you)",
    )
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    run.set_defaults(handler=cmd_run)


def _testplans() -> Path:
    local = Path("testplans")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "testplans"


def default_workers(site: Site) -> int:
    """Homes in parallel where nothing can go wrong: only a wholly virtual site, and never more
    workers than CPUs or homes. A live site runs in one process unless asked (`-n`)."""
    homes = len(site.spec.nodes)
    if not site.is_virtual or homes < 2:
        return 0
    workers = min(os.cpu_count() or 1, homes)
    return workers if workers > 1 else 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    import pytest

    from harness.checks import check_run_inputs
    from harness.pytest_plugin import SETUP_ERROR
    from harness.report.progress import ProgressReporter
    from harness.report.results import exit_status, read_verdicts
    from harness.report.table import print_verdicts

    site = check_run_inputs(Path(args.site), Path(args.contract))
    workers = default_workers(site) if args.workers is None else args.workers
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
    for flag in ("operator", "witness"):
        if getattr(args, flag):
            pytest_args += [f"--{flag}", getattr(args, flag)]
    pytest_args += [
        f"--{f.replace('_', '-')}" for f in ("dry_run", "allow_switching") if getattr(args, f)
    ]
    if args.campaign:
        pytest_args += ["--campaign", args.campaign]
    # Always explicit: "-n 0" also overrides an "-n" in the addopts of a project's pytest config.
    pytest_args += ["-n", str(workers)]
    if workers:
        # A home's scenarios stay on one worker; site-wide ones take the site (harness.fleet).
        pytest_args += ["--dist", "loadgroup"]
    pytest_args += args.pytest_args
    console.print(f"[bold]harness run[/bold]: site {args.site}, contract {args.contract} -> {out}")
    code = pytest.main(pytest_args, plugins=[ProgressReporter(console)])
    if (out / SETUP_ERROR).is_file():
        console.print((out / SETUP_ERROR).read_text().strip(), style="bold red", highlight=False)
        return EXIT_SETUP
    if not (out / "verdicts.json").is_file():
        console.print(f"[bold red]no verdicts were produced (pytest exit {int(code)})[/bold red]")
        return EXIT_SETUP
    if out.parent.name == "reports":
        point_latest(out)
    run, verdicts = read_verdicts(out)
    print_verdicts(run, verdicts, console)
    console.print(f"results: {out}")
    return exit_status(verdicts)
