"""Virtual instruments over real pyvisa-py to real SCPI servers, bound to a stand-in plant.

The stand-in has the plant's instrument-facing API (grid, island load, recorder, channel(), t)
and exactly known signals, so a transferred capture can be compared sample by sample with what
was recorded. Times are multiples of 2**-10 s so rebasing onto the analyzer timebase is exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from harness.clock import SimClock
from harness.devices.analyzer import ScpiPowerAnalyzer
from harness.devices.grid import ScpiGridSimulator
from harness.devices.loadbank import LoadBank, ScpiLoadBank
from harness.devices.roles import DeviceError, Identity
from harness.measure.trace import MeasurementError
from harness.transports.aioloop import LoopThread
from harness.transports.visa import ScpiConnection, open_connections
from virtual_devices.endpoints.instruments import (
    GridSimulatorHandler,
    LoadBankHandler,
    PowerAnalyzerHandler,
)
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer

DT = 2.0**-10
T_START = 100.0  # site time when the test begins: the analyzer's timebase must not show it


class StandInGrid:
    def __init__(self) -> None:
        self.voltage_v, self.frequency_hz, self.output_on = 240.0, 60.0, True

    def set_voltage(self, v: float) -> None:
        if v < 0:
            raise ValueError(f"grid voltage must be >= 0 V, got {v}")
        self.voltage_v = v

    def set_frequency(self, hz: float) -> None:
        if hz <= 0:
            raise ValueError(f"grid frequency must be > 0 Hz, got {hz}")
        self.frequency_hz = hz

    def set_output(self, on: bool) -> None:
        self.output_on = on


class StandInLoad:
    def __init__(self) -> None:
        self.power_w, self.quality_factor = 0.0, 1.0
        self.calls: list[tuple[float, float]] = []

        self.inductive_pct, self.capacitive_pct = 100.0, 100.0

    def set(self, power_w: float, quality_factor: float) -> None:
        self.calls.append((power_w, quality_factor))
        self.power_w, self.quality_factor = power_w, quality_factor

    def set_reactive(self, inductive_pct: float, capacitive_pct: float) -> None:
        self.inductive_pct, self.capacitive_pct = inductive_pct, capacitive_pct


class StandInRecorder:
    def __init__(self, plant: StandInPlant) -> None:
        self.plant = plant
        self.open: dict[int, dict[str, list[float]]] = {}
        self._next = 0

    def channels(self) -> list[str]:
        return list(self.plant.sources)

    def start(self, channels: list[str]) -> int:
        for name in channels:
            if name not in self.plant.sources:
                raise KeyError(f"unknown channel {name!r}")
        self._next += 1
        self.open[self._next] = {"": [], **{name: [] for name in channels}}
        self._take(self.open[self._next])  # the first sample is the start instant
        return self._next

    def _take(self, columns: dict[str, list[float]]) -> None:
        for name, column in columns.items():
            column.append(self.plant.t if name == "" else self.plant.channel(name))

    def sample(self) -> None:
        for columns in self.open.values():
            self._take(columns)

    def resample(self) -> None:
        """Like the plant's recorder: a change at the last sample's instant overwrites it."""
        for columns in self.open.values():
            if columns[""][-1] == self.plant.t:
                for column in columns.values():
                    column.pop()
                self._take(columns)

    def stop(self, handle: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        columns = self.open.pop(handle)
        t = np.array(columns.pop(""))
        return {name: (t, np.array(values)) for name, values in columns.items()}


class StandInPlant:
    """Breaker opens at ``open_at``; the bus voltage falls to 0 ``collapse`` seconds later."""

    def __init__(self) -> None:
        self.t = T_START
        self.grid = StandInGrid()
        self.island_load = StandInLoad()
        self.open_at = float("inf")
        self.collapse = 0.25
        self.recorder = StandInRecorder(self)
        self.sources: dict[str, Callable[[], float]] = {
            "pcc.breaker": lambda: 0.0 if self.t >= self.open_at else 1.0,
            "pcc.voltage": lambda: 0.0 if self.t >= self.open_at + self.collapse else 240.0,
            "inverters.current": lambda: 20.0 + (self.t % 1.0),
        }

    def channel(self, name: str) -> float:
        if name not in self.sources:
            raise KeyError(f"unknown channel {name!r}")
        return self.sources[name]()

    def open_breaker(self) -> None:
        self.open_at = self.t
        self.recorder.resample()

    def run(self, duration: float) -> None:
        for _ in range(round(duration / DT)):
            self.t += DT
            self.recorder.sample()


@dataclass
class Bench:
    plant: StandInPlant
    lock: threading.RLock
    grid: ScpiGridSimulator
    analyzer: ScpiPowerAnalyzer
    load_bank: ScpiLoadBank

    def run(self, duration: float) -> None:
        with self.lock:
            self.plant.run(duration)


def ident(model: str) -> InstrumentIdentity:
    return InstrumentIdentity("Virtual Instruments", model, f"SN-{model}", "1.0")


@pytest.fixture
def bench() -> Iterator[Bench]:
    plant, lock, loop = StandInPlant(), threading.RLock(), LoopThread("test-instruments")
    servers = [
        ScpiServer(GridSimulatorHandler(plant, lock, ident("VGS-1")), loop),
        ScpiServer(
            PowerAnalyzerHandler(
                plant, lock, ident("VPA-1"), accuracy={"pcc.voltage": 0.001, "default": 0.002}
            ),
            loop,
        ),
        ScpiServer(LoadBankHandler(plant, lock, ident("VLB-1")), loop),
    ]
    drivers: list[ScpiGridSimulator | ScpiPowerAnalyzer | ScpiLoadBank] = []
    try:
        for server in servers:
            server.start()
        grid = ScpiGridSimulator.open("grid", servers[0].resource)
        drivers.append(grid)
        analyzer = ScpiPowerAnalyzer.open("analyzer", servers[1].resource, timeout_s=2.0)
        drivers.append(analyzer)
        load_bank = ScpiLoadBank.open("load_bank", servers[2].resource)
        drivers.append(load_bank)
        yield Bench(plant, lock, grid, analyzer, load_bank)
    finally:
        for driver in drivers:
            driver.disconnect()
        for server in servers:
            server.stop()
        loop.stop()
        assert open_connections() == 0
        assert not loop.running


# -- grid simulator --------------------------------------------------------------------------------


def test_grid_identity(bench: Bench) -> None:
    assert bench.grid.identity() == Identity(
        "Virtual Instruments", "VGS-1", "SN-VGS-1", "1.0", extra={"dialect": "scpi"}
    )


def test_grid_settings_reach_the_plant(bench: Bench) -> None:
    bench.grid.set_voltage(252.5)
    bench.grid.set_frequency(59.25)
    assert (bench.plant.grid.voltage_v, bench.plant.grid.frequency_hz) == (252.5, 59.25)
    assert bench.grid.voltage_setpoint() == 252.5
    assert bench.grid.frequency_setpoint() == 59.25
    assert bench.grid.voltage() == 252.5
    assert bench.grid.frequency() == 59.25


def test_grid_output_off_measures_zero(bench: Bench) -> None:
    bench.grid.set_output(False)
    assert bench.plant.grid.output_on is False
    assert bench.grid.output_on() is False
    assert bench.grid.voltage() == 0.0
    assert bench.grid.voltage_setpoint() == 240.0
    bench.grid.set_output(True)
    assert bench.plant.grid.output_on and bench.grid.voltage() == 240.0


def test_grid_refused_setting_raises_device_error(bench: Bench) -> None:
    with pytest.raises(DeviceError, match=r"grid: .SOUR:VOLT -1\.0. rejected: -222.*must be >= 0"):
        bench.grid.set_voltage(-1.0)
    assert bench.plant.grid.voltage_v == 240.0


# -- load bank -------------------------------------------------------------------------------------


def test_load_bank_is_a_load_bank_role(bench: Bench) -> None:
    assert isinstance(bench.load_bank, LoadBank)
    assert bench.load_bank.identity().model == "VLB-1"


def test_load_bank_settings_reach_the_plant(bench: Bench) -> None:
    bench.load_bank.set_quality_factor(1.0)
    bench.load_bank.set_power(4800.0)
    bench.load_bank.set_quality_factor(2.5)
    assert bench.plant.island_load.calls[-2:] == [(4800.0, 1.0), (4800.0, 2.5)]
    assert bench.load_bank.power() == 4800.0
    assert bench.load_bank.quality_factor() == 2.5


def test_load_bank_balance_sets_quality_factor_then_power(bench: Bench) -> None:
    bench.load_bank.balance(power=5100.0, quality_factor=1.0)
    assert bench.plant.island_load.calls == [(0.0, 1.0), (5100.0, 1.0)]


def test_load_bank_bad_value(bench: Bench) -> None:
    with pytest.raises(DeviceError, match="-222"):
        bench.load_bank.set_power(float("nan"))


# -- power analyzer --------------------------------------------------------------------------------


def test_analyzer_present_values_accuracy_units(bench: Bench) -> None:
    assert bench.analyzer.measure("pcc.voltage") == 240.0
    assert bench.analyzer.measure("inverters.current") == 20.0 + (T_START % 1.0)
    assert bench.analyzer.accuracy("pcc.voltage") == 0.001
    assert bench.analyzer.accuracy("inverters.current") == 0.002  # the default entry
    assert bench.analyzer.unit("pcc.voltage") == "V"
    assert bench.analyzer.unit("inverters.current") == "A"
    assert bench.analyzer.channels() == ["pcc.breaker", "pcc.voltage", "inverters.current"]


def test_analyzer_unknown_channel(bench: Bench) -> None:
    with pytest.raises(DeviceError, match=r"no channel 'pcc\.volts'.*offers: pcc\.breaker"):
        bench.analyzer.measure("pcc.volts")
    # And the instrument itself refuses it the SCPI way.
    conn = bench.analyzer.conn
    conn.write("MEAS? pcc.volts")
    assert conn.errors() == ['-224,"Illegal parameter value;unknown channel pcc.volts"']


def test_capture_islanding_on_the_analyzer_timebase(bench: Bench) -> None:
    plant = bench.plant
    plant.open_at = T_START + 1.5
    with bench.analyzer.capture("pcc.voltage", "inverters.current") as trace:
        assert not trace.filled
        bench.run(3.0)
    assert trace.channels == ["pcc.voltage", "inverters.current", "pcc.breaker"]  # breaker added
    assert trace.times("pcc.voltage")[0] == 0.0  # the analyzer's clock starts at CAPT:STAR
    assert trace.duration == 3.0
    opened = trace.event("pcc_open")
    assert opened == 1.5
    assert trace.time_until("pcc.voltage", below=12.0, since=opened) == 0.25
    assert trace.unit("pcc.voltage") == "V"
    assert trace.resolution == DT  # not stated by this analyzer: the capture's sample interval
    assert not plant.recorder.open


def test_stated_time_resolution() -> None:
    plant, lock = StandInPlant(), threading.RLock()
    stated = PowerAnalyzerHandler(plant, lock, ident("VPA-1"), time_resolution=0.0005)
    assert stated.execute("CAPT:RES?") == "0.0005"
    plant.params = type("Params", (), {"fine_step_s": 0.001})()  # type: ignore[attr-defined]
    from_plant = PowerAnalyzerHandler(plant, lock, ident("VPA-1"))
    assert from_plant.execute("capture:resolution?") == "0.001"


def test_pretrigger_keeps_the_state_before_a_switch_at_the_first_instant(bench: Bench) -> None:
    """On a lock-step clock nothing moves between CAPT:STAR and the block's first action."""
    plant = bench.plant
    clock = SimClock(start=plant.t)

    def advance(target: float) -> None:
        with bench.lock:
            plant.run(target - plant.t)

    clock.add_advancer(advance)
    analyzer = ScpiPowerAnalyzer("armed", bench.analyzer.conn, clock=clock, pretrigger_s=32 * DT)
    with analyzer.capture("pcc.voltage") as trace:
        plant.open_breaker()  # the moment the block starts
        clock.sleep(1.0)
    assert trace.event("pcc_open") == 32 * DT
    assert trace.time_until("pcc.voltage", below=12.0, since=32 * DT) == 0.25

    # Without the pre-trigger the edge is not on record, and the error says why.
    plant.open_at = float("inf")
    with bench.analyzer.capture("pcc.voltage") as trace:
        plant.open_breaker()
        bench.run(0.5)
    with pytest.raises(MeasurementError, match="already past the edge at the first sample"):
        trace.event("pcc_open")


def test_large_capture_transfers_intact(bench: Bench) -> None:
    plant = bench.plant
    with bench.lock:
        plant.recorder.start(["inverters.current"])  # a second, concurrent recorder capture
    handle = plant.recorder._next
    started = time.monotonic()
    with bench.analyzer.capture("inverters.current", "pcc.voltage") as trace:
        bench.run(10.0)  # 10240 samples per channel: several pages of CAPT:DATA?
    elapsed = time.monotonic() - started
    with bench.lock:
        truth_t, truth_v = plant.recorder.stop(handle)["inverters.current"]
    assert trace.samples == 10241
    assert np.array_equal(trace.times("inverters.current"), truth_t - T_START)
    assert np.array_equal(trace.values("inverters.current"), truth_v)
    assert np.array_equal(trace.times("pcc.voltage"), truth_t - T_START)
    assert elapsed < 5.0


def test_capture_stops_when_the_block_raises(bench: Bench) -> None:
    with (
        pytest.raises(RuntimeError, match="scenario broke"),
        bench.analyzer.capture("pcc.voltage") as trace,
    ):
        bench.run(0.5)
        raise RuntimeError("scenario broke")
    assert not bench.plant.recorder.open  # the analyzer was stopped
    assert trace.filled and trace.duration == 0.5  # and the evidence kept
    assert bench.analyzer.conn.query("CAPT:STAT?") == "DONE"


def test_trace_unusable_inside_the_block(bench: Bench) -> None:
    with (
        bench.analyzer.capture("pcc.voltage") as trace,
        pytest.raises(MeasurementError, match="after the `with` block"),
    ):
        trace.value_at("pcc.voltage", 0.0)


def test_capture_state_errors(bench: Bench) -> None:
    conn: ScpiConnection = bench.analyzer.conn
    assert conn.query("CAPT:STAT?") == "IDLE"
    conn.command("CAPT:CHAN pcc.voltage")
    assert conn.query("CAPT:CHAN?") == "pcc.voltage"
    conn.command("CAPT:STAR")
    assert conn.query("CAPT:STAT?") == "RUN"
    conn.write("CAPT:STAR")
    conn.write("CAPT:DATA? pcc.voltage")
    conn.write("CAPT:CHAN inverters.current")
    assert conn.errors() == [
        '-221,"Settings conflict;capture already running"',
        '-221,"Settings conflict;capture running"',
        '-221,"Settings conflict;capture running"',
    ]
    bench.run(DT * 3)
    conn.command("CAPT:STOP")
    assert conn.query_float("CAPT:COUN? pcc.voltage") == 4
    assert conn.query_floats("CAPT:DATA? pcc.voltage,1,2") == [DT, 240.0, 2 * DT, 240.0]
    conn.write("CAPT:DATA? pcc.voltage,9,1")
    assert conn.errors()[0].startswith("-222,")
    conn.command("*RST")
    assert conn.query("CAPT:STAT?") == "IDLE"
