"""Field commissioning of one node from a laptop, through the node's own interfaces only: its
inverter over Modbus (SunSpec) and its BMS over CAN; no grid simulator, analyzer or load bank.

Read-only first: who the units say they are against what the contract approves, the settings
the inverter reports against the contract's, and whether what the units report is plausible.
Then one step that changes the unit (a small dispatch round trip), which on a live site runs
only after the operator allows it at the terminal (harness/safety/field_gate.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from harness.config.contract import ApprovedEquipment
from harness.config.units import to_unit
from harness.devices.prompts import PromptService
from harness.devices.roles import DeviceError, Identity
from harness.safety.field_gate import FieldGate, FieldStepRefused


@pytest.fixture
def field_gate(site: Any) -> FieldGate:
    """Asks the operator before a changing step on a live site; a virtual site is not asked."""
    return FieldGate(virtual=site.site.is_virtual, prompts=PromptService(site.clock))


@pytest.mark.campaign("field", "ci")
def test_field_identity(site, node, inverter, bms, verdicts, evidence_dir):
    """Each unit of the node is equipment the contract approves (manufacturer, model, firmware
    at least the approved minimum) and the unit the site file names (serial)."""
    quantity = "field.identity_mismatches"
    method = verdicts.method(quantity)
    approved = site.contract.approved_equipment
    if not approved:
        verdicts.record_error(
            quantity, "the contract approves no equipment ('approved_equipment:')", node=node
        )
        return
    _wait_for(site, lambda: site.nodes[node].bms.identity(), method["wait_for_bms"])
    configured = site.site.node(node)
    units = {
        "inverter": (inverter.identity(), configured.inverter.identity.serial),
        "bms": (bms.identity(), configured.bms.identity.serial),
    }
    mismatches: dict[str, list[str]] = {}
    unverifiable: list[str] = []
    for role, (found, serial) in units.items():
        problems, unknown = _identity_findings(role, found, serial, approved)
        if problems:
            mismatches[role] = problems
        unverifiable += unknown
    reported = {role: asdict(found) for role, (found, _) in units.items()}
    findings = {"mismatches": mismatches, "not_verifiable": unverifiable, "reported": reported}
    verdicts.record(
        quantity,
        len(mismatches),
        node=node,
        evidence=[_evidence(evidence_dir, node, "identity", findings)],
        mismatches=[p for problems in mismatches.values() for p in problems],
        not_verifiable=unverifiable,
    )


@pytest.mark.campaign("field", "ci")
def test_field_settings(site, node, inverter, verdicts, evidence_dir):
    """The enter-service settings the inverter reports (SunSpec 703) are the contract's."""
    quantity = "field.settings_deviations"
    method = verdicts.method(quantity)
    settings = site.contract.settings
    if settings is None or settings.enter_service is None:
        verdicts.record_error(
            quantity, "the contract has no settings.enter_service to compare with", node=node
        )
        return
    expected = settings.enter_service.model_dump()
    reported = inverter.enter_service_settings()
    resolution = {kind: to_unit(value, UNITS[kind]) for kind, value in method["resolution"].items()}
    deviations, unverifiable = [], []
    for name, want in expected.items():
        got = reported.get(name)
        if got is None:
            unverifiable.append(f"enter_service.{name}: not reported by the unit")
        elif abs(got - want) > resolution[_kind(name)] / 2:
            deviations.append(f"enter_service.{name}: unit {got:g}, contract {want:g}")
    if settings.trips:
        unverifiable.append(
            f"trips ({', '.join(settings.trips)}): not read, the inverter driver reads no "
            "trip-settings model (SunSpec 705-711)"
        )
    findings = {
        "deviations": deviations,
        "not_verifiable": unverifiable,
        "reported": reported,
        "contract": expected,
    }
    verdicts.record(
        quantity,
        len(deviations),
        node=node,
        evidence=[_evidence(evidence_dir, node, "settings", findings)],
        deviations=deviations,
        not_verifiable=unverifiable,
    )


@pytest.mark.campaign("field", "ci")
def test_field_telemetry_plausibility(site, node, inverter, bms, verdicts, evidence_dir):
    """What the inverter and the BMS report, read several times, is physically plausible and
    consistent between the two (nothing is written; no instrument is needed)."""
    quantity = "field.telemetry_implausible"
    method = verdicts.method(quantity)
    _wait_for(site, lambda: site.nodes[node].bms.soc(), method["wait_for_bms"])
    checks = _PlausibilityChecks(method, site, inverter.rated_power())
    samples = []
    for i in range(int(method["samples"])):
        if i:
            site.clock.sleep(site.seconds(method["interval"]))
        samples.append(_sample(site, inverter, bms))
    failed: dict[str, str] = {}
    checked: set[str] = set()
    unverifiable: dict[str, str] = {}
    for sample in samples:
        for name, (ok, text) in checks.run(sample).items():
            if ok is None:
                unverifiable.setdefault(name, text)
                continue
            checked.add(name)
            if not ok:
                failed.setdefault(name, text)
    unverifiable = {k: v for k, v in unverifiable.items() if k not in checked}
    findings = {"implausible": failed, "not_checked": unverifiable, "samples": samples}
    verdicts.record(
        quantity,
        len(failed),
        node=node,
        evidence=[_evidence(evidence_dir, node, "telemetry", findings)],
        implausible=list(failed.values()),
        not_checked=list(unverifiable.values()),
    )


@pytest.mark.campaign("field", "ci")
def test_field_dispatch_round_trip(site, node, inverter, bms, verdicts, evidence_dir, field_gate):
    """The unit follows a small export command and returns to zero, as its own telemetry
    reports; then its power control is put back as it was found. Changes the unit: on a live
    site the operator allows it first, or the step is skipped and nothing is written."""
    quantity = "field.dispatch_error"
    method = verdicts.method(quantity)
    state = inverter.state()
    if state != "ON":  # read-only so far: a unit out of service cannot show it follows
        verdicts.record_error(quantity, f"the unit is not in service (state {state})", node=node)
        return
    rated = inverter.rated_power()
    fraction = float(method["setpoint"])
    target = fraction * rated
    hold, settle = site.seconds(method["hold"]), site.seconds(method["settle"])
    change = (
        f"export {fraction:.0%} of rated power ({target:g} W) for {hold:g} s or more, then 0 W, "
        "then its power control as found"
    )
    try:
        with field_gate.step(f"{node}.inverter", change):
            found = inverter.power_control()
            try:
                inverter.set_power(target)
                site.clock.sleep(hold)
                exporting = _followed(site, inverter, target, method)
                readback = inverter.power_control()
                bms_current = _optional(bms.current)
                inverter.set_power(0.0)
                site.clock.sleep(settle)
                stopped = inverter.power()
            finally:
                inverter.restore_power_control(found)
    except FieldStepRefused as exc:  # the reason goes into the verdict, and the step is skipped
        verdicts.record_error(quantity, str(exc), node=node)
        pytest.skip(str(exc))
    errors = {"export": abs(exporting - target) / rated * 100, "zero": abs(stopped) / rated * 100}
    findings = {
        "commanded_w": target,
        "reported_export_w": exporting,
        "reported_after_zero_w": stopped,
        "control_found": found,
        "control_readback": readback,
        "bms_current_while_exporting_a": bms_current,
        "errors_pct": errors,
    }
    verdicts.record(
        quantity,
        max(errors.values()),
        node=node,
        evidence=[_evidence(evidence_dir, node, "dispatch", findings)],
        commanded_w=target,
        reported_export_w=exporting,
        reported_after_zero_w=stopped,
        bms_current_while_exporting_a=bms_current,
    )


# -- method helpers -------------------------------------------------------------------------------


def _wait_for(site: Any, probe: Callable[[], object], timeout: Any) -> None:
    """Until ``probe`` reads without a DeviceError (the BMS's first frames): only listens."""
    if not site.clock.wait_until(
        lambda: _optional(probe) is not None, timeout=site.seconds(timeout), poll=0.5
    ):
        probe()  # raises the DeviceError that says what never arrived


def _followed(site: Any, inverter: Any, target: float, method: dict[str, Any]) -> float:
    """The reported power once it no longer approaches ``target``: a unit that entered service
    shortly before is still on its enter-service ramp (at most the contract's ramp period)."""
    settings = site.contract.settings
    ramp = settings.enter_service.ramp if settings and settings.enter_service else 0.0
    step = site.per_unit(method["approach_step"]) * inverter.rated_power()
    poll = site.seconds(method["poll"])
    reported = inverter.power()
    deadline = site.clock.now() + ramp
    while site.clock.now() < deadline:
        site.clock.sleep(poll)
        latest = inverter.power()
        closer = abs(reported - target) - abs(latest - target)
        reported = latest
        if closer < step:
            break
    return float(reported)


def _optional(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except DeviceError:
        return None


def _evidence(folder: Path, node: str, what: str, findings: dict[str, Any]) -> str:
    path = folder / f"{node}-field-{what}.json"
    path.write_text(json.dumps(findings, indent=2, default=str), encoding="utf-8")
    return str(path)


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _identity_findings(
    role: str, found: Identity, serial: str, approved: tuple[ApprovedEquipment, ...]
) -> tuple[list[str], list[str]]:
    """(mismatches, fields that cannot be verified) of one unit against the approved entries
    of its role and the serial the site file names."""
    problems: list[str] = []
    unknown: list[str] = []
    if serial and found.serial and not _same(serial, found.serial):
        problems.append(f"{role}: serial {found.serial!r}, the site file names {serial!r}")
    entries = [e for e in approved if e.role == role]
    if not entries:
        return problems, [*unknown, f"{role}: the contract approves no {role}"]
    if not found.manufacturer:
        return problems, [*unknown, f"{role}: reports no manufacturer"]
    entries = [e for e in entries if _same(e.manufacturer, found.manufacturer)]
    if not entries:
        names = sorted({e.manufacturer for e in approved if e.role == role})
        problems.append(
            f"{role}: manufacturer {found.manufacturer!r} is not approved ({', '.join(names)})"
        )
        return problems, unknown
    if any(e.model for e in entries):
        if not found.model:
            unknown.append(f"{role}: reports no model")
        else:
            entries = [e for e in entries if e.model is None or _same(e.model, found.model)]
            if not entries:
                problems.append(f"{role}: model {found.model!r} is not approved")
                return problems, unknown
    minimum = [e for e in entries if e.min_firmware]
    if minimum and not found.firmware:
        unknown.append(f"{role}: reports no firmware version")
    elif minimum and not any(e.accepts_firmware(found.firmware) for e in entries):
        oldest = ", ".join(sorted({str(e.min_firmware) for e in minimum}))
        problems.append(
            f"{role}: firmware {found.firmware!r} is older than the approved minimum {oldest}"
        )
    return problems, unknown


UNITS = {"voltage": "pu", "frequency": "Hz", "time": "s"}
"""The unit of each kind of enter-service setting (as settings.enter_service holds them)."""


def _kind(setting: str) -> str:
    """voltage_low -> voltage, frequency_high -> frequency, delay and ramp -> time."""
    kind = setting.split("_", 1)[0]
    return kind if kind in UNITS else "time"


def _sample(site: Any, inverter: Any, bms: Any) -> dict[str, Any]:
    """One reading of everything the checks need; what an interface does not give is None."""
    storage = inverter.storage_readings()
    return {
        "t": site.clock.now(),
        "bms_soc": bms.soc(),
        "bms_voltage": bms.voltage(),
        "bms_current": bms.current(),
        "bms_charge_voltage_limit": _optional(lambda: bms.value("charge_voltage_limit")),
        "bms_discharge_voltage_limit": _optional(lambda: bms.value("discharge_voltage_limit")),
        "inverter_power": inverter.power(),
        "inverter_voltage": inverter.voltage(),
        "inverter_frequency": inverter.frequency(),
        "inverter_battery_soc": storage.get("soc"),
        "inverter_battery_voltage": storage.get("voltage"),
    }


Outcome = tuple[bool | None, str]
"""(True plausible, False implausible, None cannot be checked at this sample; why)."""


class _PlausibilityChecks:
    """The plausibility checks of one node, with the method's thresholds and the site's nominals."""

    def __init__(self, method: dict[str, Any], site: Any, rated_w: float) -> None:
        self.soc_agreement = to_unit(method["soc_agreement"], "%")
        self.voltage_agreement = to_unit(method["voltage_agreement"], "%") / 100
        low, high = (site.per_unit(v) for v in method["grid_voltage"])
        self.grid_v = (low * site.nominal_voltage, high * site.nominal_voltage)
        self.nominal_f = site.nominal_frequency
        self.grid_df = site.hertz(method["grid_frequency"])
        self.power_threshold = site.per_unit(method["power_threshold"]) * rated_w
        self.deadband = to_unit(method["current_deadband"], "A")
        self.ac_coupled = site.site.spec.site.topology == "ac_coupled"

    def run(self, s: dict[str, Any]) -> dict[str, Outcome]:
        at = f" (t={s['t']:.1f} s)"
        return {
            name: (ok, text + at)
            for name, (ok, text) in {
                "bms_soc_range": self.soc_range(s),
                "pack_voltage_in_limits": self.pack_voltage(s),
                "soc_agreement": self.soc_agrees(s),
                "pack_voltage_agreement": self.voltage_agrees(s),
                "grid_voltage": self.grid_voltage(s),
                "grid_frequency": self.grid_frequency(s),
                "power_sign": self.power_sign(s),
            }.items()
        }

    @staticmethod
    def soc_range(s: dict[str, Any]) -> Outcome:
        soc = s["bms_soc"]
        return 0 <= soc <= 100, f"BMS SoC {soc:g} %, expected 0-100 %"

    @staticmethod
    def pack_voltage(s: dict[str, Any]) -> Outcome:
        v = s["bms_voltage"]
        low, high = s["bms_discharge_voltage_limit"], s["bms_charge_voltage_limit"]
        if low is None or high is None:
            return None, "pack voltage limits: the BMS map binds no voltage limits"
        return (
            low <= v <= high,
            f"BMS pack voltage {v:g} V outside its own limits {low:g}-{high:g} V",
        )

    def soc_agrees(self, s: dict[str, Any]) -> Outcome:
        theirs = s["inverter_battery_soc"]
        if theirs is None:
            return None, "SoC agreement: the inverter reports no battery SoC (SunSpec 802/713)"
        ours = s["bms_soc"]
        return (
            abs(theirs - ours) <= self.soc_agreement,
            f"BMS SoC {ours:g} %, inverter {theirs:g} % (agreement {self.soc_agreement:g} %)",
        )

    def voltage_agrees(self, s: dict[str, Any]) -> Outcome:
        theirs = s["inverter_battery_voltage"]
        if theirs is None:
            return None, "pack voltage agreement: the inverter reports no battery voltage (802)"
        ours = s["bms_voltage"]
        return (
            abs(theirs - ours) <= self.voltage_agreement * abs(ours),
            f"BMS pack voltage {ours:g} V, inverter {theirs:g} V "
            f"(agreement {self.voltage_agreement:.0%})",
        )

    def grid_voltage(self, s: dict[str, Any]) -> Outcome:
        v, (low, high) = s["inverter_voltage"], self.grid_v
        return low <= v <= high, f"grid voltage {v:g} V, expected {low:g}-{high:g} V"

    def grid_frequency(self, s: dict[str, Any]) -> Outcome:
        f = s["inverter_frequency"]
        return (
            abs(f - self.nominal_f) <= self.grid_df,
            f"grid frequency {f:g} Hz, expected {self.nominal_f:g} +- {self.grid_df:g} Hz",
        )

    def power_sign(self, s: dict[str, Any]) -> Outcome:
        if not self.ac_coupled:
            return None, "power sign: not applicable off an AC-coupled site (PV on the DC side)"
        p, i = s["inverter_power"], s["bms_current"]
        if abs(p) < self.power_threshold:
            return None, (
                f"power sign: not exercised, the unit was idle ({p:g} W, below "
                f"{self.power_threshold:g} W)"
            )
        wrong = (p > 0 and i > self.deadband) or (p < 0 and i < -self.deadband)
        flow = "exports" if p > 0 else "imports"
        state = "charging" if i > 0 else "discharging"
        return (
            not wrong,
            f"inverter {flow} {abs(p):g} W while the BMS reports {i:g} A ({state})",
        )
