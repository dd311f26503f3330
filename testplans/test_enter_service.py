"""Reconnection: after losing the grid, a unit exports again only inside the enter-service window,
after the full delay (restarted by any excursion out of the window), ramping up as agreed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.measure.trace import MeasurementError, Trace


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_enter_service_delay_and_ramp(site, grid, analyzer, verdicts, evidence_dir, restore_after):
    """IEEE 1547.1-2020 enter-service test: the units export at their pre-trip setpoint, the grid
    is lost and returns at nominal; after 25 % of the delay it leaves the window for 25 % of the
    delay, then returns. Timed on the analyzer's capture from that last return, each unit exports
    only after the full delay, then ramps to its setpoint over the ramp period."""
    delay_q, ramp_q = "enter_service.delay", "enter_service.ramp_time"
    method = verdicts.method(delay_q if verdicts.judged(delay_q) else ramp_q)
    window = site.settings.enter_service
    powers = {name: f"{name}.inverter.power" for name in site.nodes}
    site.dispatch_all(fraction=method["dispatch"])
    site.wait_for_output(method["dispatch"], timeout=window.ramp)
    site.clock.sleep(site.seconds(method["settle"]))
    grid.set_output(False)  # loss of grid: every unit ceases to energize
    site.clock.sleep(site.seconds(method["outage"]))
    with analyzer.capture("grid.voltage", *powers.values()) as trace:
        grid.set_output(True)  # back, inside the window: the delay starts
        site.clock.sleep(window.delay * method["excursion_after"])
        site.set_grid(voltage_pu=window.voltage_high + site.per_unit(method["excursion_beyond"]))
        site.clock.sleep(window.delay * method["excursion_hold"])
        site.set_grid(voltage_pu=1.0)  # inside again: the delay must start over
        site.clock.sleep((window.delay + window.ramp) * method["window_factor"])
    evidence = [trace.to_csv(evidence_dir / "enter-service-capture.csv")]
    returns = _entries(
        trace,
        "grid.voltage",
        window.voltage_low * site.nominal_voltage,
        window.voltage_high * site.nominal_voltage,
    )
    if returns.size == 0:
        raise MeasurementError("the grid voltage never came back inside the window")
    for name, node in site.nodes.items():
        rated = node.inverter.rated_power()
        rise = Rise.measure(
            trace,
            powers[name],
            since=float(returns[0]),
            setpoint=method["dispatch"] * rated,
            export=site.per_unit(method["export_threshold"]) * rated,
            fractions=method["rise"],
        )
        _record_return(verdicts, name, rise, returns, trace, evidence)


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_no_export_outside_the_window(site, grid, analyzer, verdicts, evidence_dir, restore_after):
    """IEEE 1547.1-2020 enter-service test: after a loss of grid, the grid returns just outside
    each edge of the enter-service window (voltage high and low, frequency high and low) and stays
    there longer than the delay. No unit exports at any of these points."""
    quantity = "enter_service.export_outside_window"
    method = verdicts.method(quantity)
    window = site.settings.enter_service
    dv = site.per_unit(method["beyond"]["voltage"])
    df = site.hertz(method["beyond"]["frequency"])
    points = {
        "voltage-high": {"voltage_pu": window.voltage_high + dv},
        "voltage-low": {"voltage_pu": window.voltage_low - dv},
        "frequency-high": {"frequency_hz": window.frequency_high + df},
        "frequency-low": {"frequency_hz": window.frequency_low - df},
    }
    powers = {name: f"{name}.inverter.power" for name in site.nodes}
    site.dispatch_all(fraction=method["dispatch"])
    site.clock.sleep(site.seconds(method["settle"]))
    with analyzer.capture("grid.voltage", *powers.values()) as trace:
        for level in points.values():
            grid.set_output(False)  # loss of grid: every unit ceases to energize
            site.clock.sleep(site.seconds(method["outage"]))
            site.set_grid(voltage_pu=1.0, frequency_hz=site.nominal_frequency)
            site.set_grid(**level)  # the grid returns just outside one edge of the window
            grid.set_output(True)
            site.clock.sleep(window.delay * method["hold_factor"])
    evidence = trace.to_csv(evidence_dir / "outside-window-capture.csv")
    returns = trace.edges("grid.voltage", True, site.nominal_voltage / 2)
    if returns.size != len(points):
        raise MeasurementError(
            f"{returns.size} returns of the grid in the capture, not {len(points)}"
        )
    spans = list(zip(returns, [*returns[1:], trace.end], strict=True))
    for name, node in site.nodes.items():
        export = site.per_unit(method["export_threshold"]) * node.inverter.rated_power()
        times, power = trace.times(powers[name]), trace.values(powers[name])
        exported = [
            point
            for point, (begun, until) in zip(points, spans, strict=True)
            if np.any(power[(times >= begun) & (times < until)] > export)
        ]
        verdicts.record(
            quantity, len(exported), node=name, evidence=[evidence], exported_at=exported
        )


# -- method helpers -------------------------------------------------------------------------------


def _entries(trace: Trace, channel: str, low: float, high: float) -> np.ndarray:
    """Times of the samples at which ``channel`` comes back inside [low, high]."""
    times, values = trace.times(channel), trace.values(channel)
    inside = (values >= low) & (values <= high)
    return times[1:][inside[1:] & ~inside[:-1]]


@dataclass(frozen=True)
class Rise:
    """A unit's return to export, from one power channel of a capture.

    ``exported``: start of the output's rise, the first sample above the export threshold projected
    back to zero along the measured ramp (None if it never exported). ``ramp``: time from zero to
    the setpoint at the rate measured between the two fractions of the setpoint (crossings
    interpolated between samples); a lower bound when the upper fraction was not reached
    (``complete`` False); None when not even the lower one was.
    """

    exported: float | None
    ramp: float | None
    complete: bool

    @classmethod
    def measure(
        cls,
        trace: Trace,
        channel: str,
        *,
        since: float,
        setpoint: float,
        export: float,
        fractions: list[float],
    ) -> Rise:
        times, values = trace.times(channel), trace.values(channel)
        after = times >= since
        times, values = times[after], values[after]
        above = np.flatnonzero(values > export)
        if above.size == 0:
            return cls(None, None, False)
        first = int(above[0])
        lo, hi = fractions
        t_lo = _crossing(times, values, lo * setpoint, first)
        t_hi = _crossing(times, values, hi * setpoint, first)
        if t_lo is None:
            return cls(float(times[first]), None, False)
        complete = t_hi is not None
        end = t_hi if t_hi is not None else float(times[-1])
        ramp = (end - t_lo) / (hi - lo)
        exported = float(times[first])
        if complete and ramp > 0:
            exported -= float(values[first]) / (setpoint / ramp)
        return cls(max(exported, since), ramp, complete)


def _crossing(times: np.ndarray, values: np.ndarray, level: float, start: int) -> float | None:
    """First instant from sample ``start`` at which the rising channel reaches ``level``."""
    reached = np.flatnonzero(values[start:] >= level)
    if reached.size == 0:
        return None
    i = start + int(reached[0])
    if i == 0 or values[i - 1] >= level:
        return float(times[i])
    t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
    return float(t0 + (level - v0) * (t1 - t0) / (v1 - v0))


def _record_return(
    verdicts: Any, node: str, rise: Rise, returns: np.ndarray, trace: Trace, evidence: list[Path]
) -> None:
    """Record one unit's delay (from the last return into the window before its first export)
    and ramp time, for whichever of the two the contract judges."""
    delay_q, ramp_q = "enter_service.delay", "enter_service.ramp_time"
    common = {"node": node, "uncertainty": trace.resolution, "evidence": evidence}
    if rise.exported is None:
        if verdicts.judged(delay_q):  # never exported: at least the rest of the capture
            verdicts.record(delay_q, trace.end - float(returns[-1]), exported=False, **common)
        if verdicts.judged(ramp_q):
            verdicts.record_error(ramp_q, "the unit never exported in the capture", node=node)
        return
    returned = float(returns[returns <= rise.exported][-1])
    if verdicts.judged(delay_q):
        verdicts.record(
            delay_q,
            rise.exported - returned,
            returned_s=returned,
            first_export_s=rise.exported,
            **common,
        )
    if verdicts.judged(ramp_q):
        if rise.ramp is None:
            verdicts.record_error(
                ramp_q, "the output never rose through the setpoint's first fraction", node=node
            )
        else:
            verdicts.record(ramp_q, rise.ramp, reached_setpoint=rise.complete, **common)
