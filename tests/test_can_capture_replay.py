"""CAN captures as evidence (BLF and ASC through python-can's writers), and their replay: by the
`harness replay` command, and by a replay BMS endpoint that plays a log onto a bus in site time.
The last test runs the high-voltage site end to end and replays the capture that run left."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import can
import pytest

from harness.cli import main
from harness.clock import SimClock
from harness.conformance.can import CanMonitor, Checked
from harness.devices.bms import DbcBms, load_bms_map
from harness.transports.can import CAPTURE_INDEX, CanTransport, capture, load_database, open_bus
from tests.harness_runner import CONTRACT, ROOT, run
from virtual_devices.endpoints.bms import CanDefects, VirtualBms, binding_for
from virtual_devices.endpoints.replay import ReplayBms, read_log

HV_DBC, HV_MAP = ROOT / "dbc/hv_bms.dbc", ROOT / "fixtures/maps/hv_bms.yaml"
HV_SITE = ROOT / "fixtures/sites/virtual-home-hv.yaml"


class Battery:
    voltage_v, current_a, soc_pct, soh_pct, temperature_c = 371.0, -12.5, 70.0, 98.0, 25.3
    charge_current_limit_a, discharge_current_limit_a = 25.0, 30.0
    charge_voltage_limit_v, discharge_voltage_limit_v = 397.6, 324.8
    cell_voltage_min_v = cell_voltage_max_v = 3.312
    protections: frozenset[str] = frozenset()


class Harness:
    """The harness side of one bus: clock, transport, DBC BMS driver."""

    def __init__(self, channel: str, clock: SimClock) -> None:
        db = load_database(HV_DBC)
        self.clock = clock
        self.transport = CanTransport(open_bus("virtual", channel), db, clock.bus_time)
        self.bms = DbcBms(self.transport, load_bms_map(HV_MAP, db), clock.now)

    def close(self) -> None:
        self.transport.close()


def record(folder: Path, seconds: float, defects: CanDefects | None = None) -> Path:
    """A virtual HV BMS observed for ``seconds`` (the harness sending its heartbeat), captured."""
    channel = f"test-capture-{uuid.uuid4()}"
    clock = SimClock()
    vbms = VirtualBms(
        open_bus("virtual", channel), Battery(), "VIRTBATT", binding=binding_for(HV_DBC),
        defects=defects,
    )  # fmt: skip
    side = Harness(channel, clock)
    clock.add_advancer(vbms.advance)
    clock.add_advancer(side.transport.advance)
    try:
        clock.sleep(0.25)
        with capture({"home-1.bms": side.transport}, folder, clock):
            side.bms.hold(clock, seconds)
    finally:
        side.close()
        vbms.close()
    return folder / "home-1.bms.blf"


@pytest.fixture(scope="module")
def clean_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("clean"), 10.0)


def test_capture_writes_blf_and_asc_that_read_back(clean_capture: Path) -> None:
    folder = clean_capture.parent
    index = json.loads((folder / CAPTURE_INDEX).read_text())
    offset = index["site_time_offset_s"]
    assert offset > 1.5e9  # epoch time, so BLF and ASC carry a real start date
    assert index["site_time"] == {"start": 0.25, "end": 10.25}
    blf, asc = read_log(clean_capture), read_log(folder / "home-1.bms.asc")
    assert len(blf) == len(asc) == index["buses"]["home-1.bms"]["frames"] == 80
    for a, b in zip(blf, asc, strict=True):  # python-can reads ASC times from the first frame
        assert (a.arbitration_id, a.is_extended_id, bytes(a.data), a.is_rx) == (
            b.arbitration_id,
            b.is_extended_id,
            bytes(b.data),
            b.is_rx,
        )
        assert a.timestamp - blf[0].timestamp == pytest.approx(b.timestamp - asc[0].timestamp)
    sent = [f for f in blf if not f.is_rx]  # the heartbeat the harness sent, 1 s apart
    assert [f.arbitration_id for f in sent] == [0x3F0] * 10
    assert [round(f.timestamp - offset, 6) for f in sent] == [0.25 + k for k in range(10)]
    assert {f.arbitration_id for f in blf if f.is_extended_id} == {0x18FF10E5}


def test_replay_bms_plays_a_capture_back_in_site_time(clean_capture: Path) -> None:
    channel = f"test-replay-{uuid.uuid4()}"
    clock = SimClock(start=100.0)
    replay = ReplayBms(open_bus("virtual", channel), read_log(clean_capture), start_time=100.0)
    side = Harness(channel, clock)
    clock.add_advancer(replay.advance)
    clock.add_advancer(side.transport.advance)
    monitor = CanMonitor.for_bms(side.bms)
    try:
        with side.bms.listening(monitor):
            clock.sleep(9.75)
        assert replay.sent == 70 and replay.finished  # the Tx heartbeat frames are left out
        report = monitor.report(end_t=clock.now())
        assert Checked.judge(report, 1.0).conforming, report.violations(1.0)
        assert report.heartbeat is not None and report.heartbeat.count == 0
        assert side.bms.soc() == pytest.approx(70.0) and side.bms.voltage() == 371.0
        assert side.bms.identity().manufacturer == "VIRTBATT"
        assert report.messages["HV_Measurements"].min_period == pytest.approx(0.5, abs=1e-6)
    finally:
        side.close()
        replay.close()


def test_replay_bms_loops_a_short_log() -> None:
    frames = [can.Message(arbitration_id=0x3D8, data=bytes(4), timestamp=t) for t in (5.0, 6.0)]
    bus = open_bus("virtual", f"test-replay-{uuid.uuid4()}")
    replay = ReplayBms(bus, frames, start_time=0.0, loop=True)
    try:
        replay.advance(5.0)
        assert replay.sent == 6 and replay.next_due() == 6.0  # at 0, 1, 2, 3, 4, 5 s
    finally:
        replay.close()
    empty = open_bus("virtual", f"test-replay-{uuid.uuid4()}")
    try:
        with pytest.raises(ValueError, match="no frame"):
            ReplayBms(empty, [])
    finally:
        empty.shutdown()


def replay_cli(*args: str | Path) -> int:
    return main(["replay", *map(str, args)])


def test_replay_command_exit_status(
    clean_capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay_cli(clean_capture, "--dbc", HV_DBC, "--map", HV_MAP) == 0
    out = capsys.readouterr().out
    assert "80 frames, 5 required messages: conforming" in out and "HV_Heartbeat" in out
    assert replay_cli(clean_capture.with_suffix(".asc"), "--dbc", HV_DBC, "--map", HV_MAP) == 0
    capsys.readouterr()

    bad = record(
        tmp_path / "bad",
        10.0,
        CanDefects(stops_s={"HV_Status": 0.0}, forced={("HV_SocSoh", "StateOfHealth"): 100.01}),
    )
    assert replay_cli(bad, "--dbc", HV_DBC, "--map", HV_MAP) == 1
    out = capsys.readouterr().out
    assert "VIOLATION HV_Status: required, never received with its DBC length" in out
    assert "VIOLATION HV_SocSoh.StateOfHealth: 10 value(s) outside [0|100] %" in out

    garbage = tmp_path / "garbage.blf"
    garbage.write_bytes(b"not a log")
    assert replay_cli(tmp_path / "none.blf", "--dbc", HV_DBC) == 2
    assert replay_cli(garbage, "--dbc", HV_DBC) == 2
    assert replay_cli(clean_capture, "--dbc", HV_MAP) == 2  # a YAML file is not a DBC
    assert replay_cli(clean_capture, "--dbc", HV_DBC, "--tolerance", "-1") == 2
    assert "cannot read the log" in capsys.readouterr().out


@pytest.mark.slow
def test_hv_site_passes_and_its_capture_replays(tmp_path: Path) -> None:
    """Another DBC, the same scenarios and contract: every clause passes; the CAN capture the
    conformance scenario left is replayed and checked, as a field capture would be in CI."""
    result = run(tmp_path, HV_SITE, CONTRACT, "--", "-k", "test_can_conformance or test_telemetry")
    verdicts = {k: v for k, v in result.by_clause().items() if v["verdict"] != "not_covered"}
    assert {v["verdict"] for v in verdicts.values()} == {"pass"}, result.out
    assert {"C.6.1", "C.6.2", "C.6.12", "C.6.13"} <= {clause for clause, _ in verdicts}
    folder = Path(verdicts["C.6.2", "home-1"]["evidence"][0]).parent
    assert {"home-1.bms.blf", "home-1.bms.asc", CAPTURE_INDEX} <= {p.name for p in folder.iterdir()}
    blf = folder / "home-1.bms.blf"
    assert replay_cli(blf, "--dbc", HV_DBC, "--map", HV_MAP, "--tolerance", "1") == 0
    frames = read_log(blf)
    channel = f"test-replay-{uuid.uuid4()}"
    clock = SimClock()
    replay = ReplayBms(open_bus("virtual", channel), frames)
    side = Harness(channel, clock)
    clock.add_advancer(replay.advance)
    clock.add_advancer(side.transport.advance)
    monitor = CanMonitor.for_bms(side.bms)
    try:
        with side.bms.listening(monitor):
            clock.sleep(frames[-1].timestamp - frames[0].timestamp)
        report = monitor.report()
        assert report.frames == replay.sent > 200 and report.missing == []
        assert Checked.judge(report, 1.0).conforming
    finally:
        side.close()
        replay.close()
