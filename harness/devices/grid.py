"""A programmable AC source reached over SCPI: the ``scpi`` driver of the GridSimulator role.

Every setting is confirmed through the instrument's error queue, so a value the source refused
(out of its range, a typo in a header) stops the run where it happened instead of leaving the
grid at an old setpoint while the scenario believes otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from harness.devices.roles import DeviceError, GridSimulator, Identity
from harness.transports.visa import InstrumentError, ScpiConnection, parse_idn

T = TypeVar("T")


@dataclass
class ScpiGridSimulator(GridSimulator):
    """Grid simulator commands: ``SOUR:VOLT``, ``SOUR:FREQ``, ``OUTP``, ``MEAS:VOLT?``/``FREQ?``."""

    name: str
    conn: ScpiConnection

    @classmethod
    def open(cls, name: str, resource: str, timeout_s: float = 2.0) -> ScpiGridSimulator:
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

    def set_voltage(self, volts: float) -> None:
        self._io(lambda: self.conn.command(f"SOUR:VOLT {float(volts)!r}"))

    def set_frequency(self, hertz: float) -> None:
        self._io(lambda: self.conn.command(f"SOUR:FREQ {float(hertz)!r}"))

    def set_output(self, on: bool) -> None:
        self._io(lambda: self.conn.command(f"OUTP {'ON' if on else 'OFF'}"))

    def voltage_setpoint(self) -> float:
        """Programmed voltage, V."""
        return self._io(lambda: self.conn.query_float("SOUR:VOLT?"))

    def frequency_setpoint(self) -> float:
        """Programmed frequency, Hz."""
        return self._io(lambda: self.conn.query_float("SOUR:FREQ?"))

    def output_on(self) -> bool:
        reply = self._io(lambda: self.conn.query("OUTP?")).strip().upper()
        if reply not in ("1", "0", "ON", "OFF"):
            raise DeviceError(f"{self.name}: 'OUTP?' answered {reply!r}, not 1/0")
        return reply in ("1", "ON")

    def voltage(self) -> float:
        """Measured output voltage, V rms."""
        return self._io(lambda: self.conn.query_float("MEAS:VOLT?"))

    def frequency(self) -> float:
        """Measured output frequency, Hz."""
        return self._io(lambda: self.conn.query_float("MEAS:FREQ?"))

    def disconnect(self) -> None:
        self.conn.close()
