"""Protection and enter-service defects of the virtual inverter change what the plant does.

Each defect hook makes the unit deviate from its settings (which stay as configured); these tests
step the plant directly and compare the event log with the settings and with the defect's value.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_plant import NODE, RATED, V_NOM, event_time, make_plant
from virtual_devices.plant.params import TRIP_FUNCTIONS, InverterParams
from virtual_devices.plant.plant import Plant

# Per function: where the grid goes to be beyond that threshold (and no other function's, or one
# that clears later), the unit's setting (Category II), and a defective clearing time.
BEYOND = {
    "ov2": ("voltage", 1.25, 0.16, 0.23),
    "ov1": ("voltage", 1.15, 2.0, 2.7),
    "uv1": ("voltage", 0.60, 10.0, 8.5),
    "uv2": ("voltage", 0.40, 0.16, 0.21),
    "of2": ("frequency", 62.5, 0.16, 0.19),
    "of1": ("frequency", 61.5, 300.0, 305.5),
    "uf1": ("frequency", 58.0, 300.0, 296.0),
    "uf2": ("frequency", 56.0, 0.16, 0.3),
}


def _step(plant: Plant, quantity: str, value: float) -> float:
    if quantity == "voltage":
        plant.grid.set_voltage(value * V_NOM)
    else:
        plant.grid.set_frequency(value)
    return plant.t


def _clearing(plant: Plant, function: str) -> float:
    quantity, level, _, actual = BEYOND[function]
    plant.nodes[NODE].inverter.set_power_setpoint(0.3 * RATED)
    plant.advance(2.0)
    stepped = _step(plant, quantity, level)
    plant.advance(stepped + 1.5 * max(actual, BEYOND[function][2]))
    return event_time(plant, f"{NODE}.inverter.trip:{function}") - stepped


def test_the_table_covers_every_trip_function() -> None:
    assert set(BEYOND) == set(TRIP_FUNCTIONS)


@pytest.mark.parametrize("function", TRIP_FUNCTIONS)
def test_trip_time_defect_clears_at_its_own_time(function: str) -> None:
    _, _, setting, actual = BEYOND[function]
    assert _clearing(make_plant(), function) == pytest.approx(setting, abs=1e-9)
    defective = make_plant(inverter={"trip_times_s": {function: actual}})
    assert _clearing(defective, function) == pytest.approx(actual, abs=1e-9)
    # The setting the unit reports is untouched: only its behaviour is wrong.
    assert defective.nodes[NODE].inverter.params.trips[function].clearing_time_s == setting


def _return_after_outage(plant: Plant, *, voltage_pu: float = 1.0) -> float:
    """Export, lose the grid (the unit ceases), bring it back at ``voltage_pu``; return that time."""
    plant.nodes[NODE].inverter.set_power_setpoint(RATED)
    plant.advance(5.0)
    plant.grid.set_output(False)
    plant.advance(10.0)
    assert plant.nodes[NODE].inverter.state == "TRIPPED"
    plant.grid.set_voltage(voltage_pu * V_NOM)
    plant.grid.set_output(True)
    return plant.t


@pytest.mark.parametrize(("delay", "expected"), [(None, 300.0), (287.25, 287.25)])
def test_enter_service_delay_defect_changes_the_wait(delay: float | None, expected: float) -> None:
    plant = make_plant(inverter={"enter_service_delay_s": delay})
    inverter = plant.nodes[NODE].inverter
    returned = _return_after_outage(plant)
    plant.advance(returned + 1.0)
    assert inverter.enter_service_due == pytest.approx(returned + expected)
    plant.advance(returned + 400.0)
    entered = event_time(plant, f"{NODE}.inverter.enter_service")
    assert entered - returned == pytest.approx(expected, abs=1e-9)
    assert inverter.params.enter_service.delay_s == 300.0  # the reported setting


@pytest.mark.parametrize(("ramp", "expected"), [(None, 300.0), (241.5, 241.5)])
def test_ramp_rate_defect_changes_the_ramp_period(ramp: float | None, expected: float) -> None:
    plant = make_plant(inverter={"enter_service_ramp_s": ramp, "setpoint_ramp_w_per_s": 1e9})
    returned = _return_after_outage(plant)
    handle = plant.recorder.start([f"{NODE}.inverter.power"])
    plant.advance(returned + 300.0 + 400.0)
    times, power = plant.recorder.stop(handle)[f"{NODE}.inverter.power"]
    entered = event_time(plant, f"{NODE}.inverter.enter_service")
    assert entered - returned == pytest.approx(300.0, abs=1e-9)
    expected_power = np.clip((times - entered) / expected, 0.0, 1.0) * RATED
    np.testing.assert_allclose(power, expected_power, atol=1e-6)
    assert power[times >= entered + expected][0] == pytest.approx(RATED)


@pytest.mark.parametrize("ignore", [False, True])
def test_ignoring_the_window_exports_outside_it(ignore: bool) -> None:
    plant = make_plant(inverter={"ignore_enter_service_window": ignore})
    inverter = plant.nodes[NODE].inverter
    returned = _return_after_outage(plant, voltage_pu=1.07)  # above the window's 1.05 pu
    plant.advance(returned + 400.0)
    if ignore:
        entered = event_time(plant, f"{NODE}.inverter.enter_service")
        assert entered - returned == pytest.approx(300.0, abs=1e-9)
        assert inverter.power_w > 0.0
    else:
        assert inverter.state == "TRIPPED"
        assert inverter.power_w == 0.0
        assert inverter.enter_service_due is None


def test_ignoring_the_window_no_longer_restarts_the_delay() -> None:
    plant = make_plant(inverter={"ignore_enter_service_window": True})
    returned = _return_after_outage(plant)
    plant.advance(returned + 75.0)
    plant.grid.set_voltage(1.07 * V_NOM)  # an excursion a healthy unit restarts its delay on
    plant.advance(returned + 150.0)
    plant.grid.set_voltage(V_NOM)
    plant.advance(returned + 400.0)
    entered = event_time(plant, f"{NODE}.inverter.enter_service")
    assert entered - returned == pytest.approx(300.0, abs=1e-9)


def test_defect_parameters_are_checked() -> None:
    base = make_plant().nodes[NODE].inverter.params
    args = (base.rated_power_w, V_NOM, 60.0, base.trips, base.enter_service)
    with pytest.raises(ValueError, match="unknown trip functions"):
        InverterParams(*args, trip_times_s={"ov3": 1.0})
    with pytest.raises(ValueError, match="must be >= 0"):
        InverterParams(*args, trip_times_s={"ov2": -0.1})
    with pytest.raises(ValueError, match="enter_service_delay_s"):
        InverterParams(*args, enter_service_delay_s=-1.0)
    with pytest.raises(ValueError, match="enter_service_ramp_s"):
        InverterParams(*args, enter_service_ramp_s=float("nan"))
