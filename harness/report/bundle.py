"""The results folder as a whole: verdicts.json, witness.html and manifest.json, in that order,
plus the run-start record that lets `harness report` rebuild a killed run's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config.contract import Contract
from harness.config.site import Site
from harness.report import duts
from harness.report.manifest import write_manifest
from harness.report.results import RunRecord, build_verdicts, read_verdicts, write_verdicts
from harness.report.witness import render

RUN_START = "run-start.json"


def write_run_start(out: Path, info: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_START).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_run_start(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / RUN_START).read_text(encoding="utf-8")))


def input_files(site: Site, contract: Contract) -> list[Path]:
    """Every file the run read: site, contract chain, and the DBCs and maps the site names."""
    files = [site.path, *contract.files]
    for node in site.spec.nodes:
        files += [site.resolve(node.bms.dbc), site.resolve(node.bms.binding)]
    if site.spec.site.settings is not None:
        files.append(site.resolve(site.spec.site.settings))
    for inst in (site.spec.instruments.pcc_breaker,):
        if inst is not None and "map" in inst.options:
            files.append(site.resolve(Path(inst.options["map"])))
    return [f.resolve() for f in files]


def environment(out: Path, run: RunRecord) -> dict[str, str]:
    """What ran on which units, from which inputs: Allure's environment table."""
    values = {
        "harness.version": run.harness_version,
        "site": run.site,
        "site.sha256": run.site_sha256,
        "contract": run.contract,
        "contract.sha256": run.contract_sha256,
        "campaign": run.campaign or "all",
    }
    for key, identity in duts.read(out).items():
        values[key] = " ".join(
            str(identity.get(k, "")) for k in ("manufacturer", "model", "serial", "firmware")
        ).strip()
    return values


def contract_info(contract: Contract) -> dict[str, Any]:
    return contract.info.model_dump()


def finish_results(out: Path, site: Site, contract: Contract, run: RunRecord) -> None:
    """Judge the journal, then write the report, then hash everything (the manifest is last)."""
    run.extra = dict(run.extra) | {
        "contract_info": contract_info(contract),
        "site_name": site.spec.site.name,
    }
    write_verdicts(out, build_verdicts(out, contract, site), run)
    write_witness(out)
    write_manifest(out, input_files(site, contract))


def write_witness(out: Path, target: Path | None = None) -> Path:
    run, verdicts = read_verdicts(out)
    extra = run.get("extra", {})
    return render(
        out,
        run,
        verdicts,
        extra.get("contract_info", {"id": run.get("contract", ""), "title": ""}),
        extra.get("site_name", run.get("site", "")),
        operator=extra.get("operator"),
        witness=extra.get("witness"),
        target=target,
    )
