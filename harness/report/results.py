"""verdicts.json: every clause of the contract once per node it applies to, plus the run record."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.contract import Contract
from harness.config.site import Site
from harness.verdicts.evaluate import evaluate, overall
from harness.verdicts.journal import read_journals
from harness.verdicts.model import ClauseVerdict, Verdict
from harness.verdicts.scope import read_scope


@dataclass
class RunRecord:
    harness_version: str
    started: str
    wall_seconds: float
    simulated_seconds: float
    campaign: str | None
    site: str
    site_sha256: str
    contract: str
    contract_sha256: str
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def journal_dir(out: Path) -> Path:
    return out / "journal"


def build_verdicts(out: Path, contract: Contract, site: Site) -> list[ClauseVerdict]:
    nodes = [n.name for n in site.spec.nodes]
    return evaluate(contract, nodes, read_journals(journal_dir(out)), read_scope(out))


def write_verdicts(out: Path, verdicts: list[ClauseVerdict], run: RunRecord) -> Path:
    """Write verdicts.json atomically (a reader never sees half a file)."""
    body = {
        "run": run.__dict__ | {"result": overall(verdicts).value},
        "verdicts": [v.to_json() for v in verdicts],
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "verdicts.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_verdicts(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = json.loads((out / "verdicts.json").read_text(encoding="utf-8"))
    return body["run"], body["verdicts"]


def exit_status(verdicts: list[ClauseVerdict] | list[dict[str, Any]]) -> int:
    """0 when every clause in the run's scope passed (marginal counts as passed), else 1."""
    ok = {Verdict.PASS.value, Verdict.MARGINAL.value}
    for v in verdicts:
        value = v.verdict.value if isinstance(v, ClauseVerdict) else v["verdict"]
        details = v.details if isinstance(v, ClauseVerdict) else v.get("details") or {}
        if value not in ok and not details.get("out_of_scope"):
            return 1
    return 0
