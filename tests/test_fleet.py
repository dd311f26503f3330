"""Fleets in parallel: a home's scenarios stay on one worker, site scenarios take the site alone,
and the workers' results merge into one report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.fleet import SiteLockTimeout, scope_of, site_lock
from tests.harness_runner import CONTRACT, ROOT, run

FLEET = ROOT / "fixtures/sites/virtual-fleet.yaml"
HOMES = [f"home-{i}" for i in range(1, 11)]


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("testplans/test_telemetry.py::test_inverter_power_telemetry[home-1]", "node:home-1"),
        ("testplans/test_telemetry.py::test_inverter_power_telemetry[home-10]", "node:home-10"),
        ("testplans/test_x.py::test_y[home-3-ov1]", "node:home-3"),
        ("testplans/test_x.py::test_y[ov1-home-3]", "node:home-3"),
        ("testplans/test_trip_settings.py::test_trip_clearing_time[ov1]", None),
        ("testplans/test_islanding.py::test_unintentional_islanding", None),
    ],
)
def test_a_test_id_is_scheduled_with_its_home(nodeid: str, scope: str | None):
    assert scope_of(nodeid, HOMES) == (scope or nodeid)


HOLDER = """
import sys, time
from pathlib import Path
from harness.fleet import site_lock
with site_lock(Path(sys.argv[1]), exclusive=sys.argv[2] == "x", timeout_s=5):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _hold(folder: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), mode, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_site_scenario_waits_for_every_home_scenario(tmp_path: Path):
    home_scenario = _hold(tmp_path, "s", 0.6)  # another worker runs a home's scenario
    try:
        with site_lock(tmp_path, exclusive=False, timeout_s=0.2):
            pass  # home scenarios run side by side
        with (
            pytest.raises(SiteLockTimeout, match="exclusively"),
            site_lock(tmp_path, exclusive=True, timeout_s=0.2),
        ):
            pass
        started = time.monotonic()
        with site_lock(tmp_path, exclusive=True, timeout_s=5):
            assert time.monotonic() - started > 0.1  # got it once the other scenario ended
    finally:
        home_scenario.wait(timeout=10)


def test_home_scenarios_wait_while_a_site_scenario_runs(tmp_path: Path):
    site_scenario = _hold(tmp_path, "x", 0.6)
    try:
        with (
            pytest.raises(SiteLockTimeout, match="shared"),
            site_lock(tmp_path, exclusive=False, timeout_s=0.2),
        ):
            pass
    finally:
        site_scenario.wait(timeout=10)
    with site_lock(tmp_path, exclusive=False, timeout_s=0.2):
        pass  # released when the holder exited


@pytest.mark.slow
def test_eight_homes_on_two_workers_merge_into_one_report(tmp_path: Path):
    result = run(tmp_path, FLEET, CONTRACT, "-n", "2", "--", "-k", "test_telemetry")
    judged = [v for v in result.verdicts() if v["verdict"] != "not_covered"]
    homes = {f"home-{i}" for i in range(1, 9)}
    assert {v["node"] for v in judged} == homes, result.out
    assert {v["verdict"] for v in judged} == {"pass"}, result.out
    by_worker: dict[str, set[str]] = {}
    for journal in (result.folder / "journal").glob("gw*.jsonl"):
        lines = journal.read_text().splitlines()
        by_worker[journal.stem] = {json.loads(line)["node"] for line in lines}
    assert len(by_worker) == 2 and all(by_worker.values()), by_worker
    first, second = by_worker.values()
    assert not first & second, by_worker  # no home was driven from two workers
    assert first | second == homes
    html = (result.folder / "witness.html").read_text()
    assert all(home in html for home in homes)
    # Progress under xdist: the total from the workers' collection, simulated time per scenario.
    total = re.search(r"(\d+) scenario runs collected", result.out)
    assert total and int(total.group(1)) > 0, result.out
    assert re.search(rf"\[{total.group(1)}/{total.group(1)}\] +ran .*s simulated", result.out)


def test_harness_run_runs_homes_in_parallel_only_on_a_virtual_site(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.commands.run import default_workers
    from harness.config.site import load_site

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_workers(load_site(FLEET)) == 2  # eight homes, two CPUs
    assert default_workers(load_site(ROOT / "fixtures/sites/virtual-home.yaml")) == 0
    # One live unit makes a live site: its operator prompts need the terminal of one process.
    live = FLEET.parent / f".test-live-{uuid.uuid4().hex[:12]}.yaml"
    live.write_text(
        FLEET.read_text().replace(
            "endpoint: {transport: virtual}",
            "endpoint: {transport: modbus_tcp, host: 192.0.2.10, port: 502, unit: 1}",
            1,
        )
    )
    try:
        site = load_site(live)
    finally:
        live.unlink()
    assert not site.is_virtual and len(site.spec.nodes) == 8
    assert default_workers(site) == 0
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert default_workers(load_site(FLEET)) == 0  # one worker would only add start-up time
