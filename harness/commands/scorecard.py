"""`harness scorecard RUN_DIR...`: compare several vendors' runs against one contract."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.scorecard import Category
from harness.report import duts
from harness.report.results import read_verdicts
from harness.runinfo import default_out
from harness.verdicts.scorecard import VendorScore, score_run


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scorecard", help="rank several vendors' runs by the contract's scorecard")
    p.add_argument("runs", nargs="+", help="results folders of `harness run`, one per vendor/unit")
    p.add_argument("--contract", help="contract with a 'scorecard:' (default: the runs' contract)")
    p.add_argument("--field-record", help="YAML: vendor -> field-record score in percent")
    p.add_argument("--out", help="folder for scorecard.json and scorecard.csv")
    p.set_defaults(handler=cmd_scorecard)


def _vendor(folder: Path) -> str:
    """The units' identity as they report it: the first inverter's manufacturer and model."""
    identities = duts.read(folder)
    for key in sorted(identities):
        if key.endswith(".inverter") and identities[key].get("manufacturer"):
            ident = identities[key]
            return f"{ident['manufacturer']} {ident.get('model', '')}".strip()
    return folder.name


def cmd_scorecard(args: argparse.Namespace, console: Console) -> int:
    runs = [Path(r) for r in args.runs]
    loaded = []
    for folder in runs:
        if not (folder / "verdicts.json").is_file():
            raise ConfigErrors.single(folder, "no verdicts.json: not a finished results folder")
        loaded.append((folder, *read_verdicts(folder)))
    hashes = {run["contract_sha256"] for _, run, _ in loaded}
    if len(hashes) > 1:
        raise ConfigErrors.single(
            runs[0], "the runs were judged against different contracts; compare like with like"
        )
    contract = load_contract(Path(args.contract or loaded[0][1]["contract"]))
    if contract.scorecard is None:
        raise ConfigErrors.single(
            contract.files[0], "the contract has no 'scorecard:' section", None, "scorecard"
        )
    external: dict[str, dict[str, float]] = {}
    if args.field_record:
        data = yaml.safe_load(Path(args.field_record).read_text())
        if not isinstance(data, dict):
            raise ConfigErrors.single(
                Path(args.field_record), "expected a mapping vendor -> score in percent"
            )
        external = {str(k): {"field_record": float(v)} for k, v in data.items()}
    scores = [
        score_run(contract.scorecard, _vendor(f), str(f), verdicts, external.get(_vendor(f)))
        for f, _, verdicts in loaded
    ]
    scores.sort(key=lambda s: s.total, reverse=True)
    _print(contract.scorecard.categories, scores, console)
    out = Path(args.out) if args.out else default_out().with_name(f"scorecard-{default_out().name}")
    _write(out, contract.scorecard.categories, scores)
    console.print(f"scorecard: {out}", highlight=False)
    return 0


def _print(categories: dict[str, Category], scores: list[VendorScore], console: Console) -> None:
    table = Table(title="Vendor scorecard")
    table.add_column("rank")
    table.add_column("vendor")
    for cat in categories.values():
        table.add_column(f"{cat.title.split(' (')[0]}\n(weight {cat.weight:g})")
    table.add_column("total")
    for rank, s in enumerate(scores, 1):
        cells = [
            "-" if s.categories[k] is None else f"{s.categories[k]:.0f} % ({s.counts[k]})"
            for k in categories
        ]
        table.add_row(str(rank), s.vendor, *cells, f"{s.total:.1f}")
    console.print(table)
    for s in scores:
        if s.failed:
            console.print(f"{s.vendor}: not passed: {', '.join(s.failed)}", highlight=False)


def _write(out: Path, categories: dict[str, Category], scores: list[VendorScore]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scorecard.json").write_text(json.dumps([s.__dict__ for s in scores], indent=2) + "\n")
    with (out / "scorecard.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["vendor", "folder", *categories, "total"])
        for s in scores:
            writer.writerow(
                [s.vendor, s.folder, *(s.categories[k] for k in categories), round(s.total, 2)]
            )
