"""Parameters of intentional islands: grid-forming inverters and loads with priorities.

Plain dataclasses in SI units, like :mod:`virtual_devices.plant.params` (which refers to them);
kept apart so that the grid-forming model (:mod:`virtual_devices.plant.grid_forming`) and its
loads (:mod:`virtual_devices.plant.load`) can grow without touching the grid-following ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GRID_FORMING_MODES: tuple[str, ...] = ("droop", "isochronous")
"""How a grid-forming unit sets the island's frequency: falling with its load (droop, so that
several units share the load by their ratings) or held at nominal (isochronous)."""

PRIORITIES: tuple[str, ...] = ("critical", "essential", "deferrable")
"""Load priorities, most important first: the order loads are kept (and later picked up) in."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _time(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class GridFormingParams:
    """A battery inverter that can form an intentional island (IEEE 1547-2018 8.2).

    ``enabled`` is the unit's intentional-islanding setting at start (SunSpec 702 IntIslandCat
    changes it at run time): disabled, the unit behaves exactly as a grid-following one,
    anti-islanding included. Enabled, a loss of the grid does not make it cease: it stops
    following ``detection_s`` after the grid is lost behind a closed PCC (at once when the PCC
    opens: the breaker's auxiliary contact is wired to it, as a microgrid interconnection
    device's is), switches for ``transfer_s`` (output off: break before make), then forms the
    bus, raising its voltage linearly from where the bus is to ``voltage_pu`` over
    ``voltage_ramp_s`` (the soft start a black start uses too). ``frequency_droop_pct`` is the
    frequency drop from no load to rated power, in % of nominal (droop mode). The unit stops
    forming when its battery reaches ``reserve_soc_pct`` (the EMS's backup reserve) or cannot
    deliver its share of the island's load (the BMS's limits).

    Defect hooks: ``transfer_delay_s`` is added to the transfer; ``standby_drain_w`` is drawn
    from the battery on top of the island's load while the unit forms it.
    """

    mode: str = "droop"
    enabled: bool = False
    detection_s: float = 0.02
    transfer_s: float = 0.02
    voltage_ramp_s: float = 0.01
    voltage_pu: float = 1.0
    frequency_droop_pct: float = 1.0
    reserve_soc_pct: float = 10.0
    transfer_delay_s: float = 0.0
    standby_drain_w: float = 0.0

    def __post_init__(self) -> None:
        _require(
            self.mode in GRID_FORMING_MODES,
            f"grid-forming mode must be one of {list(GRID_FORMING_MODES)}, not {self.mode!r}",
        )
        for name in ("detection_s", "transfer_s", "voltage_ramp_s", "transfer_delay_s"):
            _require(_time(getattr(self, name)), f"grid forming: {name} must be >= 0 s")
        _require(0.5 <= self.voltage_pu <= 1.5, f"grid forming: voltage {self.voltage_pu} pu")
        _require(
            0 < self.frequency_droop_pct <= 10,
            f"grid forming: frequency droop must be in (0, 10] %: {self.frequency_droop_pct}",
        )
        _require(0 <= self.reserve_soc_pct < 100, "grid forming: reserve SoC must be in 0..100 %")
        _require(self.standby_drain_w >= 0, "grid forming: standby drain must be >= 0 W")

    @property
    def takeover_s(self) -> float:
        """Switching time the unit actually applies (its transfer plus the defect's delay)."""
        return self.transfer_s + self.transfer_delay_s


@dataclass(frozen=True)
class LoadParams:
    """A home's load behind its own breaker: resistive, ``power_w`` at nominal voltage."""

    name: str
    priority: str
    power_w: float

    def __post_init__(self) -> None:
        _require(bool(self.name) and "." not in self.name, f"load name {self.name!r}: no '.'")
        _require(
            self.priority in PRIORITIES,
            f"load {self.name}: priority must be one of {list(PRIORITIES)}, not {self.priority!r}",
        )
        _require(self.power_w >= 0, f"load {self.name}: power must be >= 0 W")
