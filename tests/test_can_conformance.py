"""The CAN conformance monitor, the BMS map and virtual BMS defects, for two different DBCs.

Everything runs on real python-can virtual buses on a lock-step SimClock: a virtual BMS on one
bus object, the harness's transport and DBC BMS driver on another, as in a virtual site.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import can
import pytest
from cantools.database.can import Database

from harness.checks import check_dbc
from harness.clock import SimClock
from harness.config.errors import ConfigErrors
from harness.conformance.can import CanMonitor, Checked, periodic_messages
from harness.devices.bms import DbcBms, load_bms_map
from harness.transports.can import CanTransport, load_database, open_bus
from virtual_devices.endpoints.bms import CanDefects, VirtualBms, binding_for

ROOT = Path(__file__).resolve().parents[1]
LV_DBC, LV_MAP = ROOT / "dbc/pylontech_lv.dbc", ROOT / "fixtures/maps/pylontech_lv_bms.yaml"
HV_DBC, HV_MAP = ROOT / "dbc/hv_bms.dbc", ROOT / "fixtures/maps/hv_bms.yaml"
HV_REQUIRED = ["HV_Limits", "HV_SocSoh", "HV_Measurements", "HV_Status", "HV_Info"]


@dataclass
class StandInBattery:
    """The attributes VirtualBms reads from a plant battery."""

    voltage_v: float = 371.0
    current_a: float = -12.5
    soc_pct: float = 70.0
    soh_pct: float = 98.0
    temperature_c: float = 25.3
    charge_current_limit_a: float = 25.0
    discharge_current_limit_a: float = 30.0
    charge_voltage_limit_v: float = 397.6
    discharge_voltage_limit_v: float = 324.8
    cell_voltage_min_v: float = 3.312
    cell_voltage_max_v: float = 3.312
    protections: set[str] = field(default_factory=set)


def lv_battery() -> StandInBattery:
    return StandInBattery(
        voltage_v=51.2,
        charge_current_limit_a=100.0,
        discharge_current_limit_a=120.0,
        charge_voltage_limit_v=53.2,
        discharge_voltage_limit_v=44.0,
    )


@dataclass
class Rig:
    clock: SimClock
    battery: StandInBattery
    vbms: VirtualBms
    bms: DbcBms
    db: Database


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """A virtual BMS and the harness's DBC BMS on one virtual channel; param: (dbc, map, defects)."""
    dbc, bms_map, defects = getattr(request, "param", (HV_DBC, HV_MAP, CanDefects()))
    channel = f"test-can-conformance-{uuid.uuid4()}"
    battery = lv_battery() if dbc == LV_DBC else StandInBattery()
    vbms = VirtualBms(
        open_bus("virtual", channel), battery, "VIRTBATT", binding=binding_for(dbc), defects=defects
    )
    db = load_database(dbc)
    clock = SimClock()
    transport = CanTransport(open_bus("virtual", channel), db, clock.bus_time)
    clock.add_advancer(vbms.advance)
    clock.add_advancer(transport.advance)
    try:
        yield Rig(clock, battery, vbms, DbcBms(transport, load_bms_map(bms_map, db), clock.now), db)
    finally:
        transport.close()
        vbms.close()


def observe(rig: Rig, seconds: float) -> CanMonitor:
    monitor = CanMonitor.for_bms(rig.bms)
    monitor.reset(start_t=rig.clock.now())
    with rig.bms.listening(monitor):
        rig.bms.hold(rig.clock, seconds)
    return monitor


def frame(ident: int, data: bytes, t: float, extended: bool = False) -> can.Message:
    return can.Message(arbitration_id=ident, data=data, timestamp=t, is_extended_id=extended)


# -- a clean BMS on either DBC ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rig", "required"),
    [
        ((LV_DBC, LV_MAP, CanDefects()), periodic_messages(load_database(LV_DBC), "BMS")),
        ((HV_DBC, HV_MAP, CanDefects()), HV_REQUIRED),
    ],
    indirect=["rig"],
    ids=["lv-intel-senders", "hv-motorola-extended-mux-no-sender"],
)
def test_clean_bms_conforms_on_either_dbc(rig: Rig, required: list[str]) -> None:
    report = observe(rig, 10.0).report(end_t=rig.clock.now())
    assert report.required == required
    assert report.missing == [] and report.range_violations == [] and report.unknown_ids == {}
    assert set(report.cycle_deviation().values()) == {0.0}
    assert Checked.judge(report, 10.0).conforming
    hb = report.heartbeat  # the harness stood in for the inverter, on the heartbeat's cycle
    assert hb is not None and hb.count == 10 and hb.deviation_pct == 0.0 and not hb.required


def test_hv_layout_decodes_big_endian_extended_and_multiplexed(rig: Rig) -> None:
    rig.bms.hold(rig.clock, 3.0)
    assert rig.bms.voltage() == pytest.approx(371.0)
    assert rig.bms.current() == pytest.approx(-12.5)
    assert rig.bms.soc() == pytest.approx(70.0)  # 0.01 % resolution
    assert rig.bms.resolution("soc") == pytest.approx(0.01)
    assert rig.bms.value("discharge_enable") == 1.0  # from the extended-id status frame
    # Both pages of the multiplexed message: the name from page 0 and 1, cells from page 1.
    assert rig.bms.identity().manufacturer == "VIRTBATT"
    assert rig.bms.value("cell_voltage_min") == pytest.approx(3.312)
    monitor = observe(rig, 2.0)
    assert monitor.report().messages["HV_Info"].count == 4  # 500 ms, pages alternating


def test_the_bms_reports_a_lost_heartbeat_only_after_having_heard_it(rig: Rig) -> None:
    rig.clock.sleep(5.0)
    assert rig.bms.heartbeat_lost() is False  # never heard one: not lost
    rig.bms.hold(rig.clock, 3.0)
    assert rig.bms.heartbeat_lost() is False
    assert rig.vbms.last_heartbeat == 7.0
    rig.clock.sleep(4.5)  # the HV binding's timeout is 3 s
    assert rig.bms.heartbeat_lost() is True
    rig.bms.hold(rig.clock, 2.0)
    assert rig.bms.heartbeat_lost() is False


# -- what the monitor finds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "rig",
    [(HV_DBC, HV_MAP, CanDefects(stops_s={"HV_Status": 0.0}, periods_s={"HV_SocSoh": 1.06}))],
    indirect=True,
)
def test_missing_message_and_wrong_cycle_are_found(rig: Rig) -> None:
    report = observe(rig, 20.0).report(end_t=rig.clock.now())
    assert report.missing == ["HV_Status"]
    deviation = report.cycle_deviation()
    assert math.isinf(deviation["HV_Status"])
    assert deviation["HV_SocSoh"] == pytest.approx(6.0)
    checked = Checked.judge(report, 5.0)
    assert checked.violations == [
        "HV_Status: required, never received with its DBC length",
        "HV_SocSoh: period deviates 6 % from 1 s (tolerance 5 %)",
    ]
    assert Checked.judge(report, 7.0).violations == checked.violations[:1]


@pytest.mark.parametrize(
    "rig", [(HV_DBC, HV_MAP, CanDefects(stops_s={"HV_Limits": 5.5}))], indirect=True
)
def test_a_message_that_stops_mid_window_fails_its_cycle(rig: Rig) -> None:
    report = observe(rig, 10.0).report(end_t=rig.clock.now())
    limits = report.messages["HV_Limits"]
    assert report.missing == [] and limits.count == 5
    assert limits.max_period == pytest.approx(5.0)  # silence from t = 5 s to the end, t = 10 s
    assert limits.deviation_pct == pytest.approx(400.0)


@pytest.mark.parametrize(
    "rig",
    [
        (
            HV_DBC,
            HV_MAP,
            CanDefects(forced={("HV_Info", "CellVoltageMax"): 5.001}, soc_offset_pct=31.0),
        )
    ],
    indirect=True,
)
def test_values_out_of_range_are_counted_per_frame_and_page(rig: Rig) -> None:
    report = observe(rig, 4.0).report()
    found = {(v.message, v.signal): v for v in report.range_violations}
    assert set(found) == {("HV_Info", "CellVoltageMax"), ("HV_SocSoh", "StateOfCharge")}
    cell = found["HV_Info", "CellVoltageMax"]  # only on page 1: every other 500 ms frame
    assert (cell.count, cell.highest, cell.maximum, cell.unit) == (4, 5.001, 5.0, "V")
    soc = found["HV_SocSoh", "StateOfCharge"]
    assert soc.count == 4 and soc.lowest == pytest.approx(101.0)
    assert report.range_violation_count == 8


def test_unknown_ids_wrong_lengths_and_error_frames_from_a_log() -> None:
    db = load_database(HV_DBC)
    monitor = CanMonitor(db, ["HV_SocSoh"])
    soc = db.get_message_by_name("HV_SocSoh")
    good = soc.encode({"StateOfCharge": 50.0, "StateOfHealth": 99.0})
    frames = [
        frame(0x3D8, good, 0.0),
        frame(0x3D8, good + b"\0\0", 0.5),  # 6 bytes: not the DBC's message
        frame(0x3D8, good, 1.0),
        frame(0x3D8, good, 2.0, extended=True),  # same number, extended: another id
        frame(0x7FF, b"\1", 2.5),
        can.Message(is_error_frame=True, timestamp=2.6),
    ]
    assert monitor.process_all(frames) == 6
    report = monitor.report()
    found = report.messages["HV_SocSoh"]
    assert (found.count, found.wrong_length, found.min_period) == (2, {6: 1}, 1.0)
    assert report.unknown_ids == {"0x7FF": 1, "0x000003D8 (extended)": 1}
    assert report.non_data_frames == 1 and report.frames == 6
    assert Checked.judge(report, 10.0).violations == [
        "HV_SocSoh: 1 frame(s) of 6 bytes, DBC length 4"
    ]


def test_a_repeated_payload_is_checked_like_a_new_one() -> None:
    """The monitor reuses the decode of a payload its message repeats: an out-of-range value
    still counts once per frame, and a different payload in between is decoded afresh."""
    db = load_database(HV_DBC)
    monitor = CanMonitor(db, ["HV_SocSoh"])
    soc = db.get_message_by_name("HV_SocSoh")
    high = soc.encode({"StateOfCharge": 101.0, "StateOfHealth": 99.0}, strict=False)
    fine = soc.encode({"StateOfCharge": 50.0, "StateOfHealth": 99.0})
    payloads = [high, high, fine, fine, high, high, high]
    monitor.process_all([frame(0x3D8, p, float(t)) for t, p in enumerate(payloads)])
    (violation,) = monitor.report().range_violations
    assert (violation.signal, violation.count, violation.highest) == ("StateOfCharge", 5, 101.0)
    assert monitor.report().messages["HV_SocSoh"].count == 7


def test_only_wrong_length_frames_make_a_message_missing() -> None:
    db = load_database(LV_DBC)
    monitor = CanMonitor(db, ["BMS_SocSoh"])
    monitor.process_all([frame(0x355, bytes(8), t) for t in range(5)])
    assert monitor.report().missing == ["BMS_SocSoh"]


def test_monitor_refuses_names_the_dbc_does_not_know() -> None:
    with pytest.raises(KeyError, match="Nope"):
        CanMonitor(load_database(LV_DBC), ["Nope"])
    with pytest.raises(KeyError, match="Heartbeat2"):
        CanMonitor(load_database(LV_DBC), heartbeat="Heartbeat2")


# -- maps, bindings and defects -----------------------------------------------------------------


def test_map_requires_node_or_messages_and_checks_the_list(tmp_path: Path) -> None:
    db = load_database(HV_DBC)
    text = HV_MAP.read_text()
    no_list = tmp_path / "a.yaml"
    no_list.write_text(text.replace("messages: [", "#messages: ["))
    with pytest.raises(ConfigErrors, match="needs 'node'"):
        load_bms_map(no_list, db)
    typo = tmp_path / "b.yaml"
    typo.write_text(text.replace("HV_Status, HV_Info]", "HV_Status, HV_Infos]"))
    line = next(i for i, s in enumerate(typo.read_text().splitlines(), 1) if "HV_Infos" in s)
    with pytest.raises(ConfigErrors, match=rf"b.yaml:{line}: messages.4: message 'HV_Infos'"):
        load_bms_map(typo, db)
    assert load_bms_map(LV_MAP, load_database(LV_DBC)).required(load_database(LV_DBC)) == [
        "BMS_Limits",
        "BMS_SocSoh",
        "BMS_Measurements",
        "BMS_Alarms",
        "BMS_Requests",
        "BMS_Manufacturer",
    ]


def test_a_site_dbc_finds_its_binding(tmp_path: Path) -> None:
    assert binding_for(HV_DBC).path.name == "hv_bms_binding.yaml"
    assert binding_for(LV_DBC).path.name == "pylontech_lv_binding.yaml"
    other = tmp_path / "other.dbc"
    other.write_text(HV_DBC.read_text())
    with pytest.raises(ConfigErrors, match="exactly one binding for this DBC"):
        binding_for(other)


@pytest.mark.parametrize(
    ("defects", "error"),
    [
        (CanDefects(stops_s={"HV_Nope": 0.0}), "unknown message 'HV_Nope'"),
        (CanDefects(forced={("HV_Info", "Nope"): 1.0}), "unknown signal 'Nope'"),
        (CanDefects(periods_s={"HV_Heartbeat": 2.0}), "'HV_Heartbeat', which this BMS does not"),
    ],
)
def test_defects_must_name_what_the_bms_sends(defects: CanDefects, error: str) -> None:
    bus = open_bus("virtual", f"test-can-conformance-{uuid.uuid4()}")
    try:
        with pytest.raises(ConfigErrors, match=error):
            VirtualBms(bus, StandInBattery(), "X", binding=binding_for(HV_DBC), defects=defects)
    finally:
        bus.shutdown()


@pytest.mark.parametrize("rig", [(LV_DBC, LV_MAP, CanDefects(soc_offset_pct=-2.6))], indirect=True)
def test_soc_offset_shifts_what_the_bms_reports(rig: Rig) -> None:
    rig.clock.sleep(2.0)
    assert rig.bms.soc() == 67.0  # 70 % - 2.6, at the LV protocol's 1 % resolution
    rig.battery.soc_pct = 100.0
    rig.clock.sleep(1.0)
    assert rig.bms.soc() == 97.0


# -- `harness check` on a DBC -------------------------------------------------------------------


def test_check_dbc_says_what_a_dbc_contains(tmp_path: Path) -> None:
    summary = check_dbc(HV_DBC)
    assert "6 messages (1 extended)" in summary
    assert "1 multiplexed; byte order big" in summary
    assert "0x18FF10E5 (ext) HV_Status: 8 bytes, 1000 ms, sent by nobody named" in summary
    assert "warning: 6 message(s) name no sender" in summary
    lv = check_dbc(LV_DBC)
    assert "byte order little" in lv and "warning" not in lv
    unranged = tmp_path / "x.dbc"
    unranged.write_text(
        LV_DBC.read_text().replace(
            'SG_ StateOfHealth : 16|16@1+ (1,0) [0|100] "%" INV',
            'SG_ StateOfHealth : 16|16@1+ (1,0) [0|0] "%" INV',
        )
    )
    assert "warning: BMS_SocSoh: no declared range for StateOfHealth" in check_dbc(unranged)
