"""Real Modbus TCP servers and clients on loopback: the virtual SunSpec inverter, the PCC I/O
module, the generic map server, the harness-side client and drivers, and pysunspec2's own client
as an independent witness that the virtual inverter is a conforming SunSpec device.

The plant is a plain stand-in (the attributes the endpoints read); the Modbus stack is real.
"""

from __future__ import annotations

import csv
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from harness.devices.breaker import ModbusCoilBreaker
from harness.devices.inverter import SunSpecInverter
from harness.devices.roles import DeviceError
from harness.transports import guard
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import (
    MappedDevice,
    ModbusClient,
    ModbusError,
    Transaction,
    TransactionCsv,
    WriteRefused,
)
from harness.transports.regmap import Value, decode
from harness.transports.sunspec import discover
from harness.transports.yamlmap import load_yaml_map
from virtual_devices.endpoints.inverter import MODELS, SunSpecInverterEndpoint
from virtual_devices.endpoints.io_module import DEFAULT_MAP, IoModuleEndpoint
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint

ILLEGAL_ADDRESS, ILLEGAL_VALUE = 2, 3
IDENTITY = {"Mn": "Acme Power", "Md": "HB-5000", "SN": "SN-00042", "Vr": "1.4.2"}


# -- plant stand-ins --------------------------------------------------------------------------


@dataclass
class EnterService:
    v_low_pu: float = 0.917
    v_high_pu: float = 1.05
    f_low_hz: float = 59.5
    f_high_hz: float = 60.1
    delay_s: float = 300.0
    ramp_s: float = 300.0


@dataclass
class InverterParams:
    rated_power_w: float = 5000.0
    nominal_voltage_v: float = 240.0
    nominal_frequency_hz: float = 60.0
    enter_service: EnterService = field(default_factory=EnterService)


@dataclass
class Inverter:
    params: InverterParams = field(default_factory=InverterParams)
    power_w: float = 3210.0
    current_a: float = 13.34
    state: str = "ON"
    setpoint_w: float = 3200.0
    enter_service_due: float | None = None

    def set_power_setpoint(self, w: float) -> None:
        self.setpoint_w = w


@dataclass
class BatteryParams:
    capacity_ah: float = 100.0
    cells_in_series: int = 16


@dataclass
class Battery:
    params: BatteryParams = field(default_factory=BatteryParams)
    voltage_v: float = 52.31
    current_a: float = -20.5
    soc_pct: float = 64.2
    soh_pct: float = 97.0
    temperature_c: float = 28.0
    charge_current_limit_a: float = 50.0
    discharge_current_limit_a: float = 80.0
    cell_voltage_min_v: float = 3.261
    cell_voltage_max_v: float = 3.275


@dataclass
class Node:
    inverter: Inverter = field(default_factory=Inverter)
    battery: Battery = field(default_factory=Battery)


@dataclass
class Plant:
    bus_voltage_v: float = 240.6
    bus_frequency_hz: float = 60.01
    t: float = 12.0


class PcCBreaker:
    def __init__(self) -> None:
        self.closed = True
        self.operations = 0

    def open(self) -> None:
        self.closed, self.operations = False, self.operations + 1

    def close(self) -> None:
        self.closed, self.operations = True, self.operations + 1


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
def loop() -> Iterator[LoopThread]:
    lt = LoopThread("test-modbus-server")
    try:
        yield lt
    finally:
        lt.stop()
        assert not lt.running


@dataclass
class Rig:
    node: Node
    plant: Plant
    endpoint: SunSpecInverterEndpoint
    client: ModbusClient

    def device(self) -> MappedDevice:
        return MappedDevice(self.client, discover(self.read).regmap, 1)

    def read(self, address: int, count: int) -> list[int]:
        return self.client.read_holding(address, count, 1)


@pytest.fixture
def rig(loop: LoopThread) -> Iterator[Rig]:
    node, plant = Node(), Plant()
    endpoint = SunSpecInverterEndpoint(
        node, plant, IDENTITY, lock=threading.RLock(), loop=loop, unit=1
    )
    endpoint.start()
    client = ModbusClient("127.0.0.1", endpoint.port, timeout=1.0)
    try:
        yield Rig(node, plant, endpoint, client)
    finally:
        client.close()
        endpoint.stop()


# -- discovery and reading --------------------------------------------------------------------


def test_discovery_walks_the_served_chain(rig: Rig) -> None:
    found = discover(rig.read)
    assert [m.id for m in found.models] == list(MODELS)
    address = 40002
    for model in found.models:
        assert model.address == address
        address += model.length + 2
    assert rig.read(address, 2) == [0xFFFF, 0]
    served = rig.endpoint.regmap
    assert [(p.name, p.address, p.type) for p in found.regmap] == [
        (p.name, p.address, p.type) for p in served
    ]


def test_values_are_scaled_by_the_served_scale_factors(rig: Rig) -> None:
    dev = rig.device()
    m = dev.regmap
    raw_w = rig.read(m.point("DERMeasureAC.W").address, 1)
    raw_sf = rig.read(m.point("DERMeasureAC.W_SF").address, 1)
    sf = decode(m.point("DERMeasureAC.W_SF"), raw_sf)
    assert isinstance(sf, float)
    assert int(raw_w[0]) * 10**sf == pytest.approx(3210.0, abs=10**sf / 2)
    assert dev.read("DERMeasureAC.W") == decode(m.point("DERMeasureAC.W"), raw_w, int(sf))
    values = dev.read_many(
        [
            "DERMeasureAC.Hz",
            "DERMeasureAC.LNV",
            "DERMeasureAC.A",
            "battery.V",
            "battery.A",
            "battery.CellVMin",
            "battery.SoC",
            "DEREnterService.ESVLo",
            "DERCapacity.WMaxRtg",
        ]
    )
    assert values == {
        "DERMeasureAC.Hz": 60.01,
        "DERMeasureAC.LNV": 240.6,
        "DERMeasureAC.A": 13.34,
        "battery.V": 52.31,
        "battery.A": -20.5,
        "battery.CellVMin": 3.261,
        "battery.SoC": 64.2,
        "DEREnterService.ESVLo": 91.7,
        "DERCapacity.WMaxRtg": 5000.0,
    }
    assert dev.read_many(["common.Mn", "common.SN", "common.Vr"]) == {
        "common.Mn": "Acme Power",
        "common.SN": "SN-00042",
        "common.Vr": "1.4.2",
    }


def test_reads_follow_the_plant_nothing_is_cached(rig: Rig) -> None:
    dev = rig.device()
    assert dev.read("DERMeasureAC.Hz") == 60.01
    rig.plant.bus_frequency_hz = 59.37
    rig.node.battery.soc_pct = 12.5
    assert dev.read("DERMeasureAC.Hz") == 59.37
    block = dev.read_block(802)
    assert block["battery.SoC"] == 12.5 and block["battery.SoC_SF"] == -1.0
    assert block["battery.ChaSt"] == dev.regmap.point("battery.ChaSt").symbols["DISCHARGING"]


def test_not_implemented_points_read_none(rig: Rig) -> None:
    dev = rig.device()
    m = dev.regmap
    assert rig.read(m.point("DERMeasureAC.TmpAmb").address, 1) == [0x8000]
    assert rig.read(m.point("DERMeasureAC.TotWhInj").address, 4) == [0xFFFF] * 4
    assert rig.read(m.point("DEREnterService.ESRndTms").address, 2) == [0xFFFF, 0xFFFF]
    values = dev.read_many(
        [
            "DERMeasureAC.TmpAmb",
            "DERMeasureAC.TotWhInj",
            "DEREnterService.ESRndTms",
            "common.Opt",
            "DEREnterService.ESDlyRemTms",
        ]
    )
    assert set(values.values()) == {None}
    rig.node.inverter.enter_service_due = 100.0
    assert dev.read("DEREnterService.ESDlyRemTms") == 88.0


def test_power_reading_gain_defect_scales_reported_power(rig: Rig) -> None:
    dev = rig.device()
    rig.endpoint.power_reading_gain = 12.0  # beyond int16 at sf 0: the sf must follow
    assert dev.read("DERMeasureAC.W") == pytest.approx(3210.0 * 12.0, rel=1e-3)
    assert dev.read("DERMeasureAC.A") == 13.34


def test_inverter_states_map_to_symbols(rig: Rig) -> None:
    inv = SunSpecInverter.connect("home-1.inverter", rig.client)
    assert (inv.state(), inv.raw_state()) == ("ON", "RUNNING")
    rig.node.inverter.state = "TRIPPED"
    assert (inv.state(), inv.raw_state()) == ("TRIPPED", "FAULT")
    rig.node.inverter.state = "OFF"
    assert (inv.state(), inv.raw_state()) == ("OFF", "OFF")
    rig.node.inverter.enter_service_due = 300.0
    assert (inv.state(), inv.raw_state()) == ("OFF", "STARTING")
    assert inv.device.read("DERMeasureAC.ConnSt") == 0.0


# -- writing ----------------------------------------------------------------------------------


def test_setpoint_write_reaches_the_plant(rig: Rig) -> None:
    dev = rig.device()
    dev.write_many(
        {"DERCtlAC.WSetEna": "ENABLED", "DERCtlAC.WSetMod": "WATTS", "DERCtlAC.WSet": -2500}
    )
    assert rig.node.inverter.setpoint_w == -2500.0
    assert dev.read("DERCtlAC.WSet") == -2500.0
    dev.write("DERCtlAC.WSetMod", "W_MAX_PCT")
    dev.write("DERCtlAC.WSetPct", 40.0)
    assert rig.node.inverter.setpoint_w == 2000.0
    dev.write("DERCtlAC.WSetEna", "DISABLED")
    assert rig.node.inverter.setpoint_w == 0.0
    dev.write("DERCtlAC.WSetPct", 10.0)  # stored, not applied while disabled
    assert rig.node.inverter.setpoint_w == 0.0


def test_out_of_range_write_is_an_exception_and_changes_nothing(rig: Rig) -> None:
    m = rig.endpoint.regmap
    rig.client.write_registers(m.point("DERCtlAC.WSetEna").address, [1])
    before = rig.node.inverter.setpoint_w
    with pytest.raises(ModbusError) as info:
        rig.client.write_registers(m.point("DERCtlAC.WSet").address, [0, 9000])
    assert info.value.code == ILLEGAL_VALUE
    assert "illegal data value" in str(info.value)
    for point, raw in (
        ("DERCtlAC.WSetEna", [7]),
        ("DERCtlAC.WSetMod", [2]),
        ("battery.AlmRst", [2]),
    ):
        with pytest.raises(ModbusError) as info:
            rig.client.write_registers(m.point(point).address, raw)
        assert info.value.code == ILLEGAL_VALUE, point
    assert rig.node.inverter.setpoint_w == before
    assert rig.client.read_holding(m.point("DERCtlAC.WSetEna").address, 1) == [1]


def test_write_guard_refuses_before_the_wire(rig: Rig) -> None:
    dev = MappedDevice(rig.client, rig.endpoint.regmap, 1)  # the served map declares WSet's range
    before = rig.node.inverter.setpoint_w
    rig.endpoint.stop()  # nothing may reach the wire: a request would now fail with ModbusError
    with pytest.raises(WriteRefused, match=r"DERCtlAC\.WSet = 6000.*range -5000\.\.5000 W"):
        dev.write("DERCtlAC.WSet", 6000)
    with pytest.raises(WriteRefused, match=r"DERMeasureAC\.W: the map .* declares it read-only"):
        dev.write("DERMeasureAC.W", 1.0)
    with pytest.raises(WriteRefused, match="not one of DISABLED, ENABLED"):
        dev.write("DERCtlAC.WSetEna", "MAYBE")
    with pytest.raises(WriteRefused, match=r"no point .DERCtlAC\.Nope."):
        dev.write("DERCtlAC.Nope", 1)
    assert rig.node.inverter.setpoint_w == before


def test_read_only_and_unmapped_addresses_are_illegal(rig: Rig) -> None:
    m = rig.endpoint.regmap
    with pytest.raises(ModbusError) as info:
        rig.client.write_registers(m.point("DERMeasureAC.W").address, [5])
    assert info.value.code == ILLEGAL_ADDRESS
    with pytest.raises(ModbusError) as info:  # writable in the map, not implemented by the unit
        rig.client.write_registers(m.point("DERCtlAC.WMaxLimPctEna").address, [1])
    assert info.value.code == ILLEGAL_ADDRESS
    for address, count in ((39990, 4), (m.point("end.L").address, 2)):
        with pytest.raises(ModbusError) as info:
            rig.client.read_holding(address, count)
        assert info.value.code == ILLEGAL_ADDRESS
    assert "127.0.0.1:" in str(info.value) and "unit 1" in str(info.value)


# -- request size limits ----------------------------------------------------------------------


def test_read_and_write_size_limits(rig: Rig) -> None:
    assert len(rig.client.read_holding(40000, 125)) == 125
    with pytest.raises(ValueError, match=r"1\.\.125 registers, not 126"):
        rig.client.read_holding(40000, 126)
    with pytest.raises(ValueError, match=r"1\.\.123 registers, not 124"):
        rig.client.write_registers(40000, [0] * 124)
    # A foreign client sending 126 anyway gets the exception the Modbus spec orders
    # (function 0x83, ILLEGAL DATA VALUE), not 126 registers and not a malformed reply.
    with socket.create_connection(("127.0.0.1", rig.endpoint.port), timeout=2) as s:
        s.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 40000, 126))
        reply = s.recv(300)
    assert reply == struct.pack(">HHHBBB", 7, 0, 3, 1, 0x83, ILLEGAL_VALUE)
    # The harness's own client sends oversized requests only when a probe asks for it.
    for send in (
        lambda: rig.client.read_holding(40000, 126, enforce_limits=False),
        lambda: rig.client.write_registers(40000, [0] * 124, enforce_limits=False),
    ):
        with pytest.raises(ModbusError) as info:
            send()
        assert info.value.code == ILLEGAL_VALUE


def test_transactions_go_to_listeners_and_csv(rig: Rig, tmp_path: Path) -> None:
    seen: list[Transaction] = []
    rig.client.label = "home-9.inverter"
    rig.client.add_listener(seen.append)

    def broken(tx: Transaction) -> None:
        raise RuntimeError("a recorder bug")

    rig.client.add_listener(broken)  # must not break the requests it records
    now = iter(float(t) for t in range(100, 200))
    path = tmp_path / "modbus.csv"
    with TransactionCsv(path, lambda: next(now)) as recorder:
        assert rig.client.read_holding(40000, 2) == [0x5375, 0x6E53]
        with pytest.raises(ModbusError):
            rig.client.write_registers(rig.endpoint.regmap.point("DERMeasureAC.W").address, [5])
        rig.client.write_registers(rig.endpoint.regmap.point("DERCtlAC.WSetPct").address, [250])
    rig.client.read_holding(40000, 2)  # after the recorder closed: not in the file
    with TransactionCsv(path, lambda: 300.0):  # appends, one header
        rig.client.read_holding(40002, 1)
    rows = list(csv.DictReader(path.open(newline="")))
    assert recorder.rows == 3 and len(rows) == 4
    assert rows[0] == {
        "time": "100.000000",
        "device": "home-9.inverter",
        "endpoint": rig.client.endpoint,
        "unit": "1",
        "function": "3",
        "request": "read holding registers",
        "address": "40000",
        "count": "2",
        "values": "21365 28243",
        "exception": "",
    }
    assert rows[1]["function"] == "16" and rows[1]["values"] == "5"
    assert rows[1]["exception"] == "2 illegal data address"
    assert rows[2]["values"] == "250" and rows[2]["exception"] == ""
    assert rows[3]["time"] == "300.000000" and rows[3]["address"] == "40002"
    assert len(seen) == 5 and seen[1].exception == 2 and seen[0].ok
    rig.client.remove_listener(broken)


def test_writes_pass_the_write_gate(rig: Rig) -> None:
    asked: list[guard.WriteRequest] = []
    refusals: list[str] = []
    seen: list[Transaction] = []
    rig.client.add_listener(seen.append)
    uninstall = guard.install(
        lambda r: asked.append(r) or False, lambda r, why: refusals.append(why)
    )
    try:
        dev = MappedDevice(rig.client, rig.endpoint.regmap, 1)
        dev.write_many({"DERCtlAC.WSetEna": "ENABLED", "DERCtlAC.WSet": 1000})  # held back
        with pytest.raises(WriteRefused):
            dev.write("DERCtlAC.WSet", 9000)
    finally:
        uninstall()
    assert rig.node.inverter.setpoint_w == 3200.0  # nothing reached the device
    assert [r.transport for r in asked] == ["modbus", "modbus"]  # WSetEna, WSet: two requests
    assert asked[0].target == f"{rig.client.endpoint}/1"
    assert asked[0].what.startswith(
        f"write_registers {rig.endpoint.regmap.point('DERCtlAC.WSetEna').address} [1"
    )
    assert len(refusals) == 1 and "9000" in refusals[0]
    assert [t.function for t in seen] == [3]  # the scale-factor read went out; no write did


def test_link_failures_are_recorded_as_errors(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    client = ModbusClient("127.0.0.1", port, timeout=0.2, retries=0)
    seen: list[Transaction] = []
    client.add_listener(seen.append)
    try:
        with pytest.raises(ModbusError):
            client.read_holding(0, 1)
    finally:
        client.close()
    (tx,) = seen
    assert tx.exception is None and tx.error and "cannot connect" in tx.outcome()


class Registers:
    """A provider of 130 plain registers; counts the requests that refresh it."""

    def __init__(self) -> None:
        self.values: dict[str, Value] = {f"Bank.r{i}": float(i) for i in range(130)}
        self.refreshes = 0

    def read_points(self) -> Mapping[str, Value]:
        self.refreshes += 1
        return self.values

    def write_point(self, name: str, value: Value) -> None:
        self.values[name] = value


def test_mapped_device_splits_large_reads_and_writes(loop: LoopThread, tmp_path: Path) -> None:
    lines = ["holding:"]
    for i in range(130):
        lines += [
            f"  - name: Bank.r{i}",
            f"    address: {1000 + i}",
            "    type: uint16",
            "    access: RW",
        ]
    (tmp_path / "bank.yaml").write_text("\n".join(lines) + "\n")
    regmap = load_yaml_map(tmp_path / "bank.yaml")
    provider = Registers()
    with (
        ModbusServerEndpoint(regmap, 3, provider, threading.RLock(), loop) as server,
        ModbusClient("127.0.0.1", server.port, timeout=1.0) as client,
    ):
        dev = MappedDevice(client, regmap, unit=3)
        block = dev.read_block("Bank")
        assert provider.refreshes == 2  # 130 registers = 125 + 5
        assert block == {f"Bank.r{i}": float(i) for i in range(130)}
        dev.write_many({f"Bank.r{i}": float(1000 + i) for i in range(130)})
        assert provider.values["Bank.r129"] == 1129.0 and provider.values["Bank.r0"] == 1000.0
        dev.write_registers(1000, list(range(7, 137)))
        assert dev.read_registers(1000, 130) == list(range(7, 137))
        assert provider.values["Bank.r0"] == 7.0


# -- the PCC breaker --------------------------------------------------------------------------


def test_coil_breaker_opens_closes_and_reads(loop: LoopThread) -> None:
    breaker = PcCBreaker()
    io = IoModuleEndpoint(breaker, lock=threading.RLock(), loop=loop)
    io.start()
    client = ModbusClient("127.0.0.1", io.port, timeout=1.0)
    try:
        driver = ModbusCoilBreaker.from_map("pcc_breaker", client, DEFAULT_MAP, unit=io.unit)
        assert driver.is_closed()
        driver.open()
        assert breaker.closed is False and not driver.is_closed()
        driver.close()
        assert breaker.closed and driver.is_closed()
        assert breaker.operations == 2
        breaker.open()  # operated locally: the coil reads the breaker, not the last command
        assert client.read_coils(0, 1) == [False]
        with pytest.raises(ModbusError) as info:
            client.write_coil(1, True)
        assert info.value.code == ILLEGAL_ADDRESS
        with pytest.raises(ModbusError) as info:
            client.read_holding(0, 1)
        assert info.value.code == ILLEGAL_ADDRESS
        with pytest.raises(ModbusError) as info:  # coil 1 shares coil 0's word, but is unmapped
            client.read_coils(0, 2)
        assert info.value.code == ILLEGAL_ADDRESS
        assert driver.identity().extra["point"] == "PCC.Closed"
        io.stop()
        with pytest.raises(DeviceError, match="pcc_breaker: opening the breaker failed"):
            driver.open()
    finally:
        client.close()
        io.stop()


# -- lifecycle and link failures --------------------------------------------------------------


def test_stop_frees_the_port(loop: LoopThread) -> None:
    node, plant = Node(), Plant()
    ep = SunSpecInverterEndpoint(node, plant, IDENTITY, lock=threading.RLock(), loop=loop)
    ep.start()
    port = ep.port
    client = ModbusClient("127.0.0.1", port, timeout=1.0)
    assert client.read_holding(40000, 2) == [0x5375, 0x6E53]
    ep.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = ep.port
    with pytest.raises(ModbusError, match=f"127.0.0.1:{port}"):
        client.read_holding(40000, 2)
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_silent_device_times_out_naming_the_endpoint() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections in the backlog, never answers
        port = silent.getsockname()[1]
        client = ModbusClient("127.0.0.1", port, timeout=0.2, retries=0)
        try:
            started = time.monotonic()
            with pytest.raises(ModbusError) as info:
                client.read_holding(40000, 2)
            assert time.monotonic() - started < 2.0
            assert info.value.code is None
            assert f"127.0.0.1:{port} unit 1" in str(info.value)
        finally:
            client.close()


def test_refused_connection_names_the_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ModbusClient("127.0.0.1", port, timeout=0.5)
    try:
        with pytest.raises(ModbusError, match=f"127.0.0.1:{port}: cannot connect"):
            client.connect()
    finally:
        client.close()


def test_rtu_client_over_a_serial_url(loop: LoopThread) -> None:
    breaker = PcCBreaker()
    regmap = load_yaml_map(DEFAULT_MAP)
    with ModbusServerEndpoint(
        regmap, 5, PcCProvider(breaker), threading.RLock(), loop, framer="rtu"
    ) as server:
        client = ModbusClient.rtu(f"socket://127.0.0.1:{server.port}", baudrate=9600, timeout=1.0)
        try:
            assert "9600 8N1" in client.endpoint
            assert client.read_coils(0, 1, unit=5) == [True]
            client.write_coil(0, False, unit=5)
            assert breaker.closed is False
            assert client.read_coils(0, 1, unit=5) == [False]
        finally:
            client.close()


class PcCProvider:
    def __init__(self, breaker: PcCBreaker) -> None:
        self.breaker = breaker

    def read_points(self) -> Mapping[str, Value]:
        return {"PCC.Closed": 1.0 if self.breaker.closed else 0.0}

    def write_point(self, name: str, value: Value) -> None:
        (self.breaker.close if value == 1.0 else self.breaker.open)()


# -- the harness-side driver ------------------------------------------------------------------


def test_sunspec_inverter_driver(rig: Rig) -> None:
    rig.endpoint.power_reading_gain = 1.0
    inv = SunSpecInverter.connect("home-1.inverter", rig.client)
    ident = inv.identity()
    assert (ident.manufacturer, ident.model, ident.serial, ident.firmware) == (
        "Acme Power",
        "HB-5000",
        "SN-00042",
        "1.4.2",
    )
    assert inv.power() == 3210.0
    assert inv.voltage() == 240.6
    assert inv.frequency() == 60.01
    assert inv.rated_power() == 5000.0
    inv.set_power(-1800.0)
    assert rig.node.inverter.setpoint_w == -1800.0
    with pytest.raises(WriteRefused, match=r"home-1\.inverter: .*WSet = 5001\.0.*-5000\.\.5000"):
        inv.set_power(5001.0)
    assert rig.node.inverter.setpoint_w == -1800.0
    rig.endpoint.stop()
    with pytest.raises(DeviceError, match=r"home-1\.inverter: reading active power failed"):
        inv.power()


def test_driver_reports_unimplemented_values(rig: Rig) -> None:
    inv = SunSpecInverter.connect("home-2.inverter", rig.client)
    rig.plant.bus_voltage_v = float("nan")  # the unit cannot measure: it serves "not implemented"
    with pytest.raises(DeviceError, match=r"home-2\.inverter: AC voltage is not implemented"):
        inv.voltage()


def test_discovery_failure_is_a_device_error(loop: LoopThread) -> None:
    io = IoModuleEndpoint(PcCBreaker(), lock=threading.RLock(), loop=loop)
    io.start()
    client = ModbusClient("127.0.0.1", io.port, timeout=1.0)
    try:
        with pytest.raises(DeviceError, match=r"pcc: SunSpec discovery .* failed: no SunSpec"):
            SunSpecInverter.connect("pcc", client)
    finally:
        client.close()
        io.stop()


# -- independent proof: pysunspec2's own client -----------------------------------------------


def test_pysunspec2_client_discovers_and_reads_every_model(rig: Rig) -> None:
    device = SunSpecModbusClientDeviceTCP(
        slave_id=1, ipaddr="127.0.0.1", ipport=rig.endpoint.port, timeout=2
    )
    try:
        device.scan()
        assert [m.model_id for m in device.model_list] == list(MODELS)
        for model in device.model_list:
            assert model.error_info == "", (model.model_id, model.error_info)
        common = device.common[0]
        assert common.Mn.value == "Acme Power" and common.SN.value == "SN-00042"
        ac = device.DERMeasureAC[0]
        assert ac.W.cvalue == 3210.0
        assert ac.Hz.cvalue == 60.01
        assert ac.LNV.cvalue == 240.6
        assert ac.TmpAmb.value is None
        assert device.DERCapacity[0].WMaxRtg.cvalue == 5000.0
        assert device.DEREnterService[0].ESHzLo.cvalue == 59.5
        assert device.DERStorageCapacity[0].SoC.cvalue == 64.2
        battery = device.battery[0]
        assert battery.SoH.cvalue == 97.0
        assert battery.CellVMax.cvalue == 3.275
        assert battery.AChaMax.cvalue == 50.0
        ctl = device.DERCtlAC[0]
        device.connect()
        ctl.WSetEna.value = 1
        ctl.WSet.cvalue = 1234
        ctl.write()
        assert rig.node.inverter.setpoint_w == 1234.0
        ctl.read()
        assert ctl.WSet.cvalue == 1234.0
    finally:
        device.disconnect()
        device.close()
