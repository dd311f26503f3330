"""A power analyzer reached over SCPI: the PowerAnalyzer role, in any command dialect.

The site file's ``driver:`` names the dialect (``scpi``, the generic default, or a real family
such as ``yokogawa-wt1800``; commands in harness/transports/dialects/<family>.yaml). Dialects differ
in how channels are addressed, and the dialect's ``style`` says which:

* ``catalog`` (generic): the instrument names its channels (``CAPT:CAT?``) and states each one's
  unit and accuracy; a capture returns (time, value) pairs per channel, paged by sample index.
* ``items`` (Yokogawa WT and the like): the instrument has numbered input elements; the site's
  ``options`` wire them to measurement points (see dialects/wiring.py), the dialect gives each
  function's unit and the site the datasheet accuracy. A capture is the store function: records
  of every item at each data update, timed by their index on the analyzer's update interval.

A capture is a context manager: it configures and starts the analyzer on entry and stops it on
exit, also when the block raises (a breaker test that failed half-way must not leave the analyzer
recording). The :class:`Trace` it yields is empty inside the block and filled on exit, so a
scenario reads its quantities after the ``with``. Replies come in bounded pages (``page_samples``),
so every read stays well inside its timeout however long the capture was.

With a site clock, a capture first lets ``pretrigger_s`` of site time pass, as an operator arms
an analyzer before opening a breaker: on a lock-step clock the block would otherwise switch at the
capture's very first instant, and the state before the edge would not be on record.

Event channels (the breaker's auxiliary contact, ``pcc.breaker``) are captured along with what
the scenario asked for whenever the analyzer offers them, so ``trace.event("pcc_open")`` works
without every scenario having to remember the channel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from harness.clock import Clock
from harness.config.units import UnitError, to_unit
from harness.devices.roles import DeviceError, PowerAnalyzer
from harness.devices.scpi_driver import DialectDriver
from harness.measure.trace import DEFAULT_EVENTS, MeasurementError, Trace
from harness.transports.dialects import GENERIC, Dialect, DialectError
from harness.transports.dialects.wiring import Wiring
from harness.transports.visa import ScpiConnection

log = logging.getLogger(__name__)

Samples = tuple[np.ndarray, np.ndarray]


class _Access(Protocol):
    """How one dialect style addresses channels and moves a capture."""

    def channels(self) -> list[str]: ...
    def measure(self, channel: str) -> float: ...
    def accuracy(self, channel: str) -> float: ...
    def unit(self, channel: str) -> str: ...
    def start(self, channels: list[str]) -> None: ...
    def finish(self, channels: list[str]) -> tuple[dict[str, Samples], float | None]: ...


class ScpiPowerAnalyzer(DialectDriver, PowerAnalyzer):
    """Present values, stated accuracy and units, and captures on the analyzer's timebase."""

    role = "analyzer"

    def __init__(
        self,
        name: str,
        conn: ScpiConnection,
        dialect: Dialect | str = GENERIC,
        *,
        options: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        pretrigger_s: float = 0.1,
        page_samples: int = 2000,
        transfer_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(name, conn, dialect)
        self.clock = clock
        self.pretrigger_s = pretrigger_s
        """Site time recorded before the block runs (needs ``clock``; 0 disables)."""
        self.page_samples = page_samples
        self.transfer_timeout_s = transfer_timeout_s
        """Longest wait for one page of samples (formatted before the first byte is sent)."""
        style = self.commands.setting("style", "catalog")
        self._access: _Access
        if style == "catalog":
            self._access = _CatalogAccess(self)
        elif style == "items":
            try:
                self._access = _ItemAccess(self, dict(options or {}))
            except DialectError as exc:
                raise DeviceError(f"{name}: {exc}") from None
        else:
            raise DeviceError(
                f"{name}: dialect {self.dialect.family!r} has unknown style {style!r}"
            )

    @classmethod
    def open(
        cls,
        name: str,
        resource: str,
        timeout_s: float = 2.0,
        dialect: Dialect | str = GENERIC,
        *,
        clock: Clock | None = None,
        pretrigger_s: float = 0.1,
        options: Mapping[str, Any] | None = None,
    ) -> ScpiPowerAnalyzer:
        conn = cls.connect(name, resource, timeout_s)
        try:
            driver = cls(
                name, conn, dialect, options=options, clock=clock, pretrigger_s=pretrigger_s
            )
            driver.run_setup()
            if isinstance(driver._access, _ItemAccess):
                driver._access.configure()
        except BaseException:
            conn.close()
            raise
        return driver

    def channels(self) -> list[str]:
        """The channels the analyzer offers."""
        return self._access.channels()

    def _check(self, channel: str) -> str:
        offered = self.channels()
        if channel not in offered:
            raise DeviceError(
                f"{self.name}: no channel {channel!r}; the analyzer offers: {', '.join(offered)}"
            )
        return channel

    def measure(self, channel: str) -> float:
        return self._access.measure(self._check(channel))

    def accuracy(self, channel: str) -> float:
        return self._access.accuracy(self._check(channel))

    def unit(self, channel: str) -> str:
        return self._access.unit(self._check(channel))

    @contextmanager
    def capture(self, *channels: str) -> Iterator[Trace]:
        if not channels:
            raise ValueError("capture needs at least one channel")
        wanted = list(dict.fromkeys(self._check(ch) for ch in channels))
        offered = set(self.channels())
        for event in DEFAULT_EVENTS.values():
            if event.channel in offered and event.channel not in wanted:
                wanted.append(event.channel)
        trace = Trace(source=self.name)
        self._access.start(wanted)
        try:
            if self.clock is not None and self.pretrigger_s > 0:
                self.clock.sleep(self.pretrigger_s)
            yield trace
        except BaseException:
            try:
                self._finish(wanted, trace)
            except (DeviceError, MeasurementError) as exc:
                log.warning("%s: capture not recovered after a failure: %s", self.name, exc)
            raise
        self._finish(wanted, trace)

    def _finish(self, channels: list[str], trace: Trace) -> None:
        data, resolution = self._access.finish(channels)
        units = {name: self.unit(name) for name in channels}
        try:
            trace.fill(data, units, resolution=resolution)
        except MeasurementError as exc:
            raise DeviceError(f"{self.name}: capture data unusable: {exc}") from exc


class _CatalogAccess:
    """Generic style: channels, units and accuracy named by the instrument itself."""

    def __init__(self, driver: ScpiPowerAnalyzer) -> None:
        self.d = driver
        self._catalog: list[str] | None = None

    def channels(self) -> list[str]:
        if self._catalog is None:  # asked once per driver
            reply = self.d.ask("catalog")
            self._catalog = [item.strip() for item in reply.split(",") if item.strip()]
        return list(self._catalog)

    def measure(self, channel: str) -> float:
        return self.d.ask_float("measure", channel=channel)

    def accuracy(self, channel: str) -> float:
        return self.d.ask_float("accuracy", channel=channel)

    def unit(self, channel: str) -> str:
        return self.d.ask("unit", channel=channel)

    def start(self, channels: list[str]) -> None:
        self.d.write("capture_channels", channels=",".join(channels))
        self.d.write("capture_start")

    def finish(self, channels: list[str]) -> tuple[dict[str, Samples], float | None]:
        self.d.write("capture_stop")
        data = {name: self._fetch(name) for name in channels}
        stated = self.d.ask_float("capture_resolution")
        return data, (stated if stated > 0 else None)

    def _fetch(self, channel: str) -> Samples:
        count = self.d.ask_float("capture_count", channel=channel)
        if count != int(count) or count < 0:
            query = self.d.commands.op("capture_count").render(channel=channel)
            raise DeviceError(f"{self.d.name}: {query!r} answered {count!r}")
        total = int(count)
        pairs = np.empty(2 * total, dtype=np.float64)
        start = 0
        while start < total:
            size = min(self.d.page_samples, total - start)
            page = self.d.ask_floats(
                "capture_data",
                self.d.transfer_timeout_s,
                channel=channel,
                start=start,
                count=size,
            )
            if len(page) != 2 * size:
                query = self.d.commands.op("capture_data").render(
                    channel=channel, start=start, count=size
                )
                raise DeviceError(
                    f"{self.d.name}: {query!r} returned {len(page)} numbers, expected {2 * size}"
                )
            pairs[2 * start : 2 * (start + size)] = page
            start += size
        return pairs[0::2].copy(), pairs[1::2].copy()


class _ItemAccess:
    """Items style: elements wired by the site, a capture is the store of every item."""

    def __init__(self, driver: ScpiPowerAnalyzer, options: dict[str, Any]) -> None:
        self.d = driver
        dialect = driver.commands
        self.wiring = Wiring.from_options(dialect, options)
        self.index = {channel: i for i, channel in enumerate(self.wiring.channels, start=1)}
        limit = int(dialect.setting("max_items", 0) or 0)
        if limit and len(self.index) > limit:
            raise DialectError(
                f"{len(self.index)} wired channels, more than the {limit} numeric items of a "
                f"{dialect.family}: wire fewer elements"
            )
        allowed = [float(v) for v in dialect.setting("update_intervals", [])]
        default = dialect.setting("default_update_interval", allowed[0] if allowed else 0.05)
        try:
            interval = to_unit(options.get("update_interval", f"{default} s"), "s")
        except UnitError as exc:
            raise DialectError(f"options.update_interval: {exc}") from None
        if allowed and not any(math.isclose(interval, a) for a in allowed):
            raise DialectError(
                f"options.update_interval {interval:g} s is not a {dialect.family} data update "
                f"interval; expected one of: {', '.join(f'{a:g} s' for a in allowed)}"
            )
        self.interval = float(interval)
        self.accuracies = {str(k): float(v) for k, v in (options.get("accuracy") or {}).items()}

    def configure(self) -> None:
        """Program the update interval and one numeric item per wired channel."""
        self.d.write("update_interval", milliseconds=round(self.interval * 1000))
        self.d.write("item_count", count=len(self.index))
        for channel, n in self.index.items():
            self.d.write("item", n=n, item=self.wiring.items[channel])

    def channels(self) -> list[str]:
        return self.wiring.channels

    def measure(self, channel: str) -> float:
        values = self.d.ask_floats("values")
        if len(values) < len(self.index):
            raise DeviceError(
                f"{self.d.name}: {len(values)} numeric values for {len(self.index)} items"
            )
        value = values[self.index[channel] - 1]
        if not math.isfinite(value) or abs(value) >= 9.9e37:
            raise DeviceError(
                f"{self.d.name}: no data for {channel} (item {self.wiring.items[channel]}): "
                f"{value!r}"
            )
        return value

    def accuracy(self, channel: str) -> float:
        """The datasheet accuracy the site states (the instrument does not report it)."""
        if channel in self.accuracies:
            return self.accuracies[channel]
        if "default" in self.accuracies:
            return self.accuracies["default"]
        raise DeviceError(
            f"{self.d.name}: no stated accuracy for {channel}: add it (or 'default') to the "
            "analyzer's options.accuracy in the site file"
        )

    def unit(self, channel: str) -> str:
        return self.wiring.unit(self.d.commands, channel)

    def start(self, channels: list[str]) -> None:
        self.d.write("capture_reset")
        self.d.write("capture_interval")
        self.d.write("capture_start")

    def finish(self, channels: list[str]) -> tuple[dict[str, Samples], float | None]:
        self.d.write("capture_stop")
        count = self.d.ask_float("capture_count")
        if count != int(count) or count < 0:
            query = self.d.commands.op("capture_count").render()
            raise DeviceError(f"{self.d.name}: {query!r} answered {count!r}")
        total, width = int(count), len(self.index)
        rows = np.empty((total, width), dtype=np.float64)
        per_page = max(1, self.d.page_samples // max(1, width))
        start = 0
        while start < total:
            size = min(per_page, total - start)
            page = self.d.ask_floats(
                "capture_fetch", self.d.transfer_timeout_s, start=start, count=size
            )
            if len(page) != size * width:
                query = self.d.commands.op("capture_fetch").render(start=start, count=size)
                raise DeviceError(
                    f"{self.d.name}: {query!r} returned {len(page)} numbers, "
                    f"expected {size * width} ({size} records of {width} items)"
                )
            rows[start : start + size] = np.asarray(page).reshape(size, width)
            start += size
        times = np.arange(total, dtype=np.float64) * self.interval
        data = {name: (times, rows[:, self.index[name] - 1].copy()) for name in channels}
        return data, self.interval
