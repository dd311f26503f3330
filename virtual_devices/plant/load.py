"""The island test load: a parallel RLC at the home bus (IEEE 1547.1 unintentional islanding).

Sized at nominal voltage and frequency: R dissipates ``power_w``; balanced, L and C each exchange
``quality_factor * power_w`` of reactive power, so they cancel at nominal frequency and the island
sits at resonance. The load bank sets L and C apart too, each in percent of that balanced
reactive power (IEEE 1547.1 sweeps the reactive load from 95 % to 105 % of it): with inductive
``Q_L`` and capacitive ``Q_C`` at nominal, L = V^2 / (w0 Q_L) and C = Q_C / (w0 V^2), so the load
resonates at f0 sqrt(Q_L / Q_C), where an island fed at unity power factor settles. The
capacitor also sets how fast an unsupplied island dies out: the natural response of a parallel RLC
decays as exp(-t / (2 R C)), 2 R C = 2 Q_C / (P w0), i.e. 2 Q / (2 pi f0) when balanced.

The homes' own loads (:class:`PriorityLoad`, :class:`SiteLoads`) are resistive too, each behind
its breaker, with a priority (critical, essential, deferrable) that an island sheds them by.
"""

from __future__ import annotations

import math
from collections.abc import Callable

DEAD_BUS_TIME_CONSTANT_S = 0.005
"""Decay time constant of an unloaded (or purely resistive) bus: a stand-in for the stray
capacitance and the inverters' own filters, small enough to read as an immediate collapse."""


def _ignore(_event: str) -> None:
    """Default notification sink for a load used outside a plant."""


class IslandLoad:
    """A parallel RLC load, balanced at the plant's nominal frequency unless L or C is detuned."""

    def __init__(
        self,
        power_w: float,
        quality_factor: float,
        nominal_voltage_v: float,
        nominal_frequency_hz: float,
        notify: Callable[[str], None] = _ignore,
    ) -> None:
        self._vn = float(nominal_voltage_v)
        self._f0 = float(nominal_frequency_hz)
        self._notify = notify
        self._power_w = 0.0
        self._q = 0.0
        self._inductive = 1.0  # L's reactive power, fraction of the balanced value
        self._capacitive = 1.0
        self._apply(power_w, quality_factor)

    def _apply(self, power_w: float, quality_factor: float) -> None:
        if power_w < 0 or quality_factor < 0:
            raise ValueError(
                f"island load needs P >= 0 and Q >= 0, got {power_w} W Q {quality_factor}"
            )
        self._power_w = float(power_w)
        self._q = float(quality_factor)

    def set(self, power_w: float, quality_factor: float = 1.0) -> None:
        """Resize the load (the operator's load-bank knobs); notifies the plant if it changed.

        L and C keep their percent of the balanced reactive power: the tuning stays as set."""
        if power_w == self._power_w and quality_factor == self._q:
            return
        self._apply(power_w, quality_factor)
        self._notify(f"island_load:{power_w:g}W,Q={quality_factor:g}")

    def set_reactive(self, inductive_pct: float, capacitive_pct: float) -> None:
        """Set L and C apart, each in percent of the balanced reactive power ``Q * P``."""
        if not (inductive_pct > 0 and capacitive_pct > 0):
            raise ValueError(
                "island load needs inductive and capacitive reactive power > 0 % of balanced, "
                f"got {inductive_pct} % and {capacitive_pct} %"
            )
        inductive, capacitive = inductive_pct / 100.0, capacitive_pct / 100.0
        if inductive == self._inductive and capacitive == self._capacitive:
            return
        self._inductive, self._capacitive = inductive, capacitive
        self._notify(f"island_load:L={inductive_pct:g}%,C={capacitive_pct:g}%")

    @property
    def power_w(self) -> float:
        """Resistive power at nominal voltage, W."""
        return self._power_w

    @property
    def quality_factor(self) -> float:
        """The balanced quality factor the load is sized by (L and C at 100 %)."""
        return self._q

    @property
    def inductive_pct(self) -> float:
        """L's reactive power at nominal voltage and frequency, % of the balanced value."""
        return self._inductive * 100.0

    @property
    def capacitive_pct(self) -> float:
        """C's reactive power at nominal voltage and frequency, % of the balanced value."""
        return self._capacitive * 100.0

    @property
    def inductive_var(self) -> float:
        return self._inductive * self._q * self._power_w

    @property
    def capacitive_var(self) -> float:
        return self._capacitive * self._q * self._power_w

    @property
    def resonant_frequency_hz(self) -> float:
        """Frequency where L and C cancel, 1 / (2 pi sqrt(L C)) = f0 sqrt(Q_L / Q_C): the
        nominal frequency when balanced (and for a load without L and C)."""
        if self._power_w == 0 or self._q == 0:
            return self._f0
        return self._f0 * math.sqrt(self._inductive / self._capacitive)

    @property
    def resistance_ohm(self) -> float:
        return math.inf if self._power_w == 0 else self._vn**2 / self._power_w

    @property
    def inductance_h(self) -> float:
        reactive = self.inductive_var
        return math.inf if reactive == 0 else self._vn**2 / (2 * math.pi * self._f0 * reactive)

    @property
    def capacitance_f(self) -> float:
        return self.capacitive_var / (self._vn**2 * 2 * math.pi * self._f0)

    @property
    def time_constant_s(self) -> float:
        """Envelope decay time constant 2 R C = 2 Q_C / (P 2 pi f0) of the unsupplied bus (the
        bus's voltage and frequency settle with it on an energized island too).

        With no load, or a purely resistive one (Q = 0, which would collapse instantly), the bus
        decays with :data:`DEAD_BUS_TIME_CONSTANT_S` instead.
        """
        if self._power_w == 0 or self._q == 0:
            return DEAD_BUS_TIME_CONSTANT_S
        return 2 * self._q * self._capacitive / (2 * math.pi * self._f0)

    def power_at(self, voltage_v: float) -> float:
        """Active power drawn at ``voltage_v`` (the resistor's V^2 / R)."""
        ratio = voltage_v / self._vn
        return self._power_w * ratio * ratio


class PriorityLoad:
    """A home's resistive load behind its own breaker, with the priority it is shed by.

    The breaker is closed at start. Operating it calls ``notify`` with ``load:<name>:open`` or
    ``load:<name>:close`` (the plant logs it); operating it in the state it is in changes nothing.
    """

    def __init__(
        self,
        name: str,
        priority: str,
        power_w: float,
        nominal_voltage_v: float,
        notify: Callable[[str], None] = _ignore,
    ) -> None:
        self.name = name
        self.priority = priority
        self.rated_power_w = float(power_w)
        self._vn = float(nominal_voltage_v)
        self._notify = notify
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def nominal_voltage_v(self) -> float:
        return self._vn

    def open(self) -> None:
        if self._closed:
            self._closed = False
            self._notify(f"load:{self.name}:open")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._notify(f"load:{self.name}:close")

    @property
    def nominal_w(self) -> float:
        """Power drawn at nominal voltage while connected, W (0 with the breaker open)."""
        return self.rated_power_w if self._closed else 0.0

    def power_at(self, voltage_v: float) -> float:
        """Power drawn at ``voltage_v`` (V^2 / R), W; 0 with the breaker open."""
        if not self._closed:
            return 0.0
        ratio = voltage_v / self._vn
        return self.rated_power_w * ratio * ratio


class SiteLoads:
    """Every home's priority loads, all on the home bus (one bus behind the PCC)."""

    def __init__(self, loads: list[PriorityLoad]) -> None:
        self.loads = loads
        self.critical = [load for load in loads if load.priority == "critical"]

    @property
    def nominal_w(self) -> float:
        """Power of the connected loads at nominal voltage, W."""
        return sum(load.nominal_w for load in self.loads)

    def power_at(self, voltage_v: float) -> float:
        """Power the connected loads draw at ``voltage_v``, W."""
        return sum(load.power_at(voltage_v) for load in self.loads)

    def critical_power_at(self, voltage_v: float) -> float:
        return sum(load.power_at(voltage_v) for load in self.critical)

    @property
    def critical_supplied(self) -> bool:
        """Whether any critical load's breaker is closed (its circuit follows the bus)."""
        return any(load.closed for load in self.critical)
