"""The load bank's reactive knobs over real pyvisa-py to the virtual load bank, bound to the
plant's real RLC load: L and C reach the load apart, detune its resonance as IEEE 1547.1's
reactive-load sweep needs, and ``balance`` tunes it back."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.devices.loadbank import ScpiLoadBank
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.dialects import load_dialect
from virtual_devices.endpoints.instruments import LoadBankHandler
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer
from virtual_devices.plant.load import IslandLoad


@dataclass
class LoadPlant:
    island_load: IslandLoad


@pytest.fixture
def bank() -> Iterator[tuple[ScpiLoadBank, IslandLoad]]:
    load = IslandLoad(0.0, 1.0, 240.0, 60.0)
    loop = LoopThread("test-loadbank")
    ident = InstrumentIdentity("Virtual Instruments", "VLB-1", "SN-1", "1.0")
    server = ScpiServer(LoadBankHandler(LoadPlant(load), threading.RLock(), ident), loop)
    driver: ScpiLoadBank | None = None
    try:
        server.start()
        driver = ScpiLoadBank.open("load_bank", server.resource)
        yield driver, load
    finally:
        if driver is not None:
            driver.disconnect()
        server.stop()
        loop.stop()


def test_generic_dialect_names_the_reactive_commands() -> None:
    spec = load_dialect("scpi").role("load_bank")
    assert spec.op("set_capacitive").render(value=103.0) == "LOAD:REAC:CAP 103.0"
    assert spec.op("inductive").render() == "LOAD:REAC:IND?"


def test_detuned_capacitor_moves_the_resonance(bank: tuple[ScpiLoadBank, IslandLoad]) -> None:
    driver, load = bank
    driver.balance(power=5000.0, quality_factor=1.0, capacitive_pct=103.0)
    assert driver.reactive() == (100.0, 103.0)
    assert load.power_w == 5000.0
    assert load.capacitive_var == pytest.approx(1.03 * 5000.0)
    assert load.resonant_frequency_hz == pytest.approx(60.0 / math.sqrt(1.03))
    driver.set_reactive(96.0, 100.0)
    assert load.resonant_frequency_hz == pytest.approx(60.0 * math.sqrt(0.96))
    driver.balance(power=4000.0, quality_factor=1.0)  # back to resonance at nominal
    assert driver.reactive() == (100.0, 100.0)
    assert load.resonant_frequency_hz == 60.0


def test_refused_reactive_setting_leaves_the_load(bank: tuple[ScpiLoadBank, IslandLoad]) -> None:
    driver, load = bank
    with pytest.raises(DeviceError, match="-222"):
        driver.set_reactive(100.0, 0.0)
    assert (load.inductive_pct, load.capacitive_pct) == (100.0, 100.0)
