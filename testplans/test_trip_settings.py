"""Trip settings and ride-through: the units cease to energize when the profile says, not before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from harness.config.units import to_unit
from harness.measure.trace import MeasurementError, Trace

FUNCTIONS = ("ov2", "ov1", "uv1", "uv2", "of2", "of1", "uf1", "uf2")
"""The IEEE 1547-2018 trip functions: over/under voltage (pu) and over/under frequency (Hz)."""


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
@pytest.mark.parametrize("function", FUNCTIONS)
def test_trip_clearing_time(function, site, analyzer, verdicts, evidence_dir, restore_after):
    """IEEE 1547.1-2020 trip test at the contract's setting: with the units exporting, the grid is
    held just inside the function's threshold (setting minus 200 % of the accuracy), then steps to
    just beyond it (plus 200 %). Each unit ceases to energize within the clearing time, timed on
    the analyzer's capture from the grid crossing the setting to the unit's current collapsing."""
    quantity = f"trip.{function}.clearing_time"
    method = verdicts.method(quantity)
    step = TripStep.of(function, site, method)
    currents = {name: f"{name}.inverter.current" for name in site.nodes}
    _charged_enough(site, method)
    site.dispatch_all(fraction=method["dispatch"])
    site.wait_for_output(method["dispatch"], timeout=site.settings.enter_service.ramp)
    site.clock.sleep(site.seconds(method["settle"]))
    step.to_start(site)  # just inside the setting
    site.clock.sleep(site.seconds(method["pre_step_hold"]))
    with analyzer.capture(step.channel, *currents.values()) as trace:
        step.to_end(site)  # just beyond it
        site.clock.sleep(verdicts.window(quantity, method["window_factor"]))
    evidence = trace.to_csv(evidence_dir / f"{function}-capture.csv")
    stepped = step.crossed(trace, site)
    for name, node in site.nodes.items():
        cease = site.per_unit_current(method["cease_threshold"], node.inverter.rated_power())
        if trace.value_at(currents[name], trace.start) < cease:
            verdicts.record_error(
                quantity,
                "not energizing before the step (ceased at the starting level?)",
                node=name,
            )
            continue
        cleared, still_on = trace.clearing_time(currents[name], below=cease, since=stepped)
        verdicts.record(
            quantity,
            cleared,
            node=name,
            uncertainty=trace.resolution,
            evidence=[evidence],
            still_energized_at_end=still_on,
            since=stepped,
        )


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_voltage_sag_ride_through(site, analyzer, verdicts, evidence_dir, restore_after):
    """IEEE 1547-2018 6.4.2: the units ride through voltage sags inside the mandatory-operation
    region (the method's sag cases, each held for its duration, then back to nominal): none
    ceases to energize during a sag or just after it. A unit that trips is brought back into
    service before the next case."""
    quantity = "ride_through.trips"
    method = verdicts.method(quantity)
    currents = {name: f"{name}.inverter.current" for name in site.nodes}
    ramp = site.settings.enter_service.ramp
    _charged_enough(site, method)
    site.dispatch_all(fraction=method["dispatch"])
    site.wait_for_output(method["dispatch"], timeout=ramp)
    site.clock.sleep(site.seconds(method["settle"]))
    with analyzer.capture("grid.voltage", *currents.values()) as trace:
        for sag in method["sags"]:
            site.set_grid(voltage_pu=site.per_unit(sag["voltage"]))
            site.clock.sleep(site.seconds(sag["duration"]))
            site.set_grid(voltage_pu=1.0)
            site.clock.sleep(site.seconds(method["observe_after"]))
            if any(node.inverter.state() != "ON" for node in site.nodes.values()):
                site.restore()
                site.dispatch_all(fraction=method["dispatch"])
                site.wait_for_output(method["dispatch"], timeout=ramp)
    evidence = trace.to_csv(evidence_dir / "sags-capture.csv")
    cases = _sag_starts(trace, [site.per_unit(sag["voltage"]) for sag in method["sags"]], site)
    for name, node in site.nodes.items():
        cease = site.per_unit_current(method["cease_threshold"], node.inverter.rated_power())
        trips = sum(_ceased(trace, currents[name], cease, begun, until) for begun, until in cases)
        verdicts.record(quantity, trips, node=name, evidence=[evidence])


# -- method helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripStep:
    """A trip test's grid step: the quantity that moves, the setting and the levels either side.

    Levels are in pu of nominal voltage for voltage functions and in Hz for frequency functions,
    as the profile writes the settings.
    """

    function: str
    setting: float
    start: float
    end: float

    @classmethod
    def of(cls, function: str, site: Any, method: dict[str, Any]) -> TripStep:
        """From setting - 200 % of the accuracy to setting + 200 % (the sign away from nominal)."""
        setting = site.settings.trip_threshold(function)
        accuracy = method["accuracy"]
        if cls.on_frequency(function):
            step = site.hertz(accuracy["frequency"])
        else:
            step = site.per_unit(accuracy["voltage"])
        offset = method["step_accuracies"] * step * (1.0 if function[0] == "o" else -1.0)
        return cls(function, setting, setting - offset, setting + offset)

    @staticmethod
    def on_frequency(function: str) -> bool:
        return function[1] == "f"

    @property
    def channel(self) -> str:
        """The analyzer channel showing the grid quantity the function watches."""
        return "grid.frequency" if self.on_frequency(self.function) else "grid.voltage"

    def to_start(self, site: Any) -> None:
        """Program the grid simulator to the starting level."""
        self._program(site, self.start)

    def to_end(self, site: Any) -> None:
        """Program the grid simulator to the level beyond the setting."""
        self._program(site, self.end)

    def _program(self, site: Any, level: float) -> None:
        if self.on_frequency(self.function):
            site.set_grid(frequency_hz=level)
        else:
            site.set_grid(voltage_pu=level)

    def crossed(self, trace: Trace, site: Any) -> float:
        """Instant in the capture at which the grid went beyond the setting."""
        crossing = self.setting
        if not self.on_frequency(self.function):
            crossing *= site.nominal_voltage
        beyond = {"above": crossing} if self.function[0] == "o" else {"below": crossing}
        return trace.start + trace.time_until(self.channel, stays=False, **beyond)


def _sag_starts(trace: Trace, levels: list[float], site: Any) -> list[tuple[float, float]]:
    """Each sag case's span in the capture: from the grid voltage falling halfway to the case's
    level (in pu) to the start of the next case (or the end of the capture)."""
    nominal = site.nominal_voltage
    starts: list[float] = []
    after = trace.start
    for level in levels:
        edges = trace.edges("grid.voltage", False, nominal * (1.0 + level) / 2, after)
        if edges.size == 0:
            raise MeasurementError(f"the sag to {level:g} pu is not in the capture")
        after = float(edges[0])
        starts.append(after)
    return list(zip(starts, [*starts[1:], trace.end], strict=True))


def _ceased(trace: Trace, channel: str, threshold: float, begun: float, until: float) -> bool:
    """Whether the current fell below ``threshold`` at some time in [begun, until)."""
    try:
        fell = begun + trace.time_until(channel, below=threshold, stays=False, since=begun)
    except MeasurementError:
        return False
    return fell < until


def _charged_enough(site: Any, method: dict[str, Any]) -> None:
    """Packs below the method's minimum SoC are charged to it, so that the units can export
    through the whole observation window whatever an earlier scenario left in them."""
    site.ensure_soc(
        list(site.nodes),
        to_unit(method["min_soc"], "%"),
        timeout=site.seconds(method["soc_timeout"]),
        poll=site.seconds(method["soc_poll"]),
    )
