"""The EMS dispatching the site: with a threshold written to it, a load step does not raise the
site's import through the PCC (over a demand interval) beyond the contracted peak (peak
shaving); told to dispatch the whole site at once, it brings its units in so that the site's
power at the PCC ramps no faster than contracted (coordinated dispatch); told to charge or to
discharge the whole site for longer than the packs allow, it keeps every pack inside its
operating band (the band's ends in the contract's clauses)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from harness.config.units import to_unit
from harness.measure.operation import max_ramp
from harness.measure.trace import Trace
from harness.report.allure_wiring import Stepped

QUANTITY = "ems.peak_shaving.peak_import"
RAMP = "ems.dispatch.ramp_rate.max"
SOC_MAX, SOC_MIN = "ems.soc.max", "ems.soc.min"
IMPORT = "pcc.power"


@pytest.fixture
def ems(site: Any, restore_after: None) -> Iterator[Any]:
    """The site's EMS; afterwards back to normal operation (its setpoints at 0 W) before the
    site itself is restored (load bank off, grid nominal, units in service)."""
    if site.ems is None:
        pytest.skip("the site file names no EMS")
    try:
        yield Stepped(site.ems)
    finally:
        site.ems.normal()


@pytest.mark.campaign("factory", "ci")
def test_peak_shaving(site, load_bank, analyzer, ems, verdicts, evidence_dir):
    """Every unit at 0 W; the EMS shaves to the method's threshold; the load bank steps the
    load up; the highest demand-interval mean of the PCC import is recorded."""
    method = verdicts.method(QUANTITY)
    site.restore()  # the site in normal operation: grid nominal, PCC closed, units in service
    site.dispatch_all(fraction=0.0)
    site.clock.sleep(site.seconds(method["settle"]))
    ems.peak_shaving(_watts(method["threshold"]))
    with analyzer.capture(IMPORT) as trace:
        load_bank.set_power(_watts(method["load_step"]))
        site.clock.sleep(site.seconds(method["observe"]))
    evidence = trace.to_csv(evidence_dir / "peak-shaving-capture.csv")
    peak, at = _peak_demand(
        trace, site.seconds(method["demand_window"]), site.seconds(method["slide"])
    )
    verdicts.record(
        QUANTITY,
        peak / 1000.0,
        uncertainty=analyzer.accuracy(IMPORT) * peak / 1000.0,
        evidence=[evidence],
        window_start=at,
        ems_state=ems.state(),
    )


@pytest.mark.campaign("factory", "ci")
def test_ems_dispatch_ramp(site, analyzer, ems, verdicts, evidence_dir):
    """Every unit able to deliver, then at 0 W; the EMS is told to take the whole site to the
    method's level at once, then back to 0 W; the fastest ramp of the PCC power is recorded."""
    method = verdicts.method(RAMP)
    site.restore()
    _to_soc(site.ensure_soc, list(site.nodes), method["min_soc"], method)
    level = float(method["dispatch"])
    site.dispatch_all(level)
    ready = site.wait_for_output(level, timeout=site.seconds(method["ready_timeout"]))
    site.dispatch_all(0.0)
    if not ready:
        verdicts.record_error(RAMP, "not every unit delivered the dispatch level when told")
        return
    site.clock.sleep(site.seconds(method["settle"]))
    rated = sum(node.inverter.rated_power() for node in site.nodes.values())
    hold, window = site.seconds(method["hold"]), site.seconds(method["window"])
    with analyzer.capture(IMPORT) as trace:
        ems.dispatch(level * rated)
        site.clock.sleep(hold)
        ems.dispatch(0.0)
        site.clock.sleep(hold)
    ems.normal()
    evidence = trace.to_csv(evidence_dir / "ems-dispatch-capture.csv")
    ramp = max_ramp(trace, IMPORT, window)
    percent = 100.0 * ramp.rate / rated
    verdicts.record(
        RAMP,
        percent,
        uncertainty=percent * (analyzer.accuracy(IMPORT) + 2 * trace.resolution / window),
        evidence=[evidence],
        ramp_w_per_s=ramp.rate,
        site_rated_power_w=rated,
        site_setpoint_w=level * rated,
        window_s=window,
        at=ramp.at,  # on the analyzer's timebase
    )


@pytest.mark.campaign("factory", "ci")
def test_ems_soc_band(site, ems, verdicts, evidence_dir):
    """Every home brought near the top of the band, the EMS told to charge the whole site
    (DISPATCH) for longer than the packs can take; then near the bottom, the EMS left to cover a
    load the load bank draws (SELF_CONSUMPTION; DISPATCH on a site without a load bank) for as
    long. The highest and lowest SoC each BMS reports are recorded."""
    method = verdicts.method(SOC_MAX)
    site.restore()
    names = list(site.nodes)
    rated = sum(node.inverter.rated_power() for node in site.nodes.values())
    level = float(method["dispatch"])
    readings: list[tuple[float, str, float]] = []
    load_bank = Stepped(site.load_bank) if site.load_bank is not None else None

    def read() -> bool:
        for name in names:
            readings.append((site.clock.now(), name, float(site.nodes[name].bms.soc())))
        return False  # never done: read for the whole push

    def push(start: Any, command: Callable[[], None]) -> None:
        _to_soc(site.bring_to_soc, names, start, method)
        command()
        site.clock.wait_until(
            read, timeout=site.seconds(method["push"]), poll=site.seconds(method["poll"])
        )
        ems.normal()

    def cover_a_load() -> None:
        if load_bank is None:
            ems.dispatch(level * rated)
            return
        load_bank.set_power(level * rated)
        ems.self_consumption()

    push(method["high_start"], lambda: ems.dispatch(-level * rated))
    push(method["low_start"], cover_a_load)
    if load_bank is not None:
        load_bank.set_power(0.0)
    _to_soc(site.bring_to_soc, names, method["leave_soc"], method)  # not left empty
    evidence = evidence_dir / "ems-soc-band.csv"
    with evidence.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["site time [s]", "home", "SoC reported [%]"])
        out.writerows(readings)
    for name in names:
        socs = [soc for _, home, soc in readings if home == name]
        verdicts.record(SOC_MAX, max(socs), node=name, evidence=[evidence])
        verdicts.record(SOC_MIN, min(socs), node=name, evidence=[evidence])


def _to_soc(move: Callable[..., Any], names: list[str], soc: Any, method: dict[str, Any]) -> None:
    """``move`` (Bench.bring_to_soc or .ensure_soc) to ``soc`` with the method's timeout and
    reading interval."""
    seconds = to_unit(method["soc_timeout"], "s")
    move(names, to_unit(soc, "%"), timeout=seconds, poll=to_unit(method["soc_poll"], "s"))


def _watts(value: Any) -> float:
    return to_unit(value, "W")


def _peak_demand(trace: Trace, window: float, slide: float) -> tuple[float, float]:
    """The highest time-weighted mean of the import over ``window`` seconds, windows starting
    every ``slide`` seconds from the capture's start; and where that window starts."""
    starts = np.arange(trace.start, trace.end - window + 1e-9, slide)
    if starts.size == 0:
        starts = np.array([trace.start])
        window = trace.end - trace.start
    means = [trace.mean(IMPORT, float(s), float(s) + window) for s in starts]
    best = int(np.argmax(means))
    return float(means[best]), float(starts[best])
