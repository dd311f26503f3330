"""Physics of the virtual plant: energy balance, islanding, trips, enter service, stepping.

Trip and enter-service settings are built here (IEEE 1547-2018 Category II defaults) because the
plant takes them as parameters; in the harness they come from a profile file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from virtual_devices.plant.battery import Battery, OcvCurve, load_ocv_curve
from virtual_devices.plant.params import (
    DEFAULT_OCV_CURVE,
    BatteryParams,
    EnterServiceParams,
    InverterParams,
    IslandLoadParams,
    NodeParams,
    PlantParams,
    TripSetting,
)
from virtual_devices.plant.plant import Plant

V_NOM = 240.0
F_NOM = 60.0
RATED = 5000.0
NODE = "home-1"


def cat2_trips() -> dict[str, TripSetting]:
    return {
        "ov2": TripSetting(1.20, 0.16),
        "ov1": TripSetting(1.10, 2.0),
        "uv1": TripSetting(0.70, 10.0),
        "uv2": TripSetting(0.45, 0.16),
        "of2": TripSetting(62.0, 0.16),
        "of1": TripSetting(61.2, 300.0),
        "uf1": TripSetting(58.5, 300.0),
        "uf2": TripSetting(56.5, 0.16),
    }


def enter_service() -> EnterServiceParams:
    return EnterServiceParams(
        v_low_pu=0.917, v_high_pu=1.05, f_low_hz=59.5, f_high_hz=60.1, delay_s=300.0, ramp_s=300.0
    )


def battery_params(**overrides: float) -> BatteryParams:
    values: dict[str, float] = {
        "charge_voltage_limit_v": 15 * 3.55,
        "discharge_voltage_limit_v": 15 * 2.8,
        "max_charge_current_a": 200.0,
        "max_discharge_current_a": 200.0,
    }
    values.update(overrides)
    return BatteryParams(**values)  # type: ignore[arg-type]


def make_plant(
    *,
    island_load_w: float = 0.0,
    quality_factor: float = 1.0,
    inverter: dict[str, float | None] | None = None,
    battery: dict[str, float] | None = None,
) -> Plant:
    inverter_params = InverterParams(
        rated_power_w=RATED,
        nominal_voltage_v=V_NOM,
        nominal_frequency_hz=F_NOM,
        trips=cat2_trips(),
        enter_service=enter_service(),
        **(inverter or {}),  # type: ignore[arg-type]
    )
    node = NodeParams(NODE, inverter_params, battery_params(**(battery or {})))
    return Plant(PlantParams(V_NOM, F_NOM, [node], IslandLoadParams(island_load_w, quality_factor)))


def event_time(plant: Plant, name: str) -> float:
    times = [t for t, event in plant.events if event == name]
    assert times, f"no event {name!r} in {plant.events}"
    return times[0]


# -- battery ---------------------------------------------------------------------------------


def test_ocv_curve_interpolates_the_table_and_is_monotonic() -> None:
    curve = load_ocv_curve(DEFAULT_OCV_CURVE)
    points = dict(curve.points)
    assert curve(0.0) == pytest.approx(2.9, abs=0.05)
    assert curve(10.0) == pytest.approx(3.2, abs=0.03)
    assert curve(100.0) == pytest.approx(3.45, abs=0.03)
    for soc in (30.0, 50.0, 70.0):
        assert 3.28 <= curve(soc) <= 3.34
    # Linear between table points, exact at them, clamped outside.
    assert curve(55.0) == pytest.approx((points[50.0] + points[60.0]) / 2, rel=1e-12)
    assert curve(50.0) == points[50.0]
    assert curve(-5.0) == points[0.0] and curve(105.0) == points[100.0]
    grid = np.linspace(0.0, 100.0, 2001)
    values = np.array([curve(float(s)) for s in grid])
    assert np.all(np.diff(values) > 0)
    socs, volts = (np.array(column) for column in zip(*curve.points, strict=True))
    np.testing.assert_allclose(values, np.interp(grid, socs, volts))


def test_ocv_table_that_does_not_rise_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("points:\n  - [0, 3.0]\n  - [50, 3.3]\n  - [100, 3.2]\n")
    with pytest.raises(ValueError, match="OCV must rise"):
        load_ocv_curve(bad)
    with pytest.raises(ValueError, match="SoC must rise"):
        OcvCurve([0.0, 0.0], [3.0, 3.1])


def test_pack_voltage_is_ocv_plus_ir_and_heat_follows_first_order_model() -> None:
    params = battery_params(capacity_ah=1e6, initial_soc_pct=50.0)
    battery = Battery(params)
    ocv = 15 * battery.ocv_curve(50.0)
    assert battery.voltage_v == pytest.approx(ocv)
    battery.step(0.0, 4000.0)  # discharge 4 kW at this instant
    current = battery.current_a
    assert current < 0
    assert battery.voltage_v == pytest.approx(ocv + current * params.resistance_ohm)
    assert -battery.voltage_v * current == pytest.approx(4000.0, rel=1e-12)
    tau = params.thermal_resistance_c_per_w * params.thermal_capacity_j_per_c
    rise = current**2 * params.resistance_ohm * params.thermal_resistance_c_per_w
    for _ in range(100):
        battery.step(tau / 100, 4000.0)
    assert battery.temperature_c == pytest.approx(
        params.ambient_c + rise * (1 - math.exp(-1)), rel=1e-4
    )


def test_limits_vanish_at_full_and_empty() -> None:
    assert Battery(battery_params(initial_soc_pct=100.0)).charge_current_limit_a == 0.0
    assert Battery(battery_params(initial_soc_pct=0.0)).discharge_current_limit_a == 0.0
    full = make_plant(battery={"initial_soc_pct": 100.0})
    full.nodes[NODE].inverter.set_power_setpoint(-3000.0)
    full.advance(5.0)
    assert full.nodes[NODE].inverter.power_w == 0.0
    # A tiny pack discharged to empty: SoC clamps at 0 and the output stops.
    tiny = make_plant(battery={"capacity_ah": 0.2, "initial_soc_pct": 2.0})
    tiny.nodes[NODE].inverter.set_power_setpoint(RATED)
    tiny.advance(60.0)
    node = tiny.nodes[NODE]
    assert node.battery.soc_pct == 0.0
    assert node.inverter.power_w == 0.0


# -- energy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("setpoint", [4000.0, -3000.0])
def test_soc_and_energy_balance_match_coulomb_counting(setpoint: float) -> None:
    plant = make_plant(inverter={"setpoint_ramp_w_per_s": 1e9})
    node = plant.nodes[NODE]
    eff = node.inverter.params.efficiency
    names = [f"{NODE}.inverter.power", f"{NODE}.battery.voltage", f"{NODE}.battery.current"]
    handle = plant.recorder.start([*names, f"{NODE}.battery.soc"])
    soc0 = node.battery.soc_pct
    node.inverter.set_power_setpoint(setpoint)
    plant.advance(1800.0)
    trace = plant.recorder.stop(handle)
    times = trace[names[0]][0]
    dt = np.diff(times)
    # Each sample holds the operating point that applies until the next one.
    p_ac, v, i = (trace[name][1][:-1] for name in names)
    e_ac = float(np.sum(p_ac * dt))
    e_dc = float(np.sum(-v * i * dt))  # + = energy drawn from the pack
    assert abs(e_ac) == pytest.approx(abs(setpoint) * 1800.0, rel=1e-3)
    expected_dc = e_ac / eff if setpoint > 0 else e_ac * eff
    assert e_dc == pytest.approx(expected_dc, rel=0.005)
    ah = float(np.sum(i * dt)) / 3600.0
    soc_counted = soc0 + 100.0 * ah / node.battery.params.capacity_ah
    assert node.battery.soc_pct == pytest.approx(soc_counted, rel=0.005)
    assert trace[f"{NODE}.battery.soc"][1][-1] == node.battery.soc_pct
    # The drop across R sits on the right side of the OCV.
    ocv = 15 * node.battery.ocv_curve(node.battery.soc_pct)
    assert (node.battery.voltage_v < ocv) == (setpoint > 0)


# -- islanding -------------------------------------------------------------------------------


def _island(plant: Plant, after_s: float) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    plant.nodes[NODE].inverter.set_power_setpoint(RATED)
    plant.advance(5.0)
    handle = plant.recorder.start(["pcc.voltage", "inverters.current", "pcc.power"])
    plant.pcc.open()
    opened = plant.t
    plant.advance(opened + after_s)
    return opened, plant.recorder.stop(handle)


def test_balanced_island_ceases_at_detection_time_and_collapses() -> None:
    plant = make_plant(island_load_w=RATED, quality_factor=1.0)
    opened, trace = _island(plant, 1.0)
    assert plant.pcc_power_w == 0.0
    assert event_time(plant, "pcc_open") == opened
    ceased = event_time(plant, f"{NODE}.inverter.cease:island")
    assert ceased - opened == pytest.approx(0.5, abs=1e-9)
    times, volts = trace["pcc.voltage"]
    _, amps = trace["inverters.current"]
    held = (times >= opened) & (times < ceased)
    np.testing.assert_allclose(volts[held], V_NOM, rtol=1e-9)  # balanced: nothing to detect
    assert np.all(amps[held] > 0.9 * RATED / V_NOM)
    assert np.all(amps[times >= ceased] == 0.0)
    after = times >= ceased
    below = after & (volts < 0.05 * V_NOM)
    t_below = times[below][0]
    # RLC ring-down: tau = 2 Q / (2 pi f0) = 5.3 ms, so 0.05 pu after tau * ln 20 = 15.9 ms.
    assert 0.010 < t_below - ceased < 0.030
    assert np.all(volts[after & (times >= t_below)] < 0.05 * V_NOM)
    assert plant.nodes[NODE].inverter.state == "TRIPPED"
    assert plant.nodes[NODE].inverter.trip_cause == "island"


def test_anti_islanding_delay_defect_keeps_energizing_the_island() -> None:
    # 2.5037 s lies off both step grids: the plant must land a step on the deadline itself.
    plant = make_plant(island_load_w=RATED, inverter={"anti_islanding_delay_s": 2.5037})
    opened, trace = _island(plant, 3.0)
    ceased = event_time(plant, f"{NODE}.inverter.cease:island")
    assert ceased - opened == pytest.approx(2.5037, abs=1e-9)
    times, amps = trace["inverters.current"]
    assert np.all(amps[(times > opened) & (times < ceased)] > 0)


def test_unbalanced_island_trips_on_overvoltage() -> None:
    # Half the load for the inverter's power: V -> sqrt(2) pu, OV2 clears before detection.
    plant = make_plant(island_load_w=RATED / 2, inverter={"anti_islanding_detection_s": 2.0})
    opened, trace = _island(plant, 1.0)
    tripped = event_time(plant, f"{NODE}.inverter.trip:ov2")
    times, volts = trace["pcc.voltage"]
    crossed = times[volts >= 1.2 * V_NOM][0]
    assert 0.0 < crossed - opened < 0.01
    assert tripped - crossed == pytest.approx(0.16, abs=1e-9)
    assert plant.nodes[NODE].inverter.trip_cause == "ov2"


# -- trips -----------------------------------------------------------------------------------


def test_ov2_clears_at_its_clearing_time() -> None:
    plant = make_plant()
    plant.advance(5.0)
    plant.grid.set_voltage(1.25 * V_NOM)
    stepped = plant.t
    plant.advance(stepped + 0.159)
    assert plant.nodes[NODE].inverter.state == "ON"
    plant.advance(stepped + 1.0)
    assert event_time(plant, f"{NODE}.inverter.trip:ov2") - stepped == pytest.approx(0.16, abs=1e-9)
    assert plant.nodes[NODE].inverter.state == "TRIPPED"
    assert plant.channel("inverters.current") == 0.0


def test_uv1_timer_resets_when_voltage_recovers() -> None:
    plant = make_plant()
    inverter = plant.nodes[NODE].inverter
    plant.advance(5.0)
    plant.grid.set_voltage(0.60 * V_NOM)  # inside UV1 (0.70 pu, 10 s), above UV2 (0.45 pu)
    plant.advance(13.0)
    plant.grid.set_voltage(V_NOM)
    plant.advance(15.0)
    plant.grid.set_voltage(0.60 * V_NOM)
    plant.advance(24.99)
    assert inverter.state == "ON", "UV1 timer kept the 8 s spent low before the recovery"
    plant.advance(30.0)
    assert event_time(plant, f"{NODE}.inverter.trip:uv1") == pytest.approx(25.0, abs=1e-9)


def test_frequency_trip_uses_the_bus_frequency() -> None:
    plant = make_plant()
    plant.advance(1.0)
    plant.grid.set_frequency(62.5)
    plant.advance(2.0)
    assert event_time(plant, f"{NODE}.inverter.trip:of2") == pytest.approx(1.16, abs=1e-9)


def test_trip_lands_exactly_on_a_clearing_time_off_the_step_grid() -> None:
    # An OF1 clearing time inside its adjustable range (180-1000 s), off both step grids.
    trips = cat2_trips()
    trips["of1"] = TripSetting(61.2, 180.0123)
    inverter = InverterParams(RATED, V_NOM, F_NOM, trips, enter_service())
    node = NodeParams(NODE, inverter, battery_params())
    plant = Plant(PlantParams(V_NOM, F_NOM, [node], IslandLoadParams()))
    plant.advance(3.0)
    plant.grid.set_frequency(61.5)
    before = plant.steps
    plant.advance(400.0)
    assert event_time(plant, f"{NODE}.inverter.trip:of1") == pytest.approx(183.0123, abs=1e-9)
    # 1 s fine after each of the two events, 5 s coarse after each window, steady (0.5 s)
    # elsewhere, plus the step landing on the trip.
    steady = (397.0 - 2 * 1.0 - 2 * 5.0) / 0.5
    assert plant.steps - before == pytest.approx(2 * 1000 + 2 * 100 + steady + 1, abs=2)


# -- enter service ---------------------------------------------------------------------------


def test_enter_service_restarts_its_delay_after_an_excursion_then_ramps() -> None:
    plant = make_plant(inverter={"setpoint_ramp_w_per_s": 1e9})
    inverter = plant.nodes[NODE].inverter
    inverter.set_power_setpoint(4000.0)
    plant.advance(5.0)
    plant.grid.set_output(False)  # the island ceases after its 0.5 s detection
    plant.advance(10.0)
    assert inverter.state == "TRIPPED"
    handle = plant.recorder.start([f"{NODE}.inverter.power"])
    plant.grid.set_output(True)
    plant.advance(110.0)
    plant.grid.set_voltage(1.08 * V_NOM)  # out of the window for 25 % of the delay
    plant.advance(185.0)
    plant.grid.set_voltage(V_NOM)
    plant.advance(484.9)
    assert inverter.state == "TRIPPED"
    plant.advance(485.0 + 300.0)
    times, power = plant.recorder.stop(handle)[f"{NODE}.inverter.power"]
    entered = event_time(plant, f"{NODE}.inverter.enter_service")
    assert entered == pytest.approx(185.0 + 300.0, abs=1e-9)
    assert np.all(power[times < entered] == 0.0)
    ramp = np.clip((times - entered) / 300.0, 0.0, 1.0) * 4000.0
    np.testing.assert_allclose(power, ramp, atol=1e-6)
    assert power[-1] == pytest.approx(4000.0)


def test_starts_in_service_on_a_healthy_grid() -> None:
    plant = make_plant()
    assert plant.nodes[NODE].inverter.state == "ON"
    plant.nodes[NODE].inverter.set_power_setpoint(2500.0)
    plant.advance(0.25)  # the default setpoint ramp is rated power per second
    assert plant.nodes[NODE].inverter.power_w == pytest.approx(0.25 * RATED, rel=1e-9)


# -- stepping, recorder, speed ---------------------------------------------------------------


def test_steps_are_fine_after_events_and_coarse_otherwise() -> None:
    plant = make_plant()
    plant.advance(10.0)
    assert plant.steps == 20  # nothing has happened yet: steady, 10 s / 0.5 s
    handle = plant.recorder.start(["pcc.voltage"])  # while a capture is open: 50 ms at most
    plant.grid.set_voltage(1.02 * V_NOM)
    before = plant.steps
    plant.advance(20.0)
    assert plant.steps - before == pytest.approx(1000 + 180, abs=1)
    times, _ = plant.recorder.stop(handle)["pcc.voltage"]
    dt = np.diff(times)
    np.testing.assert_allclose(dt[times[:-1] < 10.999], 0.001, rtol=1e-6)
    np.testing.assert_allclose(dt[times[:-1] > 11.001], 0.05, rtol=1e-6)
    plant.advance(20.0)
    plant.advance(19.0)
    assert plant.t == 20.0


def test_steps_are_steady_once_quiet_on_the_grid_and_unrecorded() -> None:
    plant = make_plant()
    plant.advance(1.0)
    plant.grid.set_voltage(1.01 * V_NOM)  # an event at 1 s: fine to 2 s, coarse to 7 s
    before = plant.steps
    plant.advance(17.0)
    assert plant.steps - before == pytest.approx(1000 + 100 + 20, abs=1)  # then steady, 0.5 s


def test_energy_counters_integrate_the_power_of_each_step() -> None:
    plant = make_plant(inverter={"setpoint_ramp_w_per_s": 1e9})
    plant.nodes[NODE].inverter.set_power_setpoint(3600.0)
    plant.advance(100.0)
    exported = plant.channel(f"{NODE}.inverter.energy_export")
    # 3.6 kW for 100 s less the first 1 ms step, which starts at 0 W (the setpoint applies
    # from the end of the step it was commanded in).
    assert exported == pytest.approx(3600.0 * (100.0 - 0.001) / 3600.0, rel=1e-9)
    assert plant.channel(f"{NODE}.inverter.energy_import") == 0.0
    # No load at the PCC: everything the unit exports leaves through it.
    assert plant.channel("pcc.energy_export") == pytest.approx(exported, rel=1e-9)


def test_recorder_keeps_only_the_capture_window() -> None:
    plant = make_plant()
    plant.advance(2.0)
    outer = plant.recorder.start(["pcc.voltage", "pcc.breaker"])
    plant.advance(3.0)
    inner = plant.recorder.start(["grid.voltage"])
    plant.grid.set_voltage(250.0)  # right-continuous: the sample at 3.0 is the new value
    plant.advance(4.0)
    inner_trace = plant.recorder.stop(inner)["grid.voltage"]
    plant.advance(5.0)
    outer_trace = plant.recorder.stop(outer)
    assert not plant.recorder.active
    plant.advance(6.0)
    t_in, v_in = inner_trace
    assert t_in[0] == 3.0 and t_in[-1] == 4.0 and v_in[0] == 250.0
    t_out, v_out = outer_trace["pcc.voltage"]
    assert t_out[0] == 2.0 and t_out[-1] == 5.0 and np.all(np.diff(t_out) > 0)
    assert v_out[0] == V_NOM and v_out[-1] == 250.0
    assert np.all(outer_trace["pcc.breaker"][1] == 1.0)
    with pytest.raises(KeyError, match=r"pcc\.voltage"):
        plant.recorder.start(["pcc.volts"])
    with pytest.raises(KeyError, match="known channels"):
        plant.channel("nope")
    assert plant.channel(f"{NODE}.battery.soc") == plant.nodes[NODE].battery.soc_pct


def test_channels_cover_the_public_names() -> None:
    plant = make_plant()
    expected = {
        "pcc.voltage",
        "pcc.frequency",
        "pcc.breaker",
        "grid.voltage",
        "pcc.power",
        "inverters.current",
        "inverters.power",
        *(
            f"{NODE}.{suffix}"
            for suffix in (
                "inverter.power",
                "inverter.current",
                "battery.voltage",
                "battery.current",
                "battery.soc",
            )
        ),
    }
    assert expected <= set(plant.recorder.channels())


def test_parameters_without_standard_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown trip functions"):
        InverterParams(RATED, V_NOM, F_NOM, {"ov3": TripSetting(1.3, 0.1)}, enter_service())
    with pytest.raises(TypeError):
        BatteryParams()  # type: ignore[call-arg]
    node = NodeParams(NODE, make_plant().nodes[NODE].inverter.params, battery_params())
    with pytest.raises(ValueError, match="duplicate node names"):
        PlantParams(V_NOM, F_NOM, [node, node])
