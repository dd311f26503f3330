"""The virtual inverter in normal operation: setpoint ramp (and its gain defect), dispatch delay,
SoC reserve (and its floor defect), and the data file and site defects that set them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from tests.conftest import DefectSite
from tests.test_plant import NODE, RATED, event_time, make_plant
from virtual_devices.defects import parse_defects
from virtual_devices.plant.operation import DEFAULT_OPERATION, load_operation_settings
from virtual_devices.plant_config import plant_params


def test_output_follows_a_setpoint_at_the_ramp_times_its_gain() -> None:
    for gain in (1.0, 1.25):
        plant = make_plant(inverter={"setpoint_ramp_w_per_s": 2000.0, "setpoint_ramp_gain": gain})
        inverter = plant.nodes[NODE].inverter
        inverter.set_power_setpoint(4000.0)
        plant.advance(1.0)
        assert inverter.power_w == pytest.approx(2000.0 * gain, rel=1e-9)
        plant.advance(3.0)
        assert inverter.power_w == pytest.approx(4000.0)


def test_a_dispatch_delay_applies_the_setpoint_exactly_that_much_later() -> None:
    plant = make_plant(inverter={"dispatch_delay_s": 0.3})
    inverter = plant.nodes[NODE].inverter
    plant.advance(1.0)
    inverter.set_power_setpoint(2500.0)
    assert inverter.setpoint_w == 0.0
    plant.advance(1.2999)
    assert inverter.power_w == 0.0
    plant.advance(2.0)
    assert event_time(plant, f"{NODE}.inverter.setpoint:2500") == pytest.approx(1.3, abs=1e-9)
    # From then on at the default ramp (rated power per second): 0.5 s to 2.5 kW.
    assert inverter.power_w == pytest.approx(2500.0)
    # Commanded again (the same value) and then another: each applied once, in order.
    inverter.set_power_setpoint(2500.0)
    inverter.set_power_setpoint(-500.0)
    plant.advance(2.1)
    assert inverter.setpoint_w == 2500.0
    plant.advance(2.4)
    assert inverter.setpoint_w == -500.0
    applied = [e for _, e in plant.events if e.startswith(f"{NODE}.inverter.setpoint:")]
    assert applied == [f"{NODE}.inverter.setpoint:2500", f"{NODE}.inverter.setpoint:-500"]


def test_without_a_delay_the_setpoint_applies_at_once() -> None:
    plant = make_plant()
    inverter = plant.nodes[NODE].inverter
    inverter.set_power_setpoint(-1000.0)
    assert inverter.setpoint_w == -1000.0


def test_discharge_stops_at_the_soc_reserve_and_charge_is_still_allowed() -> None:
    plant = make_plant(
        inverter={"soc_reserve_pct": (12.0, 100.0)},
        battery={"initial_soc_pct": 12.5, "capacity_ah": 5.0},
    )
    node = plant.nodes[NODE]
    node.inverter.set_power_setpoint(RATED)
    plant.advance(120.0)
    assert node.inverter.power_w == 0.0
    assert 11.9 < node.battery.soc_pct <= 12.0
    node.inverter.set_power_setpoint(-RATED / 2)
    plant.advance(125.0)
    assert node.inverter.power_w < 0.0 and node.battery.soc_pct > 12.0


def test_charge_stops_at_the_top_of_the_soc_reserve() -> None:
    plant = make_plant(
        inverter={"soc_reserve_pct": (10.0, 80.0)},
        battery={"initial_soc_pct": 79.5, "capacity_ah": 5.0},
    )
    node = plant.nodes[NODE]
    node.inverter.set_power_setpoint(-RATED)
    plant.advance(120.0)
    assert node.inverter.power_w == 0.0
    assert 80.0 <= node.battery.soc_pct < 80.1


def test_the_floor_defect_discharges_below_the_reserve() -> None:
    plant = make_plant(
        inverter={"soc_reserve_pct": (12.0, 100.0), "soc_floor_applied_pct": 9.5},
        battery={"initial_soc_pct": 12.5, "capacity_ah": 5.0},
    )
    node = plant.nodes[NODE]
    assert node.inverter.params.soc_reserve_pct == (12.0, 100.0)  # what it is set to
    node.inverter.set_power_setpoint(RATED)
    plant.advance(300.0)
    assert node.inverter.power_w == 0.0
    assert 9.4 < node.battery.soc_pct <= 9.5


def test_operation_settings_come_from_the_data_file(tmp_path: Path) -> None:
    settings = load_operation_settings(DEFAULT_OPERATION)
    assert settings.ramp_w_per_s(5000.0) == pytest.approx(5000.0)
    assert settings.soc_reserve_pct == (12.0, 100.0)
    bad = tmp_path / "operation.yaml"
    bad.write_text("setpoint_ramp: 100 %/s\nsoc_reserve: {min: 12}\n")
    with pytest.raises(ConfigErrors, match=r"soc_reserve.min.*no unit"):
        load_operation_settings(bad)
    bad.write_text("setpoint_ramp: 100 %/s\nsoc_reserve: {min: 50 %, max: 40 %}\n")
    with pytest.raises(ConfigErrors, match="soc_reserve: need 0 % <= min < max"):
        load_operation_settings(bad)


def test_operation_defects_set_the_inverter(defect_site: DefectSite) -> None:
    path = defect_site(
        "  - {device: home-1.inverter, kind: setpoint_ramp_gain, value: 1.2}\n"
        "  - {device: home-1.inverter, kind: dispatch_delay, value: 250 ms}\n"
        "  - {device: home-1.inverter, kind: soc_floor_ignored, value: 9.5 %}"
    )
    site = load_site(path)
    inverter = plant_params(site, parse_defects(site)).nodes[0].inverter
    assert inverter.applied_ramp_w_per_s == pytest.approx(1.2 * inverter.rated_power_w)
    assert inverter.dispatch_delay_s == pytest.approx(0.25)
    assert inverter.soc_floor_pct == pytest.approx(9.5)
    assert inverter.soc_reserve_pct == (12.0, 100.0)
