"""The virtual EMS's energy modes and island load shedding (virtual_devices/plant/ems.py,
ems_dispatch.py, data/ems_modes.yaml): self-consumption drives the PCC flow into its deadband
under a PV surplus and under load, inside the SoC band; TOU charges in the cheap window and
discharges in the peak window of the data file's tariff day; the aggregate SoC is
energy-weighted; an island short of energy or power sheds deferrable before essential loads,
never critical ones, and restores them with hysteresis; energy balances in every mode; the modes
and readings are served over the EMS's map to the harness's driver.

Every number a check compares with comes from the data file (or the plant), not from here.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.devices.ems import ModbusEms
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import ModbusClient
from tests.test_plant import F_NOM, RATED, V_NOM, battery_params, cat2_trips, enter_service
from tests.test_plant_ems import dead, start
from tests.test_plant_topology_ems import CYCLE_S, assert_balanced, integrate, socs
from virtual_devices.endpoints.ems import EmsEndpoint
from virtual_devices.plant.ems import ISLANDED, PEAK_SHAVING, SELF_CONSUMPTION, SHUTDOWN, TOU
from virtual_devices.plant.ems_dispatch import aggregate_soc, held_wh
from virtual_devices.plant.ems_modes import DEFAULT_MODES, load_ems_modes
from virtual_devices.plant.ems_params import EmsParams, load_ems_settings
from virtual_devices.plant.island_params import GridFormingParams, LoadParams
from virtual_devices.plant.params import InverterParams, NodeParams, PlantParams
from virtual_devices.plant.plant import Plant
from virtual_devices.plant.pv import PvParams

SETTINGS = load_ems_settings()
MODES = SETTINGS.modes


def site(
    ems: EmsParams = SETTINGS, *, soc_a: float = 60.0, soc_b: float = 60.0, pv_w: float = 6000.0
) -> Plant:
    """A grid-forming home with PV, a critical and a deferrable load; a grid-following home
    with an essential load (twice the pack); an EMS; stepping once per EMS control cycle."""
    gf = InverterParams(
        RATED, V_NOM, F_NOM, cat2_trips(), enter_service(), grid_forming=GridFormingParams()
    )
    gfl = InverterParams(RATED, V_NOM, F_NOM, cat2_trips(), enter_service())
    nodes = [
        NodeParams(
            "a",
            gf,
            dataclasses.replace(battery_params(), initial_soc_pct=soc_a),
            [LoadParams("med", "critical", 500.0), LoadParams("ev", "deferrable", 500.0)],
            pv=PvParams(pv_w, RATED),
        ),
        NodeParams(
            "b",
            gfl,
            dataclasses.replace(battery_params(), initial_soc_pct=soc_b, capacity_ah=200.0),
            [LoadParams("hp", "essential", 400.0)],
        ),
    ]
    params = PlantParams(V_NOM, F_NOM, nodes, ems=ems)
    return Plant(
        dataclasses.replace(
            params, fine_step_s=CYCLE_S, coarse_step_s=CYCLE_S, steady_step_s=CYCLE_S
        )
    )


def sun(p: Plant, irradiance_w_m2: float) -> None:
    pv = p.nodes["a"].pv
    assert pv is not None
    pv.array.irradiance_override = irradiance_w_m2


def setpoints(p: Plant) -> list[float]:
    return [n.inverter.setpoint_w for n in p.nodes.values()]


def at_clock(ems: EmsParams, second_of_day: float) -> EmsParams:
    """The EMS with its tariff day starting at ``second_of_day`` (simulated time 0)."""
    tou = dataclasses.replace(ems.modes.tou, day_starts_at_s=second_of_day)
    return dataclasses.replace(ems, modes=dataclasses.replace(ems.modes, tou=tou))


# -- data -----------------------------------------------------------------------------------------


def test_modes_data_is_read_and_bad_fields_are_named(tmp_path: Path) -> None:
    assert MODES.soc_min_pct < MODES.soc_max_pct
    assert "critical" not in MODES.shedding.order
    assert MODES.shedding.restore_pct > MODES.shedding.reserve_pct
    assert {p.action for p in MODES.tou.periods} >= {"charge", "discharge"}
    text = DEFAULT_MODES.read_text(encoding="utf-8")
    for old, new, field in (
        ("order: [deferrable, essential]", "order: [critical]", "shedding.order"),
        ("restore: 30 %", "restore: 15 %", "shedding.restore"),
        ('from: "17:00"', 'from: "25:00"', "tou.periods[1].from"),
        ("deadband: 50 W", "deadband: 50", "self_consumption.deadband"),
        ("action: charge", "action: sell", "tou.periods[0].action"),
    ):
        assert old in text
        bad = tmp_path / "modes.yaml"
        bad.write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(ValueError, match=re.escape(f"modes.yaml: field '{field}")):
            load_ems_modes(bad)


def test_aggregate_soc_is_weighted_by_the_energy_each_pack_holds() -> None:
    p = site(soc_a=30.0, soc_b=90.0)
    packs = p.wiring.batteries
    assert held_wh(packs[1]) == pytest.approx(2 * held_wh(packs[0]))  # twice the Ah
    assert aggregate_soc(packs) == pytest.approx((30.0 + 2 * 90.0) / 3)
    assert p.ems is not None and p.ems.aggregate_soc_pct == aggregate_soc(packs)


# -- self-consumption -----------------------------------------------------------------------------


def test_self_consumption_charges_a_pv_surplus_and_covers_the_load() -> None:
    p = site()
    ems = p.ems
    assert ems is not None
    sun(p, 1000.0)
    p.advance(CYCLE_S)
    assert p.pcc_power_w < -1000.0  # PV exports before the EMS acts
    ems.self_consumption(p.t)
    p.advance(p.t + 30.0)
    assert abs(p.pcc_power_w) <= MODES.deadband_w
    a, b = setpoints(p)
    assert a < 0.0 and a == pytest.approx(b)  # charging, shared by (equal) rating
    sun(p, 0.0)
    p.island_load.set(3000.0, 1.0)
    p.advance(p.t + 30.0)
    assert abs(p.pcc_power_w) <= MODES.deadband_w
    assert min(setpoints(p)) > 0.0
    ems.normal(p.t)
    assert setpoints(p) == [0.0, 0.0]


def test_self_consumption_keeps_each_pack_inside_the_soc_band() -> None:
    # Pack a above the band's top: it is not charged; pack b takes the surplus alone.
    p = site(soc_a=MODES.soc_max_pct + 1.0)
    ems = p.ems
    assert ems is not None
    sun(p, 1000.0)
    p.advance(CYCLE_S)
    ems.self_consumption(p.t)
    p.advance(p.t + 30.0)
    a, b = setpoints(p)
    assert a == 0.0 and b < 0.0
    assert abs(p.pcc_power_w) <= MODES.deadband_w
    # Pack b below the band's bottom: it is not discharged; pack a covers the load alone.
    q = site(soc_b=MODES.soc_min_pct - 1.0, pv_w=1.0)
    assert q.ems is not None
    q.island_load.set(2000.0, 1.0)
    q.advance(CYCLE_S)
    q.ems.self_consumption(q.t)
    q.advance(q.t + 30.0)
    a, b = setpoints(q)
    assert a > 0.0 and b == 0.0


# -- time of use ----------------------------------------------------------------------------------


def test_tou_charges_in_the_cheap_window_and_discharges_in_the_peak_window() -> None:
    cheap = next(x for x in MODES.tou.periods if x.action == "charge")
    peak = next(x for x in MODES.tou.periods if x.action == "discharge")
    # The day starts 30 s before the cheap window ends: charge, then `otherwise` after it.
    p = site(at_clock(SETTINGS, cheap.end_s - 30.0))
    assert p.ems is not None
    p.ems.tou(p.t)
    soc0 = socs(p)
    p.advance(20.0)
    assert p.ems.period == cheap.name
    assert setpoints(p) == [pytest.approx(-cheap.fraction * RATED)] * 2
    assert all(b.soc_pct > soc0[b.name] for b in p.wiring.batteries)
    p.advance(60.0)  # past the window's end: otherwise (self-consumption: the PCC to zero)
    assert p.ems.period is None and MODES.tou.otherwise == "self_consumption"
    assert abs(p.pcc_power_w) <= MODES.deadband_w
    # The peak window: discharge at its fraction of the rating.
    q = site(at_clock(SETTINGS, peak.start_s))
    assert q.ems is not None
    q.ems.tou(q.t)
    soc0 = socs(q)
    q.advance(20.0)
    assert q.ems.period == peak.name
    assert setpoints(q) == [pytest.approx(peak.fraction * RATED)] * 2
    assert all(b.soc_pct < soc0[b.name] for b in q.wiring.batteries)
    events = [e for _, e in q.events if e.startswith("ems.tou:")]
    assert events == [f"ems.tou:{peak.name}"]


# -- energy balance in every mode -----------------------------------------------------------------


@pytest.mark.parametrize("mode", [SELF_CONSUMPTION, TOU, PEAK_SHAVING])
def test_energy_balances_with_the_ems_in_each_mode(mode: str) -> None:
    peak = next(x for x in MODES.tou.periods if x.action == "discharge")
    p = site(at_clock(SETTINGS, peak.start_s))
    ems = p.ems
    assert ems is not None
    sun(p, 500.0)
    p.island_load.set(7000.0, 1.0)
    p.advance(CYCLE_S)
    {
        SELF_CONSUMPTION: ems.self_consumption,
        TOU: ems.tou,
        PEAK_SHAVING: ems.peak_shaving,
    }[mode](p.t)
    soc0 = socs(p)
    ledger = integrate(p, 90.0)
    assert ems.state == mode
    assert_balanced(p, ledger, soc0)
    assert ledger.ac_wh > 0.0  # the EMS made the units discharge


# -- load shedding on an island -------------------------------------------------------------------


def islanded(ems: EmsParams = SETTINGS, **soc: float) -> Plant:
    """The site black-started to ISLANDED (every load picked up, the grid gone)."""
    p = site(ems, pv_w=1.0, **soc)
    p.params.fine_step_s = 0.001  # the black start's own timing needs its fine steps
    dead(p)
    t0 = start(p)
    p.advance(t0 + 30.0)
    assert p.ems is not None and p.ems.state == ISLANDED
    return p


def event_times(p: Plant, prefix: str) -> dict[str, float]:
    return {e.split(":", 1)[1]: t for t, e in p.events if e.startswith(prefix)}


def test_overloaded_island_sheds_deferrable_then_essential_never_critical_and_restores() -> None:
    p = islanded()
    ems = p.ems
    assert ems is not None
    assert all(load.closed for load in p.loads.loads)
    shed = MODES.shedding
    # The forming unit carries past `overload` of its rating: deferrable first.
    loads = sum(ld.rated_power_w for ld in p.loads.loads)
    p.island_load.set(shed.overload * RATED - loads + 200.0, 1.0)
    p.advance(p.t + 10.0)
    assert not p.loads.loads[1].closed and p.loads.loads[2].closed  # ev open, hp still on
    more = shed.overload * RATED - 500.0 - 400.0 + 150.0
    p.island_load.set(more, 1.0)
    p.advance(p.t + 10.0)
    opened = event_times(p, "ems.shed:")
    assert list(opened) == ["a.load.ev", "b.load.hp"]
    assert opened["b.load.hp"] - opened["a.load.ev"] >= shed.hold_s - 1e-9
    assert p.loads.critical[0].closed and "a.load.med" not in opened
    assert ems.shedder.shed_count == 2
    # Nothing sheddable is left: the critical load stays on however short the island is.
    p.advance(p.t + 5.0)
    assert p.loads.critical[0].closed
    # Load falls, but not below `restore_load` with the essential load back: nothing yet.
    p.island_load.set(shed.restore_load * RATED - 500.0 - 400.0 + 100.0, 1.0)
    p.advance(p.t + 10.0)
    assert ems.shedder.shed_count == 2
    # Well below: essential back first (last shed), then deferrable, `hold` apart.
    p.island_load.set(0.0, 1.0)
    p.advance(p.t + 10.0)
    back = event_times(p, "ems.restore:")
    assert list(back) == ["b.load.hp", "a.load.ev"]
    assert back["a.load.ev"] - back["b.load.hp"] >= shed.hold_s - 1e-9
    assert all(load.closed for load in p.loads.loads) and ems.shedder.shed_count == 0


def test_island_below_the_soc_reserve_sheds_and_waits_for_the_restore_level() -> None:
    soc = 40.0
    shed = dataclasses.replace(MODES.shedding, reserve_pct=soc + 5.0, restore_pct=soc + 10.0)
    ems_params = dataclasses.replace(SETTINGS, modes=dataclasses.replace(MODES, shedding=shed))
    p = islanded(ems_params, soc_a=soc, soc_b=soc)
    p.advance(p.t + 3 * shed.hold_s + 1.0)
    assert list(event_times(p, "ems.shed:")) == ["a.load.ev", "b.load.hp"]
    assert p.loads.critical[0].closed
    p.advance(p.t + 10.0)  # the SoC does not recover on an island: nothing restored
    assert p.ems is not None and p.ems.shedder.shed_count == 2
    assert not event_times(p, "ems.restore:")


def test_energy_balances_on_an_island_while_the_ems_sheds() -> None:
    p = islanded()
    ems = p.ems
    assert ems is not None
    p.params.fine_step_s = CYCLE_S  # the ledger's one step per control cycle from here on
    p.advance(ems.next_event_time(p.t))  # its intervals end on the EMS's instants
    loads = sum(ld.rated_power_w for ld in p.loads.loads)
    p.island_load.set(MODES.shedding.overload * RATED - loads + 200.0, 1.0)
    soc0 = socs(p)
    ledger = integrate(p, 20.0)
    assert ems.state == ISLANDED and ems.shedder.shed_count > 0  # shed inside the ledger
    assert_balanced(p, ledger, soc0)
    assert ledger.ac_wh > 0.0  # the forming unit carried the island


def test_healthy_island_sheds_nothing() -> None:
    p = islanded()
    p.advance(p.t + 20.0)
    assert not event_times(p, "ems.shed:")
    assert all(load.closed for load in p.loads.loads)


# -- over the map ---------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[Plant, ModbusEms]]:
    p = site()
    assert p.ems is not None
    loop = LoopThread("test-ems-modes")
    endpoint = EmsEndpoint(p.ems, lambda: p.t, p.mark_event, lock=threading.RLock(), loop=loop)
    endpoint.start()
    client = ModbusClient("127.0.0.1", endpoint.port, timeout=1.0)
    try:
        yield p, ModbusEms.from_map("ems", client)
    finally:
        client.close()
        endpoint.stop()
        loop.stop()


def test_modes_soc_and_shed_count_over_the_map(served) -> None:
    p, ems = served
    assert ems.aggregate_soc() == pytest.approx(60.0, abs=0.05)
    assert ems.shed_loads() == 0
    sun(p, 1000.0)
    ems.self_consumption()
    assert ems.state() == SELF_CONSUMPTION
    p.advance(p.t + 30.0)
    assert abs(p.pcc_power_w) <= MODES.deadband_w
    ems.tou()
    assert ems.state() == TOU
    assert p.ems is not None and p.ems.state == TOU
    ems.shutdown()
    assert ems.state() == SHUTDOWN
    with pytest.raises(DeviceError, match="self-consumption refused"):
        ems.self_consumption()  # not from SHUTDOWN: ILLEGAL DATA VALUE, nothing done
    assert ems.state() == SHUTDOWN
    p.advance(p.t + 5.0)
    ems.normal()
    assert ems.state() == "NORMAL" and ems.aggregate_soc() == pytest.approx(
        p.ems.aggregate_soc_pct, abs=0.05
    )
