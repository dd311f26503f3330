"""`harness scorecard` ranks vendors' runs by the contract's weighted categories."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness_runner import CONTRACT, SITE, harness, run, site_with

# Two vendors' runs of the same scenarios; the islanding and telemetry families are enough to
# separate them, and keep the test short.
FAMILIES = ("--", "-k", "test_islanding or test_telemetry")


def test_scorecard_ranks_the_conforming_vendor_first(tmp_path: Path):
    good = run(tmp_path / "a", SITE, CONTRACT, *FAMILIES)
    bad_site = site_with(
        tmp_path,
        "defects:\n  - {device: home-1.inverter, kind: anti_islanding_delay, value: 2.5 s}",
    )
    bad_site.write_text(
        bad_site.read_text().replace("manufacturer: Virtual Power", "manufacturer: Other Power")
    )
    try:
        bad = run(tmp_path / "b", bad_site, CONTRACT, *FAMILIES)
    finally:
        bad_site.unlink()
    judged = {v["verdict"] for v in good.verdicts()} - {"not_covered"}
    assert judged == {"pass"}, good.out
    assert bad.by_clause()["C.4.2", "home-1"]["verdict"] == "fail", bad.out
    record = tmp_path / "field.yaml"
    record.write_text("Virtual Power VP-5000-GF: 80\nOther Power VP-5000-GF: 95\n")
    out = tmp_path / "card"
    proc = harness("scorecard", bad.folder, good.folder, "--field-record", record, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "scorecard.json").read_text())
    assert [r["vendor"] for r in rows] == ["Virtual Power VP-5000-GF", "Other Power VP-5000-GF"]
    good_row, bad_row = rows
    # Clauses of the families left out are not covered and score nothing for either vendor.
    assert bad_row["categories"]["technical_fit"] < good_row["categories"]["technical_fit"]
    assert bad_row["categories"]["field_record"] == 95.0
    assert any("C.4.2" in f for f in bad_row["failed"])
    assert (out / "scorecard.csv").read_text().startswith("vendor,folder,technical_fit")
    assert "Vendor scorecard" in proc.stdout
