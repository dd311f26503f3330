"""Faults: every BMS takes the current away from its pack within the contracted time of a fault.

How the fault is brought about (the method is the catalogue's, harness/config/quantities.d/
faults.yaml). Not through the inverter: a compliant inverter follows the limits its BMS
advertises (test_dispatch_stateful.py holds it to them), so it never charges a full pack past its
cell limit, empties one below it or draws more than the BMS allows; and heating a pack of some
40 kJ/degC by tens of degrees takes hours at the inverter's current, while the BMS's own derating
keeps a compliant inverter from ever getting there. On a BMS acceptance bench the fault is
brought to the BMS's inputs instead, by a fault-insertion unit on each battery (DESIGN section 7,
faults): a source on one cell tap (over- and under-voltage), on the temperature sensor
(over-temperature) or on the shunt signal (over-current), or a relay in the inverter's CAN cable
(the bench engineer's unplugged heartbeat). The BMS sees the fault at once, the pack stays
healthy, and each test costs seconds instead of hours. A virtual battery comes with such a unit;
a real bench names its own in the site file (``nodes[].fault_insertion``).

The instants come from the bench's records, never from the plant: the fault from the power
analyzer's capture of the driven sense input (or the last heartbeat frame on the BMS's bus), the
response from the pack current on the same capture (an opening contactor shows there too) and
from the BMS's limit frames on CAN, whichever shows it first. The analyzer counts from its own
start; the harness notes the site time it started the capture at, which puts both on one clock.
Every home is tried at once; the safety supervisor is told which alarms are provoked on purpose,
and every line is given back to its pack and every BMS has cleared its alarms before the scenario
ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.config.units import to_unit
from harness.devices.bms import FrameLog
from harness.measure.trace import MeasurementError, Trace
from harness.report.allure_wiring import Stepped

PROTECTIONS = {
    # quantity -> the alarm the BMS raises (BMS map alarm names, several for over-current)
    "bms.cell_overvoltage.response_time": {"cell_overvoltage"},
    "bms.cell_undervoltage.response_time": {"cell_undervoltage"},
    "bms.overtemp.response_time": {"overtemp"},
    "bms.overcurrent.response_time": {"discharge_overcurrent", "charge_overcurrent"},
}
HEARTBEAT = "bms.heartbeat_loss.response_time"
UNITS = {"cell_voltage": "V", "temperature": "degC", "current": "1"}
"""The unit of a sense line's threshold and drive (current: a ratio of the advertised limit)."""


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
@pytest.mark.parametrize("quantity", list(PROTECTIONS))
def test_bms_protection_response(site, analyzer, verdicts, evidence_dir, restore_after, quantity):
    """Schedule C, faults: with every unit running, a sense line of each BMS is driven beyond its
    protection threshold; each BMS must take the pack's current away within the contracted time
    of the threshold being crossed (limits to zero on CAN, or the contactor open)."""
    method = verdicts.method(quantity)
    units = _units(site, verdicts, quantity)
    if not units:
        return
    line, dispatch = str(method["line"]), float(method["dispatch"])
    channels = [f"{name}.{method['channel']}" for name in units]
    # Left in reverse order: the capture ends, then every line is given back and every BMS
    # clears, and only then does the supervisor watch these alarms again.
    with (
        site.provoking(list(units), PROTECTIONS[quantity]),
        _recovering(site, units, method),
        _frames(site, units) as frames,
    ):
        site.dispatch_all(dispatch)
        site.clock.sleep(site.seconds(method["settle"]))
        levels = {name: _levels(site.nodes[name].bms, method, line) for name in units}
        with _capture(site, analyzer, *channels, *_outputs(units)) as run:
            for name, fiu in units.items():
                fiu.drive(line, levels[name][1])
            site.clock.sleep(verdicts.window(quantity))
    evidence = _evidence(run, frames, evidence_dir, quantity)
    for name in units:
        threshold, drive = levels[name]
        # The fault: the driven line through the buyer's threshold, on the analyzer's capture.
        crossing = {"above": threshold} if drive > threshold else {"below": threshold}
        try:
            fault = run.site_time(
                run.trace.start
                + run.trace.time_until(f"{name}.{method['channel']}", stays=False, **crossing)
            )
        except MeasurementError as exc:
            verdicts.record_error(quantity, f"the fault was not brought about: {exc}", node=name)
            continue
        _record(
            site, verdicts, quantity, name, run, frames[name], fault, dispatch, method, evidence
        )


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_bms_heartbeat_loss(site, analyzer, verdicts, evidence_dir, restore_after):
    """Interface agreement, Annex B: with every unit running, each inverter's CAN cable to its
    BMS is broken (the bench's relay); each BMS must take the pack's current away within the
    contracted time of the last heartbeat it received."""
    quantity = HEARTBEAT
    method = verdicts.method(quantity)
    units = _units(site, verdicts, quantity)
    if not units:
        return
    dispatch = float(method["dispatch"])
    with _recovering(site, units, method), _frames(site, units) as frames:
        site.dispatch_all(dispatch)
        site.clock.sleep(site.seconds(method["settle"]))  # heartbeats on the bus meanwhile
        with _capture(site, analyzer, *_outputs(units)) as run:
            for fiu in units.values():
                fiu.disconnect_inverter_can()
            site.clock.sleep(verdicts.window(quantity))
    evidence = _evidence(run, frames, evidence_dir, quantity)
    for name in units:
        heartbeat = site.nodes[name].bms.map.heartbeat
        seen = frames[name].times(heartbeat) if heartbeat else []
        if not seen:
            verdicts.record_error(
                quantity, f"no heartbeat ({heartbeat}) on the BMS's bus to lose", node=name
            )
            continue
        _record(
            site, verdicts, quantity, name, run, frames[name], max(seen), dispatch, method, evidence
        )


# -- procedure ----------------------------------------------------------------------------------


def _units(site: Any, verdicts: Any, quantity: str) -> dict[str, Any]:
    """Every home with a fault-insertion unit on its battery; the others are an error."""
    units = {}
    for name, node in site.nodes.items():
        if node.fault_insertion is None:
            verdicts.record_error(
                quantity,
                "no fault-insertion unit on this battery (site: fault_insertion)",
                node=name,
            )
        else:
            units[name] = Stepped(node.fault_insertion)
    return units


def _levels(bms: Any, method: dict[str, Any], line: str) -> tuple[float, float]:
    """(threshold, drive) of the line in its own unit; the shunt's as a discharge current in
    ratios of the discharge current limit the BMS advertises now."""
    unit = UNITS[line]
    threshold = to_unit(method["threshold"], unit, require_unit=unit != "1")
    drive = to_unit(method["drive"], unit, require_unit=unit != "1")
    if line == "current":
        limit = float(bms.value("discharge_current_limit"))
        return -threshold * limit, -drive * limit
    return threshold, drive


def _outputs(units: dict[str, Any]) -> list[str]:
    """The analyzer channel that shows a BMS taking current away: its pack's DC current (an
    opening contactor shows there too; each channel is a panel of the witness plot)."""
    return [f"{name}.battery.current" for name in units]


@contextmanager
def _frames(site: Any, units: dict[str, Any]) -> Iterator[dict[str, FrameLog]]:
    """Every home's limit frames and inverter heartbeats, as they arrive on its BMS's bus."""
    with ExitStack() as stack:
        logs = {}
        for name in units:
            bms = site.nodes[name].bms
            messages = {bms.signal_of("charge_current_limit")[0]}
            if bms.map.heartbeat:
                messages.add(bms.map.heartbeat)
            logs[name] = stack.enter_context(bms.logging_frames(*sorted(messages)))
        yield logs


@contextmanager
def _recovering(site: Any, units: dict[str, Any], method: dict[str, Any]) -> Iterator[None]:
    """After the block: every line back to its pack, every link connected, and every BMS clear
    of alarms with both limits up again within ``recover`` (else the scenario fails)."""
    try:
        yield
    finally:
        site.dispatch_all(0.0)
        for fiu in units.values():
            fiu.release_all()

        def cleared() -> bool:
            for name in units:
                bms = site.nodes[name].bms
                if (
                    bms.alarms()
                    or min(bms.value("charge_current_limit"), bms.value("discharge_current_limit"))
                    <= 0
                ):
                    return False
            return True

        if not site.clock.wait_until(cleared, timeout=site.seconds(method["recover"]), poll=1.0):
            pytest.fail(f"the BMSs did not clear their alarms within {method['recover']}")


def _record(
    site: Any,
    verdicts: Any,
    quantity: str,
    name: str,
    run: Run,
    frames: FrameLog,
    fault: float,
    dispatch: float,
    method: dict[str, Any],
    evidence: list[Path],
) -> None:
    """The response time from ``fault`` (site time) to the first sign of the current taken away:
    on CAN, a zero limit for the direction the unit ran; on the analyzer, its pack current below
    the cutoff for good."""
    bms = site.nodes[name].bms
    direction = "charge" if dispatch < 0 else "discharge"
    message, signal = bms.signal_of(f"{direction}_current_limit")
    seen = {"can_limit_zero": frames.first(message, signal, lambda v: v <= 0.0, since=fault)}
    trace, since = run.trace, run.analyzer_time(fault)
    current = f"{name}.battery.current"
    before = abs(trace.mean(current, trace.start, max(trace.start, since)))
    cut = float(method["cutoff"]) * before
    if cut > 0:
        seen["current_cut"] = run.instant(current, since, below=cut, above=-cut)
    found = [t for t in seen.values() if t is not None]
    end = run.site_time(trace.end)
    response = min(found) - fault if found else end - fault
    verdicts.record(
        quantity,
        response,
        node=name,
        uncertainty=trace.resolution,
        evidence=evidence,
        fault_at=fault,
        since=since,  # the fault on the analyzer's timebase (the witness plot's start mark)
        responses=dict(seen),
        no_response_in_capture=not found,
        current_before_a=before,
    )


@dataclass
class Run:
    """A capture and where it sits on the site clock: the analyzer counts from its own start, and
    CAN frames and the harness's commands carry site time. ``t0`` is the site time the capture
    was started at (on a live bench, to within the start command's latency)."""

    trace: Trace
    t0: float

    def site_time(self, t: float) -> float:
        return self.t0 + t

    def analyzer_time(self, t: float) -> float:
        return t - self.t0

    def instant(
        self, channel: str, since: float, below: float, above: float | None = None
    ) -> float | None:
        """First site time from ``since`` (analyzer time) after which ``channel`` stays below
        ``below`` (and above ``above``) to the end of the capture; None if it never does."""
        try:
            held = self.trace.time_until(channel, below=below, above=above, since=since)
        except MeasurementError:
            return None
        return self.site_time(since + held)


@contextmanager
def _capture(site: Any, analyzer: Any, *channels: str) -> Iterator[Run]:
    t0 = site.clock.now()
    with analyzer.capture(*channels) as trace:
        run = Run(trace, t0)
        yield run


def _evidence(run: Run, frames: dict[str, FrameLog], folder: Path, quantity: str) -> list[Path]:
    short = quantity.split(".")[1]
    log = folder / f"{short}-can-frames.json"
    log.write_text(
        json.dumps(
            {"capture_started_at": run.t0} | {n: f.to_json() for n, f in frames.items()}, indent=1
        )
    )
    return [run.trace.to_csv(folder / f"{short}-capture.csv"), log]
