"""`harness run` end to end, restricted to the stateful dispatch scenario, against the virtual home
with the current_limit_derating_ignored defect: the BMS advertises current limits `value` times
the pack's, and the inverter ignores them.

The home's LV pack draws about 110 A discharging and 93 A charging at the inverter's rated 5 kW;
its BMS's limits are 120 A and 100 A. At 0.9 it advertises 108 A and 90 A: the rated setpoints the
sequences reach exceed both (C.7.32, bms.current_limit.violations, fails; the SoC band clause
C.7.31 still passes) and the shrunk sequence is in the evidence. At 0.95 (114 A, 95 A) nothing
is exceeded and both clauses pass. The runs judge a copy of the example contract cut to those
two clauses (no profile), so the exit status is theirs alone; the clean site passes every clause
of the whole contract in tests/test_run_e2e.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.harness_runner import CONTRACT, run

pytestmark = pytest.mark.slow

SCENARIO = ("--", "-k", "test_dispatch_stateful")
CLAUSES = {"C.7.31", "C.7.32"}


@pytest.fixture
def contract(tmp_path: Path) -> Path:
    doc = yaml.safe_load(CONTRACT.read_text())
    doc.pop("extends", None)
    doc["clauses"] = [c for c in doc["clauses"] if c["id"] in CLAUSES]
    path = tmp_path / "stateful-contract.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _defect(value: float) -> str:
    return f"  - {{device: home-1.bms, kind: current_limit_derating_ignored, value: {value}}}"


def test_an_ignored_current_limit_fails_its_clause_with_the_shrunk_sequence(
    tmp_path: Path, defect_site, contract: Path
) -> None:
    result = run(tmp_path, defect_site(_defect(0.9)), contract, *SCENARIO)
    verdicts = {clause: v["verdict"] for (clause, _), v in result.by_clause().items()}
    assert verdicts == {"C.7.31": "pass", "C.7.32": "fail"}, result.out
    assert result.code == 1 and "clause C.7.32" in result.out, result.out

    (folder,) = result.folder.glob("evidence/*test_dispatch_stateful*")
    body = json.loads((folder / "dispatch-stateful.json").read_text())
    *_, last = body["minimal_failing_sequence"]
    assert last["broken"] and last["broken"][0].startswith("home-1: ")
    assert "current limit the BMS advertises" in last["broken"][0]
    assert len(body["minimal_failing_sequence"]) <= 3  # start, and at most two commands
    script = (folder / "dispatch-stateful-minimal.txt").read_text()
    assert "state = DispatchMachine()" in script and "#   BROKEN: home-1: " in script
    # What the script says was written is what the transaction log shows on the wire.
    with (folder / "modbus.csv").open(newline="") as fh:
        written = {r["values"] for r in csv.DictReader(fh) if r["function"] == "16"}
    setpoint = next(w for w in ("5000", "-5000") if f"setpoint {int(w):+d} W" in script)
    assert any(v.split()[-1:] == [str(int(setpoint) & 0xFFFF)] for v in written), written


def test_a_derating_the_inverter_stays_inside_of_passes(
    tmp_path: Path, defect_site, contract: Path
) -> None:
    result = run(tmp_path, defect_site(_defect(0.95)), contract, *SCENARIO)
    verdicts = {clause: v["verdict"] for (clause, _), v in result.by_clause().items()}
    assert verdicts == {"C.7.31": "pass", "C.7.32": "pass"}, result.out
    assert result.code == 0, result.out
    (folder,) = result.folder.glob("evidence/*test_dispatch_stateful*")
    assert not (folder / "dispatch-stateful-minimal.txt").exists()
