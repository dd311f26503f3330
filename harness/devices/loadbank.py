"""The LoadBank role and its SCPI driver (any dialect): the RLC load of the islanding tests.

The role lives here until roles.py adopts it (it derives from :class:`roles.Device` like the
others). A load bank is set by active power at nominal voltage and by quality factor, the two
knobs IEEE 1547.1 names for the unintentional-islanding test load, and its inductive and
capacitive reactive power apart, each in percent of the balanced value (quality factor x power):
the test sweeps the reactive load from 95 % to 105 % of it, which detunes the load's resonance
and moves the island's frequency. The generic ``scpi`` dialect serves this role with one
programmable instrument (:class:`ScpiLoadBank`); a relay-stepped bank (dialect ``ics-8064``, a
relay controller per branch) is :class:`harness.devices.relay_loadbank.RelayLoadBank`.
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

    @abstractmethod
    def set_reactive(self, inductive_pct: float, capacitive_pct: float) -> None:
        """L's and C's reactive power, each in % of the balanced value (100 %: balanced)."""

    @abstractmethod
    def reactive(self) -> tuple[float, float]:
        """Programmed (inductive, capacitive) reactive power, % of the balanced value."""

    def balance(self, power: float, quality_factor: float, capacitive_pct: float = 100.0) -> None:
        """Set every knob: ``power`` W (e.g. the inverters' measured output, so the island is
        balanced in active power), ``quality_factor``, L at 100 % and C at ``capacitive_pct``
        of the balanced reactive power (100: resonant at nominal frequency). The tuning goes
        first so the load never runs the new power at the old one."""
        self.set_quality_factor(quality_factor)
        self.set_reactive(100.0, capacitive_pct)
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

    def set_reactive(self, inductive_pct: float, capacitive_pct: float) -> None:
        self.write("set_inductive", value=float(inductive_pct))
        self.write("set_capacitive", value=float(capacitive_pct))

    def reactive(self) -> tuple[float, float]:
        return self.ask_float("inductive"), self.ask_float("capacitive")
