"""Grid-forming units and intentional islands in the virtual plant: transfer timing, droop
sharing, voltage and frequency setpoints, followers, loads, reserve, energy balance; and the
SunSpec points (702 IntIslandCat/Rtg, 701 DERMode) through a real Modbus server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from harness.devices.inverter import SunSpecInverter
from harness.devices.islanding import (
    enable_islanding,
    grid_forming_now,
    island_capable,
    island_categories,
    island_setting,
    set_island_setting,
)
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import ModbusClient, ModbusError
from tests.test_plant import F_NOM, RATED, V_NOM, battery_params, cat2_trips, enter_service
from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint
from virtual_devices.plant.grid_forming import GridFormingInverter
from virtual_devices.plant.island_params import GridFormingParams, LoadParams
from virtual_devices.plant.params import InverterParams, IslandLoadParams, NodeParams, PlantParams
from virtual_devices.plant.plant import Plant

EFFICIENCY = 0.96


def inverter(rated: float = RATED, gf: GridFormingParams | None = None) -> InverterParams:
    return InverterParams(
        rated, V_NOM, F_NOM, cat2_trips(), enter_service(), efficiency=EFFICIENCY, grid_forming=gf
    )


def former(**overrides: Any) -> GridFormingParams:
    values: dict[str, Any] = {"enabled": True}
    values.update(overrides)
    return GridFormingParams(**values)


def plant(*nodes: NodeParams, island_load_w: float = 0.0) -> Plant:
    return Plant(PlantParams(V_NOM, F_NOM, list(nodes), IslandLoadParams(island_load_w, 1.0)))


def node(name: str, inv: InverterParams, *loads: LoadParams, **battery: float) -> NodeParams:
    return NodeParams(name, inv, battery_params(**battery), list(loads))


def critical(power_w: float, name: str = "c") -> LoadParams:
    return LoadParams(name, "critical", power_w)


def event(p: Plant, name: str) -> float:
    times = [t for t, e in p.events if e == name]
    assert times, f"no event {name!r} in {p.events}"
    return times[0]


def gf_unit(p: Plant, name: str) -> GridFormingInverter:
    unit = p.nodes[name].inverter
    assert isinstance(unit, GridFormingInverter)
    return unit


# -- transfer ------------------------------------------------------------------------------------


def test_opened_pcc_is_taken_over_after_the_transfer_and_a_lost_grid_after_detection() -> None:
    gf = former(detection_s=0.05, transfer_s=0.03, voltage_ramp_s=0.02)
    p = plant(node("a", inverter(gf=gf), critical(1000.0)))
    p.advance(1.0)
    p.pcc.open()
    assert event(p, "a.inverter.transfer") == 1.0  # the breaker's contact: known at once
    p.advance(2.0)
    assert event(p, "a.inverter.form") == pytest.approx(1.03, abs=1e-9)
    assert p.channel("critical_load.voltage") == V_NOM
    p.pcc.close()
    assert event(p, "a.inverter.resync") == 2.0 and gf_unit(p, "a").state == "ON"

    q = plant(node("a", inverter(gf=gf), critical(1000.0)))
    q.advance(1.0)
    handle = q.recorder.start(["critical_load.voltage"])
    q.grid.set_output(False)  # behind a closed PCC: detected after 0.05 s
    q.advance(1.5)
    times, volts = q.recorder.stop(handle)["critical_load.voltage"]
    formed = event(q, "a.inverter.form")
    assert event(q, "a.inverter.transfer") == pytest.approx(1.05, abs=1e-9)
    assert formed == pytest.approx(1.08, abs=1e-9)
    assert gf_unit(q, "a").power_w == pytest.approx(1000.0)
    # Dead bus during the gap, then a linear soft start to the setpoint over 20 ms.
    assert np.all(volts[(times > 1.06) & (times < formed)] < 0.05 * V_NOM)
    mid = volts[np.searchsorted(times, formed + 0.01 - 1e-9)]
    assert mid == pytest.approx(V_NOM / 2, rel=0.02)
    assert volts[-1] == V_NOM


def test_transfer_delay_defect_lengthens_the_gap() -> None:
    gf = former(transfer_s=0.02, transfer_delay_s=0.07)
    p = plant(node("a", inverter(gf=gf), critical(500.0)))
    p.pcc.open()
    p.advance(1.0)
    assert event(p, "a.inverter.form") - event(p, "pcc_open") == pytest.approx(0.09, abs=1e-9)


# -- sharing, setpoints ----------------------------------------------------------------------------


def test_droop_units_share_the_island_by_rating_and_the_frequency_follows_the_load() -> None:
    gf = former(frequency_droop_pct=1.0, voltage_pu=1.02)
    p = plant(
        node("a", inverter(5000.0, gf), critical(2000.0)),
        node("b", inverter(2500.0, gf), critical(1000.0, "d")),
    )
    p.pcc.open()
    p.advance(1.0)
    a, b = gf_unit(p, "a"), gf_unit(p, "b")
    v = 1.02 * V_NOM
    demand = 3000.0 * 1.02**2  # resistive loads at the formed voltage
    assert p.bus_voltage_v == pytest.approx(v)
    assert a.power_w + b.power_w == pytest.approx(demand)
    assert a.power_w / b.power_w == pytest.approx(2.0)  # by rating (same droop in %)
    gains = 5000.0 / (0.01 * F_NOM) + 2500.0 / (0.01 * F_NOM)
    assert p.bus_frequency_hz == pytest.approx(F_NOM - demand / gains)
    assert p.channel("critical_load.frequency") == p.bus_frequency_hz
    assert p.channel("a.inverter.forming") == 1.0
    # More load, lower frequency: a load's breaker closing is seen at once.
    load = next(ld for ld in p.loads.loads if ld.name == "b.load.d")
    load.open()
    p.mark_event("test")
    assert p.bus_frequency_hz == pytest.approx(F_NOM - 2000.0 * 1.02**2 / gains)


def test_an_isochronous_unit_holds_nominal_frequency_and_takes_the_load() -> None:
    p = plant(
        node("a", inverter(gf=former(mode="isochronous")), critical(1500.0)),
        node("b", inverter(gf=former())),
    )
    p.grid.set_output(False)
    p.advance(1.0)
    assert p.bus_frequency_hz == F_NOM
    assert gf_unit(p, "a").power_w == pytest.approx(1500.0)
    assert gf_unit(p, "b").power_w == 0.0


# -- followers, loads, disabled islanding ------------------------------------------------------------


def test_followers_ride_through_a_fast_transfer_and_come_back_after_a_slow_one() -> None:
    fast = plant(
        node("a", inverter(gf=former()), critical(3000.0)),
        node("f", inverter()),
    )
    follower = fast.nodes["f"].inverter
    follower.set_power_setpoint(1000.0)
    fast.advance(5.0)
    fast.pcc.open()
    fast.advance(10.0)  # past the follower's 0.5 s anti-islanding detection
    assert follower.energizing and follower.power_w == pytest.approx(1000.0)
    assert gf_unit(fast, "a").power_w == pytest.approx(2000.0)  # the rest of the load

    slow = plant(
        node("a", inverter(gf=former(transfer_delay_s=0.6)), critical(3000.0)),
        node("f", inverter()),
    )
    follower = slow.nodes["f"].inverter
    follower.set_power_setpoint(1000.0)
    slow.advance(5.0)
    slow.pcc.open()
    slow.advance(6.0)
    # Islanded longer than its 0.5 s detection before anyone held the bus: it ceased.
    assert follower.trip_cause == "island" and not follower.energizing
    assert gf_unit(slow, "a").forming
    slow.advance(6.0 + 300.0 + 1.0)  # enter service on the held bus after the delay
    assert follower.energizing


def test_disabled_islanding_is_grid_following_with_anti_islanding() -> None:
    p = plant(node("a", inverter(gf=former(enabled=False))), island_load_w=RATED)
    unit = gf_unit(p, "a")
    unit.set_power_setpoint(RATED)
    p.advance(10.0)
    p.pcc.open()
    p.advance(12.0)
    assert unit.trip_cause == "island"
    assert event(p, "a.inverter.cease:island") == pytest.approx(10.5, abs=1e-9)
    assert not any(e.endswith(".form") for _, e in p.events)


def test_loads_are_shed_by_priority_and_close_again_with_the_grid() -> None:
    p = plant(
        node(
            "a",
            inverter(gf=former()),
            critical(2000.0),
            LoadParams("heat", "essential", 2500.0),
            LoadParams("ev", "deferrable", 1000.0),
        )
    )
    p.pcc.open()
    p.advance(1.0)
    closed = {ld.name: ld.closed for ld in p.loads.loads}
    assert closed == {"a.load.c": True, "a.load.heat": True, "a.load.ev": False}
    assert p.channel("loads.power") == pytest.approx(4500.0)
    p.pcc.close()
    assert all(ld.closed for ld in p.loads.loads)
    p.advance(10.0)  # the unit's output ramps from its island share back to its setpoint (0 W)
    assert p.pcc_power_w == pytest.approx(5500.0)  # on the grid, every load imports

    tight = plant(
        node("a", inverter(gf=former()), critical(4000.0), LoadParams("heat", "essential", 2000.0))
    )
    tight.pcc.open()
    tight.advance(1.0)
    assert [ld.closed for ld in tight.loads.loads] == [True, False]  # 6 kW > 5 kW rated


# -- endurance, energy -------------------------------------------------------------------------------


def test_island_drains_the_battery_with_conversion_losses_and_stops_at_the_reserve() -> None:
    gf = former(reserve_soc_pct=50.0)
    p = plant(node("a", inverter(gf=gf), critical(2000.0), capacity_ah=10.0, initial_soc_pct=60.0))
    channels = ["a.inverter.power", "a.battery.voltage", "a.battery.current", "critical_load.power"]
    handle = p.recorder.start(channels)
    p.grid.set_output(False)
    p.advance(600.0)
    data = p.recorder.stop(handle)
    stopped = event(p, "a.inverter.cease:reserve")
    unit = gf_unit(p, "a")
    assert unit.trip_cause == "reserve" and not unit.forming
    assert p.nodes["a"].battery.soc_pct == pytest.approx(50.0, abs=0.05)
    assert p.channel("critical_load.voltage") < 0.01 * V_NOM  # nobody holds the bus any more
    times = data["a.inverter.power"][0]
    dt = np.diff(times)
    ac = data["a.inverter.power"][1][:-1]
    load = data["critical_load.power"][1][:-1]
    dc = (data["a.battery.voltage"][1] * -data["a.battery.current"][1])[:-1]
    held = (times[:-1] > 0.2) & (times[:-1] < stopped)
    np.testing.assert_allclose(ac[held], load[held], rtol=1e-9)  # the unit feeds the load
    np.testing.assert_allclose(dc[held], ac[held] / EFFICIENCY, rtol=1e-9)
    # Coulomb counting: the charge drawn is the SoC the pack lost.
    drawn_ah = float(np.sum(-data["a.battery.current"][1][:-1] * dt)) / 3600
    assert drawn_ah == pytest.approx(10.0 * 0.10, rel=1e-3)
    # 10 Ah x ~3.3 V x 15 cells x 10 % ~ 49 Wh at 2083 W DC: about 85 s.
    assert 60.0 < stopped < 110.0


def test_standby_drain_shortens_the_island() -> None:
    def endurance(drain_w: float) -> float:
        gf = former(reserve_soc_pct=50.0, standby_drain_w=drain_w)
        p = plant(node("a", inverter(gf=gf), critical(1000.0), capacity_ah=10.0))
        p.grid.set_output(False)
        p.advance(1000.0)
        return event(p, "a.inverter.cease:reserve")

    clean, drained = endurance(0.0), endurance(1000.0 / EFFICIENCY)
    assert drained == pytest.approx(clean / 2, rel=0.01)  # twice the DC power


# -- SunSpec: 702 IntIslandCat / IntIslandCatRtg, 701 DERMode ---------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[Plant, SunSpecInverter, SunSpecInverter]]:
    p = plant(
        node("a", inverter(gf=former(enabled=False)), critical(1000.0)), node("f", inverter())
    )
    loop = LoopThread("test-grid-forming")
    lock = threading.RLock()
    endpoints, clients = [], []
    try:
        drivers = []
        for name in ("a", "f"):
            endpoint = SunSpecInverterEndpoint(p.nodes[name], p, {"Mn": "T"}, lock=lock, loop=loop)
            endpoint.start()
            endpoints.append(endpoint)
            client = ModbusClient("127.0.0.1", endpoint.port, timeout=1.0)
            clients.append(client)
            drivers.append(SunSpecInverter.connect(name, client))
        yield p, drivers[0], drivers[1]
    finally:
        for client in clients:
            client.close()
        for endpoint in endpoints:
            endpoint.stop()
        loop.stop()


def test_sunspec_rates_switches_and_reports_intentional_islanding(served: Any) -> None:
    p, gf, gfl = served
    assert island_categories(gf) == {"INT_ISL_CAPABLE"} and island_capable(gf)
    assert not island_capable(gfl) and island_setting(gfl) == set()
    assert island_setting(gf) == set() and not gf_unit(p, "a").island_enabled
    assert enable_islanding(gf) == set()
    assert gf_unit(p, "a").island_enabled and island_setting(gf) == {"INT_ISL_CAPABLE"}
    assert not grid_forming_now(gf)
    p.pcc.open()
    p.advance(1.0)
    assert grid_forming_now(gf) and not grid_forming_now(gfl)
    with pytest.raises(ModbusError) as refused:  # not rated: ILLEGAL DATA VALUE
        gfl.modbus_device().client.write_registers(
            gfl.modbus_device().regmap.point("DERCapacity.IntIslandCat").address, [2], 1
        )
    assert refused.value.code == 3
    set_island_setting(gf, set())  # islanding off while holding the island: the unit ceases
    assert gf_unit(p, "a").trip_cause == "islanding_disabled" and not grid_forming_now(gf)
