"""Safety rules, each proven against the virtual devices by counting what reached them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.bench import Bench, open_bench
from harness.config.contract import load_contract
from harness.config.site import load_site
from harness.safety.audit import WriteAudit
from harness.safety.safe_state import drive_safe
from harness.safety.supervisor import SafetyTrip, Supervisor
from tests.harness_runner import CONTRACT, SITE, harness, site_with


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = open_bench(load_site(SITE), load_contract(CONTRACT))
    try:
        yield b
    finally:
        b.close()


def _plant(bench: Bench):
    """The plant's own event log is the truth of what reached the devices (tests only)."""
    advancer = bench.clock._advancers[0]  # the virtual site's advance
    return advancer.__self__.plant


def test_dry_run_sends_nothing_and_logs_everything(bench: Bench, tmp_path: Path):
    plant = _plant(bench)
    audit = WriteAudit(tmp_path / "audit.jsonl", dry_run=True, now=bench.clock.now)
    try:
        before = list(plant.events)
        bench.grid.set_voltage(250.0)
        bench.load_bank.set_power(1000.0)
        bench.clock.sleep(1.0)
        assert plant.grid.voltage_v == pytest.approx(240.0)  # nothing reached the grid simulator
        assert plant.island_load.power_w == 0.0
        assert [e for e in plant.events if e not in before] == []
        assert audit.count("dry-run") >= 2 and audit.count("sent") == 0
        logged = (tmp_path / "audit.jsonl").read_text()
        assert "SOUR:VOLT 250" in logged and "dry-run: not sent" in logged
    finally:
        audit.close()


def test_every_write_is_audited(bench: Bench, tmp_path: Path):
    audit = WriteAudit(tmp_path / "audit.jsonl", now=bench.clock.now)
    try:
        bench.grid.set_voltage(245.0)
        assert _plant(bench).grid.voltage_v == pytest.approx(245.0)
        assert audit.count("sent") >= 1
    finally:
        audit.close()


def test_safe_state_dispatches_zero_and_restores_the_grid(bench: Bench):
    plant = _plant(bench)
    node = next(iter(bench.nodes.values()))
    node.inverter.set_power(3000.0)
    bench.grid.set_voltage(250.0)
    bench.clock.sleep(5.0)
    assert plant.nodes[node.name].inverter.setpoint_w == pytest.approx(3000.0)
    assert drive_safe(bench) == []
    bench.clock.sleep(5.0)
    assert plant.nodes[node.name].inverter.setpoint_w == 0.0
    assert plant.grid.voltage_v == pytest.approx(240.0)


def test_supervisor_trips_on_the_site_temperature_limit(bench: Bench):
    limits = bench.site.spec.safety.model_copy(update={"max_cell_temperature": 20.0})
    trips: list[str] = []
    supervisor = Supervisor(bench, limits, trips.append)
    bench.clock.add_advancer(supervisor.after_advance)
    with pytest.raises(SafetyTrip, match=r"temperature .* above the site's limit 20 degC"):
        bench.clock.sleep(5.0)
    assert trips and "home-1.bms" in trips[0]


def test_supervisor_trip_fails_the_scenario_and_drives_the_safe_state(tmp_path: Path):
    site = site_with(tmp_path, "defects: []")
    site.write_text(
        site.read_text().replace("max_cell_temperature: 60 degC", "max_cell_temperature: 20 degC")
    )
    try:
        proc = harness("run", "--site", site, "--out", tmp_path / "o")
    finally:
        site.unlink()
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "safety supervisor tripped" in text
    verdicts = json.loads((tmp_path / "o" / "verdicts.json").read_text())["verdicts"]
    assert any(v["verdict"] == "not_covered" for v in verdicts)  # the run stopped at the trip
    audit = [json.loads(line) for line in (tmp_path / "o" / "audit.jsonl").read_text().splitlines()]
    safe = [e for e in audit if e["write"].startswith("SOUR:VOLT 240")]
    assert safe and safe[0]["outcome"] == "sent"  # the safe state's own writes went out
