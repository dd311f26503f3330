"""The Pylontech low-voltage DBC says what the protocol facts say (domain-facts.md, CAN table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cantools.database.can import Database

from harness.transports.can import load_database

DBC = Path(__file__).resolve().parents[1] / "dbc" / "pylontech_lv.dbc"

BMS_MESSAGES = {
    0x351: "BMS_Limits",
    0x355: "BMS_SocSoh",
    0x356: "BMS_Measurements",
    0x359: "BMS_Alarms",
    0x35C: "BMS_Requests",
    0x35E: "BMS_Manufacturer",
}


@pytest.fixture(scope="module")
def db() -> Database:
    return load_database(DBC)


def test_loads_strictly_with_both_nodes_and_bus_speed(db: Database) -> None:
    assert sorted(n.name for n in db.nodes) == ["BMS", "INV"]
    assert db.buses[0].baudrate == 500_000


def test_messages_ids_senders_cycle_times(db: Database) -> None:
    by_id = {m.frame_id: m for m in db.messages}
    assert set(by_id) == {*BMS_MESSAGES, 0x305}
    for frame_id, name in BMS_MESSAGES.items():
        m = by_id[frame_id]
        assert (m.name, m.senders, m.cycle_time) == (name, ["BMS"], 1000)
        assert not m.is_extended_frame
        assert m.length == (4 if frame_id == 0x355 else 8)
    heartbeat = by_id[0x305]
    assert (heartbeat.name, heartbeat.senders, heartbeat.cycle_time) == (
        "INV_Heartbeat",
        ["INV"],
        1000,
    )


def test_signals_are_intel_and_ranges_fit_their_bits(db: Database) -> None:
    for m in db.messages:
        for s in m.signals:
            assert s.byte_order == "little_endian", (m.name, s.name)
            assert s.minimum is not None and s.maximum is not None, (m.name, s.name)
            raw = [s.scaled_to_raw(v) for v in (s.minimum, s.maximum)]
            lo = -(1 << (s.length - 1)) if s.is_signed else 0
            hi = (1 << (s.length - 1)) - 1 if s.is_signed else (1 << s.length) - 1
            assert lo <= min(raw) and max(raw) <= hi, (m.name, s.name)


@pytest.mark.parametrize(
    ("message", "signal", "signed", "scale", "unit"),
    [
        ("BMS_Limits", "ChargeVoltageLimit", False, 0.1, "V"),
        ("BMS_Limits", "ChargeCurrentLimit", True, 0.1, "A"),
        ("BMS_Limits", "DischargeCurrentLimit", True, 0.1, "A"),
        ("BMS_Limits", "DischargeVoltageLimit", False, 0.1, "V"),
        ("BMS_SocSoh", "StateOfCharge", False, 1, "%"),
        ("BMS_SocSoh", "StateOfHealth", False, 1, "%"),
        ("BMS_Measurements", "PackVoltage", True, 0.01, "V"),
        ("BMS_Measurements", "PackCurrent", True, 0.1, "A"),
        ("BMS_Measurements", "PackTemperature", True, 0.1, "degC"),
    ],
)
def test_scalings_and_signedness(
    db: Database, message: str, signal: str, signed: bool, scale: float, unit: str
) -> None:
    s = db.get_message_by_name(message).get_signal_by_name(signal)
    assert (s.length, s.is_signed, s.scale, s.offset, s.unit) == (16, signed, scale, 0, unit)


def test_measurement_bytes_match_the_table(db: Database) -> None:
    data = db.encode_message(
        "BMS_Measurements", {"PackVoltage": 53.27, "PackCurrent": -12.5, "PackTemperature": 25.3}
    )
    assert int.from_bytes(data[0:2], "little", signed=True) == 5327
    assert int.from_bytes(data[2:4], "little", signed=True) == -125
    assert int.from_bytes(data[4:6], "little", signed=True) == 253


@pytest.mark.parametrize(
    ("signal", "byte", "bit"),
    [
        ("ProtOverVoltage", 0, 1),
        ("ProtUnderVoltage", 0, 2),
        ("ProtOverTemp", 0, 3),
        ("ProtUnderTemp", 0, 4),
        ("ProtDischargeOverCurrent", 0, 7),
        ("ProtChargeOverCurrent", 1, 0),
        ("ProtSystemFault", 1, 3),
        ("WarnOverVoltage", 2, 1),
        ("WarnUnderVoltage", 2, 2),
        ("WarnOverTemp", 2, 3),
        ("WarnUnderTemp", 2, 4),
        ("WarnDischargeOverCurrent", 2, 7),
        ("WarnHighChargeCurrent", 3, 0),
        ("WarnInternal", 3, 3),
    ],
)
def test_alarm_bits_sit_where_the_table_says(
    db: Database, signal: str, byte: int, bit: int
) -> None:
    m = db.get_message_by_name("BMS_Alarms")
    values = {s.name: 0 for s in m.signals} | {signal: 1}
    data = m.encode(values)
    expected = bytearray(8)
    expected[byte] = 1 << bit
    assert data == bytes(expected)


@pytest.mark.parametrize(
    ("signal", "bit"),
    [
        ("ChargeEnable", 7),
        ("DischargeEnable", 6),
        ("ForceChargeI", 5),
        ("ForceChargeII", 4),
        ("FullChargeRequest", 3),
    ],
)
def test_request_bits(db: Database, signal: str, bit: int) -> None:
    m = db.get_message_by_name("BMS_Requests")
    data = m.encode({s.name: 0 for s in m.signals} | {signal: 1})
    assert data == bytes([1 << bit]) + bytes(7)


def test_protocol_marker_and_module_count_bytes(db: Database) -> None:
    m = db.get_message_by_name("BMS_Alarms")
    initial = {s.name: s.initial if s.initial is not None else 0 for s in m.signals}
    data = m.encode(initial | {"ModuleCount": 3})
    assert data[4] == 3
    assert data[5:7] == b"PN"


def test_manufacturer_is_eight_ascii_bytes(db: Database) -> None:
    m = db.get_message_by_name("BMS_Manufacturer")
    name = b"PYLON\0\0\0"
    assert m.encode({f"Manufacturer{i}": name[i] for i in range(8)}) == name


def test_high_resolution_soc_frame_still_decodes(db: Database) -> None:
    """Some firmware sends 0x355 with 8 bytes; the 4-byte definition reads its first four."""
    decoded = db.decode_message(0x355, bytes([55, 0, 97, 0, 0x7C, 0x15, 0, 0]))
    assert decoded == {"StateOfCharge": 55, "StateOfHealth": 97}


def test_cantools_dump_accepts_the_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cantools", "dump", str(DBC)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "BMS_Manufacturer" in result.stdout
    assert "Cycle time:     1000 ms" in result.stdout
