"""A power analyzer reached over SCPI: the ``scpi`` driver of the PowerAnalyzer role.

A capture is a context manager: it configures and starts the analyzer on entry and stops it on
exit, also when the block raises (a breaker test that failed half-way must not leave the analyzer
recording). The :class:`Trace` it yields is empty inside the block and filled on exit, so a
scenario reads its quantities after the ``with``.

The samples come back in pages of ``page_samples`` (``CAPT:DATA? <ch>,<start>,<count>``): a 10 s
capture at 1 ms is 10 000 samples per channel, and bounded replies keep every read well inside its
timeout however long the capture was.

With a site clock, a capture first lets ``pretrigger_s`` of site time pass, as an operator arms
an analyzer before opening a breaker: on a lock-step clock the block would otherwise switch at the
capture's very first instant, and the state before the edge would not be on record.

Event channels (the breaker's auxiliary contact, ``pcc.breaker``) are captured along with what
the scenario asked for whenever the analyzer offers them, so ``trace.event("pcc_open")`` works
without every scenario having to remember the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from harness.clock import Clock
from harness.devices.roles import DeviceError, Identity, PowerAnalyzer
from harness.measure.trace import DEFAULT_EVENTS, MeasurementError, Trace
from harness.transports.visa import InstrumentError, ScpiConnection, parse_idn

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ScpiPowerAnalyzer(PowerAnalyzer):
    """Analyzer commands: ``MEAS?``, ``ACC?``, ``UNIT?`` and the ``CAPT:`` subsystem."""

    name: str
    conn: ScpiConnection
    page_samples: int = 2000
    transfer_timeout_s: float = 10.0
    """Longest wait for one page of samples (the instrument formats it before the first byte)."""
    clock: Clock | None = None
    pretrigger_s: float = 0.1
    """Site time recorded before the block runs (needs ``clock``; 0 disables)."""
    _catalog: list[str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(
        cls,
        name: str,
        resource: str,
        timeout_s: float = 2.0,
        clock: Clock | None = None,
        pretrigger_s: float = 0.1,
    ) -> ScpiPowerAnalyzer:
        try:
            return cls(
                name, ScpiConnection(resource, timeout_s), clock=clock, pretrigger_s=pretrigger_s
            )
        except InstrumentError as exc:
            raise DeviceError(f"{name}: {exc}") from exc

    def _io(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except InstrumentError as exc:
            raise DeviceError(f"{self.name}: {exc}") from exc

    def identity(self) -> Identity:
        maker, model, serial, firmware = parse_idn(self._io(lambda: self.conn.query("*IDN?")))
        return Identity(maker, model, serial, firmware)

    def channels(self) -> list[str]:
        """The channels the analyzer offers (asked once per driver)."""
        if self._catalog is None:
            reply = self._io(lambda: self.conn.query("CAPT:CAT?"))
            self._catalog = [item.strip() for item in reply.split(",") if item.strip()]
        return list(self._catalog)

    def _check(self, channel: str) -> str:
        catalog = self.channels()
        if channel not in catalog:
            raise DeviceError(
                f"{self.name}: no channel {channel!r}; the analyzer offers: {', '.join(catalog)}"
            )
        return channel

    def measure(self, channel: str) -> float:
        self._check(channel)
        return self._io(lambda: self.conn.query_float(f"MEAS? {channel}"))

    def accuracy(self, channel: str) -> float:
        self._check(channel)
        return self._io(lambda: self.conn.query_float(f"ACC? {channel}"))

    def unit(self, channel: str) -> str:
        self._check(channel)
        return self._io(lambda: self.conn.query(f"UNIT? {channel}")).strip()

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
        self._io(lambda: self.conn.command(f"CAPT:CHAN {','.join(wanted)}"))
        self._io(lambda: self.conn.command("CAPT:STAR"))
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
        self._io(lambda: self.conn.command("CAPT:STOP"))
        data = {name: self._fetch(name) for name in channels}
        units = {name: self.unit(name) for name in channels}
        stated = self._io(lambda: self.conn.query_float("CAPT:RES?"))
        try:
            trace.fill(data, units, resolution=stated if stated > 0 else None)
        except MeasurementError as exc:
            raise DeviceError(f"{self.name}: capture data unusable: {exc}") from exc

    def _fetch(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        count = self._io(lambda: self.conn.query_float(f"CAPT:COUN? {channel}"))
        if count != int(count) or count < 0:
            raise DeviceError(f"{self.name}: 'CAPT:COUN? {channel}' answered {count!r}")
        total = int(count)
        pairs = np.empty(2 * total, dtype=np.float64)
        start = 0
        while start < total:
            size = min(self.page_samples, total - start)
            cmd = f"CAPT:DATA? {channel},{start},{size}"
            page = self._page(cmd)
            if len(page) != 2 * size:
                raise DeviceError(
                    f"{self.name}: {cmd!r} returned {len(page)} numbers, expected {2 * size}"
                )
            pairs[2 * start : 2 * (start + size)] = page
            start += size
        return pairs[0::2].copy(), pairs[1::2].copy()

    def _page(self, cmd: str) -> list[float]:
        return self._io(lambda: self.conn.query_floats(cmd, self.transfer_timeout_s))

    def disconnect(self) -> None:
        self.conn.close()
