"""The virtual EMS in the plant: shutdown to a dead site, the black-start sequence in its data
file's order and timing, what each step acts on (contactors, grid-forming soft start, loads by
priority, further banks), its swap and delay defects, and a step that never comes (FAULT)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.test_plant import F_NOM, RATED, V_NOM, battery_params, cat2_trips, enter_service
from virtual_devices.plant.ems import BLACK_START, FAULT, ISLANDED, SHUTDOWN
from virtual_devices.plant.ems_params import STEPS, EmsParams, load_ems_settings
from virtual_devices.plant.island_params import GridFormingParams, LoadParams
from virtual_devices.plant.params import InverterParams, NodeParams, PlantParams
from virtual_devices.plant.plant import Plant

SETTINGS = load_ems_settings()


def site(ems: EmsParams = SETTINGS) -> Plant:
    """A grid-forming home with a critical and a deferrable load, a grid-following home with an
    essential load, and an EMS."""
    gf = InverterParams(
        RATED, V_NOM, F_NOM, cat2_trips(), enter_service(), grid_forming=GridFormingParams()
    )
    gfl = InverterParams(RATED, V_NOM, F_NOM, cat2_trips(), enter_service())
    nodes = [
        NodeParams(
            "a",
            gf,
            battery_params(),
            [LoadParams("med", "critical", 500.0), LoadParams("ev", "deferrable", 500.0)],
        ),
        NodeParams("b", gfl, battery_params(), [LoadParams("hp", "essential", 400.0)]),
    ]
    return Plant(PlantParams(V_NOM, F_NOM, nodes, ems=ems))


def dead(p: Plant) -> float:
    """Grid off, PCC open, the EMS shut the site down; returns the instant it is dead."""
    p.advance(1.0)
    p.grid.set_output(False)
    p.pcc.open()
    assert p.ems is not None
    p.ems.shutdown(p.t)
    p.mark_event("ems.shutdown")
    p.advance(5.0)
    assert p.bus_voltage_v < 0.01 * V_NOM
    assert not any(n.battery.contactor_closed for n in p.nodes.values())
    assert not any(load.closed for load in p.loads.loads)
    return p.t


def start(p: Plant) -> float:
    assert p.ems is not None
    p.ems.black_start(p.t)
    p.mark_event("ems.black_start")
    return p.t


def test_data_file_names_every_step_once_in_the_reference_order() -> None:
    assert [s.name for s in SETTINGS.steps] == list(STEPS)


def test_black_start_runs_the_sequence_in_order_and_picks_up_the_loads() -> None:
    p = site()
    dead(p)
    t0 = start(p)
    assert p.ems is not None and p.ems.state == BLACK_START
    p.advance(t0 + 30.0)
    assert p.ems.state == ISLANDED
    log = p.ems.log
    assert [s.name for s in log] == list(STEPS)
    times = [s.at_s for s in log]
    assert times == sorted(times)
    # Each step lasts at least its minimum: BMS self-test 2 s, heartbeat 1 s after it.
    by_name = {s.name: s.at_s for s in log}
    assert by_name["bms_wake"] == pytest.approx(2.0, abs=1e-6)
    assert by_name["heartbeat"] == pytest.approx(3.0, abs=1e-6)
    # The bank precharges from the negative contactor's command (the BMS's 0.3 s); the EMS sees
    # it on its next control cycle.
    assert 3.3 - 1e-6 <= by_name["precharge"] <= 3.3 + SETTINGS.scan_s + 1e-6
    # The bus is held at nominal and every load is back; the other bank is paralleled.
    assert p.bus_voltage_v == pytest.approx(V_NOM, rel=0.02)
    assert all(load.closed for load in p.loads.loads)
    assert all(n.battery.contactor_closed for n in p.nodes.values())
    # The critical load's breaker closed at its step's start, after V/f were checked.
    closed = [t for t, e in p.events if e == "load:a.load.med:close"]
    assert closed and closed[0] - t0 == pytest.approx(by_name["vf_check"], abs=1e-9)


def test_black_start_is_refused_unless_the_site_is_shut_down_and_the_grid_gone() -> None:
    p = site()
    assert p.ems is not None
    with pytest.raises(ValueError, match="SHUTDOWN"):
        p.ems.black_start(p.t)
    p.ems.shutdown(p.t)
    with pytest.raises(ValueError, match="grid is present"):
        p.ems.black_start(p.t)
    assert p.ems.state == SHUTDOWN


def test_order_defect_runs_the_named_steps_in_the_order_given() -> None:
    p = site(SETTINGS.with_defects(("positive_contactor", "precharge"), {}))
    dead(p)
    t0 = start(p)
    p.advance(t0 + 30.0)
    assert p.ems is not None and p.ems.state == ISLANDED
    names = [s.name for s in p.ems.log]
    assert names.index("positive_contactor") < names.index("precharge")
    clean = [s.name for s in SETTINGS.steps]
    assert [n for n in names if n not in ("precharge", "positive_contactor")] == [
        n for n in clean if n not in ("precharge", "positive_contactor")
    ]  # the steps it does not name keep their places


def test_order_defect_of_three_steps_keeps_their_places_between_them() -> None:
    order = ("pick_up_deferrable", "pick_up_critical", "pick_up_essential")
    names = [s.name for s in SETTINGS.with_defects(order, {}).run_order]
    clean = [s.name for s in SETTINGS.steps]
    first = clean.index("pick_up_critical")
    assert names[first : first + 3] == list(order)
    assert names[:first] == clean[:first] and names[first + 3 :] == clean[first + 3 :]


def test_delay_defect_makes_one_step_that_much_longer() -> None:
    clean, slow = site(), site(SETTINGS.with_defects(None, {"vf_check": 2.5}))
    for p in (clean, slow):
        dead(p)
        t0 = start(p)
        p.advance(t0 + 30.0)
    assert clean.ems is not None and slow.ems is not None
    a = {s.name: s.at_s for s in clean.ems.log}
    b = {s.name: s.at_s for s in slow.ems.log}
    assert b["grid_forming_start"] == pytest.approx(a["grid_forming_start"], abs=1e-9)
    assert b["vf_check"] - a["vf_check"] == pytest.approx(2.5, abs=SETTINGS.scan_s + 1e-9)


def test_a_step_whose_condition_never_comes_ends_in_fault() -> None:
    # The positive contactor confirmed before anything told the bank to connect: never closes.
    steps = [s for s in SETTINGS.steps if s.name != "negative_contactor"]
    p = site(replace(SETTINGS, steps=tuple(steps)))
    dead(p)
    t0 = start(p)
    p.advance(t0 + 30.0)
    assert p.ems is not None and p.ems.state == FAULT
    assert p.ems.current_step == "precharge"
    assert [s.name for s in p.ems.log] == ["bms_wake", "heartbeat"]
    assert p.bus_voltage_v < 0.01 * V_NOM  # nothing formed the bus


def test_normal_reconnects_every_bank_and_load() -> None:
    p = site()
    dead(p)
    assert p.ems is not None
    p.ems.normal(p.t)
    p.mark_event("ems.normal")
    p.advance(p.t + 1.0)
    assert all(n.battery.contactor_closed for n in p.nodes.values())
    assert all(load.closed for load in p.loads.loads)


def test_unknown_step_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown EMS step 'precharg'"):
        SETTINGS.with_defects(("precharg", "heartbeat"), {})
    assert RATED > 0


# -- peak shaving ---------------------------------------------------------------------------------


def shaved(offset_w: float = 0.0, start: float = 5.0) -> list[float]:
    """PCC import each second for 60 s after a 7 kW step on a 5 kW threshold (loads 1.4 kW)."""
    p = site(SETTINGS.with_peak_offset(offset_w))
    assert p.ems is not None
    p.advance(start)
    p.ems.set_threshold(5000.0)
    p.ems.peak_shaving(p.t)
    p.island_load.set(7000.0, 1.0)
    t0 = p.t
    out = []
    for k in range(1, 61):
        p.advance(t0 + k)
        out.append(p.pcc_power_w)
    p.ems.normal(p.t)
    assert all(n.inverter.setpoint_w == 0.0 for n in p.nodes.values())
    return out


def test_peak_shaving_holds_the_import_at_the_threshold_and_its_defect_above_it() -> None:
    clean = shaved()
    assert clean[0] > 5000.0  # the step's first cycle is not shaved yet
    assert clean[-1] == pytest.approx(5000.0, abs=SETTINGS.peak.deadband_w)
    off = shaved(250.0)
    assert off[-1] == pytest.approx(5250.0, abs=SETTINGS.peak.deadband_w)


def test_a_control_cycle_a_hair_away_still_runs() -> None:
    """A clock that stops a hair short of a control cycle's instant (floating point, hours into
    a run) must not make the EMS skip that cycle, nor every later one."""
    p = site()
    assert p.ems is not None
    p.advance(5.0)
    p.ems.set_threshold(5000.0)
    p.ems.peak_shaving(p.t)
    p.island_load.set(7000.0, 1.0)
    first_cycle = p.t + SETTINGS.peak.cycle_s
    p.advance(first_cycle - 1e-10)
    p.advance(first_cycle + 0.5 * SETTINGS.peak.cycle_s)
    assert sum(n.inverter.setpoint_w for n in p.nodes.values()) > 0.0


def test_peak_shaving_only_from_normal() -> None:
    p = site()
    assert p.ems is not None
    p.ems.shutdown(p.t)
    with pytest.raises(ValueError, match="NORMAL"):
        p.ems.peak_shaving(p.t)
