"""The virtual BMS's precharge supervision and the fault-insertion lines that provoke it.

On the round-number settings of tests/test_bms_logic.py (precharge 0.25 s, timeout 15 s): a
precharge that cannot complete is given up exactly at its timeout (plus the defect's extra
delay), latches the contactor state ``fault`` with the alarm ``precharge_fault``, and only taking
the enable input away resets it; a healthy precharge still closes after 0.25 s. The last test
goes through the fault-insertion unit's real Modbus server to the plant's BMS.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.devices.fault_insertion import ModbusFaultInsertion
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import ModbusClient
from tests.test_bms_logic import SETTINGS, Pack, make_bms, run
from virtual_devices.endpoints.fault_insertion import FaultInsertionEndpoint
from virtual_devices.plant.bms_logic import PRECHARGE_FAULT, BmsLogic


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "bms.yaml"
    path.write_text(SETTINGS)
    return path


def _cycle(bms: BmsLogic, pack: Pack, open_for: float = 1.0) -> float:
    """Take the enable away for ``open_for``, give it back; returns when the precharge began."""
    bms.set_enable(False)
    bms.update(bms.clock["t"], pack, 50.0)  # type: ignore[attr-defined]
    assert bms.contactor == "open"
    run(bms, pack, bms.clock["t"] + open_for)  # type: ignore[attr-defined]
    bms.set_enable(True)
    start = bms.clock["t"]  # type: ignore[attr-defined]
    bms.update(start, pack, 50.0)
    assert bms.contactor == "precharging"
    return float(start)


def _events(events: list[tuple[float, str]], name: str) -> list[float]:
    return [t for t, e in events if e == name]


def test_a_healthy_precharge_closes_the_contactor(settings_file: Path) -> None:
    bms, events = make_bms(settings_file)
    pack = Pack()
    start = _cycle(bms, pack)
    run(bms, pack, start + 1.0)
    assert bms.contactor == "closed" and not bms.alarms
    assert _events(events, "bms.contactor:closed") == [pytest.approx(start + 0.25)]


@pytest.mark.parametrize("extra", [0.0, 1.05])
def test_a_blocked_precharge_is_given_up_at_its_timeout(settings_file: Path, extra: float) -> None:
    bms, events = make_bms(settings_file, precharge_extra_s=extra)
    pack = Pack()
    bms.set_precharge_blocked(True)
    start = _cycle(bms, pack)
    run(bms, pack, start + 14.9 + extra)
    assert bms.contactor == "precharging" and PRECHARGE_FAULT not in bms.alarms
    run(bms, pack, start + 20.0 + extra)
    assert bms.contactor == "fault" and PRECHARGE_FAULT in bms.alarms
    assert bms.limit_factor("charge") == bms.limit_factor("discharge") == 0.0
    assert _events(events, "bms.contactor:fault") == [pytest.approx(start + 15.0 + extra)]


def test_a_precharge_fault_is_latched_until_the_enable_is_cycled(settings_file: Path) -> None:
    bms, _ = make_bms(settings_file)
    pack = Pack()
    bms.set_precharge_blocked(True)
    start = _cycle(bms, pack)
    run(bms, pack, start + 16.0)
    bms.set_precharge_blocked(False)  # the resistor back: the latch still holds
    run(bms, pack, start + 30.0)
    assert bms.contactor == "fault" and PRECHARGE_FAULT in bms.alarms
    again = _cycle(bms, pack)
    run(bms, pack, again + 1.0)
    assert bms.contactor == "closed" and not bms.alarms


def test_a_negative_extra_delay_is_refused(settings_file: Path) -> None:
    with pytest.raises(ValueError, match="precharge_extra_s"):
        make_bms(settings_file, precharge_extra_s=-1.0)


class _Bms:
    """Records what the fault-insertion unit asks of a BMS (the plant's methods)."""

    def __init__(self) -> None:
        self.enable: list[bool] = []
        self.blocked: list[bool] = []

    def set_enable(self, on: bool) -> None:
        self.enable.append(on)

    def set_precharge_blocked(self, on: bool) -> None:
        self.blocked.append(on)


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread("test-precharge-fiu")
    try:
        yield lt
    finally:
        lt.stop()


def test_the_fault_insertion_unit_switches_enable_and_precharge_resistor(loop: LoopThread) -> None:
    bms, notes = _Bms(), []
    ep = FaultInsertionEndpoint(
        "home-1.fault_insertion", bms, None, notes.append, lock=threading.RLock(), loop=loop
    )
    ep.start()
    client = ModbusClient("127.0.0.1", ep.port, timeout=1.0)
    try:
        fiu = ModbusFaultInsertion.from_map("home-1.fault_insertion", client)
        fiu.open_precharge_resistor(True)
        fiu.set_bms_enable(False)
        fiu.set_bms_enable(True)
        fiu.open_precharge_resistor(False)
        assert bms.blocked == [True, False] and bms.enable == [False, True]
        assert notes[0] == "home-1.fault_insertion.PrechargeResistor.Open:1"
        assert fiu.device.read_many(["BmsEnable.Connected", "PrechargeResistor.Open"]) == {
            "BmsEnable.Connected": 1.0,
            "PrechargeResistor.Open": 0.0,
        }
    finally:
        client.close()
        ep.stop()
