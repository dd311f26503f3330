"""`harness report DIR`: verify a results folder against its manifest and rebuild its report.

A folder whose files changed since the run, or went missing, is named file by file (exit 1).
A run that was killed before it finished (no verdicts.json) is judged from its journal and
reported as incomplete. What is rebuilt goes to DIR/rebuilt/, never over the hashed evidence.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.console import Console

from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from harness.report.bundle import RUN_START, read_run_start, write_witness
from harness.report.manifest import MANIFEST, REBUILT, verify_manifest
from harness.report.results import (
    RunRecord,
    build_verdicts,
    exit_status,
    read_verdicts,
    write_verdicts,
)
from harness.report.table import print_verdicts

EXIT_SETUP = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = sub.add_parser("report", help="verify a results folder and rebuild its witness report")
    report.add_argument("folder", help="a results folder written by `harness run`")
    report.add_argument(
        "--no-inputs", action="store_true", help="do not check the site/contract/DBC files' hashes"
    )
    report.set_defaults(handler=cmd_report)


def _rebuild_from_journal(out: Path, target: Path, console: Console) -> None:
    """A killed run: judge what its journal holds, mark it incomplete."""
    if not (out / RUN_START).is_file():
        raise ConfigErrors.single(
            out, "neither verdicts.json nor run-start.json: not a results folder"
        )
    start = read_run_start(out)
    site, contract = load_site(Path(start["site"])), load_contract(Path(start["contract"]))
    run = RunRecord(
        harness_version="",
        started=start["started"],
        wall_seconds=0.0,
        simulated_seconds=0.0,
        campaign=start.get("campaign"),
        site=start["site"],
        site_sha256=site.sha256,
        contract=start["contract"],
        contract_sha256=contract.sha256,
        complete=False,
        extra={
            "operator": start.get("operator"),
            "witness": start.get("witness"),
            "contract_info": contract.info.model_dump(),
            "site_name": site.spec.site.name,
        },
    )
    write_verdicts(target, build_verdicts(out, contract, site), run)
    console.print("[bold red]run incomplete[/bold red]: judged from its journal", highlight=False)


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.folder)
    if not out.is_dir():
        raise ConfigErrors.single(out, "no such results folder")
    target = out / REBUILT
    target.mkdir(exist_ok=True)
    problems = []
    if (out / MANIFEST).is_file():
        problems = verify_manifest(out, check_inputs=not args.no_inputs)
        for problem in problems:
            console.print(f"[bold red]TAMPERED[/bold red] {problem}", highlight=False)
    if (out / "verdicts.json").is_file():
        (target / "verdicts.json").write_text((out / "verdicts.json").read_text())
    else:
        _rebuild_from_journal(out, target, console)
    for dut_file in out.glob("duts*.json"):
        shutil.copy(dut_file, target / dut_file.name)
    run, verdicts = read_verdicts(target)
    witness = write_witness(target)
    print_verdicts(run, verdicts, console)
    console.print(f"witness report: {witness}", highlight=False)
    if problems:
        console.print(f"[bold red]{len(problems)} file(s) do not match {MANIFEST}[/bold red]")
        return 1
    if not (out / MANIFEST).is_file():
        console.print(f"[yellow]no {MANIFEST}: the folder's integrity cannot be verified[/yellow]")
    return 1 if not run.get("complete", True) else exit_status(verdicts)
