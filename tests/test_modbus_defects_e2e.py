"""`harness run` end to end against the virtual home with each Modbus-side defect: the defect
fails the clause that must catch it, every other clause passes, and a value just inside passes.

The runs judge a copy of the example contract cut to the Modbus and telemetry clauses (no
profile), so the scenarios of other families are skipped as unjudged and each run stays short.

Which clause catches which defect (contract fixtures/contracts/example.yaml):

- power_reading_gain: C.6.3 (inverter.telemetry.power_error, max 5 % of rated power): a gain of
  1.055 reads 5.5 % high at rated power (fail); 1.035 reads 3.5 % high (pass).
- scale_factor_error on DERMeasureAC.W: C.6.3. The exponent is whole, so the smallest defect
  (offset 1) reads 10x, far past the limit; offset 0 is the correct device. A published exponent
  outside -10..10 is also a conformance violation (tests/test_modbus_conformance.py).
- accept_invalid_writes: C.6.20 (modbus.conformance.violations of the inverter) and C.6.22
  (modbus.invalid_write_accepted), both max 0: a device lax by 0.1 % of the range (WSet accepted
  up to 5010 W) fails both; 0 passes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.harness_runner import CONTRACT, run

pytestmark = pytest.mark.slow

NODE = "home-1"


@pytest.fixture
def modbus_contract(tmp_path: Path) -> Path:
    doc = yaml.safe_load(CONTRACT.read_text())
    doc.pop("extends", None)
    doc["clauses"] = [
        c
        for c in doc["clauses"]
        if c["quantity"].startswith("modbus.") or ".telemetry." in c["quantity"]
    ]
    path = tmp_path / "modbus-contract.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("defect", "failing"),
    [
        ("  - {device: home-1.inverter, kind: power_reading_gain, value: 1.055}", {"C.6.3"}),
        (
            "  - {device: home-1.inverter, kind: scale_factor_error, point: DERMeasureAC.W, "
            "value: 1}",
            {"C.6.3"},
        ),
        (
            "  - {device: home-1.inverter, kind: accept_invalid_writes, value: 0.001}",
            {"C.6.20", "C.6.22"},
        ),
        # Just inside, all three kinds at once (one run): 3.5 % telemetry error; the exponent
        # and the write range at their correct values.
        (
            "  - {device: home-1.inverter, kind: power_reading_gain, value: 1.035}\n"
            "  - {device: home-1.inverter, kind: scale_factor_error, point: DERMeasureAC.W, "
            "value: 0}\n"
            "  - {device: home-1.inverter, kind: accept_invalid_writes, value: 0}",
            set(),
        ),
    ],
    ids=["gain-past", "sf-past", "invalid-writes-past", "all-inside"],
)
def test_modbus_defect_fails_its_clause_only(
    tmp_path: Path, modbus_contract: Path, defect_site, defect: str, failing: set[str]
) -> None:
    result = run(tmp_path, defect_site(defect), modbus_contract)
    verdicts = {v["clause"]: v["verdict"] for v in result.verdicts()}
    assert {"C.6.3", "C.6.20", "C.6.21", "C.6.22"} <= set(verdicts), result.out
    assert {c for c, v in verdicts.items() if v != "pass"} == failing, result.out
    assert result.code == (1 if failing else 0), result.out
    if "C.6.22" in failing:
        _assert_vendor_can_reproduce(result.folder)


def _assert_vendor_can_reproduce(folder: Path) -> None:
    """The shrunk sequence is in the evidence, and the transaction log shows the device
    answering it without an exception."""
    (fuzz,) = folder.glob("evidence/*fuzzing*/*-inverter-write-fuzzing.json")
    body = json.loads(fuzz.read_text())
    (step,) = body["minimal_failing_sequence"]
    assert step["outcome"] == "accepted" and not step["valid"]
    with (fuzz.parent / "modbus.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    written = " ".join(str(r) for r in step["registers"])
    assert any(
        r["function"] == "16"
        and r["address"] == str(step["address"])
        and r["values"] == written
        and r["exception"] == ""
        for r in rows
    )
    assert any(r["exception"].startswith("3 ") for r in rows)  # refusals are logged too
    assert all(r["device"] == f"{NODE}.inverter" for r in rows)
