"""Virtual bench instruments bound to the plant: grid simulator, power analyzer, load bank.

Each is a :class:`ScpiHandler` served by :class:`ScpiServer`, so the harness reaches it through
pyvisa exactly as it reaches a bench instrument. The plant is typed by the small protocols below,
the only parts of it the instruments touch.

The power analyzer keeps its own timebase, like a real one: a capture's time axis starts at 0 at
``CAPT:STAR`` and the site time of that instant is deliberately not offered, so a scenario can only
time events against other events in the same capture (DESIGN section 4).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from virtual_devices.endpoints.scpi_server import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER,
    MISSING_PARAMETER,
    SETTINGS_CONFLICT,
    Command,
    InstrumentIdentity,
    ScpiError,
    ScpiHandler,
    boolean,
    fmt,
    integer,
    number,
    text_list,
)

Samples = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]

UNITS_BY_SUFFIX: Mapping[str, str] = {
    "voltage": "V",
    "current": "A",
    "power": "W",
    "reactive_power": "var",
    "frequency": "Hz",
    "soc": "%",
    "temperature": "degC",
    "breaker": "",
    "energizing": "",
    "state": "",
}
"""Unit of a channel from the last part of its name, when the instrument config names none."""


# -- what the instruments need from the plant ------------------------------------------------------


class GridSource(Protocol):
    @property
    def voltage_v(self) -> float: ...
    @property
    def frequency_hz(self) -> float: ...
    @property
    def output_on(self) -> bool: ...
    def set_voltage(self, v: float) -> None: ...
    def set_frequency(self, hz: float) -> None: ...
    def set_output(self, on: bool) -> None: ...


class GridPlant(Protocol):
    @property
    def grid(self) -> GridSource: ...


class Recorder(Protocol):
    def channels(self) -> list[str]: ...
    def start(self, channels: list[str]) -> Any: ...
    def stop(self, handle: Any) -> Mapping[str, Samples]: ...


class AnalyzerPlant(Protocol):
    @property
    def t(self) -> float: ...
    @property
    def recorder(self) -> Recorder: ...
    def channel(self, name: str) -> float: ...


class IslandLoad(Protocol):
    @property
    def power_w(self) -> float: ...
    @property
    def quality_factor(self) -> float: ...
    def set(self, power_w: float, quality_factor: float) -> None: ...


class LoadPlant(Protocol):
    @property
    def island_load(self) -> IslandLoad: ...


# -- grid simulator --------------------------------------------------------------------------------


class GridSimulatorHandler(ScpiHandler):
    """A programmable AC source: the plant's grid behind the PCC.

    ``*RST`` leaves the source untouched: here the source *is* the plant's grid, and a reset that
    switched it off would island the site behind the operator's back.
    ``MEAS:VOLT?``/``MEAS:FREQ?`` read the output terminals: 0 when the output is off.
    """

    def __init__(
        self, plant: GridPlant, lock: threading.RLock, identity: InstrumentIdentity
    ) -> None:
        super().__init__(identity, lock)
        self.plant = plant

    def commands(self) -> Mapping[str, Command]:
        def grid() -> GridSource:
            return self.plant.grid

        return {
            "[SOURce:]VOLTage": lambda a: grid().set_voltage(number(a)),
            "[SOURce:]VOLTage?": lambda _a: fmt(grid().voltage_v),
            "[SOURce:]FREQuency": lambda a: grid().set_frequency(number(a)),
            "[SOURce:]FREQuency?": lambda _a: fmt(grid().frequency_hz),
            "OUTPut[:STATe]": lambda a: grid().set_output(boolean(a)),
            "OUTPut[:STATe]?": lambda _a: "1" if grid().output_on else "0",
            "MEASure:VOLTage?": lambda _a: fmt(grid().voltage_v if grid().output_on else 0.0),
            "MEASure:FREQuency?": lambda _a: fmt(grid().frequency_hz if grid().output_on else 0.0),
        }


# -- load bank -------------------------------------------------------------------------------------


class LoadBankHandler(ScpiHandler):
    """The RLC island load: resistive power at nominal voltage and quality factor."""

    def __init__(
        self, plant: LoadPlant, lock: threading.RLock, identity: InstrumentIdentity
    ) -> None:
        super().__init__(identity, lock)
        self.plant = plant

    def _set_power(self, args: str) -> None:
        load = self.plant.island_load
        load.set(number(args), load.quality_factor)

    def _set_quality(self, args: str) -> None:
        load = self.plant.island_load
        load.set(load.power_w, number(args))

    def commands(self) -> Mapping[str, Command]:
        return {
            "LOAD:POWer": self._set_power,
            "LOAD:POWer?": lambda _a: fmt(self.plant.island_load.power_w),
            "LOAD:QF": self._set_quality,
            "LOAD:QF?": lambda _a: fmt(self.plant.island_load.quality_factor),
        }


# -- power analyzer --------------------------------------------------------------------------------


class PowerAnalyzerHandler(ScpiHandler):
    """Present values and captures of the plant's channels, on the analyzer's own timebase.

    Commands: ``MEAS? <ch>``; ``CAPT:CAT?``; ``CAPT:CHAN <ch>,<ch>...`` (and ``?``); ``CAPT:STAR``;
    ``CAPT:STOP``; ``CAPT:STAT?`` (IDLE, RUN, DONE); ``CAPT:COUN? [<ch>]``;
    ``CAPT:DATA? <ch>[,<start>[,<count>]]`` -> ``t0,v0,t1,v1...`` (paged by sample index, so a
    long capture moves in bounded replies); ``ACC? <ch>`` (fraction of reading); ``UNIT? <ch>``.

    ``CAPT:RES?`` states the time resolution, s: ``time_resolution`` when given, else the
    plant's fine step (``plant.params.fine_step_s``: the plant refines its step around every event,
    which is where measured transitions happen), else 0 meaning "not stated".

    ``accuracy`` maps channels to their stated accuracy; its ``default`` entry covers the rest.
    ``units`` overrides :data:`UNITS_BY_SUFFIX`.
    """

    def __init__(
        self,
        plant: AnalyzerPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        accuracy: Mapping[str, float] | None = None,
        units: Mapping[str, str] | None = None,
        time_resolution: float | None = None,
    ) -> None:
        super().__init__(identity, lock)
        self.plant = plant
        if time_resolution is None:
            step = getattr(getattr(plant, "params", None), "fine_step_s", None)
            time_resolution = float(step) if isinstance(step, (int, float)) else 0.0
        self.time_resolution = float(time_resolution)
        self.accuracy = dict(accuracy or {})
        self.units = dict(units or {})
        self._channels: list[str] = []
        self._handle: Any = None
        self._t0_site = 0.0
        self._data: dict[str, Samples] = {}

    def commands(self) -> Mapping[str, Command]:
        return {
            "MEASure?": self._measure,
            "CAPTure:CATalog?": lambda _a: ",".join(self.plant.recorder.channels()),
            "CAPTure:CHANnel": self._set_channels,
            "CAPTure:CHANnel?": lambda _a: ",".join(self._channels),
            "CAPTure:STARt": self._start,
            "CAPTure:STOP": self._stop,
            "CAPTure:STATe?": lambda _a: self._state(),
            "CAPTure:COUNt?": self._count,
            "CAPTure:DATA?": self._samples,
            "CAPTure:RESolution?": lambda _a: fmt(self.time_resolution),
            "ACCuracy?": self._accuracy,
            "UNIT?": self._unit,
        }

    def reset(self) -> None:
        if self._handle is not None:
            self.plant.recorder.stop(self._handle)
        self._handle = None
        self._channels = []
        self._data = {}

    # Helpers.

    def _channel_arg(self, args: str) -> str:
        names = text_list(args)
        if len(names) != 1:
            raise ScpiError(MISSING_PARAMETER if not names else ILLEGAL_PARAMETER, args)
        return names[0]

    def _known(self, name: str) -> str:
        if name not in self.plant.recorder.channels():
            raise ScpiError(ILLEGAL_PARAMETER, f"unknown channel {name}")
        return name

    def _state(self) -> str:
        if self._handle is not None:
            return "RUN"
        return "DONE" if self._data else "IDLE"

    def _captured(self, name: str) -> Samples:
        if self._handle is not None:
            raise ScpiError(SETTINGS_CONFLICT, "capture running")
        if not self._data:
            raise ScpiError(SETTINGS_CONFLICT, "no capture data")
        try:
            return self._data[name]
        except KeyError:
            raise ScpiError(ILLEGAL_PARAMETER, f"channel {name} not captured") from None

    # Commands.

    def _measure(self, args: str) -> str:
        return fmt(self.plant.channel(self._known(self._channel_arg(args))))

    def _set_channels(self, args: str) -> None:
        if self._handle is not None:
            raise ScpiError(SETTINGS_CONFLICT, "capture running")
        names = list(dict.fromkeys(text_list(args)))
        if not names:
            raise ScpiError(MISSING_PARAMETER)
        for name in names:
            self._known(name)
        self._channels = names

    def _start(self, _args: str) -> None:
        if self._handle is not None:
            raise ScpiError(SETTINGS_CONFLICT, "capture already running")
        if not self._channels:
            raise ScpiError(SETTINGS_CONFLICT, "no channels configured (CAPT:CHAN)")
        self._data = {}
        self._t0_site = float(self.plant.t)
        self._handle = self.plant.recorder.start(list(self._channels))

    def _stop(self, _args: str) -> None:
        if self._handle is None:
            return  # stopping an idle capture is harmless, as on most analyzers
        handle, self._handle = self._handle, None
        raw = self.plant.recorder.stop(handle)
        self._data = {
            name: (
                np.asarray(times, dtype=np.float64) - self._t0_site,
                np.asarray(values, dtype=np.float64),
            )
            for name, (times, values) in raw.items()
        }

    def _count(self, args: str) -> str:
        names = text_list(args)
        name = names[0] if names else (self._channels[0] if self._channels else "")
        return str(len(self._captured(name)[0]))

    def _samples(self, args: str) -> str:
        parts = text_list(args)
        if not parts:
            raise ScpiError(MISSING_PARAMETER, "channel")
        times, values = self._captured(parts[0])
        start = integer(parts[1]) if len(parts) > 1 else 0
        count = integer(parts[2]) if len(parts) > 2 else len(times) - start
        if start < 0 or count < 0 or start > len(times):
            raise ScpiError(DATA_OUT_OF_RANGE, f"start {start}, count {count}, have {len(times)}")
        stop = min(len(times), start + count)
        pairs = np.empty(2 * (stop - start), dtype=np.float64)
        pairs[0::2] = times[start:stop]
        pairs[1::2] = values[start:stop]
        return ",".join(map(repr, pairs.tolist()))

    def _accuracy(self, args: str) -> str:
        name = self._known(self._channel_arg(args))
        if name in self.accuracy:
            return fmt(self.accuracy[name])
        if "default" in self.accuracy:
            return fmt(self.accuracy["default"])
        raise ScpiError(ILLEGAL_PARAMETER, f"no stated accuracy for {name}")

    def _unit(self, args: str) -> str:
        name = self._known(self._channel_arg(args))
        if name in self.units:
            return self.units[name]
        return UNITS_BY_SUFFIX.get(name.rsplit(".", 1)[-1], "")
