"""Performance: the settlement meter counts the PCC's energy right; every unit delivers its
usable energy and round-trip efficiency over a full cycle at rated power, and keeps its cells
cool enough at the worst-case ambient (Schedule C, performance; the method is the catalogue's,
harness/config/quantities.d/performance.yaml).

Energies come from the power analyzer's integrators, read at the boundaries of each phase; the
SoC that ends a phase and the cell temperatures from each BMS on CAN. A full cycle at rated
power is hours of site time: the virtual plant takes coarse steps while nothing changes, and the
harness only polls, so it costs seconds.

The thermal scenario comes before the cycle: it soaks the packs to the worst-case ambient from
wherever they are, and a pack soaked from below (as after the other scenarios, which leave the
packs near the room's ambient) starts its duty at the same temperature every time; the cycle
leaves the packs well above the room's ambient, and the chamber gives the room back afterwards,
not the packs' temperature (they cool at their own pace, over hours).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.config.units import to_unit
from harness.measure.cycle import Phase, energies, run_phase

METER = "meter.energy_error"
USABLE = "storage.usable_energy"
EFFICIENCY = "storage.round_trip_efficiency"
THERMAL = "thermal.max_cell_temperature"


@pytest.mark.campaign("factory", "ci")
def test_settlement_meter_energy(site, analyzer, verdicts, evidence_dir, restore_after):
    """Schedule C, metering: over an interval of steady export, the settlement meter's energy
    registers agree with the power analyzer's integrated PCC energy."""
    method = verdicts.method(METER)
    if site.meter is None:
        pytest.skip("the site has no settlement meter (site file: meter)")
    site.dispatch_all(float(method["dispatch"]))
    site.clock.sleep(site.seconds(method["settle"]))
    meter_before, pcc_before = site.meter.energy(), _pcc_energy(analyzer)
    site.clock.sleep(site.seconds(method["interval"]))
    meter_after, pcc_after = site.meter.energy(), _pcc_energy(analyzer)
    site.dispatch_all(0.0)
    metered = _net(meter_after) - _net(meter_before)
    measured = _net(pcc_after) - _net(pcc_before)
    if abs(measured) < 1.0:
        verdicts.record_error(METER, f"only {measured:.3f} Wh crossed the PCC in the interval")
        return
    accuracy = analyzer.accuracy("pcc.energy_import")
    evidence = _write(
        evidence_dir / "meter-energy.json",
        {"meter_wh": [meter_before, meter_after], "analyzer_wh": [pcc_before, pcc_after]},
    )
    verdicts.record(
        METER,
        abs(metered - measured) / abs(measured) * 100.0,
        uncertainty=accuracy * 100.0 + 100.0 / abs(measured),  # + one count of 1 Wh
        evidence=[evidence],
        metered_wh=metered,
        analyzer_wh=measured,
        signed_error_pct=(metered - measured) / abs(measured) * 100.0,
    )


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
@pytest.mark.long_duration
def test_thermal_at_worst_case_ambient(site, analyzer, verdicts, evidence_dir, restore_after):
    """Schedule C, thermal: charged to full, then in the climate chamber at the contract's
    worst-case ambient, soaked and discharged at rated power to the SoC band's minimum; the
    hottest temperature each BMS reports stays within the contracted limit."""
    method = verdicts.method(THERMAL)
    definitions = site.contract.definitions
    ambient = definitions.worst_case_ambient if definitions else None
    if site.chamber is None:
        pytest.skip("the site has no climate chamber (instruments.chamber)")
    cycle = _Cycle(site, analyzer, method)
    missing = cycle.missing
    if ambient is None:
        missing = "the contract defines no worst-case ambient (definitions.worst_case_ambient)"
    if missing:
        verdicts.record_error(THERMAL, missing)
        return
    names = list(site.nodes)
    hottest = {name: float("-inf") for name in names}

    def note() -> None:
        for name in names:
            hottest[name] = max(hottest[name], site.nodes[name].bms.value("temperature"))

    log: dict[str, Any] = {"ambient_c": ambient, "phases": {}}
    # Charged first, in the room's ambient: the soak then approaches the worst case from below
    # (unless a pack was left hotter than it), so the duty starts from the same temperature.
    log["phases"]["to_full"] = cycle.to_full(names)
    with _chamber_at(site.chamber, ambient):
        band = to_unit(method["soak_band"], "delta_degC")
        soaked = site.clock.wait_until(
            lambda: _soaked(site, names, ambient, band, note),
            timeout=site.seconds(method["soak_max"]),
            poll=cycle.poll,
        )
        log["soaked_at_s"] = site.clock.now() if soaked else None
        if soaked:
            log["phases"]["discharge"] = cycle.to_empty(names, note)
            note()
    # Not left empty: the scenarios after this one expect batteries that can deliver.
    site.bring_to_soc(names, to_unit(method["leave_soc"], "%"), cycle.timeout, poll=cycle.poll)
    log["hottest_c"] = hottest
    evidence = [_write(evidence_dir / "thermal.json", log)]
    for name in names:
        if not soaked:
            verdicts.record_error(
                THERMAL,
                f"not soaked to {ambient:g} +- {band:g} degC within {method['soak_max']}",
                node=name,
            )
            continue
        if name in log["phases"]["discharge"]["timed_out"]:
            verdicts.record_error(THERMAL, "the duty did not end in time", node=name)
            continue
        verdicts.record(
            THERMAL,
            hottest[name],
            node=name,
            uncertainty=site.nodes[name].bms.resolution("temperature"),
            evidence=evidence,
            ambient_c=ambient,
        )


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
@pytest.mark.long_duration
def test_storage_cycle(site, analyzer, verdicts, evidence_dir, restore_after):
    """Schedule C, storage: from full, a discharge at rated power to the SoC band's minimum
    gives each unit's usable energy; after a rest, the charge back to full closes the cycle,
    and energy out over energy in is its round-trip efficiency at the system boundary."""
    method = verdicts.method(USABLE)
    cycle = _Cycle(site, analyzer, method)
    if cycle.missing:
        for quantity in (USABLE, EFFICIENCY):
            if verdicts.judged(quantity):
                verdicts.record_error(quantity, cycle.missing)
        return
    names = list(site.nodes)
    log: dict[str, Any] = {"rated_power_w": cycle.power, "phases": {}}
    log["phases"]["to_full"] = cycle.to_full(names)
    cycle.rest()
    start = energies(analyzer, names)
    log["phases"]["discharge"] = cycle.to_empty(names)
    cycle.rest()
    middle = energies(analyzer, names)
    log["phases"]["charge"] = cycle.to_full(names)
    cycle.rest()
    end = energies(analyzer, names)
    log["energies_wh"] = {"start": start, "after_discharge": middle, "end": end}
    evidence = [_write(evidence_dir / "storage-cycle.json", log)]
    accuracy = analyzer.accuracy(f"{names[0]}.inverter.energy_export")
    for name in names:
        failed = [p for p, phase in log["phases"].items() if name in phase["timed_out"]]
        if failed:
            reason = f"did not get there at rated power in time: {', '.join(failed)}"
            for quantity in (USABLE, EFFICIENCY):
                if verdicts.judged(quantity):
                    verdicts.record_error(quantity, reason, node=name)
            continue
        delivered = (middle[name][1] - start[name][1]) / 1000.0
        out = end[name][1] - start[name][1]
        taken = end[name][0] - start[name][0]
        if verdicts.judged(USABLE):
            verdicts.record(
                USABLE,
                delivered,
                node=name,
                uncertainty=delivered * accuracy,
                evidence=evidence,
                discharge_ended=log["phases"]["discharge"]["reason"][name],
            )
        if verdicts.judged(EFFICIENCY):
            if taken <= 0:
                verdicts.record_error(EFFICIENCY, "no energy taken in to charge", node=name)
                continue
            rte = out / taken * 100.0
            verdicts.record(
                EFFICIENCY,
                rte,
                node=name,
                uncertainty=rte * 2 * accuracy,
                evidence=evidence,
                energy_out_wh=out,
                energy_in_wh=taken,
            )


# -- procedure ----------------------------------------------------------------------------------


class _Cycle:
    """Phases at the contract's rated power between the ends of its SoC band."""

    def __init__(self, site: Any, analyzer: Any, method: dict[str, Any]) -> None:
        self.site = site
        self.analyzer = analyzer
        self.method = method
        self.poll = site.seconds(method["poll"])
        definitions = site.contract.definitions
        rated = definitions.rated_storage if definitions else None
        band = definitions.soc_band if definitions else None
        self.missing = ""
        if rated is None or band is None:
            self.missing = (
                "the contract defines no rated storage or SoC band "
                "(definitions.rated_storage, definitions.soc_band)"
            )
            return
        self.power = rated.power
        self.band = band
        self.timeout = float(method["timeout_factor"]) * rated.energy * 1000.0 / rated.power * 3600

    def _phase(self, names: list[str], power: float, soc: float, on_poll: Any) -> dict[str, Any]:
        phase: Phase = run_phase(
            self.site,
            self.analyzer,
            names,
            power,
            soc,
            stopped=float(self.method["stopped"]),
            poll=self.poll,
            timeout=self.timeout,
            on_poll=on_poll,
        )
        return {
            "reason": phase.reason,
            "at_s": phase.at,
            "soc_pct": phase.soc,
            "timed_out": phase.timed_out(),
        }

    def to_full(self, names: list[str], on_poll: Any = None) -> dict[str, Any]:
        return self._phase(names, -self.power, self.band.max, on_poll)

    def to_empty(self, names: list[str], on_poll: Any = None) -> dict[str, Any]:
        return self._phase(names, self.power, self.band.min, on_poll)

    def rest(self) -> None:
        self.site.clock.sleep(self.site.seconds(self.method["rest"]))


@contextmanager
def _chamber_at(chamber: Any, celsius: float) -> Iterator[None]:
    """The chamber at ``celsius`` while the block runs, then back at its set point before."""
    before = chamber.temperature_setpoint()
    chamber.set_temperature(celsius)
    try:
        yield
    finally:
        chamber.set_temperature(before)


def _soaked(site: Any, names: list[str], ambient: float, band: float, note: Any) -> bool:
    """Every BMS reports within ``band`` of ``ambient`` (``note`` takes its reading first)."""
    note()
    return all(abs(site.nodes[name].bms.value("temperature") - ambient) <= band for name in names)


def _pcc_energy(analyzer: Any) -> tuple[float, float]:
    return analyzer.measure("pcc.energy_import"), analyzer.measure("pcc.energy_export")


def _net(energy: tuple[float, float]) -> float:
    """Imported minus exported, Wh."""
    return energy[0] - energy[1]


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path
