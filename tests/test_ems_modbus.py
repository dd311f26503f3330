"""The EMS over Modbus TCP: the virtual EMS's server (fixtures/maps/ems.yaml) and the harness's
``modbus_ems`` driver talking to it on loopback, the plant advanced in between."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from harness.devices.ems import ModbusEms
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import ModbusClient, WriteRefused
from tests.test_plant_ems import site
from virtual_devices.endpoints.ems import EmsEndpoint
from virtual_devices.plant.plant import Plant


@pytest.fixture
def served() -> Iterator[tuple[Plant, ModbusEms]]:
    p = site()
    assert p.ems is not None
    loop = LoopThread("test-ems")
    endpoint = EmsEndpoint(p.ems, lambda: p.t, p.mark_event, lock=threading.RLock(), loop=loop)
    endpoint.start()
    client = ModbusClient("127.0.0.1", endpoint.port, timeout=1.0)
    try:
        yield p, ModbusEms.from_map("ems", client)
    finally:
        client.close()
        endpoint.stop()
        loop.stop()


def test_black_start_through_the_map_and_its_log_read_back(served) -> None:
    p, ems = served
    assert ems.state() == "NORMAL" and ems.sequence() == []
    with pytest.raises(DeviceError, match="black start refused"):
        ems.black_start()  # not shut down: ILLEGAL DATA VALUE, nothing done
    ems.shutdown()
    with pytest.raises(DeviceError, match="black start refused"):
        ems.black_start()  # the grid is still there
    p.grid.set_output(False)
    p.pcc.open()
    p.advance(p.t + 2.0)
    ems.black_start()
    assert ems.state() == "BLACK_START" and ems.current_step() == "bms_wake"
    p.advance(p.t + 30.0)
    assert ems.state() == "ISLANDED" and ems.current_step() is None
    assert p.ems is not None
    assert ems.sequence() == [(s.name, pytest.approx(s.at_s, abs=1e-3)) for s in p.ems.log]
    ems.normal()
    assert ems.state() == "NORMAL"


def test_peak_shaving_threshold_written_in_kw_and_guarded(served) -> None:
    p, ems = served
    ems.peak_shaving(4200.0)
    assert p.ems is not None and p.ems.threshold_w == pytest.approx(4200.0)
    assert ems.state() == "PEAK_SHAVING"
    with pytest.raises((DeviceError, WriteRefused)):
        ems.peak_shaving(700_000.0)  # beyond the map's declared range: never sent
    assert p.ems.threshold_w == pytest.approx(4200.0)
