"""What the virtual EMS computes in its energy modes: the site's aggregate SoC, the units'
setpoints for a total (shared by rating inside the SoC band and each unit's limits), and load
shedding by priority on an island.

The controller (ems.py) decides when; this module decides how much, from the plant's present
values only, so each rule can be read (and tested) on its own. The numbers are data
(data/ems_modes.yaml through :class:`EmsModesParams`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from virtual_devices.plant.battery import Battery
from virtual_devices.plant.ems_modes import EmsModesParams, SheddingParams
from virtual_devices.plant.grid_forming import GridFormingInverter
from virtual_devices.plant.inverter import GridFollowingInverter
from virtual_devices.plant.load import PriorityLoad, SiteLoads

_MID_SOC_PCT = 50.0
"""The SoC at which a pack's OCV weighs its held charge into energy (Wh per % of SoC)."""


def held_wh(battery: Battery) -> float:
    """Energy the pack holds from empty to full: held Ah (capacity, shortfall, SoH) times its
    OCV at mid SoC. Weighs a pack in the site's aggregate SoC."""
    p = battery.params
    held_ah = p.capacity_ah * (1.0 - p.capacity_shortfall) * p.soh_pct / 100.0
    return held_ah * p.cells_in_series * battery.ocv_curve(_MID_SOC_PCT)


def aggregate_soc(batteries: Sequence[Battery]) -> float:
    """The site's SoC, %: every pack's SoC weighted by the energy it holds (0 with no pack)."""
    weights = [held_wh(b) for b in batteries]
    total = sum(weights)
    if total <= 0.0:
        return 0.0
    return sum(b.soc_pct * w for b, w in zip(batteries, weights, strict=True)) / total


def unit_limit_w(unit: GridFollowingInverter, band: tuple[float, float], discharge: bool) -> float:
    """How far ``unit`` may be dispatched one way now, W AC (>= 0): its rating, within its
    supply's present BMS limit, and 0 once its pack is at that end of the SoC band."""
    supply = unit.battery
    eff = unit.params.efficiency
    rated = unit.params.rated_power_w
    if discharge:
        if supply.soc_pct <= band[0]:
            return 0.0
        return max(0.0, min(rated, supply.max_discharge_power_w * eff))
    if supply.soc_pct >= band[1]:
        return 0.0
    return max(0.0, min(rated, supply.max_charge_power_w / eff))


def share(
    units: Sequence[GridFollowingInverter], total_w: float, band: tuple[float, float]
) -> list[float]:
    """Setpoints (W, + discharge) summing to ``total_w`` as far as the units can: by rating
    among those that may move that way, each capped at :func:`unit_limit_w`, what a capped
    unit cannot take offered again to the others by rating."""
    discharge = total_w > 0.0
    caps = [unit_limit_w(u, band, discharge) for u in units]
    out = [0.0] * len(units)
    left = abs(total_w)
    free = [i for i, cap in enumerate(caps) if cap > 0.0]
    while left > 1e-9 and free:
        rated = sum(units[i].params.rated_power_w for i in free)
        capped = []
        given = 0.0
        for i in free:
            want = left * units[i].params.rated_power_w / rated
            take = min(want, caps[i] - out[i])
            out[i] += take
            given += take
            if out[i] >= caps[i] - 1e-9:
                capped.append(i)
        left -= given
        if not capped:
            break
        free = [i for i in free if i not in capped]
    sign = 1.0 if discharge else -1.0
    return [sign * w for w in out]


class Shedder:
    """Load shedding by priority on an island: opens the breakers of one priority of
    ``order`` per action while the island is short, restores them (last shed first) once it is
    healthy again; see data/ems_modes.yaml. It restores only what it shed itself."""

    def __init__(
        self,
        params: EmsModesParams,
        loads: SiteLoads,
        formers: list[GridFormingInverter],
        batteries: list[Battery],
        emit: Callable[[str], None],
    ) -> None:
        self.params: SheddingParams = params.shedding
        self.loads = loads
        self.formers = formers
        self.batteries = batteries
        self._emit = emit
        self.shed: list[list[PriorityLoad]] = []
        """What each shedding action opened, oldest first."""
        self._last_action = -float("inf")

    @property
    def shed_count(self) -> int:
        """Load breakers this shedder holds open now."""
        return sum(len(group) for group in self.shed)

    def _carried(self) -> tuple[float, float]:
        """The forming units' output and what they can deliver now, W."""
        active = [u for u in self.formers if u.forming]
        out = sum(u.power_w for u in active)
        can = sum(
            min(u.params.rated_power_w, u.battery.max_discharge_power_w * u.params.efficiency)
            for u in active
        )
        return out, can

    def step(self, t: float) -> bool:
        """One control cycle on an island; returns whether a breaker moved."""
        p = self.params
        if t < self._last_action + p.hold_s - 1e-9:
            return False
        soc = aggregate_soc(self.batteries)
        out, can = self._carried()
        if soc < p.reserve_pct or out > p.overload * can:
            return self._shed_next(t, soc, out, can)
        if not self.shed or soc < p.restore_pct:
            return False
        back = sum(load.rated_power_w for load in self.shed[-1])
        if out + back > p.restore_load * can:
            return False
        group = self.shed.pop()
        for load in group:
            load.close()
            self._emit(f"ems.restore:{load.name}")
        self._last_action = t
        return True

    def _shed_next(self, t: float, soc: float, out: float, can: float) -> bool:
        for priority in self.params.order:
            group = [ld for ld in self.loads.loads if ld.priority == priority and ld.closed]
            if group:
                for load in group:
                    load.open()
                    self._emit(f"ems.shed:{load.name}")
                self.shed.append(group)
                self._last_action = t
                return True
        return False  # nothing sheddable left: critical loads stay on

    def restore_all(self) -> bool:
        """The grid is back: close everything this shedder opened."""
        if not self.shed:
            return False
        for group in reversed(self.shed):
            for load in group:
                load.close()
                self._emit(f"ems.restore:{load.name}")
        self.shed = []
        return True
