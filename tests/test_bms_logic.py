"""The virtual BMS and the pack's thermal model against hand-computed values.

Most tests run the logic on a settings file written here with round numbers, so every expected
value can be worked out by hand; one checks that the shipped data file loads and is sane. The
last tests go through the endpoints (a real python-can virtual bus) and the plant's stepping.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.clock import SimClock
from harness.devices.bms import DbcBms, load_bms_map
from harness.transports.can import CanTransport, load_database, open_bus
from tests.test_plant import NODE, RATED, make_plant
from virtual_devices.endpoints.bms import VirtualBms, binding_for
from virtual_devices.endpoints.inverter_can import InverterHeartbeat
from virtual_devices.plant.battery import Battery
from virtual_devices.plant.bms_logic import BmsLogic, Curve, load_bms_settings
from virtual_devices.plant.params import DEFAULT_BMS_SETTINGS, BatteryParams
from virtual_devices.plant.thermal import ThermalModel

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = """
scan: 0.5 s
derating:
  soc: {charge: [[0, 1.0], [90, 1.0], [100, 0.0]], discharge: [[0, 0.0], [10, 1.0]]}
  temperature:
    charge: [[0, 0.0], [10, 1.0], [40, 1.0], [50, 0.0]]
    discharge: [[-20, 0.0], [0, 1.0], [50, 1.0], [60, 0.0]]
protections:
  cell_overvoltage: {sense: cell_voltage_max, above: true, warning: 3.6 V, alarm: 3.65 V,
                     release: 3.5 V, delay: 1 s, blocks: [charge], open_contactor_after: 4 s}
  cell_undervoltage: {sense: cell_voltage_min, above: false, warning: 2.9 V, alarm: 2.8 V,
                      release: 3.0 V, delay: 1 s, blocks: [discharge]}
  overtemp: {sense: temperature, above: true, warning: 55 degC, alarm: 60 degC,
             release: 50 degC, delay: 2 s, blocks: [charge, discharge], open_contactor_after: 0 s}
  discharge_overcurrent: {flag: overcurrent, sense: discharge_current, above: true,
                          warning: 1.1, alarm: 1.5, release: 1.0, delay: 0.5 s,
                          blocks: [charge, discharge], open_contactor_after: 0 s}
heartbeat: {timeout: 3 s, open_contactor_after: 10 s}
contactor: {precharge: 0.25 s, precharge_timeout: 15 s, reclose_after: 2 s}
"""


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "bms.yaml"
    path.write_text(SETTINGS)
    return path


class Pack:
    """What the BMS senses of a pack, set by hand: (cell V, degC, A + charging)."""

    def __init__(self) -> None:
        self.cell_v, self.temperature, self.current = 3.3, 25.0, 0.0

    def __call__(self) -> tuple[float, float, float]:
        return self.cell_v, self.temperature, self.current


def make_bms(path: Path, **kwargs: object) -> tuple[BmsLogic, list[tuple[float, str]]]:
    events: list[tuple[float, str]] = []
    clock = {"t": 0.0}

    def emit(name: str) -> None:
        events.append((clock["t"], name))

    bms = BmsLogic(load_bms_settings(path), 100.0, 120.0, emit=emit, **kwargs)  # type: ignore[arg-type]
    bms.clock = clock  # type: ignore[attr-defined]
    bms.update(0.0, Pack(), 50.0)  # the first scan at 0; the next every 0.5 s
    return bms, events


def run(bms: BmsLogic, pack: Pack, until: float, soc: float = 50.0, step: float = 0.05) -> None:
    """Step the BMS as a plant would: fixed steps, landing exactly on its timers."""
    clock = bms.clock  # type: ignore[attr-defined]
    t = clock["t"]
    while t < until - 1e-12:
        t = min(round(t + step, 9), until, bms.next_event)
        clock["t"] = t
        bms.update(t, pack, soc)


def now(bms: BmsLogic, pack: Pack, soc: float = 50.0) -> None:
    """Let the BMS see a change at once, as the plant does when a fault-insertion unit acts."""
    bms.update(bms.clock["t"], pack, soc)  # type: ignore[attr-defined]


# -- thermal model --------------------------------------------------------------------------------


def test_thermal_model_follows_the_exponential_whatever_the_step() -> None:
    # 200 W into 40 kJ/degC cooled at 8 W/degC: settles 25 degC up with tau = 5000 s.
    fine, coarse = (ThermalModel(25.0, 40000.0, 8.0) for _ in range(2))
    for _ in range(5000):
        fine.step(1.0, 200.0)
    coarse.step(5000.0, 200.0)
    expected = 50.0 - 25.0 * math.exp(-1.0)  # 40.803 degC after one time constant
    assert fine.temperature_c == pytest.approx(expected, rel=1e-12)
    assert coarse.temperature_c == pytest.approx(expected, rel=1e-12)
    assert fine.steady_state_c(200.0) == 50.0 and fine.tau_s == 5000.0
    # Switched off, it cools back toward ambient on the same time constant.
    fine.step(5000.0, 0.0)
    assert fine.temperature_c == pytest.approx(25.0 + (expected - 25.0) * math.exp(-1.0))


def test_thermal_model_time_to_reach_a_temperature() -> None:
    model = ThermalModel(25.0, 40000.0, 8.0)
    assert model.time_to_reach(40.0, 200.0) == pytest.approx(-5000.0 * math.log(10.0 / 25.0))
    assert model.time_to_reach(55.0, 200.0) == math.inf  # above the steady state: never
    with pytest.raises(ValueError, match="cooling"):
        ThermalModel(25.0, 40000.0, 0.0)


def test_pack_heats_by_i2r_through_its_thermal_model() -> None:
    battery = Battery(
        BatteryParams(
            charge_voltage_limit_v=60.0,
            discharge_voltage_limit_v=40.0,
            max_charge_current_a=200.0,
            max_discharge_current_a=200.0,
        )
    )
    battery.step(0.0, -2000.0)  # charge at 2 kW: a current near 40 A on the plateau
    current = battery.current_a
    battery.step(10.0, -2000.0)
    heat = current**2 * battery.params.resistance_ohm
    tau = battery.params.thermal_capacity_j_per_c * battery.params.thermal_resistance_c_per_w
    rise = heat * battery.params.thermal_resistance_c_per_w * (1 - math.exp(-10.0 / tau))
    assert battery.pack_temperature_c == pytest.approx(25.0 + rise, rel=1e-9)
    assert battery.temperature_c == battery.pack_temperature_c  # nothing drives the sensor


# -- derating ----------------------------------------------------------------------------------------


def test_curve_is_linear_between_points_and_flat_beyond() -> None:
    curve = Curve([(0, 0.0), (10, 1.0), (40, 1.0), (50, 0.0)])
    assert [curve(x) for x in (-5, 0, 5, 25, 45, 50, 70)] == [0.0, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="rise strictly"):
        Curve([(0, 1.0), (0, 0.5)])
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        Curve([(0, 1.5)])


def test_limits_are_derated_by_soc_and_temperature(settings_file: Path) -> None:
    bms, _ = make_bms(settings_file)
    pack = Pack()
    run(bms, pack, 0.5, soc=95.0)  # SoC 95 %: charge x 0.5; 25 degC: x 1
    assert (bms.limit_factor("charge"), bms.limit_factor("discharge")) == (0.5, 1.0)
    pack.temperature = 45.0  # charge x 0.5 (40..50 degC), discharge x 1
    run(bms, pack, 1.0, soc=5.0)  # SoC 5 %: discharge x 0.5
    assert bms.limit_factor("charge") == pytest.approx(0.5)
    assert bms.limit_factor("discharge") == pytest.approx(0.5)


# -- protections ---------------------------------------------------------------------------------


def test_over_voltage_alarm_after_its_delay_then_contactor_then_release(
    settings_file: Path,
) -> None:
    bms, events = make_bms(settings_file)
    pack = Pack()
    run(bms, pack, 10.0)
    pack.cell_v = 3.62
    run(bms, pack, 11.0)
    assert bms.warnings == {"cell_overvoltage"} and bms.alarms == set()
    pack.cell_v = 3.70  # beyond the alarm: seen at the next scan (11.5), alarm 1 s later
    run(bms, pack, 20.0)
    assert (12.5, "bms.alarm:cell_overvoltage") in events
    assert (16.5, "bms.contactor:open") in events  # 4 s after the alarm
    assert bms.limit_factor("charge") == 0.0 and bms.contactor == "open"
    assert bms.limit_factor("discharge") == 0.0  # the contactor is open: nothing either way
    pack.cell_v = 3.3  # back below the release: seen at the next scan, 20.5
    run(bms, pack, 30.0)
    assert (20.5, "bms.release:cell_overvoltage") in events
    assert (22.5, "bms.contactor:precharging") in events  # reclose_after 2 s
    assert (22.75, "bms.contactor:closed") in events  # precharge 0.25 s
    assert bms.alarms == set() and bms.limit_factor("charge") == 1.0


def test_a_short_excursion_does_not_raise_the_alarm(settings_file: Path) -> None:
    bms, events = make_bms(settings_file)
    pack = Pack()
    pack.cell_v = 2.7
    run(bms, pack, 0.5)  # beyond the under-voltage alarm for 0.5 s of a 1 s delay
    pack.cell_v = 3.3
    run(bms, pack, 5.0)
    assert not [e for e in events if "alarm" in e[1]]
    assert bms.limit_factor("discharge") == 1.0


def test_a_driven_sense_line_is_seen_at_once(settings_file: Path) -> None:
    bms, events = make_bms(settings_file)
    pack = Pack()
    run(bms, pack, 10.2)
    bms.set_override("temperature", 65.0)  # the fault-insertion unit, between two scans
    now(bms, pack)
    run(bms, pack, 13.0)
    assert (12.2, "bms.alarm:overtemp") in events  # 10.2 + 2 s, not from the next scan
    assert (12.2, "bms.contactor:open") in events
    assert bms.sensed[2] == 65.0
    bms.set_override("cell_voltage", 2.5)  # one tap low: it is the lowest cell the BMS sees
    bms.update(13.0, pack, 50.0)
    assert bms.sensed[:2] == (3.3, 2.5)
    with pytest.raises(ValueError, match="unknown sense line"):
        bms.set_override("humidity", 1.0)


def test_over_current_thresholds_are_ratios_of_the_rated_current(settings_file: Path) -> None:
    bms, events = make_bms(settings_file)
    pack = Pack()
    pack.current = -170.0  # 1.42 x 120 A rated discharge: a warning, no alarm
    run(bms, pack, 2.0)
    assert bms.warnings == {"overcurrent"} and bms.alarms == set()
    pack.current = -185.0  # 1.54 x rated: seen at the scan at 2.5, 0.5 s delay
    run(bms, pack, 4.0)
    assert (3.0, "bms.alarm:discharge_overcurrent") in events
    assert bms.alarms == {"overcurrent"} and bms.contactor == "open"


def test_a_protection_delay_defect_delays_the_response(settings_file: Path) -> None:
    bms, events = make_bms(settings_file, extra_delays_s={"cell_overvoltage": 0.75})
    pack = Pack()
    pack.cell_v = 3.7  # seen at the scan at 0.5: 1 s delay + 0.75 s
    run(bms, pack, 5.0)
    assert (2.25, "bms.alarm:cell_overvoltage") in events
    with pytest.raises(ValueError, match="unknown protections"):
        make_bms(settings_file, extra_delays_s={"overvoltage": 1.0})


def test_a_disabled_protection_never_responds(settings_file: Path) -> None:
    bms, events = make_bms(settings_file, disabled={"cell_undervoltage", "discharge_overcurrent"})
    pack = Pack()
    pack.cell_v = 2.5  # far beyond the under-voltage alarm, for a minute
    pack.current = -185.0  # and beyond the over-current alarm
    run(bms, pack, 60.0)
    assert not [e for e in events if "alarm" in e[1] or "contactor" in e[1]]
    assert bms.alarms == set() and bms.closed
    assert "cell_undervoltage" in bms.warnings  # the warning is another function: it still works
    pack.cell_v, pack.current = 3.7, 0.0  # the protections left enabled still act
    run(bms, pack, 65.0)
    assert any(name == "bms.alarm:cell_overvoltage" for _, name in events)
    with pytest.raises(ValueError, match="unknown protections"):
        make_bms(settings_file, disabled={"undervoltage"})


# -- heartbeat and contactor ----------------------------------------------------------------------


def test_heartbeat_supervision(settings_file: Path) -> None:
    bms, events = make_bms(settings_file)
    pack = Pack()
    run(bms, pack, 20.0)  # never heard one: a bench without an inverter, not a lost heartbeat
    assert not bms.heartbeat_lost and bms.limit_factor("discharge") == 1.0
    for t in (20.0, 21.0, 22.0):
        bms.heartbeat(t)
        run(bms, pack, t + 1.0)
    run(bms, pack, 40.0)
    assert (25.0, "bms.heartbeat_lost") in events  # 3 s after the last one
    assert (35.0, "bms.contactor:open") in events  # 10 s more
    assert bms.warnings == {"heartbeat_lost"}
    bms.heartbeat(40.0)
    now(bms, pack)
    run(bms, pack, 42.5)
    assert (40.0, "bms.heartbeat_back") in events
    assert (42.25, "bms.contactor:closed") in events
    assert bms.limit_factor("discharge") == 1.0
    run(bms, pack, 45.0)  # and no heartbeat since the one at 40
    assert (43.0, "bms.heartbeat_lost") in events and bms.limit_factor("discharge") == 0.0


def test_ignore_heartbeat_loss_defect(settings_file: Path) -> None:
    bms, events = make_bms(settings_file, ignore_heartbeat_loss=True)
    bms.heartbeat(0.0)
    run(bms, Pack(), 30.0)
    assert events == [] and bms.limit_factor("charge") == 1.0 and bms.closed


def test_a_precharge_that_cannot_finish_is_a_latched_fault(tmp_path: Path) -> None:
    path = tmp_path / "slow-precharge.yaml"
    path.write_text(SETTINGS.replace("precharge: 0.25 s", "precharge: 20 s"))
    bms, events = make_bms(path)
    pack = Pack()
    bms.set_override("temperature", 70.0)
    now(bms, pack)
    run(bms, pack, 3.0)
    assert (2.0, "bms.contactor:open") in events
    bms.set_override("temperature", None)
    now(bms, pack)
    run(bms, pack, 40.0)
    assert (5.0, "bms.contactor:precharging") in events  # released at 3.0, +2 s
    assert (20.0, "bms.contactor:fault") in events  # precharge_timeout 15 s
    assert bms.contactor_state == 3.0 and bms.limit_factor("discharge") == 0.0


def test_the_shipped_settings_load_and_name_every_protection() -> None:
    settings = load_bms_settings(DEFAULT_BMS_SETTINGS)
    names = {p.name for p in settings.protections}
    assert {"cell_overvoltage", "cell_undervoltage", "overtemp", "undertemp"} <= names
    assert settings.protection("cell_overvoltage").alarm == pytest.approx(3.65)
    assert settings.heartbeat_timeout_s == 3.0 and settings.precharge_s <= 0.5


def test_a_bad_settings_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SETTINGS.replace("delay: 2 s", "delay: 2 V"))
    with pytest.raises(ValueError, match=r"protections\.overtemp\.delay"):
        load_bms_settings(path)


# -- the pack: contactor, energy and SoC -----------------------------------------------------------


def _battery(**overrides: object) -> Battery:
    values: dict[str, object] = {
        "charge_voltage_limit_v": 15 * 3.55,
        "discharge_voltage_limit_v": 15 * 2.8,
        "max_charge_current_a": 100.0,
        "max_discharge_current_a": 120.0,
        "initial_soc_pct": 50.0,
    }
    values.update(overrides)
    return Battery(BatteryParams(**values))  # type: ignore[arg-type]


def test_an_open_contactor_carries_no_current() -> None:
    battery = _battery()
    assert battery.bms is not None
    battery.bms.set_override("temperature", 70.0)
    battery.step(0.0, 3000.0)
    battery.step(3.0, 3000.0)  # 2 s delay, opened at once
    assert battery.contactor_state == 0.0 and not battery.contactor_closed
    soc = battery.soc_pct
    battery.step(0.0, 3000.0)
    battery.step(100.0, 3000.0)
    assert battery.current_a == 0.0 and battery.soc_pct == soc
    assert battery.max_discharge_power_w == 0.0 and battery.discharge_current_limit_a == 0.0
    assert battery.voltage_v == battery.open_circuit_voltage_v
    assert battery.protections == {"overtemp"} and battery.temperature_c == 70.0


def test_coulomb_counting_and_energy_balance() -> None:
    # 1 h at 1.5 kW discharge from 50 %: the charge taken is the integral of the current, and
    # the energy the pack delivered at its terminals is exactly the power asked for.
    battery = _battery()
    dt, charge_ah, energy_wh = 1.0, 0.0, 0.0
    for _ in range(3600):
        battery.step(0.0, 1500.0)
        charge_ah += -battery.current_a * dt / 3600.0
        energy_wh += battery.voltage_v * -battery.current_a * dt / 3600.0
        battery.step(dt, 1500.0)
    assert energy_wh == pytest.approx(1500.0, rel=1e-12)
    assert battery.soc_pct == pytest.approx(50.0 - charge_ah, rel=1e-9)  # 100 Ah: 1 Ah = 1 %
    assert 28.0 < charge_ah < 32.0  # about 1.5 kW / 49.5 V


def test_the_charge_limit_tapers_near_full_and_stops_at_full() -> None:
    battery = _battery(initial_soc_pct=99.0)
    # Shipped curve: charge x 1 up to 98 %, x 0.5 at 100 %: 99 % -> x 0.75.
    assert battery.charge_current_limit_a == pytest.approx(75.0)
    battery = _battery(initial_soc_pct=100.0)
    assert battery.charge_current_limit_a == 0.0


# -- through the plant and the CAN endpoints ---------------------------------------------------


def test_the_plant_lands_a_step_on_the_protection_delay() -> None:
    plant = make_plant()
    battery = plant.nodes[NODE].battery
    plant.nodes[NODE].inverter.set_power_setpoint(-0.5 * RATED)
    plant.advance(10.0123)
    assert battery.bms is not None
    battery.bms.set_override("cell_voltage", 3.7)
    plant.mark_event("fiu")
    plant.advance(20.0)
    alarm = [t for t, name in plant.events if name.endswith("alarm:cell_overvoltage")]
    assert alarm == [pytest.approx(11.0123, abs=1e-9)]
    assert plant.nodes[NODE].inverter.power_w == 0.0  # no charge allowed: the inverter follows


def _bus_pair(
    dbc: Path, battery: Battery
) -> tuple[VirtualBms, InverterHeartbeat, DbcBms, SimClock]:
    channel = f"test-bms-logic-{uuid.uuid4()}"
    vbms = VirtualBms(open_bus("virtual", channel), battery, "VIRTBATT", binding=binding_for(dbc))
    heartbeat = vbms.binding.heartbeat
    assert heartbeat is not None
    inverter = InverterHeartbeat(open_bus("virtual", channel), load_database(dbc), heartbeat)
    db = load_database(dbc)
    clock = SimClock()
    transport = CanTransport(open_bus("virtual", channel), db, clock.bus_time)
    bms_map = "hv_bms.yaml" if "hv" in dbc.name else "pylontech_lv_bms.yaml"
    harness = DbcBms(transport, load_bms_map(ROOT / "fixtures/maps" / bms_map, db), clock.now)
    t = {"plant": 0.0}

    def advance(until: float) -> None:
        battery.step(until - t["plant"], battery.power_w)
        t["plant"] = until
        inverter.advance(until)
        vbms.advance(until)

    clock.add_advancer(advance)
    clock.add_advancer(transport.advance)
    return vbms, inverter, harness, clock


@pytest.mark.parametrize("dbc", ["pylontech_lv.dbc", "hv_bms.dbc"])
def test_alarms_warnings_and_heartbeat_loss_reach_can(dbc: str) -> None:
    battery = _battery()
    vbms, inverter, bms, clock = _bus_pair(ROOT / "dbc" / dbc, battery)
    try:
        step: Callable[[float], None] = clock.sleep
        for _ in range(5):
            step(1.0)
        assert bms.alarms() == set() and bms.warnings() == set()
        assert battery.bms is not None and battery.bms.last_heartbeat == 5.0
        battery.bms.set_override("cell_voltage", 3.62)  # between warning and alarm
        step(1.0)
        assert bms.warnings() == {"overvoltage"} and bms.alarms() == set()
        battery.bms.set_override("cell_voltage", None)
        inverter.connected = False  # the CAN cable unplugged: last heartbeat at 6.0
        for _ in range(4):
            step(1.0)
        assert bms.value("charge_current_limit") == 0.0
        assert bms.value("discharge_current_limit") == 0.0
        if dbc.startswith("hv"):
            assert bms.heartbeat_lost() is True and bms.value("contactor_state") == 2.0
        else:
            assert bms.warnings() == {"internal"}
        inverter.connected = True
        step(1.0)  # the heartbeat at 11 reaches the BMS, which sees it from its next step
        step(1.0)
        assert bms.value("discharge_current_limit") == pytest.approx(120.0)
    finally:
        bms.disconnect()
        vbms.close()
        inverter.close()
