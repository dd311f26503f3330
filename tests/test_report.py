"""The results folder: witness report, manifest, tamper detection, and killed-run reports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.report.manifest import verify_manifest
from tests.harness_runner import CONTRACT, ROOT, SITE, Result, harness, run


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Result:
    tmp = tmp_path_factory.mktemp("run")
    result = run(tmp, SITE, CONTRACT, "--operator", "A. Operator", "--witness", "W. Itness")
    assert result.code == 0, result.out
    return result


def _copy(finished: Result, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(finished.folder, folder)
    return folder


def test_witness_report_is_self_contained_and_complete(finished: Result):
    html = (finished.folder / "witness.html").read_text()
    for v in finished.verdicts():
        assert v["clause"] in html
    assert "VPA-1" in html and "VINV-0001" in html  # DUT and instrument identities
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', html)  # inline plot
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from a network
    assert "A. Operator" in html and "W. Itness" in html


def test_clean_manifest_verifies(finished: Result):
    assert verify_manifest(finished.folder) == []
    proc = harness("report", finished.folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tampering_is_named(finished: Result, tmp_path: Path):
    folder = _copy(finished, tmp_path)
    csv = next(folder.glob("evidence/*/island-P100-C100-run0.csv"))
    csv.write_text(csv.read_text().replace("240.0", "239.0", 1))
    (folder / "junit.xml").unlink()
    (folder / "extra.txt").write_text("slipped in")
    proc = harness("report", folder)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "island-P100-C100-run0.csv: changed" in text
    assert "junit.xml: missing" in text
    assert "extra.txt: not in manifest" in text


def test_killed_run_still_reports_what_it_measured(finished: Result, tmp_path: Path):
    folder = _copy(finished, tmp_path)
    for name in ("verdicts.json", "witness.html", "manifest.json"):
        (folder / name).unlink()  # killed before the session finished
    proc = harness("report", folder)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "incomplete" in text
    html = (folder / "rebuilt" / "witness.html").read_text()
    assert "INCOMPLETE RUN" in html
    clearing = next(v for v in finished.verdicts() if v["clause"] == "C.4.2")
    # the islanding result survived in the journal
    assert "C.4.2" in html and f"{clearing['value']:.4g} s" in html


def test_allure_results_are_valid(finished: Result):
    """Every result file parses and has what Allure's report generator needs."""
    folder = finished.folder / "allure-results"
    results = [json.loads(p.read_text()) for p in folder.glob("*-result.json")]
    assert len(results) >= 4
    statuses = {"passed", "failed", "broken", "skipped", "unknown"}
    for r in results:
        assert {"uuid", "historyId", "name", "status", "start", "stop", "labels"} <= r.keys(), r
        assert r["status"] in statuses and isinstance(r["start"], int) and r["stop"] >= r["start"]
        labels = {lab["name"]: lab["value"] for lab in r["labels"]}
        assert "feature" in labels and "story" in labels and "campaign" in labels
        assert r.get("links"), f"{r['name']} judged no clause"
        for link in r["links"]:
            assert link["url"].startswith("witness.html#clause-") and link["name"]
        for att in r.get("attachments", []):
            assert (folder / att["source"]).is_file(), att
    for container in folder.glob("*-container.json"):
        body = json.loads(container.read_text())
        assert "uuid" in body and isinstance(body.get("children", []), list)
    env = (folder / "environment.properties").read_text()
    assert (
        "site.sha256=" in env and "home-1.inverter=Virtual Power VP-5000-GF VINV-0001 1.4.2" in env
    )
    island = next(r for r in results if r["name"] == "test_unintentional_islanding")
    assert {a["name"] for a in island["attachments"]} >= {
        "island-sweep.csv",
        "island-P100-C100-run0.csv",
        "island-P100-C100-run0.png",
    }
    assert island["steps"], "device actions are recorded as steps"


def test_run_killed_half_way_reports_what_it_measured(tmp_path: Path):
    """SIGKILL a real run as soon as its first measurement is journalled; report the rest."""
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list((out / "journal").glob("*.jsonl")) if (out / "journal").is_dir() else []
            if any(j.stat().st_size for j in journals):
                break
            time.sleep(0.005)
        proc.kill()
    finally:
        proc.wait(timeout=30)
    if (out / "verdicts.json").exists():
        pytest.skip("the run finished before it could be killed")
    report = harness("report", out)
    text = report.stdout + report.stderr
    assert report.returncode == 1, text
    assert "run incomplete" in text
    rebuilt = json.loads((out / "rebuilt" / "verdicts.json").read_text())
    assert rebuilt["run"]["complete"] is False
    measured = [v for v in rebuilt["verdicts"] if v["value"] is not None]
    assert measured, "the journalled measurement was lost"
    assert "INCOMPLETE RUN" in (out / "rebuilt" / "witness.html").read_text()
