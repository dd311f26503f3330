"""Virtual bench instruments bound to the plant: grid simulator, power analyzer, load bank.

Each is a :class:`ScpiHandler` served by :class:`ScpiServer`, so the harness reaches it through
pyvisa exactly as it reaches a bench instrument. The plant is typed by the small protocols below,
the only parts of it the instruments touch.

Every instrument speaks a *dialect*: the command strings come from the same data files the
drivers read (harness/transports/dialects/<family>.yaml), selected by the site's ``driver:`` name,
so a virtual Chroma grid simulator answers the Chroma commands and a virtual Yokogawa WT the WT
ones. The code here only binds each operation to the plant; no command string is spelled in it.
(The dialect decoder is shared like a DBC or register-map codec: it reads data and imports
nothing else of the harness.)

The power analyzer keeps its own timebase, like a real one: a capture's time axis starts at 0 at
its start command and the site time of that instant is deliberately not offered, so a scenario
can only time events against other events in the same capture (DESIGN section 4).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from harness.transports.dialects import GENERIC, Dialect, RoleDialect, load_dialect
from harness.transports.dialects.wiring import Wiring, normalize_item
from virtual_devices.endpoints.scpi_server import (
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
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
    "energy_import": "Wh",
    "energy_export": "Wh",
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
    @property
    def inductive_pct(self) -> float: ...
    @property
    def capacitive_pct(self) -> float: ...
    def set(self, power_w: float, quality_factor: float) -> None: ...
    def set_reactive(self, inductive_pct: float, capacitive_pct: float) -> None: ...


class LoadPlant(Protocol):
    @property
    def island_load(self) -> IslandLoad: ...


# -- dialect plumbing ----------------------------------------------------------------------------


def _dialect(dialect: Dialect | str) -> Dialect:
    return load_dialect(dialect) if isinstance(dialect, str) else dialect


def _accept(_args: str) -> None:
    """A setup command the virtual instrument has nothing to do for (reply format, remote...)."""


class DialectHandler(ScpiHandler):
    """A virtual instrument whose command table is the dialect's, bound by operation name.

    Subclasses give :meth:`bindings` (operation -> function); every bound operation is served
    under its pattern from the data file, plus the dialect's error query and setup commands.
    """

    role = ""

    def __init__(
        self, identity: InstrumentIdentity, lock: threading.RLock, dialect: Dialect | str
    ) -> None:
        super().__init__(identity, lock)
        self.dialect = _dialect(dialect)
        self.spec: RoleDialect = self.dialect.role(self.role)

    def bindings(self) -> Mapping[str, Command]:
        return {}

    def _common(self) -> dict[str, Command]:
        """IEEE 488.2 commands; the SCPI-99 error queue only if the family reads it that way."""
        common = super()._common()
        if not self.dialect.error_query.pattern.lstrip(":").upper().startswith("SYST"):
            common = {k: f for k, f in common.items() if not k.startswith("SYSTem:ERRor")}
        return common

    def commands(self) -> Mapping[str, Command]:
        table: dict[str, Command] = {self.dialect.error_query.pattern: lambda _a: self.next_error()}
        for op in self.spec.setup:
            table.setdefault(op.pattern, _accept)
        for name, function in self.bindings().items():
            table[self.spec.op(name).pattern] = function
        return table

    def _on_off(self, on: bool) -> str:
        key = "true_replies" if on else "false_replies"
        return str(self.spec.setting(key, ["1" if on else "0"])[0])


# -- grid simulator --------------------------------------------------------------------------------


class GridSimulatorHandler(DialectHandler):
    """A programmable AC source: the plant's grid behind the PCC.

    ``*RST`` leaves the source untouched: here the source *is* the plant's grid, and a reset that
    switched it off would island the site behind the operator's back.
    The measurement queries read the output terminals: 0 when the output is off.
    """

    role = "grid"

    def __init__(
        self,
        plant: GridPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str = GENERIC,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.plant = plant

    def bindings(self) -> Mapping[str, Command]:
        def grid() -> GridSource:
            return self.plant.grid

        return {
            "set_voltage": lambda a: grid().set_voltage(number(a)),
            "voltage_setpoint": lambda _a: fmt(grid().voltage_v),
            "set_frequency": lambda a: grid().set_frequency(number(a)),
            "frequency_setpoint": lambda _a: fmt(grid().frequency_hz),
            "set_output": lambda a: grid().set_output(boolean(a)),
            "output_on": lambda _a: self._on_off(grid().output_on),
            "voltage": lambda _a: fmt(grid().voltage_v if grid().output_on else 0.0),
            "frequency": lambda _a: fmt(grid().frequency_hz if grid().output_on else 0.0),
        }


# -- load bank -------------------------------------------------------------------------------------


class LoadBankHandler(DialectHandler):
    """The RLC island load: resistive power at nominal voltage, quality factor, and L and C
    each in percent of the balanced reactive power (a setting out of range is a data-out-of-
    range error in the error queue, the load unchanged)."""

    role = "load_bank"

    def __init__(
        self,
        plant: LoadPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str = GENERIC,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.plant = plant

    def _set_power(self, args: str) -> None:
        load = self.plant.island_load
        load.set(number(args), load.quality_factor)

    def _set_quality(self, args: str) -> None:
        load = self.plant.island_load
        load.set(load.power_w, number(args))

    def bindings(self) -> Mapping[str, Command]:
        return {
            "set_power": self._set_power,
            "power": lambda _a: fmt(self.plant.island_load.power_w),
            "set_quality_factor": self._set_quality,
            "quality_factor": lambda _a: fmt(self.plant.island_load.quality_factor),
            "set_inductive": lambda a: self._set_reactive(number(a), None),
            "inductive": lambda _a: fmt(self.plant.island_load.inductive_pct),
            "set_capacitive": lambda a: self._set_reactive(None, number(a)),
            "capacitive": lambda _a: fmt(self.plant.island_load.capacitive_pct),
        }

    def _set_reactive(self, inductive: float | None, capacitive: float | None) -> None:
        load = self.plant.island_load
        load.set_reactive(
            load.inductive_pct if inductive is None else inductive,
            load.capacitive_pct if capacitive is None else capacitive,
        )


# -- power analyzer: catalog style (generic SCPI) ------------------------------------------------


class PowerAnalyzerHandler(DialectHandler):
    """Present values and captures of the plant's channels, on the analyzer's own timebase.

    Operations (generic spelling): ``MEAS? <ch>``; ``CAPT:CAT?``; ``CAPT:CHAN <ch>,<ch>...`` (and
    ``?``); ``CAPT:STAR``; ``CAPT:STOP``; ``CAPT:STAT?`` (IDLE, RUN, DONE); ``CAPT:COUN? [<ch>]``;
    ``CAPT:DATA? <ch>[,<start>[,<count>]]`` -> ``t0,v0,t1,v1...`` (paged by sample index, so a
    long capture moves in bounded replies); ``ACC? <ch>`` (fraction of reading); ``UNIT? <ch>``.

    ``CAPT:RES?`` states the time resolution, s: ``time_resolution`` when given, else the
    plant's fine step (``plant.params.fine_step_s``: the plant refines its step around every event,
    which is where measured transitions happen), else 0 meaning "not stated".

    ``accuracy`` maps channels to their stated accuracy; its ``default`` entry covers the rest.
    ``units`` overrides :data:`UNITS_BY_SUFFIX`.
    """

    role = "analyzer"

    def __init__(
        self,
        plant: AnalyzerPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        accuracy: Mapping[str, float] | None = None,
        units: Mapping[str, str] | None = None,
        time_resolution: float | None = None,
        dialect: Dialect | str = GENERIC,
    ) -> None:
        super().__init__(identity, lock, dialect)
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

    def bindings(self) -> Mapping[str, Command]:
        return {
            "measure": self._measure,
            "catalog": lambda _a: ",".join(self.plant.recorder.channels()),
            "capture_channels": self._set_channels,
            "capture_channels_query": lambda _a: ",".join(self._channels),
            "capture_start": self._start,
            "capture_stop": self._stop,
            "capture_state": lambda _a: self._state(),
            "capture_count": self._count,
            "capture_data": self._samples,
            "capture_resolution": lambda _a: fmt(self.time_resolution),
            "accuracy": self._accuracy,
            "unit": self._unit,
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


# -- power analyzer: items style (input elements and numeric items, e.g. Yokogawa WT) ------------

NO_DATA = "NAN"
"""What an item with nothing behind it reads (no such plant channel)."""

_TIME = re.compile(r"^\s*([0-9.eE+-]+)\s*(MS|S)?\s*$", re.IGNORECASE)


class ItemAnalyzerHandler(DialectHandler):
    """A power analyzer with numbered input elements wired to the plant's measurement points.

    The wiring is the site's analyzer ``options`` (elements, dc_elements, aux), read with the same
    :class:`Wiring` the driver uses, backwards: the item ``URMS,2`` is the plant channel of the
    point wired to element 2. Numeric items 1..NUMber are read together (VALue?); the store
    records every item at each data update (RATE), the analyzer's own timebase: record ``k`` is
    the plant's value held at ``k`` update intervals after the store started. A real analyzer
    averages over the interval; this one samples, so an edge shows at most one interval late.
    """

    role = "analyzer"

    def __init__(
        self,
        plant: AnalyzerPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.plant = plant
        self.wiring = Wiring.from_options(self.spec, dict(options or {}))
        self.channel_of = self.wiring.inverse()
        intervals = [float(v) for v in self.spec.setting("update_intervals", [])]
        self.intervals = intervals
        self.interval = float(self.spec.setting("default_update_interval", 0.05))
        self.max_items = int(self.spec.setting("max_items", 0) or 0) or 1000
        self.functions = self._known_functions()
        self.elements = {str(e).upper() for e in self.spec.setting("elements", [])}
        self.items: dict[int, str] = {}
        self.number = 0
        self._handle: Any = None
        self._t0_site = 0.0
        self._store_channels: list[str | None] = []
        self._records: npt.NDArray[np.float64] | None = None

    def _known_functions(self) -> set[str]:
        tables = self.spec.setting("functions", {})
        names = {str(f).upper() for table in tables.values() for f in table.values()}
        aux = str(self.spec.setting("aux_function", "AUX<n>")).upper().replace("<N>", "")
        return names | {aux}

    def bindings(self) -> Mapping[str, Command]:
        return {
            "update_interval": self._set_interval,
            "item_count": self._set_number,
            "item": self._set_item,
            "values": lambda _a: ",".join(self._value(n) for n in range(1, self.number + 1)),
            "capture_reset": lambda _a: self.reset(),
            "capture_interval": _accept,
            "capture_start": self._start,
            "capture_stop": self._stop,
            "capture_count": lambda _a: str(len(self._stored())),
            "capture_fetch": self._fetch,
        }

    def reset(self) -> None:
        if self._handle is not None:
            self.plant.recorder.stop(self._handle)
        self._handle = None
        self._records = None

    # Settings.

    def _set_interval(self, args: str) -> None:
        match = _TIME.match(args)
        if match is None:
            raise ScpiError(DATA_TYPE_ERROR if args.strip() else MISSING_PARAMETER, args)
        seconds = number(match.group(1)) * (0.001 if (match.group(2) or "").upper() == "MS" else 1)
        if self.intervals and not any(math.isclose(seconds, i) for i in self.intervals):
            raise ScpiError(DATA_OUT_OF_RANGE, f"update interval {seconds:g} s")
        self.interval = seconds

    def _set_number(self, args: str) -> None:
        count = integer(args)
        if not 1 <= count <= self.max_items:
            raise ScpiError(DATA_OUT_OF_RANGE, f"{count} items (1..{self.max_items})")
        self.number = count

    def _set_item(self, args: str) -> None:
        (n,) = self.suffixes or (1,)
        if not 1 <= n <= self.max_items:
            raise ScpiError(DATA_OUT_OF_RANGE, f"item {n}")
        item = normalize_item(args)
        function, _, element = item.partition(",")
        base = function.rstrip("0123456789") if function.startswith("AUX") else function
        if base not in self.functions or (element and element not in self.elements):
            raise ScpiError(ILLEGAL_PARAMETER, item)
        if self._handle is not None:
            raise ScpiError(SETTINGS_CONFLICT, "store running")
        self.items[n] = item

    # Present values.

    def _channel(self, n: int) -> str | None:
        channel = self.channel_of.get(self.items.get(n, ""))
        return channel if channel in self.plant.recorder.channels() else None

    def _value(self, n: int) -> str:
        channel = self._channel(n)
        return NO_DATA if channel is None else fmt(self.plant.channel(channel))

    # Store.

    def _start(self, _args: str) -> None:
        if self._handle is not None:
            raise ScpiError(SETTINGS_CONFLICT, "store already running")
        if self._records is not None:
            raise ScpiError(SETTINGS_CONFLICT, "stored data present (STORe:RESet first)")
        if self.number < 1:
            raise ScpiError(SETTINGS_CONFLICT, "no numeric items")
        self._store_channels = [self._channel(n) for n in range(1, self.number + 1)]
        wanted = list(dict.fromkeys(c for c in self._store_channels if c is not None))
        self._t0_site = float(self.plant.t)
        self._handle = self.plant.recorder.start(wanted) if wanted else ()

    def _stop(self, _args: str) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        elapsed = float(self.plant.t) - self._t0_site
        raw = self.plant.recorder.stop(handle) if handle != () else {}
        count = math.floor(elapsed / self.interval + 1e-9) + 1
        at = self._t0_site + np.arange(count, dtype=np.float64) * self.interval
        records = np.full((count, len(self._store_channels)), np.nan)
        for column, channel in enumerate(self._store_channels):
            if channel is None:
                continue
            times, values = (np.asarray(a, dtype=np.float64) for a in raw[channel])
            held = np.searchsorted(times, at + 1e-12, side="right") - 1
            records[:, column] = values[np.clip(held, 0, len(values) - 1)]
        self._records = records

    def _stored(self) -> npt.NDArray[np.float64]:
        if self._handle is not None:
            raise ScpiError(SETTINGS_CONFLICT, "store running")
        if self._records is None:
            raise ScpiError(SETTINGS_CONFLICT, "no stored data")
        return self._records

    def _fetch(self, args: str) -> str:
        records = self._stored()
        parts = text_list(args)
        start = integer(parts[0]) if parts else 0
        count = integer(parts[1]) if len(parts) > 1 else len(records) - start
        if start < 0 or count < 0 or start > len(records):
            raise ScpiError(DATA_OUT_OF_RANGE, f"start {start}, count {count}, have {len(records)}")
        chunk = records[start : start + count].ravel()
        return ",".join(NO_DATA if math.isnan(v) else repr(v) for v in chunk.tolist())


# -- which handler speaks which dialect ----------------------------------------------------------

Factory = Callable[..., DialectHandler]


def build_instrument(
    kind: Factory,
    driver: str,
    plant: Any,
    lock: threading.RLock,
    identity: InstrumentIdentity,
    options: Mapping[str, Any],
) -> ScpiHandler:
    """The virtual instrument of role ``kind`` speaking the dialect the site's ``driver:`` names.

    ``options`` are the instrument's site options (accuracy, wiring ...), as the driver gets them.
    """
    dialect = load_dialect(driver)
    if kind is PowerAnalyzerHandler:
        style = dialect.role("analyzer").setting("style", "catalog")
        if style == "items":
            return ItemAnalyzerHandler(plant, lock, identity, dialect, options)
        known = {"accuracy", "units", "time_resolution"}
        return PowerAnalyzerHandler(
            plant,
            lock,
            identity,
            dialect=dialect,
            **{k: v for k, v in options.items() if k in known},
        )
    return kind(plant, lock, identity, dialect=dialect, **options)
