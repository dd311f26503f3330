"""The virtual inverter's communication-loss supervision (SunSpec 704 reversion points).

In the plant: armed, the unit reverts to its safe setpoint exactly ``timeout`` after the last
request it heard (plus the ``comm_loss_delay`` defect; never with ``comm_loss_ignored``), ramps
there from that instant only, and a new setpoint ends the reversion. Over a real Modbus server:
the harness's writes arm it, and every request, a read as much as a write, restarts the timer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from harness.devices.comm_supervision import clear_comm_loss, set_comm_loss, traffic
from harness.devices.inverter import SunSpecInverter
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import ModbusClient
from tests.test_plant import NODE, RATED, event_time, make_plant
from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint
from virtual_devices.plant.plant import Plant

REVERT = f"{NODE}.inverter.comm_loss:0"


def _armed(plant: Plant, timeout: float = 10.0) -> None:
    inverter = plant.nodes[NODE].inverter
    inverter.comm.heard(plant.t)
    inverter.configure_comm_supervision(enabled=True, timeout_s=timeout, safe_setpoint_w=0.0)
    inverter.set_power_setpoint(0.5 * RATED)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, 10.0), ({"comm_loss_delay_s": 0.55}, 10.55)],
    ids=["healthy", "delayed"],
)
def test_the_unit_reverts_exactly_at_its_timeout(
    options: dict[str, float], expected: float
) -> None:
    plant = make_plant(inverter=options)  # type: ignore[arg-type]
    plant.advance(1.0)
    _armed(plant)
    plant.advance(30.0)
    assert event_time(plant, REVERT) == pytest.approx(1.0 + expected, abs=1e-9)
    inverter = plant.nodes[NODE].inverter
    assert inverter.setpoint_w == 0.0 and inverter.power_w == 0.0


def test_the_ramp_down_starts_at_the_reversion_not_a_step_before() -> None:
    plant = make_plant()
    _armed(plant)
    plant.advance(10.0 + 0.01)  # 10 ms after the reversion at 10 s; ramp: rated per second
    assert plant.nodes[NODE].inverter.power_w == pytest.approx(0.5 * RATED - 0.01 * RATED)


def test_requests_restart_the_timer_and_a_new_setpoint_ends_a_reversion() -> None:
    plant = make_plant()
    _armed(plant)
    inverter = plant.nodes[NODE].inverter
    plant.advance(8.0)
    inverter.comm.heard(plant.t)  # a read at 8 s
    plant.advance(17.9)
    assert not [e for _, e in plant.events if e == REVERT]
    plant.advance(20.0)
    assert event_time(plant, REVERT) == pytest.approx(18.0)
    inverter.comm.heard(plant.t)
    plant.advance(25.0)
    assert inverter.setpoint_w == 0.0  # heard again, yet still at the safe setpoint
    inverter.set_power_setpoint(0.2 * RATED)
    plant.advance(26.0)
    assert inverter.power_w == pytest.approx(0.2 * RATED)


def test_an_inverter_that_ignores_comm_loss_keeps_its_setpoint() -> None:
    plant = make_plant(inverter={"comm_loss_ignored": True})  # type: ignore[dict-item]
    _armed(plant)
    plant.advance(60.0)
    assert plant.nodes[NODE].inverter.power_w == pytest.approx(0.5 * RATED)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread("test-comm-loss")
    try:
        yield lt
    finally:
        lt.stop()


def test_over_modbus_writes_arm_it_and_every_request_restarts_it(loop: LoopThread) -> None:
    plant = make_plant()
    lock = threading.RLock()
    identity = {"Mn": "Acme", "Md": "Virtual", "SN": "1", "Vr": "1.0"}
    ep = SunSpecInverterEndpoint(plant.nodes[NODE], plant, identity, lock=lock, loop=loop)
    ep.start()
    client = ModbusClient("127.0.0.1", ep.port, timeout=1.0)
    try:
        inverter = SunSpecInverter.connect("inv", client)
        with traffic(inverter, lambda: plant.t) as log:
            set_comm_loss(inverter, 5.0, 0.0)
            inverter.set_power(0.5 * RATED)
            with lock:
                plant.advance(4.0)
            # Reading the count is itself a request: it restarts at the full timeout (4 s).
            assert inverter.device.read("DERCtlAC.WSetRvrtRem") == 5.0
            assert inverter.power() == pytest.approx(0.5 * RATED)
            with lock:
                plant.advance(8.9)
            assert not [e for _, e in plant.events if e == REVERT]
            with lock:
                plant.advance(12.0)
            assert event_time(plant, REVERT) == pytest.approx(9.0)
            assert log.last() == pytest.approx(4.0)  # the harness's own record agrees
            clear_comm_loss(inverter)
        assert inverter.device.read("DERCtlAC.WSetRvrtTms") == 0.0
    finally:
        client.close()
        ep.stop()
