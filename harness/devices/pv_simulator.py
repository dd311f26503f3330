"""The ``pv_simulator`` role and its SCPI driver (any dialect that serves it): the DC source that
stands in for the homes' PV arrays, so a scenario can drive PV as a bench does.

A solar-array simulator programs an I-V curve; the harness sets the curve's level as the
irradiance it corresponds to (W/m^2), or lets the source play its stored day profile. The role
lives here until roles.py adopts it, as the load bank's and the chamber's do. Every write is
confirmed through the instrument's error queue (see DialectDriver), so a refused level stops the
scenario instead of leaving the arrays where they were.
"""

from __future__ import annotations

from abc import abstractmethod

from harness.devices.roles import Device
from harness.devices.scpi_driver import DialectDriver


class PvSimulator(Device):
    @abstractmethod
    def set_irradiance(self, w_per_m2: float) -> None:
        """Hold the arrays at this plane-of-array irradiance, W/m^2."""

    @abstractmethod
    def irradiance(self) -> float:
        """The irradiance the arrays see now, W/m^2 (the held level or the profile's)."""

    @abstractmethod
    def follow_profile(self) -> None:
        """Release the held level: the arrays follow the stored day profile again."""

    @abstractmethod
    def power(self) -> float:
        """DC power the simulated arrays deliver now, W."""


class ScpiPvSimulator(DialectDriver, PvSimulator):
    """PV simulator commands as the dialect names them (generic: ``SOUR:IRR``, ``MEAS:POW?``)."""

    role = "pv_simulator"

    def set_irradiance(self, w_per_m2: float) -> None:
        self.write("set_irradiance", value=float(w_per_m2))

    def irradiance(self) -> float:
        return self.ask_float("irradiance")

    def follow_profile(self) -> None:
        self.write("follow_profile")

    def power(self) -> float:
        return self.ask_float("power")
