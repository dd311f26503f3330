"""The LoadBank role and its SCPI driver (any dialect): the RLC load of the islanding tests.

The role lives here until roles.py adopts it (it derives from :class:`roles.Device` like the
others). A load bank is set by active power at nominal voltage and by quality factor, the two
knobs IEEE 1547.1 names for the unintentional-islanding test load. Only the generic ``scpi``
dialect serves this role so far; a real family is a new data file in harness/transports/dialects/.
"""

from __future__ import annotations

from abc import abstractmethod

from harness.devices.roles import Device
from harness.devices.scpi_driver import DialectDriver


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


class ScpiLoadBank(DialectDriver, LoadBank):
    """Load bank commands as the dialect names them (generic: ``LOAD:POW``, ``LOAD:QF``)."""

    role = "load_bank"

    def set_power(self, watts: float) -> None:
        self.write("set_power", value=float(watts))

    def set_quality_factor(self, q: float) -> None:
        self.write("set_quality_factor", value=float(q))

    def power(self) -> float:
        return self.ask_float("power")

    def quality_factor(self) -> float:
        return self.ask_float("quality_factor")
