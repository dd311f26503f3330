"""The virtual CAN node and the virtual BMS endpoint, on real python-can virtual buses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import can
import pytest
from cantools.database.can import Database

from harness.config.errors import ConfigErrors
from harness.transports.can import load_database, open_bus
from virtual_devices.endpoints.bms import DEFAULT_BINDING, VirtualBms
from virtual_devices.endpoints.can_node import CanNode, default_messages

DBC = Path(__file__).resolve().parents[1] / "dbc" / "pylontech_lv.dbc"
BMS_NAMES = [
    "BMS_Limits",
    "BMS_SocSoh",
    "BMS_Measurements",
    "BMS_Alarms",
    "BMS_Requests",
    "BMS_Manufacturer",
]


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
    return f"test-can-node-{uuid.uuid4()}"


@pytest.fixture
def node_bus(channel: str) -> Iterator[can.BusABC]:
    bus = open_bus("virtual", channel, preserve_timestamps=True)
    try:
        yield bus
    finally:
        bus.shutdown()


@pytest.fixture
def tap(channel: str) -> Iterator[can.BusABC]:
    """A second bus on the channel: what the inverter side sees."""
    bus = open_bus("virtual", channel, preserve_timestamps=True)
    try:
        yield bus
    finally:
        bus.shutdown()


def drain(bus: can.BusABC) -> list[can.Message]:
    out = []
    while (msg := bus.recv(timeout=0.0)) is not None:
        out.append(msg)
    return out


def decode(db: Database, frame: can.Message) -> dict[str, Any]:
    return cast("dict[str, Any]", db.decode_message(frame.arbitration_id, bytes(frame.data)))


def by_id(frames: list[can.Message]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for f in frames:
        out.setdefault(f.arbitration_id, []).append(f.timestamp)
    return out


def test_default_messages_follow_the_senders(db: Database) -> None:
    assert default_messages(db, "BMS") == BMS_NAMES
    assert default_messages(db, "INV") == ["INV_Heartbeat"]


def test_ten_seconds_give_ten_frames_per_message_at_exact_times(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    node = CanNode(node_bus, db, BMS_NAMES, lambda name: {})
    node.advance(10.0)
    assert node.sent_count == dict.fromkeys(BMS_NAMES, 10)
    frames = drain(tap)
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps)
    times = by_id(frames)
    assert set(times) == {0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E}
    for ts in times.values():
        assert ts == [float(k) for k in range(1, 11)]
    assert node.now == 10.0


def test_small_steps_send_the_same_frames_as_one_big_step(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    node = CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {}, start_time=5.0)
    t = 5.0
    while t < 9.0:
        t = round(t + 0.3, 9)
        node.advance(t)
    assert [f.timestamp for f in drain(tap)] == [6.0, 7.0, 8.0, 9.0]
    node.advance(9.0)  # nothing new is due at the same time
    assert drain(tap) == []


def test_next_due_lets_a_plant_stop_at_each_frame(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    state = {"t": 0.0}
    node = CanNode(
        node_bus,
        db,
        ["BMS_SocSoh", "BMS_Limits"],
        lambda name: {"StateOfCharge": state["t"]} if name == "BMS_SocSoh" else {},
        periods_s={"BMS_SocSoh": 0.75},
    )
    stops = []
    while (due := node.next_due()) <= 3.0:
        state["t"] = due  # the plant stepped to the due time
        stops.append(due)
        node.advance(due)
    assert stops == [0.75, 1.0, 1.5, 2.0, 2.25, 3.0]
    socs = [decode(db, f)["StateOfCharge"] for f in drain(tap) if f.arbitration_id == 0x355]
    assert socs == [1, 2, 2, 3]  # 0.75, 1.5, 2.25, 3.0 rounded to the 1 % resolution
    assert CanNode(node_bus, db, [], lambda name: {}).next_due() == float("inf")


def test_period_override_changes_the_schedule(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    node = CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {}, periods_s={"BMS_SocSoh": 1.2})
    node.advance(10.0)
    stamps = [f.timestamp for f in drain(tap)]
    assert stamps == pytest.approx([1.2 * k for k in range(1, 9)])
    assert node.period("BMS_SocSoh") == 1.2


def test_overrides_must_name_sent_messages(db: Database, node_bus: can.BusABC) -> None:
    with pytest.raises(ValueError, match="BMS_Limits"):
        CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {}, periods_s={"BMS_Limits": 2.0})
    with pytest.raises(KeyError, match="NoSuchMessage"):
        CanNode(node_bus, db, ["NoSuchMessage"], lambda name: {})


def test_unsupplied_signals_carry_initial_values(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    node = CanNode(node_bus, db, ["BMS_Alarms"], lambda name: {"ProtOverTemp": 1})
    node.advance(1.0)
    (frame,) = drain(tap)
    assert frame.data[0] == 1 << 3
    assert bytes(frame.data[5:7]) == b"PN"


def test_values_are_read_at_send_time(db: Database, node_bus: can.BusABC, tap: can.BusABC) -> None:
    state = {"soc": 50.0}
    node = CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {"StateOfCharge": state["soc"]})
    node.advance(1.0)
    state["soc"] = 51.0
    node.advance(2.0)
    socs = [decode(db, f)["StateOfCharge"] for f in drain(tap)]
    assert socs == [50, 51]


def test_out_of_range_values_are_sent_for_defect_injection(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    values = {"BMS_SocSoh": {"StateOfCharge": 150.0}, "BMS_Measurements": {"PackVoltage": 400.0}}
    node = CanNode(node_bus, db, list(values), lambda name: values[name])
    node.advance(1.0)
    decoded = {f.arbitration_id: decode(db, f) for f in drain(tap)}
    assert decoded[0x355]["StateOfCharge"] == 150  # outside [0, 100], still on the wire
    assert decoded[0x356]["PackVoltage"] == pytest.approx(327.67)  # beyond s16: saturates


def test_unknown_signal_from_provider_is_an_error(db: Database, node_bus: can.BusABC) -> None:
    node = CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {"Soc": 1.0})
    with pytest.raises(KeyError, match="Soc"):
        node.advance(1.0)


def test_node_records_the_heartbeat_it_receives(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    node = CanNode(node_bus, db, ["BMS_SocSoh"], lambda name: {})
    hb = db.get_message_by_name("INV_Heartbeat")
    tap.send(
        can.Message(arbitration_id=hb.frame_id, data=bytes(8), timestamp=2.5, is_extended_id=False)
    )
    tap.send(can.Message(arbitration_id=0x7FF, data=b"\x01", timestamp=2.6, is_extended_id=False))
    node.advance(3.0)
    assert node.last_received == {"INV_Heartbeat": 2.5}
    assert node.received_count == {"INV_Heartbeat": 1}


# -- VirtualBms ---------------------------------------------------------------------------------


def decoded_frames(db: Database, tap: can.BusABC) -> dict[str, dict[str, Any]]:
    return {db.get_message_by_frame_id(f.arbitration_id).name: decode(db, f) for f in drain(tap)}


def test_virtual_bms_sends_the_battery_state(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    battery = StandInBattery()
    vbms = VirtualBms(node_bus, battery, identity="VIRTBATT")
    vbms.advance(1.0)
    got = decoded_frames(db, tap)
    assert set(got) == set(BMS_NAMES)
    assert got["BMS_Limits"] == pytest.approx(
        {
            "ChargeVoltageLimit": 53.2,
            "ChargeCurrentLimit": 100.0,
            "DischargeCurrentLimit": 120.0,
            "DischargeVoltageLimit": 44.0,
        }
    )
    assert got["BMS_SocSoh"] == {"StateOfCharge": 70, "StateOfHealth": 98}
    assert got["BMS_Measurements"] == pytest.approx(
        {"PackVoltage": 51.2, "PackCurrent": -12.5, "PackTemperature": 25.3}
    )
    assert got["BMS_Requests"]["ChargeEnable"] == 1
    assert got["BMS_Requests"]["DischargeEnable"] == 1
    alarms = got["BMS_Alarms"]
    assert {k for k, v in alarms.items() if k.startswith(("Prot", "Warn")) and v} == set()
    assert (alarms["ModuleCount"], alarms["MarkerP"], alarms["MarkerN"]) == (1, 80, 78)
    name = bytes(int(got["BMS_Manufacturer"][f"Manufacturer{i}"]) for i in range(8))
    assert name == b"VIRTBATT"


def test_virtual_bms_reports_protections_and_disabled_directions(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    battery = StandInBattery(
        current_a=-150.0,
        charge_current_limit_a=0.0,
        protections={"cell_overvoltage", "overtemp", "overcurrent"},
    )
    vbms = VirtualBms(node_bus, battery, identity="ACME")
    vbms.advance(1.0)
    got = decoded_frames(db, tap)
    active = {k for k, v in got["BMS_Alarms"].items() if k.startswith("Prot") and v}
    assert active == {"ProtOverVoltage", "ProtOverTemp", "ProtDischargeOverCurrent"}
    assert (got["BMS_Requests"]["ChargeEnable"], got["BMS_Requests"]["DischargeEnable"]) == (0, 1)
    name = bytes(int(got["BMS_Manufacturer"][f"Manufacturer{i}"]) for i in range(8))
    assert name == b"ACME\0\0\0\0"

    # the contactor opens: zero current keeps the last direction; charging flips it
    battery.current_a = 0.0
    vbms.advance(2.0)
    assert decoded_frames(db, tap)["BMS_Alarms"]["ProtDischargeOverCurrent"] == 1
    battery.current_a = 80.0
    vbms.advance(3.0)
    alarms = decoded_frames(db, tap)["BMS_Alarms"]
    assert (alarms["ProtChargeOverCurrent"], alarms["ProtDischargeOverCurrent"]) == (1, 0)


def test_virtual_bms_passes_period_overrides_and_sees_the_heartbeat(
    db: Database, node_bus: can.BusABC, tap: can.BusABC
) -> None:
    vbms = VirtualBms(
        node_bus,
        StandInBattery(),
        "X",
        periods_s={"BMS_Measurements": 1.5},
        messages=["BMS_Measurements"],
    )
    assert vbms.last_heartbeat is None
    hb = db.get_message_by_name("INV_Heartbeat")
    tap.send(
        can.Message(arbitration_id=hb.frame_id, data=bytes(8), timestamp=0.7, is_extended_id=False)
    )
    vbms.advance(3.0)
    assert [f.timestamp for f in drain(tap)] == [1.5, 3.0]
    assert vbms.last_heartbeat == 0.7


def test_binding_errors_name_the_line(tmp_path: Path, node_bus: can.BusABC) -> None:
    text = (
        DEFAULT_BINDING.read_text()
        .replace("dbc: ../../dbc/pylontech_lv.dbc", f"dbc: {DBC}")
        .replace("StateOfHealth: {quantity: soh_pct}", "StateOfHealthy: {quantity: soh_pct}")
    )
    path = tmp_path / "binding.yaml"
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "StateOfHealthy" in s)
    with pytest.raises(ConfigErrors, match=rf"binding.yaml:{line}:.*StateOfHealthy"):
        VirtualBms(node_bus, StandInBattery(), "X", binding=path)
