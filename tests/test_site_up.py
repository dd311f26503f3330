"""`harness site up` serves a virtual site out of process, in real time, to independent clients.

The site runs in a subprocess, exactly as a person starts it. The clients are not the harness's:
pysunspec2's own SunSpec client, a python-can-remote bus decoded with cantools, pyvisa-py. A signal
stops it cleanly and frees every port.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can
import cantools
import pytest
import pyvisa
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from harness.cli import main
from harness.config.site import load_site
from tests.harness_runner import ROOT, SITE
from virtual_devices.realtime import RealTimeSite

DBC = ROOT / "dbc/pylontech_lv.dbc"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
MODELS = [1, 701, 702, 703, 704, 713, 802]
BMS_MESSAGES = {
    "BMS_Limits",
    "BMS_SocSoh",
    "BMS_Measurements",
    "BMS_Alarms",
    "BMS_Requests",
    "BMS_Manufacturer",
}


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    endpoints_file: Path
    log: Path
    info: dict[str, Any]

    def endpoint(self, key: str) -> dict[str, Any]:
        return dict(self.info["endpoints"][key])

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def site_up(tmp: Path, site: Path = SITE) -> Iterator[Served]:
    """Start `harness site up` and wait for its endpoints file; always kill it afterwards."""
    endpoints = tmp / "endpoints.json"
    log = tmp / "site-up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "site",
                "up",
                "--site",
                site,
                "--endpoints",
                endpoints,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not endpoints.exists():
            assert proc.poll() is None, f"site up exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no endpoints file:\n{log.read_text()}"
            time.sleep(0.05)
        yield Served(proc, endpoints, log, json.loads(endpoints.read_text()))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def _check_endpoints_file(served: Served) -> None:
    endpoints = served.info["endpoints"]
    assert set(endpoints) == {
        "home-1.inverter",
        "home-1.bms",
        "grid",
        "analyzer",
        "load_bank",
        "pcc_breaker",
        "ems",
        "chamber",
        "meter",
    }
    assert {e["protocol"] for e in endpoints.values()} == {"modbus_tcp", "can", "scpi"}
    for key, entry in endpoints.items():
        assert entry["host"] == "127.0.0.1", key
        assert 0 < entry["port"] < 65536, key
    assert (
        endpoints["home-1.bms"]["channel"] == f"ws://127.0.0.1:{endpoints['home-1.bms']['port']}/"
    )
    assert endpoints["grid"]["resource"] == f"TCPIP::127.0.0.1::{endpoints['grid']['port']}::SOCKET"
    assert served.info["clock"]["kind"] == "real_time"
    assert Path(endpoints["home-1.bms"]["dbc"]) == DBC.resolve()


def _check_sunspec_client(served: Served) -> None:
    """(a) pysunspec2 discovers the inverter and reads every model."""
    inv = served.endpoint("home-1.inverter")
    device = SunSpecModbusClientDeviceTCP(
        slave_id=inv["unit"], ipaddr=inv["host"], ipport=inv["port"], timeout=2
    )
    try:
        device.scan()
        assert [m.model_id for m in device.model_list] == MODELS
        for model in device.model_list:
            assert model.error_info == "", (model.model_id, model.error_info)
            model.read()  # every model reads again, whole, once discovered
        common = device.common[0]
        assert common.Mn.value == "Virtual Power"
        assert common.SN.value == "VINV-0001"
        ac = device.DERMeasureAC[0]
        assert ac.Hz.cvalue == pytest.approx(60.0, abs=0.01)
        assert ac.LNV.cvalue == pytest.approx(240.0, abs=0.5)
        assert device.DERCapacity[0].WMaxRtg.cvalue == 5000.0
        assert device.DERStorageCapacity[0].SoC.cvalue == pytest.approx(70.0, abs=0.5)
    finally:
        device.disconnect()
        device.close()


def _check_can_client(served: Served) -> None:
    """(b) a python-can-remote client decodes the BMS frames, at their 1 s period."""
    db = cantools.database.load_file(str(DBC))
    assert isinstance(db, cantools.database.can.Database)
    bus = can.Bus(interface="remote", channel=served.endpoint("home-1.bms")["channel"])
    stamps: dict[str, list[float]] = defaultdict(list)
    decoded: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.time() + 3.5  # a 1 s message is seen twice within 2 s
        while time.time() < deadline and not (
            set(stamps) == BMS_MESSAGES and all(len(ts) >= 2 for ts in stamps.values())
        ):
            frame = bus.recv(timeout=0.5)
            if frame is None:
                continue
            message = db.get_message_by_frame_id(frame.arbitration_id)
            values = message.decode(bytes(frame.data))
            assert isinstance(values, dict)
            decoded[message.name] = values
            stamps[message.name].append(frame.timestamp)
            assert abs(frame.timestamp - time.time()) < 0.5  # wall-clock stamps, not site time
    finally:
        _close(bus)
    assert set(stamps) == BMS_MESSAGES
    periods = [b - a for ts in stamps.values() for a, b in itertools.pairwise(ts)]
    assert len(periods) >= len(BMS_MESSAGES), stamps
    assert max(abs(p - 1.0) for p in periods) < 0.1, periods  # DBC cycle time 1000 ms
    assert decoded["BMS_SocSoh"]["StateOfCharge"] == 70
    name = bytes(int(decoded["BMS_Manufacturer"][f"Manufacturer{i}"]) for i in range(8))
    assert name == b"VIRTBATT"
    assert 15 * 3.0 < decoded["BMS_Measurements"]["PackVoltage"] < 15 * 3.6


def _close(bus: can.BusABC) -> None:
    """Shut a remote client down; once the server has hung up, can_remote's own goodbye fails."""
    try:
        bus.shutdown()
    except (OSError, ValueError, can.CanError):
        can.BusABC.shutdown(bus)
        bus.socket.close()  # type: ignore[attr-defined]


def _check_visa_client(served: Served) -> None:
    """(c) pyvisa-py asks the grid simulator who it is."""
    rm = pyvisa.ResourceManager("@py")
    try:
        grid = rm.open_resource(
            served.endpoint("grid")["resource"],
            read_termination="\n",
            write_termination="\n",
            timeout=2000,
        )
        assert isinstance(grid, pyvisa.resources.MessageBasedResource)
        try:
            assert grid.query("*IDN?") == "Virtual Instruments,VGS-1,VG-01,1.0"
        finally:
            grid.close()
    finally:
        rm.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server here binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _stop_and_check(served: Served, signum: int) -> None:
    """(d) a signal stops the site within seconds, exit 0, file removed, every port free.

    A CAN client stays connected meanwhile: it must not hold the shutdown up.
    """
    ports = [e["port"] for e in served.info["endpoints"].values()]
    assert all(_listening(p) for p in ports)
    bus = can.Bus(interface="remote", channel=served.endpoint("home-1.bms")["channel"])
    try:
        started = time.monotonic()
        served.proc.send_signal(signum)
        code = served.proc.wait(STOP_TIMEOUT_S)
        elapsed = time.monotonic() - started
    finally:
        _close(bus)
    assert code == 0, served.output()
    assert elapsed < STOP_TIMEOUT_S
    assert "stopped:" in served.output()
    assert "Traceback" not in served.output()
    assert not served.endpoints_file.exists()
    assert not any(_listening(p) for p in ports)
    assert all(_bindable(p) for p in ports)


def test_independent_clients_use_the_site_until_sigterm(
    tmp_path: Path, subtests: pytest.Subtests
) -> None:
    with site_up(tmp_path) as served:
        for name, check in [
            ("endpoints file", _check_endpoints_file),
            ("pysunspec2", _check_sunspec_client),
            ("python-can-remote + cantools", _check_can_client),
            ("pyvisa-py", _check_visa_client),
        ]:
            with subtests.test(name):
                check(served)
        _stop_and_check(served, signal.SIGTERM)


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    with site_up(tmp_path) as served:
        _stop_and_check(served, signal.SIGINT)


def test_real_time_site_follows_the_wall_clock_and_leaves_nothing_behind() -> None:
    """In process: the driver keeps the plant on wall-clock time; the lock brings it to now."""
    threads = set(threading.enumerate())
    rt = RealTimeSite.start(load_site(SITE))
    client = None
    try:
        # A CAN client left connected: stop() must hang up on it, or its server thread stays.
        client = can.Bus(interface="remote", channel=rt.shares["home-1.bms"].url)
        time.sleep(0.3)
        assert rt.now() - rt.vsite.plant.t < 0.05  # advanced by the driver alone
        with rt.driver.lock:
            assert 0 <= rt.now() - rt.vsite.plant.t < 0.001  # whoever takes it sees now
        assert rt.driver.stats.ticks > 0.3 / rt.driver.period_s / 2
    finally:
        rt.stop()
        if client is not None:
            _close(client)
    assert set(threading.enumerate()) <= threads


def test_bad_site_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text("{}")  # a stale file must not send a waiting script to dead ports
    code = main(
        ["site", "up", "--site", str(tmp_path / "nope.yaml"), "--endpoints", str(endpoints)]
    )
    text = "".join(capsys.readouterr())
    assert code == 2, text
    assert "nope.yaml: file not found" in text
    assert "Traceback" not in text
    assert not endpoints.exists()
