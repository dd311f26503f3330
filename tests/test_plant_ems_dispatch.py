"""The virtual EMS's DISPATCH mode and the EMS defects of its dispatch (virtual_devices/plant/
ems.py, data/ems_modes.yaml, data/defects/ems_dispatch.yaml): told a site total, the EMS takes
its units there at the data's ramp, shared by rating; ``ramp_uncoordinated`` gives every unit
its share at once; ``soc_band_ignored`` lets the energy modes charge a pack past the band's top.
Served over the EMS's map to the harness's driver.

Every number a check compares with comes from the data file (or the plant), not from here.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from harness.config.site import load_site
from tests.conftest import DefectSite
from tests.harness_runner import ROOT
from tests.test_plant_ems_modes import MODES, SETTINGS, served, setpoints, site, sun
from virtual_devices.defects import parse_defects
from virtual_devices.plant.ems import DISPATCH, NORMAL
from virtual_devices.plant.ems_params import EmsParams
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

__all__ = ["served"]  # the fixture, imported for its use below

CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"


def with_modes(**changes: object) -> EmsParams:
    return dataclasses.replace(SETTINGS, modes=dataclasses.replace(MODES, **changes))


def total_rated(p: Plant) -> float:
    return sum(n.inverter.params.rated_power_w for n in p.nodes.values())


def dispatch_trace(p: Plant, target_w: float, seconds: float) -> list[tuple[float, float]]:
    """DISPATCH to ``target_w`` from 0 W; (time since the switch, sum of setpoints) per cycle."""
    ems = p.ems
    assert ems is not None
    sun(p, 0.0)
    p.advance(p.t + 1.0)
    t0 = p.t
    ems.set_site_power(target_w)
    ems.dispatch(t0)
    out = []
    while p.t < t0 + seconds - 1e-9:
        p.advance(p.t + MODES.dispatch_cycle_s)
        out.append((p.t - t0, sum(setpoints(p))))
    return out


def test_dispatch_ramps_the_site_total_at_the_data_ramp_shared_by_rating() -> None:
    p = site()
    rated = total_rated(p)
    trace = dispatch_trace(p, 0.8 * rated, 8.0)
    per_cycle = MODES.dispatch_ramp_pct_s / 100.0 * rated * MODES.dispatch_cycle_s
    steps = [b[1] - a[1] for a, b in itertools.pairwise(trace)]
    assert max(steps) == pytest.approx(per_cycle, rel=1e-6)  # never more than a ramp step
    reach_s = 0.8 * 100.0 / MODES.dispatch_ramp_pct_s  # 80 % of the rating at the ramp
    before = [w for t, w in trace if t < reach_s - MODES.dispatch_cycle_s - 1e-9]
    assert before and max(before) < 0.8 * rated
    assert trace[-1][1] == pytest.approx(0.8 * rated)
    a, b = setpoints(p)
    assert a == pytest.approx(b)  # equal ratings, equal shares
    assert p.ems is not None and p.ems.state == DISPATCH
    p.ems.set_site_power(0.0)  # and back down at the same ramp
    p.advance(p.t + MODES.dispatch_cycle_s)
    assert sum(setpoints(p)) == pytest.approx(0.8 * rated - per_cycle)
    p.ems.normal(p.t)
    assert p.ems.state == NORMAL and setpoints(p) == [0.0, 0.0]


def test_ramp_uncoordinated_gives_every_unit_its_share_at_once() -> None:
    clean, defective = site(), site(with_modes(dispatch_ramp_pct_s=float("inf")))
    rated = total_rated(clean)
    first_clean = dispatch_trace(clean, rated, 1.0)[0][1]
    first_defective = dispatch_trace(defective, rated, 1.0)[0][1]
    assert first_clean < 0.05 * rated
    assert first_defective == pytest.approx(rated)  # every unit at its rating in one cycle


def test_soc_band_ignored_charges_a_pack_past_the_bands_top() -> None:
    results = {}
    for name, ems in (("clean", SETTINGS), ("ignored", with_modes(soc_max_pct=100.0))):
        p = site(ems, soc_a=MODES.soc_max_pct + 1.0)
        assert p.ems is not None
        sun(p, 1000.0)
        p.advance(p.t + 1.0)
        p.ems.self_consumption(p.t)
        p.advance(p.t + 30.0)
        results[name] = (setpoints(p)[0], p.nodes["a"].battery.soc_pct)
    assert results["clean"][0] == 0.0  # above the band's top: not charged
    assert results["ignored"][0] < 0.0  # charged on
    assert results["ignored"][1] > results["clean"][1]


def test_ems_dispatch_defects_reach_the_plants_ems(defect_site: DefectSite) -> None:
    path = defect_site(
        "  - {device: site.ems, kind: ramp_uncoordinated, value: 1}\n"
        "  - {device: site.ems, kind: soc_band_ignored, value: 1}",
        CLUSTER,
    )
    site_ = load_site(path)
    ems = plant_params(site_, parse_defects(site_)).ems
    assert ems is not None
    assert ems.modes.dispatch_ramp_pct_s == float("inf")
    assert (ems.modes.soc_min_pct, ems.modes.soc_max_pct) == (0.0, 100.0)
    clean = plant_params(load_site(CLUSTER), []).ems
    assert clean is not None and clean.modes == MODES


def test_dispatch_over_the_map(served) -> None:
    p, ems = served
    rated = total_rated(p)
    ems.dispatch(0.5 * rated)
    assert ems.state() == DISPATCH
    assert p.ems is not None and p.ems.site_power_w == pytest.approx(0.5 * rated)
    p.advance(p.t + 10.0)
    assert sum(setpoints(p)) == pytest.approx(0.5 * rated)
    ems.normal()
    assert ems.state() == NORMAL and setpoints(p) == [0.0, 0.0]
