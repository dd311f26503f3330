"""Interoperability: every Modbus device of the site speaks the protocol and keeps to its own map,
whoever made it (a SunSpec inverter as it describes itself, other devices by their YAML map)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.conformance.fuzz import fuzz_writes
from harness.conformance.modbus import ConformanceReport, check_mapped, check_sunspec
from harness.conformance.modbus import sunspec_ranges as sunspec_limits

CONFORMANCE = "modbus.conformance.violations"
FUZZ = "modbus.invalid_write_accepted"


@pytest.mark.campaign("factory", "ci")
def test_inverter_modbus_conformance(node, inverter, verdicts, evidence_dir, pytestconfig):
    """SunSpec discovery chain, every point, read-only refusal, round trips (restored),
    out-of-range values, illegal addresses and request sizes of the inverter's interface."""
    verdicts.require(CONFORMANCE)
    _probes_need_writes(pytestconfig)
    device = _modbus(inverter)
    report = check_sunspec(
        device.client,
        device.unit,
        name=inverter.name,
        required_writable=inverter.control_points(),
    )
    _record(verdicts, report, evidence_dir / f"{node}-inverter-modbus-conformance.json", node)


@pytest.mark.campaign("factory", "ci")
def test_site_modbus_conformance(site, verdicts, evidence_dir, pytestconfig):
    """Every site-level device reached through a register map of its own (PCC I/O module ...)."""
    verdicts.require(CONFORMANCE)
    _probes_need_writes(pytestconfig)
    devices = dict(_site_modbus_devices(site))
    if not devices:
        pytest.skip("the site has no Modbus device with a register map")
    for key, device in devices.items():
        report = check_mapped(device.client, device.regmap, device.unit, name=key)
        _record(verdicts, report, evidence_dir / f"{key}-modbus-conformance.json", None)


@pytest.mark.campaign("factory", "ci")
def test_inverter_write_fuzzing(node, inverter, verdicts, evidence_dir, pytestconfig):
    """Random sequences of writes to the setpoints never get an illegal value accepted, and keep
    the device's values valid; a failing sequence is shrunk and attached for the vendor."""
    method = verdicts.method(FUZZ)
    _probes_need_writes(pytestconfig)
    budget = method["max_examples"]
    campaign = pytestconfig.getoption("harness_campaign") or "default"
    device = _modbus(inverter)
    result = fuzz_writes(
        device.client,
        device.regmap,
        method["points"],
        device.unit,
        limits=sunspec_limits(device),
        max_examples=int(budget.get(campaign, budget["default"])),
        max_steps=int(method["max_steps"]),
        derandomize=bool(method["derandomize"]),
    )
    evidence = evidence_dir / f"{node}-inverter-write-fuzzing.json"
    evidence.write_text(json.dumps(result.to_json(), indent=2))
    if result.failure and not result.invalid_accepted:
        verdicts.record_error(FUZZ, f"a write broke the device: {result.failure}", node=node)
        return
    verdicts.record(
        FUZZ,
        len(result.invalid_accepted),
        node=node,
        evidence=[evidence],
        examples=result.examples,
        failure=result.failure,
    )


def _probes_need_writes(pytestconfig: Any) -> None:
    """A dry run keeps every write off the wire, so a probe's answer would be invented."""
    if pytestconfig.getoption("harness_dry_run", default=False):
        pytest.skip("conformance probes are writes; a dry run sends none, so nothing is judged")


def _modbus(driver: Any) -> Any:
    """The MappedDevice behind a driver; the scenario does not apply to non-Modbus drivers."""
    if not callable(getattr(driver, "modbus_device", None)):
        pytest.skip(f"{type(driver).__name__} is not reached through Modbus")
    return driver.modbus_device()


def _record(verdicts: Any, report: ConformanceReport, evidence: Path, node: str | None) -> None:
    evidence.write_text(json.dumps(report.to_json(), indent=2))
    verdicts.record(
        CONFORMANCE,
        len(report.violations),
        node=node,
        evidence=[evidence],
        device=report.device,
        violations=[str(v) for v in report.violations[:10]],
    )


def _site_modbus_devices(site: Any) -> Iterator[tuple[str, Any]]:
    """(key, MappedDevice) of every site-level device driven through a Modbus register map."""
    for key, device in vars(site).items():
        if not key.startswith("_") and callable(getattr(device, "modbus_device", None)):
            yield key, device.modbus_device()
