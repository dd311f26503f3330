"""Which of the contract's quantities a campaign measures at all.

A campaign is a chosen part of the scenarios: the field campaign on one node at a customer's
site runs no black start and no fault insertion. A clause whose quantity only other campaigns
measure is outside such a run: it is reported as not covered, with that reason, and does not
fail the run. A clause the campaign should have measured and did not stays a failure of the run.
Without a campaign every clause is in scope.

The scenarios a campaign keeps are known only where pytest collects them (in each xdist worker,
not in the controller), so the collecting process writes the scope into the results folder and
the verdict step reads it from there, as `harness report` does later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.config.quantities import catalogue

SCOPE_FILE = "campaign-scope.json"


@dataclass(frozen=True)
class CampaignScope:
    campaign: str
    outside: frozenset[str]
    """Quantities no scenario of the campaign measures."""

    def note(self) -> str:
        return f"outside the '{self.campaign}' campaign (no scenario of it measures this)"


def scope_of(campaign: str, kept: Iterable[tuple[str, str]]) -> CampaignScope:
    """The scope of ``campaign`` whose scenarios are ``kept`` as (module file, function) pairs."""
    chosen = {(Path(module).name, function.split("[")[0]) for module, function in kept}
    outside = {
        name
        for name, q in catalogue().items()
        if not any((Path(m).name, f) in chosen for m, f in q.scenarios)
    }
    return CampaignScope(campaign, frozenset(outside))


def write_scope(out: Path, scope: CampaignScope) -> None:
    """Atomically: every worker writes the same scope, a reader never sees half of one."""
    out.mkdir(parents=True, exist_ok=True)
    body = {"campaign": scope.campaign, "outside": sorted(scope.outside)}
    tmp = out / f".{SCOPE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / SCOPE_FILE)


def read_scope(out: Path) -> CampaignScope | None:
    path = out / SCOPE_FILE
    if not path.is_file():
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    return CampaignScope(str(body["campaign"]), frozenset(body["outside"]))
