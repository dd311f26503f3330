"""Intentional islanding: when the grid goes, the grid-forming units take over the critical loads
within the contracted transfer time, and carry them from the contract's starting SoC for the
contracted duration (IEEE 1547-2018 8.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.config.units import to_unit
from harness.devices.islanding import enable_islanding, island_capable, set_island_setting
from harness.measure.trace import MeasurementError, Trace

CRITICAL = ("critical_load.voltage", "critical_load.frequency")


@pytest.fixture
def formers(site: Any, restore_after: None) -> Iterator[dict[str, Any]]:
    """The units SunSpec 702 rates INT_ISL_CAPABLE, with intentional islanding switched on.
    Afterwards the site is restored first (grid back: the units resynchronize), then each
    unit's setting is put back as it was found."""
    units = {name: n.inverter for name, n in site.nodes.items() if island_capable(n.inverter)}
    if not units:
        pytest.skip("no unit of this site can form an intentional island (SunSpec 702)")
    found: dict[str, set[str]] = {}
    try:
        for name, inverter in units.items():
            found[name] = enable_islanding(inverter)
        yield units
    finally:
        site.restore()
        for name, setting in found.items():
            set_island_setting(units[name], setting)


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_planned_islanding(site, pcc, analyzer, verdicts, evidence_dir, formers):
    """Planned island: the PCC breaker is opened on command; the critical loads are back inside
    their voltage and frequency bands within the contracted transfer time."""
    _transfer(site, analyzer, verdicts, evidence_dir, "planned", pcc.open, list(formers))


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_loss_of_grid_takeover(site, grid, analyzer, verdicts, evidence_dir, formers):
    """Loss of grid behind a closed PCC (grid simulator output off): the grid-forming units
    detect it and take over the critical loads within the contracted transfer time."""
    _transfer(
        site,
        analyzer,
        verdicts,
        evidence_dir,
        "loss-of-grid",
        lambda: grid.set_output(False),
        list(formers),
    )


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_critical_load_endurance(site, grid, analyzer, verdicts, evidence_dir, formers):
    """From the contract's starting SoC, the grid-forming units carry the critical loads for the
    contracted duration after a loss of grid (observed until they stop, or the duration plus a
    margin)."""
    quantity = "island.critical_load_duration"
    method = verdicts.method(quantity)
    definition = site.contract.definitions.critical_load if site.contract.definitions else None
    if definition is None:
        verdicts.record_error(quantity, "the contract defines no definitions.critical_load")
        return
    band = _band(site, method)
    site.dispatch_all(fraction=0.0)
    site.clock.sleep(site.seconds(method["settle"]))
    start = site.bring_to_soc(
        list(formers),
        definition.starting_soc,
        timeout=site.seconds(method["soc_timeout"]),
        poll=site.seconds(method["soc_poll"]),
    )
    site.clock.sleep(site.seconds(method["settle"]))  # the units' output back at 0 W
    observe = max(definition.duration, verdicts.limit(quantity)) * (1 + float(method["margin"]))
    with analyzer.capture(*CRITICAL, "grid.voltage") as trace:
        grid.set_output(False)
        site.clock.sleep(site.seconds(method["first_check"]))  # past the transfer
        site.clock.wait_until(
            lambda: not band.holds(analyzer.measure(CRITICAL[0]), analyzer.measure(CRITICAL[1])),
            timeout=observe,
            poll=site.seconds(method["poll"]),
        )
    evidence = trace.to_csv(evidence_dir / "endurance-capture.csv")
    lost = _grid_lost(site, trace)
    carried, still_on = band.carried(trace, since=lost)
    verdicts.record(
        quantity,
        carried,
        uncertainty=trace.resolution,
        evidence=[evidence],
        still_carried_at_end=still_on,
        starting_soc_reported=start,
        soc_at_end={name: site.nodes[name].bms.soc() for name in formers},
        since=lost,
    )


# -- method helpers -------------------------------------------------------------------------------


class _Band:
    """The critical loads' voltage and frequency bands (the method's parameters)."""

    def __init__(self, voltage: tuple[float, float], frequency: tuple[float, float]) -> None:
        self.voltage = voltage
        self.frequency = frequency

    def holds(self, volts: float, hertz: float) -> bool:
        v, f = self.voltage, self.frequency
        return v[0] < volts < v[1] and f[0] < hertz < f[1]

    def back_in(self, trace: Trace, since: float) -> tuple[float, bool]:
        """Seconds from ``since`` until both stay inside to the end of the capture, and whether
        they never did (then the capture's remaining length: a lower bound)."""
        lows, highs = [self.voltage[0], self.frequency[0]], [self.voltage[1], self.frequency[1]]
        try:
            return trace.time_until(CRITICAL, above=lows, below=highs, since=since), False
        except MeasurementError:
            return trace.end - since, True

    def carried(self, trace: Trace, since: float) -> tuple[float, bool]:
        """Seconds from ``since`` until both left their bands for the last time (the end of the
        supply), and whether they were still inside at the end of the capture (then the
        capture's remaining length: a lower bound)."""
        times = trace.times(CRITICAL[0])
        inside = np.ones(times.shape, dtype=bool)
        bands = (self.voltage, self.frequency)
        for channel, (low, high) in zip(CRITICAL, bands, strict=True):
            held = np.searchsorted(trace.times(channel), times, "right") - 1
            values = trace.values(channel)[np.clip(held, 0, None)]
            inside &= (values > low) & (values < high)
        if inside[-1]:
            return trace.end - since, True
        supplied = np.flatnonzero(inside & (times >= since))
        if supplied.size == 0:
            raise MeasurementError("the critical loads were never supplied after the loss")
        return float(times[supplied[-1] + 1]) - since, False


def _band(site: Any, method: dict[str, Any]) -> _Band:
    v_low, v_high = (site.per_unit_voltage(x) for x in method["voltage_band"])
    f_low, f_high = (site.hertz(x) for x in method["frequency_band"])
    return _Band((v_low, v_high), (f_low, f_high))


def _grid_lost(site: Any, trace: Trace) -> float:
    """The grid simulator's output falling through half its nominal voltage."""
    edges = trace.edges("grid.voltage", rising=False, threshold=site.nominal_voltage / 2)
    if edges.size == 0:
        raise MeasurementError("the grid simulator's voltage never fell in the capture")
    return float(edges[0])


def _transfer(
    site: Any,
    analyzer: Any,
    verdicts: Any,
    evidence_dir: Path,
    point: str,
    lose_grid: Any,
    formers: list[str],
) -> None:
    """Lose the grid as ``lose_grid`` does and record the critical loads' transfer time."""
    quantity = "island.transfer_time"
    method = verdicts.method(quantity)
    band = _band(site, method)
    site.ensure_soc(  # above the forming units' own reserve, whatever ran before
        formers,
        to_unit(method["min_soc"], "%"),
        timeout=site.seconds(method["soc_timeout"]),
        poll=site.seconds(method["soc_poll"]),
    )
    site.dispatch_all(fraction=0.0)
    site.clock.sleep(site.seconds(method["settle"]))
    observe = max(verdicts.window(quantity), site.seconds(method["observe"]))
    with analyzer.capture(*CRITICAL, "grid.voltage") as trace:
        lose_grid()
        site.clock.sleep(observe)
    evidence = trace.to_csv(evidence_dir / f"{point}-capture.csv")
    lost = trace.event("pcc_open") if point == "planned" else _grid_lost(site, trace)
    transfer, never = band.back_in(trace, since=lost)
    verdicts.record(
        quantity,
        transfer,
        uncertainty=trace.resolution,
        evidence=[evidence],
        test_point=point,
        critical_loads_unsupplied_at_end=never,
        since=lost,
    )
