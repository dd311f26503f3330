"""Faults: a unit left without its controller goes safe, and a BMS gives up a failed precharge.

Communication loss. An inverter that loses its controller (a cut Ethernet cable, a crashed EMS)
must not keep discharging at its last setpoint: it supervises the link and, after its timeout,
reverts to a safe setpoint. SunSpec carries that setting in model 704's reversion points, so the
harness sets the timeout and the safe setpoint there, dispatches every unit, and from then on
sends nothing at all to any of them (nothing in the harness polls inverters in the background;
the scenario logs every transaction with each unit and shows the silence held). The time counts
from the last transaction with the unit to the power analyzer seeing its output at the safe
setpoint for good.

Precharge failure. A BMS closes its contactors through a precharge relay and resistor that
charge the inverter's DC link first; if the link does not come up (a shorted link, an open
resistor) the BMS must give up and declare a fault instead of cycling the relay or closing onto
the short. The bench's fault-insertion unit opens the precharge resistor and cycles the BMS's
enable input, so each BMS opens its contactors and starts a precharge that cannot complete.
The time counts from the precharge relay energizing to it dropping out with the main contactor
still open, both on the analyzer's capture of the relay coil and contactor; the system-fault
alarm must appear on CAN as well. Every home is tried at once; the supervisor is told the alarm
is provoked on purpose, and every BMS must be closed and clear again before the scenario ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.devices.bms import FrameLog
from harness.devices.comm_supervision import TrafficLog, clear_comm_loss, set_comm_loss, traffic
from harness.measure.trace import MeasurementError, Trace
from testplans.test_bms_faults import Run, _capture, _units

COMM_LOSS = "inverter.comm_loss.response_time"
PRECHARGE = "bms.precharge.fault_time"
SYSTEM_FAULT = "system_fault"
"""The BMS map's alarm for a failed precharge (a protocol's system-fault flag)."""


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_inverter_comm_loss(site, analyzer, verdicts, evidence_dir, restore_after):
    """Interface agreement, Annex A: each inverter, dispatched to discharge and then left
    without any Modbus traffic, reverts to its safe setpoint within the contracted time of the
    last transaction with it."""
    method = verdicts.method(COMM_LOSS)
    timeout = site.seconds(method["timeout"])
    dispatch, safe = float(method["dispatch"]), float(method["safe_setpoint"])
    rated = {name: node.inverter.rated_power() for name, node in site.nodes.items()}
    channels = [f"{name}.inverter.power" for name in site.nodes]
    with (
        _supervised(site, rated, timeout, safe),
        _traffic(site) as logs,
        _capture(site, analyzer, *channels) as run,
    ):
        site.dispatch_all(dispatch)  # the last words any unit hears
        silent_from = site.clock.now()
        site.clock.sleep(verdicts.window(COMM_LOSS))
    evidence = [run.trace.to_csv(evidence_dir / "comm_loss-capture.csv")]
    for name, log in logs.items():
        last = log.last()
        if last is None or log.after(silent_from):
            verdicts.record_error(
                COMM_LOSS, f"the unit was not left silent (transactions at {log.times})", node=name
            )
            continue
        _record_revert(verdicts, run, name, last, rated[name], dispatch, safe, method, evidence)


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_bms_precharge_fault(site, analyzer, verdicts, evidence_dir, restore_after):
    """Schedule C, faults: with each battery's precharge resistor open, the BMS's contactors
    are cycled open and closed; each BMS must declare the precharge failed (relay out,
    contactor open, alarm on CAN) within the contracted time of the precharge starting."""
    method = verdicts.method(PRECHARGE)
    units = _units(site, verdicts, PRECHARGE)
    if not units:
        return
    channels = [f"{n}.{c}" for n in units for c in ("bms.precharge_relay", "battery.contactor")]
    with (
        site.provoking(list(units), {SYSTEM_FAULT}),
        _precharge_restored(site, units, method),
        _alarm_frames(site, units) as frames,
    ):
        site.dispatch_all(0.0)
        for fiu in units.values():
            fiu.open_precharge_resistor(True)
            fiu.set_bms_enable(False)
        site.clock.sleep(site.seconds(method["open_for"]))
        with _capture(site, analyzer, *channels) as run:
            for fiu in units.values():
                fiu.set_bms_enable(True)
            site.clock.sleep(verdicts.window(PRECHARGE))
    evidence = _evidence(run, frames, evidence_dir)
    for name in units:
        _record_precharge(site, verdicts, run, name, frames[name], evidence)


# -- communication loss -------------------------------------------------------------------------


@contextmanager
def _supervised(site: Any, rated: dict[str, float], timeout: float, safe: float) -> Iterator[None]:
    """Every unit's comm-loss supervision armed for the block, disarmed (and at zero) after."""
    try:
        for name, node in site.nodes.items():
            set_comm_loss(node.inverter, timeout, safe * rated[name])
        yield
    finally:
        for node in site.nodes.values():
            clear_comm_loss(node.inverter)
        site.dispatch_all(0.0)


@contextmanager
def _traffic(site: Any) -> Iterator[dict[str, TrafficLog]]:
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(traffic(node.inverter, site.clock.now))
            for name, node in site.nodes.items()
        }


def _record_revert(
    verdicts: Any,
    run: Run,
    name: str,
    last: float,
    rated: float,
    dispatch: float,
    safe: float,
    method: dict[str, Any],
    evidence: list[Path],
) -> None:
    """From ``last`` (site time) to the unit's power within tolerance of the safe setpoint for
    good; the unit must have been seen at its dispatch first (else it reverted from nothing)."""
    trace, channel = run.trace, f"{name}.inverter.power"
    band = float(method["tolerance"]) * rated
    since = run.analyzer_time(last)
    peak = _peak(trace, channel, since)
    if peak < (dispatch * rated) - band:
        verdicts.record_error(
            COMM_LOSS,
            f"the unit never reached its dispatch ({peak:.0f} W of {dispatch * rated:.0f} W): "
            "nothing to revert from",
            node=name,
        )
        return
    target = safe * rated
    try:
        held = trace.time_until(channel, below=target + band, above=target - band, since=since)
        reverted, value = True, held
    except MeasurementError:
        reverted, value = False, trace.end - since
    verdicts.record(
        COMM_LOSS,
        value,
        node=name,
        uncertainty=trace.resolution,
        evidence=evidence,
        last_transaction_at=last,
        since=since,  # the last transaction on the analyzer's timebase (the plot's start mark)
        peak_w=peak,
        safe_setpoint_w=target,
        no_response_in_capture=not reverted,
    )


# -- precharge ----------------------------------------------------------------------------------


@contextmanager
def _alarm_frames(site: Any, units: dict[str, Any]) -> Iterator[dict[str, FrameLog]]:
    """Every home's frames carrying its BMS's system-fault alarm."""
    with ExitStack() as stack:
        logs = {}
        for name in units:
            bms = site.nodes[name].bms
            message = _alarm_signal(bms)[0]
            logs[name] = stack.enter_context(bms.logging_frames(message))
        yield logs


def _alarm_signal(bms: Any) -> tuple[str, str]:
    ref = bms.map.alarms.get(SYSTEM_FAULT)
    if ref is None:
        pytest.fail(f"{bms.name}: the BMS map binds no {SYSTEM_FAULT!r} alarm")
    return ref[0], ref[1]


@contextmanager
def _precharge_restored(site: Any, units: dict[str, Any], method: dict[str, Any]) -> Iterator[None]:
    """After the block: the resistor back, the enable cycled (which resets a latched fault), and
    every BMS closed and clear of alarms within ``recover`` (else the scenario fails)."""
    try:
        yield
    finally:
        for fiu in units.values():
            fiu.open_precharge_resistor(False)
            fiu.set_bms_enable(False)
        site.clock.sleep(site.seconds(method["open_for"]))
        for fiu in units.values():
            fiu.set_bms_enable(True)

        def ready() -> bool:
            for name in units:
                bms = site.nodes[name].bms
                if bms.alarms() or bms.value("discharge_current_limit") <= 0:
                    return False
            return True

        if not site.clock.wait_until(ready, timeout=site.seconds(method["recover"]), poll=1.0):
            pytest.fail(f"the BMSs were not closed and clear within {method['recover']}")


def _record_precharge(
    site: Any, verdicts: Any, run: Run, name: str, frames: FrameLog, evidence: list[Path]
) -> None:
    trace = run.trace
    relay, contactor = f"{name}.bms.precharge_relay", f"{name}.battery.contactor"
    try:
        started = trace.start + trace.time_until(relay, above=0.5, stays=False)
    except MeasurementError as exc:
        verdicts.record_error(PRECHARGE, f"the BMS never started a precharge: {exc}", node=name)
        return
    # Given up: relay out with the main contactor still open, to the end of the capture.
    out = run.instant(relay, started, below=0.5)
    if out is not None and _peak(trace, contactor, run.analyzer_time(out)) > 0.5:
        out = None  # it closed onto the link after all: no fault declared
    message, signal = _alarm_signal(site.nodes[name].bms)
    start_site = run.site_time(started)
    alarm = frames.first(message, signal, lambda v: v >= 0.5, since=start_site)
    declared = out is not None and alarm is not None
    end = run.site_time(trace.end)
    verdicts.record(
        PRECHARGE,
        (out if declared and out is not None else end) - start_site,
        node=name,
        uncertainty=trace.resolution,
        evidence=evidence,
        precharge_started_at=start_site,
        since=started,  # the precharge start on the analyzer's timebase (the plot's start mark)
        relay_out_at=out,
        alarm_on_can_at=alarm,
        no_response_in_capture=not declared,
    )


def _peak(trace: Trace, channel: str, since: float) -> float:
    """The highest value of ``channel`` from ``since`` (analyzer time) to the end."""
    t, v = trace.times(channel), trace.values(channel)
    after = v[t >= since]
    return float(after.max()) if after.size else float(v[-1])


def _evidence(run: Run, frames: dict[str, FrameLog], folder: Path) -> list[Path]:
    log = folder / "precharge-can-frames.json"
    log.write_text(
        json.dumps(
            {"capture_started_at": run.t0} | {n: f.to_json() for n, f in frames.items()}, indent=1
        )
    )
    return [run.trace.to_csv(folder / "precharge-capture.csv"), log]
