"""Modbus RTU on a serial line: virtual SunSpec inverters of a real plant served on one end of a
socat pty pair (virtual_devices/endpoints/rtu_line.py), the harness's own client path on the other
(a site file's ``modbus_rtu`` endpoint -> the device registry -> ModbusClient.rtu -> the SunSpec
driver), and pysunspec2's RTU client as an independent witness of the framing.

Only the cable is simulated (two pseudo-terminals); pyserial, the RTU framer, CRCs and timeouts
are the ones a USB-RS-485 adapter would see. Skipped where socat is not installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from sunspec2.modbus.client import SunSpecModbusClientDeviceRTU

from harness.clock import RealClock
from harness.config.site import ModbusRtuEndpoint, Site, load_site
from harness.devices.inverter import SunSpecInverter
from harness.devices.registry import default_registry
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import ModbusClient, ModbusError, Transaction, WriteRefused
from harness.transports.regmap import encode
from tests.serial_pair import SerialPair, alive, serial_pair
from virtual_devices.defects import parse_defects
from virtual_devices.endpoints.inverter import MODELS, SunSpecInverterEndpoint
from virtual_devices.endpoints.rtu_line import RtuLine
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"
ILLEGAL_ADDRESS, ILLEGAL_VALUE = 2, 3
# A Linux pty has no parity (the driver drops PARENB; a tcsetattr that only asks for parity
# fails with EINVAL), so the pair runs 8N1; the baud rate is accepted and has no effect.
BAUD, PARITY = 9600, "N"
UNITS = {1: "home-1", 2: "home-2"}  # unit id on the line -> plant node behind it


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SerialPair]:
    with serial_pair(tmp_path / "tty") as p:
        yield p
    assert not alive(p.pid), "socat outlived its pair"


@dataclass
class Line:
    """Two homes' inverters as units 1 and 2 on the server end (``pair.a``) of one line."""

    pair: SerialPair
    plant: Plant
    lock: threading.RLock
    site: Site  # the virtual cluster the plant was built from (identities, ratings)
    endpoints: dict[int, SunSpecInverterEndpoint]
    rtu: RtuLine

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.plant.advance(self.plant.t + seconds)


@pytest.fixture(scope="module")
def cluster() -> Site:
    return load_site(CLUSTER)


@pytest.fixture
def line(pair: SerialPair, cluster: Site) -> Iterator[Line]:
    plant = Plant(plant_params(cluster, parse_defects(cluster)))
    lock = threading.RLock()
    loop = LoopThread("test-rtu-line")
    try:
        endpoints = {}
        for unit, name in UNITS.items():
            ident = cluster.node(name).inverter.identity
            endpoints[unit] = SunSpecInverterEndpoint(
                plant.nodes[name],
                plant,
                {"Mn": ident.manufacturer, "Md": ident.model, "SN": ident.serial},
                lock=lock,
                loop=loop,
                unit=unit,
            )
        rtu = RtuLine(
            pair.a, [e.server for e in endpoints.values()], loop, baudrate=BAUD, parity=PARITY
        )
        with rtu:
            yield Line(pair, plant, lock, cluster, endpoints, rtu)
    finally:
        loop.stop()


SiteFor = Callable[..., Site]


@pytest.fixture
def rtu_site(tmp_path: Path, pair: SerialPair) -> SiteFor:
    """A site file whose inverters are on the client end of the line (``pair.b``)."""

    def make(units: tuple[int, ...] = (1,), timeout: float = 0.5) -> Site:
        nodes = "".join(
            f"""
  - name: home-{unit}
    inverter:
      driver: sunspec
      endpoint: {{transport: modbus_rtu, port: "{pair.b}", baudrate: {BAUD}, parity: {PARITY},
                 unit: {unit}, timeout: {timeout} s}}
      rated_power: 5 kW
    bms:
      driver: dbc
      dbc: {ROOT}/dbc/pylontech_lv.dbc
      binding: {ROOT}/fixtures/maps/pylontech_lv_bms.yaml
      endpoint: {{transport: can, interface: virtual, channel: unused-{unit}}}
"""
            for unit in units
        )
        path = tmp_path / f"rtu-{'-'.join(map(str, units))}.yaml"
        path.write_text(
            "site: {name: RS-485 line, topology: ac_coupled, nominal_voltage: 240 V,"
            " nominal_frequency: 60 Hz}\n"
            f"nodes:{nodes}"
            "instruments:\n"
            "  grid: {driver: operator, endpoint: {transport: manual}}\n"
            "  analyzer: {driver: operator, endpoint: {transport: manual}}\n"
        )
        return load_site(path)

    return make


def build_inverter(site: Site, name: str = "home-1") -> SunSpecInverter:
    """The inverter driver exactly as a run builds it from the site file."""
    cfg = site.node(name).inverter
    device = default_registry().build(
        "inverter", cfg.driver, f"{name}.inverter", cfg.endpoint, cfg, RealClock(), site
    )
    assert isinstance(device, SunSpecInverter)
    return device


def rtu_client(pair: SerialPair, timeout: float = 0.5, retries: int = 1) -> ModbusClient:
    return ModbusClient.rtu(pair.b, baudrate=BAUD, parity=PARITY, timeout=timeout, retries=retries)


# -- the pty pair itself ------------------------------------------------------------------------


def test_serial_pair_joins_two_ports_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with serial_pair(tmp_path) as p:
        a = serial.Serial(p.a, timeout=1.0, exclusive=True)
        b = serial.Serial(p.b, timeout=1.0, exclusive=True)
        try:
            a.write(b"\x01\x03\x9c\x40\x00\x02")
            assert b.read(6) == b"\x01\x03\x9c\x40\x00\x02"
            b.write(b"\xff\x00")
            assert a.read(2) == b"\xff\x00"
        finally:
            a.close()
            b.close()
        assert alive(p.pid)
    assert not alive(p.pid)
    assert not Path(p.a).is_symlink() and not Path(p.b).is_symlink()


def test_serial_pair_skips_cleanly_without_socat(tmp_path: Path) -> None:
    with (
        pytest.raises(pytest.skip.Exception, match="not installed"),
        serial_pair(tmp_path, socat="socat-that-is-not-installed"),
    ):
        pass


# -- the harness's client path on RTU -------------------------------------------------------------


def test_site_file_rtu_endpoint_discovers_and_reads_the_inverter(
    line: Line, rtu_site: SiteFor
) -> None:
    site = rtu_site()
    endpoint = site.node("home-1").inverter.endpoint
    assert isinstance(endpoint, ModbusRtuEndpoint)
    seen: list[Transaction] = []
    inverter = build_inverter(site)
    try:
        inverter.device.client.add_listener(seen.append)
        served = line.endpoints[1].regmap
        assert [(p.name, p.address) for p in inverter.device.regmap] == [
            (p.name, p.address) for p in served
        ]
        ident = line.site.node("home-1").inverter.identity
        got = inverter.identity()
        assert (got.manufacturer, got.model, got.serial) == (
            ident.manufacturer,
            ident.model,
            ident.serial,
        )
        inverter.set_power(-1500.0)
        line.advance(2.0)
        truth = line.plant.nodes["home-1"]
        assert inverter.power() == pytest.approx(truth.inverter.power_w, abs=1.0)
        assert inverter.power() == pytest.approx(-1500.0, abs=1.0)
        assert inverter.voltage() == pytest.approx(line.plant.bus_voltage_v, abs=0.05)
        assert inverter.frequency() == pytest.approx(line.plant.bus_frequency_hz, abs=0.005)
        assert inverter.rated_power() == 5000.0
        assert inverter.state() == "ON"
        storage = inverter.storage_readings()
        assert storage["soc"] == pytest.approx(truth.battery.soc_pct, abs=0.05)
        assert storage["voltage"] == pytest.approx(truth.battery.voltage_v, abs=0.005)
    finally:
        inverter.disconnect()
    assert seen and all(tx.ok and tx.unit == 1 for tx in seen)
    assert {tx.endpoint for tx in seen} == {f"{line.pair.b} ({BAUD} 8{PARITY}1)"}


def test_guarded_write_round_trips_and_a_refused_one_never_reaches_the_line(
    line: Line, rtu_site: SiteFor
) -> None:
    inverter = build_inverter(rtu_site())
    truth = line.plant.nodes["home-1"].inverter
    try:
        found = inverter.power_control()
        inverter.set_power(2200.0)
        assert truth.setpoint_w == 2200.0
        assert inverter.power_control()["DERCtlAC.WSet"] == 2200.0
        seen: list[Transaction] = []
        inverter.device.client.add_listener(seen.append)
        with pytest.raises(WriteRefused, match=r"home-1\.inverter.*WSet"):
            inverter.set_power(9000.0)  # beyond the rated 5 kW: refused by the write guard
        assert seen == [] and truth.setpoint_w == 2200.0
        inverter.restore_power_control(found)
        assert inverter.power_control() == found
        assert truth.setpoint_w == 0.0
    finally:
        inverter.disconnect()


def test_modbus_exceptions_come_back_over_the_line(line: Line) -> None:
    regmap = line.endpoints[1].regmap
    wset = regmap.point("DERCtlAC.WSet")
    with rtu_client(line.pair) as client:
        with pytest.raises(ModbusError) as info:
            client.read_holding(0, 2, unit=1)  # below the SunSpec base: no register there
        assert info.value.code == ILLEGAL_ADDRESS
        assert f"{line.pair.b} ({BAUD} 8{PARITY}1) unit 1" in str(info.value)
        assert "illegal data address" in str(info.value)
        with pytest.raises(ModbusError) as info:  # the manufacturer's name is read-only
            client.write_registers(regmap.point("common.Mn").address, [0x4142], unit=1)
        assert info.value.code == ILLEGAL_ADDRESS
        with pytest.raises(ModbusError) as info:  # 7 kW: beyond +-rated, refused by the unit
            client.write_registers(wset.address, encode(wset, 7000.0, 0), unit=1)
        assert info.value.code == ILLEGAL_VALUE
        with pytest.raises(ModbusError) as info:
            client.read_holding(40000, 126, unit=1, enforce_limits=False)
        assert info.value.code == ILLEGAL_VALUE
        assert line.plant.nodes["home-1"].inverter.setpoint_w == 0.0
        assert client.read_holding(40000, 2, unit=1) == [0x5375, 0x6E53]  # "SunS": in step


def test_a_unit_nobody_answers_times_out_naming_port_and_unit(
    line: Line, rtu_site: SiteFor
) -> None:
    site = rtu_site(units=(9,), timeout=0.1)
    started = time.monotonic()
    with pytest.raises(DeviceError) as info:
        build_inverter(site, "home-9")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "home-9.inverter" in message and "discovery" in message
    assert f"{line.pair.b} ({BAUD} 8{PARITY}1) unit 9" in message
    assert "no response within 0.1 s x 2 tries" in message
    # discovery tries the three SunSpec base addresses, each one timeout x tries: bounded
    assert "40000:" in message and "50000:" in message
    assert 0.5 < elapsed < 2.5, elapsed
    with rtu_client(line.pair, timeout=0.2, retries=0) as client:
        started = time.monotonic()
        with pytest.raises(ModbusError) as err:
            client.read_holding(40000, 2, unit=0)  # broadcast: nobody may answer a read
        assert err.value.code is None and "unit 0" in str(err.value)
        assert time.monotonic() - started < 1.5
        # the line is still in step: the next request to a unit that exists is answered
        assert client.read_holding(40000, 2, unit=1) == [0x5375, 0x6E53]


def test_two_units_share_one_line(line: Line) -> None:
    with rtu_client(line.pair, timeout=0.3, retries=0) as client:
        first = SunSpecInverter.connect("home-1.inverter", client, 1)
        second = SunSpecInverter.connect("home-2.inverter", client, 2)
        assert first.identity().serial == line.site.node("home-1").inverter.identity.serial
        assert second.identity().serial == line.site.node("home-2").inverter.identity.serial
        assert first.identity().serial != second.identity().serial
        second.set_power(-800.0)
        assert line.plant.nodes["home-2"].inverter.setpoint_w == -800.0
        assert line.plant.nodes["home-1"].inverter.setpoint_w == 0.0
        line.advance(1.0)
        assert second.power() == pytest.approx(-800.0, abs=1.0)
        assert first.power() == pytest.approx(0.0, abs=1.0)
        with pytest.raises(ModbusError) as info:  # a write to unit 2's map, as unit 3: silence
            client.write_registers(line.endpoints[2].regmap.point("DERCtlAC.WSet").address, [0], 3)
        assert info.value.code is None and "unit 3" in str(info.value)
        assert line.plant.nodes["home-2"].inverter.setpoint_w == -800.0


def test_one_master_per_port_and_a_missing_port_is_named(line: Line) -> None:
    with rtu_client(line.pair) as first:
        assert first.read_holding(40000, 2, unit=1) == [0x5375, 0x6E53]
        second = rtu_client(line.pair)
        try:
            with pytest.raises(ModbusError, match="cannot open the port") as info:
                second.read_holding(40000, 2, unit=1)
            assert str(info.value).startswith(f"{line.pair.b} ({BAUD} 8{PARITY}1): ")
        finally:
            second.close()
        assert first.read_holding(40000, 2, unit=2) == [0x5375, 0x6E53]
    missing = str(Path(line.pair.b).with_name("no-such-tty"))
    nowhere = ModbusClient.rtu(missing, timeout=0.2)
    try:
        with pytest.raises(ModbusError, match=f"{missing} .*cannot open the port"):
            nowhere.connect()
    finally:
        nowhere.close()


def test_pysunspec2_reads_the_inverter_over_rtu(line: Line) -> None:
    device = SunSpecModbusClientDeviceRTU(1, line.pair.b, baudrate=BAUD, parity=PARITY, timeout=1)
    try:
        device.scan()
        assert [m.model_id for m in device.model_list] == list(MODELS)
        for model in device.model_list:
            assert model.error_info == "", (model.model_id, model.error_info)
        ident = line.site.node("home-1").inverter.identity
        assert device.common[0].SN.value == ident.serial
        assert device.DERCapacity[0].WMaxRtg.cvalue == 5000.0
        assert device.DERMeasureAC[0].Hz.cvalue == line.plant.bus_frequency_hz
    finally:
        device.close()


def test_stopping_the_line_releases_the_port(line: Line) -> None:
    line.rtu.stop()
    assert not line.rtu.running
    port = serial.Serial(line.pair.a, exclusive=True)  # fails if the server still held it
    port.close()
    with rtu_client(line.pair, timeout=0.2, retries=0) as client:
        with pytest.raises(ModbusError) as info:
            client.read_holding(40000, 2, unit=1)
        assert info.value.code is None
    line.rtu.start()
    with rtu_client(line.pair) as client:
        assert client.read_holding(40000, 2, unit=1) == [0x5375, 0x6E53]


def test_a_line_needs_distinct_serial_unit_ids(line: Line) -> None:
    server = line.endpoints[1].server
    loop = line.rtu.loop
    with pytest.raises(ValueError, match="must differ"):
        RtuLine(line.pair.a, [server, server], loop)
    with pytest.raises(ValueError, match="no device"):
        RtuLine(line.pair.a, [], loop)
    server.unit = 0  # broadcast address: no slave may have it
    try:
        with pytest.raises(ValueError, match=r"1\.\.247"):
            RtuLine(line.pair.a, [server], loop)
    finally:
        server.unit = 1
