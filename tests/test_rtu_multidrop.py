"""Several devices on one RS-485 line: a site file whose inverters share one serial port, built
through the device registry, share one master (harness/transports/serial_line.py) over a socat
pty pair with two virtual units on the line (virtual_devices/endpoints/rtu_line.py); and the
site schema refuses one port with two settings, or one unit id twice on a port.

Skipped where socat is not installed (tests/serial_pair.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import ModbusRtuEndpoint, load_site
from harness.transports.modbus import ModbusClient, ModbusError
from harness.transports.serial_line import LINES, LineConflict
from tests import test_modbus_rtu as rtu
from tests.test_modbus_rtu import BAUD, PARITY, Line, SiteFor, build_inverter

# The RS-485 line of test_modbus_rtu: two virtual inverters as units 1 and 2 on one pty pair.
cluster, pair, line, rtu_site = rtu.cluster, rtu.pair, rtu.line, rtu.rtu_site

ROOT = Path(__file__).resolve().parents[1]
SUNS = [0x5375, 0x6E53]  # "SunS", the SunSpec marker at 40000


def test_two_drivers_of_a_site_share_one_port(line: Line, rtu_site: SiteFor) -> None:
    site = rtu_site(units=(1, 2))
    first = build_inverter(site, "home-1")
    try:
        second = build_inverter(site, "home-2")  # a second open of the port would fail here
        try:
            assert LINES.open_ports() == [line.pair.b]
            assert first.identity().serial == line.site.node("home-1").inverter.identity.serial
            assert second.identity().serial == line.site.node("home-2").inverter.identity.serial
            second.set_power(-700.0)
            line.advance(1.0)
            assert line.plant.nodes["home-2"].inverter.setpoint_w == -700.0
            assert line.plant.nodes["home-1"].inverter.setpoint_w == 0.0
            assert second.power() == pytest.approx(-700.0, abs=1.0)
            assert first.power() == pytest.approx(0.0, abs=1.0)
        finally:
            second.disconnect()
        assert LINES.open_ports() == [line.pair.b]  # home-1 still holds the line
        assert first.power() == pytest.approx(0.0, abs=1.0)
    finally:
        first.disconnect()
    assert LINES.open_ports() == []
    with ModbusClient.rtu(line.pair.b, baudrate=BAUD, parity=PARITY, timeout=0.5) as alone:
        assert alone.read_holding(40000, 2, unit=1) == SUNS  # the port was released


def test_requests_from_two_threads_are_serialized_on_the_line(line: Line) -> None:
    handles = [LINES.handle(line.pair.b, baudrate=BAUD, parity=PARITY, timeout=0.5) for _ in (1, 2)]
    answers: dict[int, list[list[int]]] = {1: [], 2: []}
    failures: list[BaseException] = []

    def hammer(unit: int) -> None:
        try:
            for _ in range(15):
                answers[unit].append(handles[unit - 1].read_holding(40000, 2, unit=unit))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(u,)) for u in (1, 2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20.0)
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert answers == {1: [SUNS] * 15, 2: [SUNS] * 15}
    finally:
        for h in handles:
            h.close()
    assert LINES.open_ports() == []


def test_each_handle_keeps_its_own_timeout(line: Line) -> None:
    slow = LINES.handle(line.pair.b, baudrate=BAUD, parity=PARITY, timeout=2.0)
    quick = LINES.handle(line.pair.b, baudrate=BAUD, parity=PARITY, timeout=0.2, retries=0)
    try:
        assert slow.read_holding(40000, 2, unit=1) == SUNS  # the line opened with 2 s
        start = time.monotonic()
        with pytest.raises(ModbusError, match="unit 9") as info:  # nobody is unit 9
            quick.read_holding(40000, 2, unit=9)
        assert info.value.code is None
        assert time.monotonic() - start < 1.0  # the quick handle's 0.2 s, not the line's 2 s
        assert slow.read_holding(40000, 2, unit=2) == SUNS  # the line reopens for the others
    finally:
        quick.close()
        slow.close()
    with pytest.raises(RuntimeError, match="closed"):
        quick.read_holding(40000, 2, unit=1)


def test_a_second_setting_for_an_open_port_is_refused(line: Line) -> None:
    handle = LINES.handle(line.pair.b, baudrate=BAUD, parity=PARITY, timeout=0.5)
    try:
        with pytest.raises(LineConflict, match=f"{line.pair.b}: open at {BAUD} baud"):
            LINES.handle(line.pair.b, baudrate=19200, parity=PARITY, timeout=0.5)
        assert handle.read_holding(40000, 2, unit=1) == SUNS
    finally:
        handle.close()
    assert LINES.open_ports() == []


def _two_on_one_port(tmp_path: Path, second: str) -> Path:
    """A site file with an inverter and a meter on /dev/ttyUSB0; ``second`` is the meter's
    endpoint settings."""
    bms = (
        f"    bms: {{driver: dbc, dbc: {ROOT}/dbc/pylontech_lv.dbc, "
        f"binding: {ROOT}/fixtures/maps/pylontech_lv_bms.yaml, "
        "endpoint: {transport: can, interface: virtual, channel: c1}}\n"
    )
    path = tmp_path / "line.yaml"
    path.write_text(
        "site: {name: line, topology: ac_coupled, nominal_voltage: 240 V,"
        " nominal_frequency: 60 Hz}\n"
        "nodes:\n"
        "  - name: home-1\n"
        "    inverter:\n"
        "      driver: sunspec\n"
        "      endpoint: {transport: modbus_rtu, port: /dev/ttyUSB0, baudrate: 9600,"
        " parity: E, unit: 1}\n"
        "      rated_power: 5 kW\n"
        f"{bms}"
        "instruments:\n"
        "  grid: {driver: operator, endpoint: {transport: manual}}\n"
        "  analyzer: {driver: operator, endpoint: {transport: manual}}\n"
        "meter:\n"
        "  driver: sunspec\n"
        f"  endpoint: {{transport: modbus_rtu, port: /dev/ttyUSB0, {second}}}\n"
    )
    return path


def test_site_schema_accepts_devices_sharing_a_line(tmp_path: Path) -> None:
    site = load_site(_two_on_one_port(tmp_path, "baudrate: 9600, parity: E, unit: 2"))
    assert site.spec.meter is not None
    meter, inverter = site.spec.meter.endpoint, site.node("home-1").inverter.endpoint
    assert isinstance(meter, ModbusRtuEndpoint) and isinstance(inverter, ModbusRtuEndpoint)
    assert (meter.port, meter.unit, inverter.unit) == (inverter.port, 2, 1)


@pytest.mark.parametrize(
    ("second", "field", "words"),
    [
        ("baudrate: 19200, parity: E, unit: 2", "meter.endpoint.baudrate", "baudrate 19200 here"),
        ("baudrate: 9600, parity: N, unit: 2", "meter.endpoint.parity", "parity N here, E at"),
        ("baudrate: 9600, parity: E, unit: 1", "meter.endpoint.unit", "unit 1 is already"),
    ],
)
def test_site_schema_refuses_a_conflicting_line(
    tmp_path: Path, second: str, field: str, words: str
) -> None:
    path = _two_on_one_port(tmp_path, second)
    with pytest.raises(ConfigErrors) as info:
        load_site(path)
    text = str(info.value)
    assert str(path) in text and field in text and words in text
    assert "nodes[0].inverter.endpoint" in text  # names the device it conflicts with
