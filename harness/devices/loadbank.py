"""The LoadBank role and its ``scpi`` driver: the RLC load of the islanding tests.

The role lives here until roles.py adopts it (it derives from :class:`roles.Device` like the
others). A load bank is set by active power at nominal voltage and by quality factor, the two
knobs IEEE 1547.1 names for the unintentional-islanding test load.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from harness.devices.roles import Device, DeviceError, Identity
from harness.transports.visa import InstrumentError, ScpiConnection, parse_idn

T = TypeVar("T")


class LoadBank(Device):
    @abstractmethod
    def set_power(self, watts: float) -> None:
        """Resistive power at nominal voltage, W."""

    @abstractmethod
    def set_quality_factor(self, q: float) -> None:
        """Quality factor of the parallel RLC (reactive / active power of L and of C)."""

    @abstractmethod
    def power(self) -> float:
        """Programmed power, W."""

    @abstractmethod
    def quality_factor(self) -> float: ...

    def balance(self, power: float, quality_factor: float) -> None:
        """Set both knobs: ``power`` W (e.g. the inverters' measured output, so the island is
        balanced) and ``quality_factor``. The quality factor goes first so the load never
        runs the new power at the old tuning."""
        self.set_quality_factor(quality_factor)
        self.set_power(power)


@dataclass
class ScpiLoadBank(LoadBank):
    """Load bank commands: ``LOAD:POW <W>``/``?`` and ``LOAD:QF <q>``/``?``."""

    name: str
    conn: ScpiConnection

    @classmethod
    def open(cls, name: str, resource: str, timeout_s: float = 2.0) -> ScpiLoadBank:
        try:
            return cls(name, ScpiConnection(resource, timeout_s))
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

    def set_power(self, watts: float) -> None:
        self._io(lambda: self.conn.command(f"LOAD:POW {float(watts)!r}"))

    def set_quality_factor(self, q: float) -> None:
        self._io(lambda: self.conn.command(f"LOAD:QF {float(q)!r}"))

    def power(self) -> float:
        return self._io(lambda: self.conn.query_float("LOAD:POW?"))

    def quality_factor(self) -> float:
        return self._io(lambda: self.conn.query_float("LOAD:QF?"))

    def disconnect(self) -> None:
        self.conn.close()
