"""The CAN transport and the DBC BMS driver, against virtual CAN nodes on real python-can buses."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import can
import pytest
from cantools.database.can import Database

from harness.clock import SimClock
from harness.config.errors import ConfigErrors
from harness.devices.bms import DbcBms, load_bms_map
from harness.devices.roles import DeviceError
from harness.transports.can import CanTransport, CycleStats, load_database, open_bus
from virtual_devices.endpoints.bms import VirtualBms
from virtual_devices.endpoints.can_node import CanNode, default_messages

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "pylontech_lv.dbc"
BMS_MAP = ROOT / "fixtures" / "maps" / "pylontech_lv_bms.yaml"
WALL_TIMEOUT_S = 5.0


@dataclass
class StandInBattery:
    """The attributes VirtualBms reads from a plant battery (the plant is written elsewhere)."""

    voltage_v: float = 51.2
    current_a: float = -12.5
    soc_pct: float = 70.0
    soh_pct: float = 98.0
    temperature_c: float = 25.3
    charge_current_limit_a: float = 100.0
    discharge_current_limit_a: float = 120.0
    charge_voltage_limit_v: float = 53.2
    discharge_voltage_limit_v: float = 44.0
    protections: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def db() -> Database:
    return load_database(DBC)


@pytest.fixture
def channel() -> str:
    return f"test-can-transport-{uuid.uuid4()}"


@pytest.fixture
def node_bus(channel: str) -> Iterator[can.BusABC]:
    bus = open_bus("virtual", channel, preserve_timestamps=True)
    try:
        yield bus
    finally:
        bus.shutdown()


@pytest.fixture
def transport(channel: str, db: Database) -> Iterator[CanTransport]:
    bus = open_bus("virtual", channel, preserve_timestamps=True)
    t = CanTransport(bus, db, timebase=SimClock().bus_time)
    try:
        yield t
    finally:
        t.close()


def raw(frame_id: int, data: bytes, t: float) -> can.Message:
    return can.Message(arbitration_id=frame_id, data=data, timestamp=t, is_extended_id=False)


def test_lock_step_stats_show_zero_deviation(
    db: Database, node_bus: can.BusABC, transport: CanTransport
) -> None:
    clock = SimClock()
    node = CanNode(node_bus, db, default_messages(db, "BMS"), lambda name: {})
    clock.add_advancer(node.advance)
    clock.add_advancer(transport.advance)
    clock.sleep(10.0)
    for name in default_messages(db, "BMS"):
        stats = transport.stats(name)
        assert stats == CycleStats(10, 1.0, 10.0, 1.0, 1.0, 1.0), name
        assert transport.deviation_pct(name) == 0.0
    assert transport.unknown_ids == Counter()
    assert transport.decode_errors == 0


def test_period_override_shows_twenty_percent(
    db: Database, node_bus: can.BusABC, transport: CanTransport
) -> None:
    node = CanNode(
        node_bus, db, ["BMS_SocSoh", "BMS_Limits"], lambda n: {}, periods_s={"BMS_SocSoh": 1.2}
    )
    node.advance(10.0)
    assert transport.pump() == 8 + 10
    assert transport.deviation_pct("BMS_SocSoh") == pytest.approx(20.0)
    assert transport.stats("BMS_SocSoh").mean_period == pytest.approx(1.2)
    assert transport.deviation_pct("BMS_Limits") == 0.0


def test_one_jittered_frame_sets_the_worst_deviation(
    node_bus: can.BusABC, transport: CanTransport
) -> None:
    for t in (1.0, 2.0, 3.05, 4.0):
        node_bus.send(raw(0x355, bytes(4), t))
    transport.pump()
    stats = transport.stats("BMS_SocSoh")
    assert (stats.min_period, stats.max_period) == pytest.approx((0.95, 1.05))
    assert stats.deviation_pct(1.0) == pytest.approx(5.0)


def test_fewer_than_two_frames_have_no_period(
    node_bus: can.BusABC, transport: CanTransport
) -> None:
    assert transport.stats("BMS_Limits") == CycleStats()
    assert transport.deviation_pct("BMS_Limits") == math.inf
    node_bus.send(raw(0x351, bytes(8), 1.0))
    transport.pump()
    assert transport.stats("BMS_Limits").count == 1
    assert transport.deviation_pct("BMS_Limits") == math.inf


def test_unknown_ids_and_decode_errors_are_counted(
    node_bus: can.BusABC, transport: CanTransport
) -> None:
    for frame_id in (0x123, 0x123, 0x7FF):
        node_bus.send(raw(frame_id, b"\x00", 1.0))
    node_bus.send(raw(0x356, b"\x01\x02", 2.0))  # too short for BMS_Measurements
    assert transport.pump() == 4
    assert transport.unknown_ids == Counter({0x123: 2, 0x7FF: 1})
    assert transport.decode_errors == 1
    assert transport.stats("BMS_Measurements").count == 1  # it did arrive
    assert transport.latest("BMS_Measurements", "PackVoltage") is None


ROUND_TRIP: dict[str, dict[str, float]] = {
    "BMS_Limits": {
        "ChargeVoltageLimit": 56.8,
        "ChargeCurrentLimit": 74.5,
        "DischargeCurrentLimit": 150.0,
        "DischargeVoltageLimit": 43.2,
    },
    "BMS_SocSoh": {"StateOfCharge": 63, "StateOfHealth": 99},
    "BMS_Measurements": {"PackVoltage": 52.31, "PackCurrent": -87.4, "PackTemperature": -7.5},
    "BMS_Alarms": {
        "ProtUnderTemp": 1,
        "ProtChargeOverCurrent": 1,
        "WarnInternal": 1,
        "ModuleCount": 4,
    },
    "BMS_Requests": {"ChargeEnable": 1, "ForceChargeII": 1},
    "BMS_Manufacturer": {f"Manufacturer{i}": b"PYLON   "[i] for i in range(8)},
}


def test_every_message_round_trips_through_the_bus(
    db: Database, node_bus: can.BusABC, transport: CanTransport
) -> None:
    node = CanNode(node_bus, db, list(ROUND_TRIP), lambda name: ROUND_TRIP[name])
    node.advance(1.0)
    transport.pump()
    for message, values in ROUND_TRIP.items():
        for signal, value in values.items():
            got = transport.latest(message, signal)
            assert got is not None, (message, signal)
            assert got.value == pytest.approx(value), (message, signal)
            assert got.t == 1.0
    assert transport.latest("BMS_Alarms", "ProtOverVoltage").value == 0  # type: ignore[union-attr]
    assert transport.latest("BMS_Alarms", "MarkerN").value == ord("N")  # type: ignore[union-attr]
    with pytest.raises(KeyError, match="Nope"):
        transport.latest("BMS_Alarms", "Nope")
    with pytest.raises(KeyError, match="Nope"):
        transport.stats("Nope")


def test_send_and_listener(db: Database, node_bus: can.BusABC, transport: CanTransport) -> None:
    node = CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {})
    recorder = can.BufferedReader()
    transport.add_listener(recorder)
    transport.send("INV_Heartbeat", {}, timestamp=4.25)
    node.advance(5.0)
    assert node.last_received == {"INV_Heartbeat": 4.25}
    transport.pump()
    sent = recorder.get_message(0)  # a listener sees what the transport sends, as a bus logger
    assert sent is not None and (sent.arbitration_id, sent.is_rx, sent.timestamp) == (
        0x305,
        False,
        4.25,
    )
    received = []
    while (msg := recorder.get_message(0)) is not None:
        received.append(msg)
    assert [(m.arbitration_id, m.timestamp) for m in received] == [(0x355, t) for t in range(1, 6)]
    transport.remove_listener(recorder)
    node.advance(6.0)
    assert transport.pump() == 1
    assert recorder.get_message(0) is None
    with pytest.raises(KeyError, match="Nope"):
        transport.send("Nope", {})


def test_background_reader_works_and_stops_cleanly(
    db: Database, node_bus: can.BusABC, transport: CanTransport
) -> None:
    node = CanNode(node_bus, db, ["BMS_Measurements"], lambda name: {"PackCurrent": -3.0})
    before = set(threading.enumerate())
    transport.start(poll_s=0.05)
    assert transport.running
    with pytest.raises(RuntimeError, match="pump"):
        transport.pump()
    node.advance(10.0)
    deadline = time.monotonic() + WALL_TIMEOUT_S
    while transport.stats("BMS_Measurements").count < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert transport.stats("BMS_Measurements").count == 10
    assert transport.deviation_pct("BMS_Measurements") == 0.0
    assert transport.latest("BMS_Measurements", "PackCurrent").value == -3.0  # type: ignore[union-attr]
    transport.stop()
    assert not transport.running
    assert set(threading.enumerate()) <= before
    node.advance(11.0)
    assert transport.pump() == 1  # the foreground path takes over after stop


# -- DbcBms ---------------------------------------------------------------------------------------


@pytest.fixture
def sim_site(
    channel: str, db: Database, node_bus: can.BusABC, transport: CanTransport
) -> Iterator[tuple[SimClock, StandInBattery, VirtualBms, DbcBms]]:
    clock = SimClock()
    battery = StandInBattery()
    vbms = VirtualBms(node_bus, battery, identity="VIRTBATT")
    clock.add_advancer(vbms.advance)
    clock.add_advancer(transport.advance)
    bms = DbcBms(transport, load_bms_map(BMS_MAP, db), now=clock.now, stale_after_s=3.0)
    yield clock, battery, vbms, bms


def test_dbc_bms_reads_what_the_battery_reports(
    sim_site: tuple[SimClock, StandInBattery, VirtualBms, DbcBms],
) -> None:
    clock, battery, vbms, bms = sim_site
    with pytest.raises(DeviceError, match="BMS_Measurements never received"):
        bms.voltage()
    clock.sleep(10.0)
    assert bms.voltage() == pytest.approx(51.2)
    assert bms.current() == pytest.approx(-12.5)
    assert bms.soc() == 70.0
    assert bms.value("charge_current_limit") == 100.0
    assert bms.identity().manufacturer == "VIRTBATT"
    assert bms.alarms() == set()
    battery.protections = {"overtemp"}
    battery.soc_pct = 71.0
    clock.sleep(1.0)
    assert bms.alarms() == {"overtemp"}
    assert bms.soc() == 71.0
    assert bms.cycle_deviation() == dict.fromkeys(default_messages(vbms.db, "BMS"), 0.0)
    assert bms.missing() == []


def test_dbc_bms_refuses_stale_values(
    sim_site: tuple[SimClock, StandInBattery, VirtualBms, DbcBms],
) -> None:
    clock, _, _, bms = sim_site
    clock.sleep(2.0)
    bms.voltage()
    now = clock.now()
    bms.now = lambda: now + 3.0  # the site clock moved on, the BMS sent nothing since t = 2 s
    assert bms.voltage() == pytest.approx(51.2)  # exactly at the limit: still fresh
    bms.now = lambda: now + 3.5
    with pytest.raises(DeviceError, match=r"BMS_Measurements is stale.*3\.500 s ago"):
        bms.voltage()
    assert bms.identity().manufacturer == "VIRTBATT"  # identity does not go stale


def test_dbc_bms_reports_missing_and_slow_messages(
    db: Database, node_bus: can.BusABC, transport: CanTransport
) -> None:
    clock = SimClock()
    sent = [m for m in default_messages(db, "BMS") if m != "BMS_Requests"]
    vbms = VirtualBms(node_bus, StandInBattery(), "X", periods_s={"BMS_SocSoh": 1.1}, messages=sent)
    clock.add_advancer(vbms.advance)
    clock.add_advancer(transport.advance)
    bms = DbcBms(transport, load_bms_map(BMS_MAP, db), now=clock.now)
    clock.sleep(10.0)
    deviation = bms.cycle_deviation()
    assert deviation["BMS_SocSoh"] == pytest.approx(10.0)
    assert deviation["BMS_Requests"] == math.inf
    assert deviation["BMS_Limits"] == 0.0
    assert bms.missing() == ["BMS_Requests"]


def test_heartbeat_reaches_the_virtual_bms(
    sim_site: tuple[SimClock, StandInBattery, VirtualBms, DbcBms],
) -> None:
    clock, _, vbms, bms = sim_site
    clock.sleep(2.0)
    bms.send_heartbeat()
    clock.sleep(0.5)
    assert vbms.last_heartbeat == 2.0


def test_bms_map_errors_name_the_line(tmp_path: Path, db: Database) -> None:
    text = BMS_MAP.read_text().replace(
        "soc: BMS_SocSoh.StateOfCharge", "soc: BMS_SocSoh.StateOfCharg"
    )
    path = tmp_path / "map.yaml"
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "StateOfCharg\n" in s + "\n")
    with pytest.raises(ConfigErrors, match=rf"map.yaml:{line}: quantities.soc:.*StateOfCharg'"):
        load_bms_map(path, db)


# -- python-can-remote ---------------------------------------------------------------------------


def test_remote_bus_carries_decodable_frames(
    channel: str, db: Database, node_bus: can.BusABC
) -> None:
    """A python-can-remote server bridges the virtual channel to a ``remote`` client over TCP."""
    from can_remote.server import RemoteServer

    before = set(threading.enumerate())
    server = RemoteServer(host="127.0.0.1", port=0, channel=channel, interface="virtual")
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    transport = None
    try:
        url = f"ws://127.0.0.1:{server.server_port}/"
        transport = CanTransport(open_bus("remote", url), db, timebase=SimClock().bus_time)
        node = CanNode(node_bus, db, ["BMS_Measurements"], lambda n: {"PackCurrent": -42.0})
        node.advance(3.0)
        deadline = time.monotonic() + WALL_TIMEOUT_S
        while transport.stats("BMS_Measurements").count < 3 and time.monotonic() < deadline:
            transport.pump()
            time.sleep(0.01)
        assert transport.stats("BMS_Measurements") == CycleStats(3, 1.0, 3.0, 1.0, 1.0, 1.0)
        assert transport.latest("BMS_Measurements", "PackCurrent").value == -42.0  # type: ignore[union-attr]
    finally:
        if transport is not None:
            transport.close()
        server.shutdown()
        server.server_close()
        serving.join(WALL_TIMEOUT_S)
        deadline = time.monotonic() + WALL_TIMEOUT_S
        while set(threading.enumerate()) - before and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not server.clients
    assert set(threading.enumerate()) <= before  # server, handler and bus threads all ended
