"""The ``chamber`` role and its SCPI driver (any dialect that serves it): a climate chamber the
units stand in, so that a thermal test runs at the contract's worst-case ambient.

The role lives here until roles.py adopts it, as the load bank's does. Every set point is
confirmed through the instrument's error queue (see DialectDriver), so a refused value stops the
scenario instead of leaving the chamber where it was.
"""

from __future__ import annotations

from abc import abstractmethod

from harness.devices.roles import Device
from harness.devices.scpi_driver import DialectDriver


class Chamber(Device):
    @abstractmethod
    def set_temperature(self, celsius: float) -> None:
        """Air temperature set point, degC."""

    @abstractmethod
    def temperature_setpoint(self) -> float:
        """Programmed air temperature, degC."""

    @abstractmethod
    def temperature(self) -> float:
        """Measured air temperature, degC."""


class ScpiChamber(DialectDriver, Chamber):
    """Chamber commands as the dialect names them (generic: ``SOUR:TEMP``, ``MEAS:TEMP?``)."""

    role = "chamber"

    def set_temperature(self, celsius: float) -> None:
        self.write("set_temperature", value=float(celsius))

    def temperature_setpoint(self) -> float:
        return self.ask_float("temperature_setpoint")

    def temperature(self) -> float:
        return self.ask_float("temperature")
