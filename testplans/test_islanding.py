"""Islanding: the cluster must not keep an unintended island alive."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.config.units import to_unit

QUANTITY = "islanding.clearing_time"


class NotAtLevel(Exception):
    """The units did not get back to the test's output level: no island can be formed."""


@dataclass
class Island:
    """One island formed: its test point and what each unit did (clearing s, still on)."""

    level: float  # output, fraction of rated
    reactive: float  # capacitive reactive load, % of the balanced value
    run: int  # 0: the sweep; 1..: repeats of the longest points
    capture: Path
    resolution: float
    load: tuple[float, float, float]  # what the bank really set: W, L % and C % of balanced
    cleared: dict[str, tuple[float, bool]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"P {self.level:.0%}, C {self.reactive:g} %, run {self.run}"

    @property
    def longest(self) -> float:
        return max(seconds for seconds, _ in self.cleared.values())


@dataclass
class Rig:
    """What every island of the test uses: the site, its instruments, the method."""

    site: Any
    load_bank: Any
    pcc: Any
    analyzer: Any
    method: dict[str, Any]
    window: float
    folder: Path


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_unintentional_islanding(
    site, load_bank, pcc, analyzer, verdicts, evidence_dir, restore_after
):
    """IEEE 1547.1-2020 5.10: at each output level of the method, islands are formed at the PCC
    with an RLC load balanced in active power (quality factor from the method) and its reactive
    load swept over the method's points around the balanced value; the points with the longest
    clearing are repeated. Each unit is judged on its worst clearing time, measured on the
    analyzer's capture of each island; every island's value is in the evidence."""
    method = verdicts.method(QUANTITY)
    rig = Rig(site, load_bank, pcc, analyzer, method, verdicts.window(QUANTITY), evidence_dir)
    islands: list[Island] = []
    try:
        for level in [to_unit(v, "%") / 100.0 for v in method["power_levels"]]:
            sweep = [_island(rig, level, to_unit(p, "%"), 0) for p in method["reactive_load"]]
            islands += sweep
            longest = sorted(sweep, key=lambda i: i.longest, reverse=True)
            for run in range(1, int(method["repeats"]) + 1):
                for point in longest[: int(method["repeat_longest"])]:
                    islands.append(_island(rig, level, point.reactive, run))
    except NotAtLevel as exc:
        for name in site.nodes:
            verdicts.record_error(QUANTITY, str(exc), node=name)
        return
    finally:
        load_bank.set_reactive(100.0, 100.0)  # leave the bank balanced for whoever is next
    table = _write_table(evidence_dir / "island-sweep.csv", islands, list(site.nodes))
    for name in site.nodes:
        worst = max(islands, key=lambda i: i.cleared[name][0])
        cleared, still_on = worst.cleared[name]
        verdicts.record(
            QUANTITY,
            cleared,
            node=name,
            uncertainty=worst.resolution,
            evidence=[table, worst.capture],
            still_energized_at_end=still_on,
            worst_island=worst.label,
            islands={i.label: i.cleared[name][0] for i in islands},
        )


def _island(rig: Rig, level: float, reactive: float, run: int) -> Island:
    """Form one island at ``level`` of rated output with C at ``reactive`` % of the balanced
    reactive load, measure each unit's clearing on the capture, and restore the site (grid
    back, units in service) before the next."""
    site, method = rig.site, rig.method
    site.dispatch_all(fraction=level)
    timeout = site.seconds(method["output_timeout"])
    if not site.wait_for_output(level, timeout=timeout):
        raise NotAtLevel(f"the units were not at {level:.0%} of rated within {timeout:g} s")
    site.clock.sleep(site.seconds(method["settle"]))
    rig.load_bank.balance(
        power=rig.analyzer.measure("inverters.power"),
        quality_factor=method["quality_factor"],
        capacitive_pct=reactive,
    )
    # A stepped bank sets the closest its steps reach: the evidence shows what it really set.
    load = (rig.load_bank.power(), *rig.load_bank.reactive())
    currents = [f"{name}.inverter.current" for name in site.nodes]
    try:
        with rig.analyzer.capture("pcc.voltage", "pcc.frequency", "pcc.breaker", *currents) as t:
            rig.pcc.open()
            site.clock.sleep(rig.window)
    finally:
        site.restore()
    csv_name = f"island-P{level * 100:g}-C{reactive:g}-run{run}.csv"
    island = Island(level, reactive, run, t.to_csv(rig.folder / csv_name), t.resolution, load)
    opened = t.event("pcc_open")
    for name, node in site.nodes.items():
        # Each unit is judged on its own output: on a cluster, a neighbour that keeps the island
        # alive holds the bus voltage up, and that is the neighbour's failure, not this unit's.
        cease = site.per_unit_current(method["cease_threshold"], node.inverter.rated_power())
        island.cleared[name] = t.clearing_time(
            f"{name}.inverter.current", below=cease, since=opened
        )
    return island


def _write_table(path: Path, islands: list[Island], names: list[str]) -> Path:
    """One row per island: its test point, then each unit's clearing time (s) and whether it
    was still energizing when the capture ended."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        header = ["power level [%]", "capacitive reactive load [%]", "run", "capture"]
        header += ["load set [W]", "L set [% of balanced]", "C set [% of balanced]"]
        out.writerow(header + [c for n in names for c in (f"{n} [s]", f"{n} still on")])
        for i in islands:
            row: list[object] = [f"{i.level * 100:g}", f"{i.reactive:g}", i.run, i.capture.name]
            row += [f"{value:.6g}" for value in i.load]
            out.writerow(row + [v for n in names for v in (repr(i.cleared[n][0]), i.cleared[n][1])])
    return path
