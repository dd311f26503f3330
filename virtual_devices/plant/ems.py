"""The virtual EMS (site controller): shuts the site down and black-starts it from dead.

What it acts on is the plant's own equipment: each pack's BMS (its contactor held open or
released, :meth:`BmsLogic.command_open`), the grid-forming inverters (:meth:`black_start`), the
homes' load breakers. Which steps it takes, in which order, how long each lasts at least and
when it gives up is data (``data/ems_black_start.yaml`` through :class:`EmsParams`); what a step
does and which condition ends it is here, one handler per step name.

The sequence runs on the EMS's control cycle (``scan``): a step ends at the first cycle at which
its minimum time has passed and its condition holds, and the EMS logs it there with the time
since the black-start command, as a real controller would; that log is what it reports over
Modbus (virtual_devices/endpoints/ems.py). A step whose condition does not hold within its
timeout ends the sequence in FAULT, the remaining steps untaken (a wrong order shows up that way
too: a positive contactor confirmed before anything commanded the bank to connect never comes).

States: NORMAL (grid-tied, every bank released, every load breaker closed), SHUTDOWN (every bank
held open, every load breaker open: a dead site once the grid is gone), BLACK_START (running),
ISLANDED (sequence complete, the forming units hold the bus), FAULT (sequence given up),
PEAK_SHAVING (grid-tied; every ``cycle`` the units' total discharge setpoint moves by the PCC
import's excess over the threshold, shared by rating: data/ems_peak_shaving.yaml),
SELF_CONSUMPTION (grid-tied; every cycle the units' total setpoint becomes their output plus the
PCC import, so the PCC flow goes to zero, shared by rating inside the SoC band), TOU (the tariff
period in force at the simulated time of day says charge, discharge, self-consume or idle),
DISPATCH (grid-tied; the site's total setpoint, written over Modbus, reached at the data's ramp
so that units told together do not all start at once). The energy modes' numbers are
data/ems_modes.yaml; how much each unit gets is ems_dispatch.py.

Load shedding: on an island (ISLANDED after a black start, or SELF_CONSUMPTION / TOU with the
grid gone) the EMS sheds loads by priority when the SoC or the forming units run short, and
restores them with hysteresis (:class:`~virtual_devices.plant.ems_dispatch.Shedder`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from virtual_devices.plant.battery import Battery
from virtual_devices.plant.ems_dispatch import Shedder, aggregate_soc, share, unit_limit_w
from virtual_devices.plant.ems_params import EmsParams, StepParams
from virtual_devices.plant.grid_forming import GridFormingInverter
from virtual_devices.plant.inverter import GridFollowingInverter
from virtual_devices.plant.load import SiteLoads

NORMAL, SHUTDOWN, BLACK_START, ISLANDED, FAULT, PEAK_SHAVING = (
    "NORMAL",
    "SHUTDOWN",
    "BLACK_START",
    "ISLANDED",
    "FAULT",
    "PEAK_SHAVING",
)
SELF_CONSUMPTION, TOU, DISPATCH = "SELF_CONSUMPTION", "TOU", "DISPATCH"
STATES: tuple[str, ...] = (
    NORMAL,
    SHUTDOWN,
    BLACK_START,
    ISLANDED,
    FAULT,
    PEAK_SHAVING,
    SELF_CONSUMPTION,
    TOU,
    DISPATCH,
)
GRID_MODES: tuple[str, ...] = (NORMAL, PEAK_SHAVING, SELF_CONSUMPTION, TOU, DISPATCH)
"""Grid-tied modes the EMS may be switched between (SELF_CONSUMPTION, TOU, DISPATCH from any)."""
_DISPATCHING = (PEAK_SHAVING, SELF_CONSUMPTION, TOU, DISPATCH)
"""Modes that write the units' setpoints (back to 0 W when left)."""
_CYCLED = (SELF_CONSUMPTION, TOU, ISLANDED)
_EPS = 1e-9


def _ignore(_event: str) -> None:
    """Default event sink for an EMS used outside a plant."""


class GridPresence(Protocol):
    def __call__(self) -> bool: ...


@dataclass(frozen=True)
class LoggedStep:
    """A step the EMS completed: its name and seconds since the black-start command."""

    name: str
    at_s: float


class Ems:
    """The site controller; see the module docstring. The plant calls :meth:`update` at the
    instants :meth:`next_event_time` names, and settles after every True it returns."""

    def __init__(
        self,
        params: EmsParams,
        formers: list[GridFormingInverter],
        batteries: list[Battery],
        loads: SiteLoads,
        bus: Callable[[], tuple[float, float]],
        grid_present: GridPresence,
        nominal_voltage_v: float,
        nominal_frequency_hz: float,
        emit: Callable[[str], None] = _ignore,
        *,
        inverters: list[GridFollowingInverter] | None = None,
        import_w: Callable[[], float] | None = None,
    ) -> None:
        """``bus`` gives the bus (V, Hz); ``grid_present`` whether the grid is behind a closed
        PCC; ``emit`` receives the EMS's events (``ems.step:<name>``...); ``inverters`` are the
        units peak shaving dispatches and ``import_w`` the power through the PCC it reads (W,
        + import)."""
        self.params = params
        self.formers = formers
        own = {id(unit.battery) for unit in formers}
        self._first = [unit.battery for unit in formers]
        self._others = [b for b in batteries if id(b) not in own]
        self._batteries = batteries
        self.loads = loads
        self._bus = bus
        self._grid_present = grid_present
        self._vn = nominal_voltage_v
        self._fn = nominal_frequency_hz
        self._emit = emit
        self._inverters = list(inverters or [])
        self._import_w = import_w
        self.threshold_w = params.peak.threshold_w
        """The peak-shaving threshold in force (written through the EMS's map), W."""
        self.site_power_w = 0.0
        """The site's total setpoint DISPATCH goes to (written through the EMS's map), W,
        + discharge."""
        self._dispatched_w = 0.0
        self._cycle_from = math.nan
        self._last_cycle = -math.inf
        self.modes = params.modes
        self.band = (params.modes.soc_min_pct, params.modes.soc_max_pct)
        """The SoC band every energy mode keeps each pack in, %."""
        self.shedder = Shedder(params.modes, loads, formers, batteries, emit)
        self.period: str | None = None
        """The TOU period in force (None: outside every period, or not in TOU)."""
        self.state = NORMAL
        self.log: list[LoggedStep] = []
        self._order = params.run_order
        self._index = 0
        self._command_at = math.nan
        self._step_at = math.nan
        self._handlers: dict[str, tuple[Callable[[float], None], Callable[[float], bool]]] = {
            "bms_wake": (_nothing, self._bms_ready),
            "heartbeat": (_nothing, self._heartbeats),
            "negative_contactor": (self._connect_first, self._first_precharging),
            "precharge": (_nothing, self._first_closed),
            "positive_contactor": (_nothing, self._first_closed),
            "grid_forming_start": (self._form, self._formed),
            "vf_check": (_nothing, self._vf_ok),
            "pick_up_critical": (self._pick_up("critical"), _done),
            "pick_up_essential": (self._pick_up("essential"), _done),
            "pick_up_deferrable": (self._pick_up("deferrable"), _done),
            "parallel_banks": (self._connect_others, self._all_closed),
            "pv_enable": (_nothing, _done),  # this plant has no PV: nothing to re-enable
        }

    # -- commands (Modbus) --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state == BLACK_START

    @property
    def current_step(self) -> str | None:
        """The step being taken (BLACK_START) or the one given up (FAULT), else None."""
        if self.state in (BLACK_START, FAULT) and self._index < len(self._order):
            return self._order[self._index].name
        return None

    @property
    def aggregate_soc_pct(self) -> float:
        """The site's SoC, energy-weighted over every pack, %."""
        return aggregate_soc(self._batteries)

    def shutdown(self, t: float) -> None:
        """Every bank held open, every load breaker open; a running sequence is abandoned."""
        self._stop_shaving()
        for battery in self._batteries:
            _hold(battery, True)
        for load in self.loads.loads:
            load.open()
        self.state = SHUTDOWN
        self._emit("ems.shutdown")

    def normal(self, t: float) -> None:
        """Back to normal operation: every bank released, every load breaker closed (peak
        shaving's setpoints back to 0 W)."""
        self._stop_shaving()
        self.shedder.shed = []  # every breaker closes below anyway
        for battery in self._batteries:
            _hold(battery, False)
        for load in self.loads.loads:
            load.close()
        self.state = NORMAL
        self._emit("ems.normal")

    def black_start(self, t: float) -> None:
        """Start the sequence; only from SHUTDOWN with no grid (else ValueError, nothing done)."""
        if self.state != SHUTDOWN:
            raise ValueError(f"black start needs the EMS in SHUTDOWN, it is {self.state}")
        if self._grid_present():
            raise ValueError("black start refused: the grid is present at the PCC")
        self.log = []
        self.state = BLACK_START
        self._command_at = t
        self._index = 0
        self._emit("ems.black_start")
        self._begin(t)

    def peak_shaving(self, t: float) -> None:
        """Shave the import to :attr:`threshold_w` from now on; only from NORMAL (ValueError)."""
        if self.state == PEAK_SHAVING:
            return
        if self.state != NORMAL:
            raise ValueError(f"peak shaving needs the EMS in NORMAL, it is {self.state}")
        if self._import_w is None or not self._inverters:
            raise ValueError("peak shaving needs units to dispatch and the PCC's import")
        self.state = PEAK_SHAVING
        self._cycle_from = t
        self._last_cycle = -math.inf
        self._dispatched_w = 0.0
        self._emit("ems.peak_shaving")

    def self_consumption(self, t: float) -> None:
        """Hold the PCC flow at zero from now on; from a grid-tied mode only (ValueError)."""
        self._energy_mode(t, SELF_CONSUMPTION)

    def tou(self, t: float) -> None:
        """Follow the tariff day from now on; from a grid-tied mode only (ValueError)."""
        self._energy_mode(t, TOU)

    def dispatch(self, t: float) -> None:
        """Take the units' total to :attr:`site_power_w` at the data's ramp from now on; from
        a grid-tied mode only (ValueError). The ramp starts from the units' present setpoints
        (no step at the switch)."""
        if self.state == DISPATCH:
            return
        self._energy_mode(t, DISPATCH)
        self._dispatched_w = sum(inv.setpoint_w for inv in self._inverters)

    def set_site_power(self, watts: float) -> None:
        if not math.isfinite(watts):
            raise ValueError(f"site power must be finite, not {watts!r}")
        self.site_power_w = float(watts)

    def _energy_mode(self, t: float, mode: str) -> None:
        if self.state == mode:
            return
        if self.state not in GRID_MODES:
            raise ValueError(f"{mode.lower()} needs a grid-tied EMS mode, it is {self.state}")
        if self._import_w is None or not self._inverters:
            raise ValueError(f"{mode.lower()} needs units to dispatch and the PCC's import")
        self._stop_shaving()
        self.state = mode
        self.period = None
        self._cycle_from = t
        self._last_cycle = -math.inf
        self._emit(f"ems.{mode.lower()}")

    def set_threshold(self, watts: float) -> None:
        if not (watts >= 0 and math.isfinite(watts)):
            raise ValueError(f"peak-shaving threshold must be >= 0 W, not {watts!r}")
        self.threshold_w = float(watts)

    def _stop_shaving(self) -> None:
        """Leaving a dispatching mode: every unit's setpoint back to 0 W."""
        if self.state in _DISPATCHING:
            for inverter in self._inverters:
                inverter.set_power_setpoint(0.0)
            self._dispatched_w = 0.0

    def _shave(self, t: float) -> bool:
        """One control cycle: move the units' total discharge by the import's excess."""
        if t <= self._last_cycle + _EPS or self._import_w is None:
            return False
        self._last_cycle = t
        peak = self.params.peak
        excess = self._import_w() - (self.threshold_w + peak.offset_w)
        rated = sum(inv.params.rated_power_w for inv in self._inverters)
        total = min(rated, max(0.0, self._dispatched_w + excess))
        if abs(total - self._dispatched_w) <= peak.deadband_w:
            return False
        self._dispatched_w = total
        for inverter in self._inverters:
            inverter.set_power_setpoint(total * inverter.params.rated_power_w / rated)
        return True

    def _energy_cycle(self, t: float) -> bool:
        """One cycle of SELF_CONSUMPTION / TOU / ISLANDED: shed or restore loads on an island,
        restore them once the grid is back, dispatch the units while grid-tied."""
        if t <= self._last_cycle + _EPS:
            return False
        self._last_cycle = t
        if not self._grid_present():
            if any(u.forming for u in self.formers):
                return self.shedder.step(t)
            return False
        changed = self.shedder.restore_all()
        if self.state == SELF_CONSUMPTION:
            return self._self_consume() or changed
        if self.state == TOU:
            return self._tou(t) or changed
        return changed

    def _dispatch_cycle(self, t: float) -> bool:
        """One DISPATCH cycle: the units' total one ramp step nearer the site's setpoint (within
        their summed rating), shared by rating inside the SoC band (shared again every cycle:
        a pack that reaches the band's end drops out even once the total is reached)."""
        if t <= self._last_cycle + _EPS:
            return False
        self._last_cycle = t
        rated = sum(inv.params.rated_power_w for inv in self._inverters)
        step = self.modes.dispatch_ramp_pct_s / 100.0 * rated * self.modes.dispatch_cycle_s
        delta = self._dispatch_target() - self._dispatched_w
        self._dispatched_w += max(-step, min(step, delta))  # an infinite ramp: all at once
        units = self._units()
        watts = share(units, self._dispatched_w, self.band)
        return self._apply({u.name: w for u, w in zip(units, watts, strict=True)})

    def _dispatch_target(self) -> float:
        """The site setpoint within the units' summed rating, W."""
        rated = sum(inv.params.rated_power_w for inv in self._inverters)
        return max(-rated, min(rated, self.site_power_w))

    def _units(self) -> list[GridFollowingInverter]:
        return [inv for inv in self._inverters if inv.energizing]

    def _apply(self, setpoints: dict[str, float]) -> bool:
        changed = False
        for inverter in self._inverters:
            w = setpoints.get(inverter.name, 0.0)
            if abs(inverter.setpoint_w - w) > _EPS:
                inverter.set_power_setpoint(w)
                changed = True
        return changed

    def _self_consume(self) -> bool:
        """Total setpoint = the units' output plus the PCC import, unless inside the deadband."""
        assert self._import_w is not None
        flow = self._import_w()
        if abs(flow) <= self.modes.deadband_w:
            return False
        units = self._units()
        total = sum(inv.power_w for inv in units) + flow
        watts = share(units, total, self.band)
        return self._apply({u.name: w for u, w in zip(units, watts, strict=True)})

    def _tou(self, t: float) -> bool:
        """The action of the tariff period in force at ``t``'s time of day."""
        tou = self.modes.tou
        period = tou.period_at(t)
        name = period.name if period is not None else None
        if name != self.period:
            self.period = name
            self._emit(f"ems.tou:{name or tou.otherwise}")
        action = period.action if period is not None else tou.otherwise
        if action == "self_consumption":
            return self._self_consume()
        if action == "idle" or period is None:
            return self._apply({})
        discharge = action == "discharge"
        sign = 1.0 if discharge else -1.0
        return self._apply(
            {
                u.name: sign
                * min(
                    period.fraction * u.params.rated_power_w, unit_limit_w(u, self.band, discharge)
                )
                for u in self._units()
            }
        )

    # -- plant interface ------------------------------------------------------------------------

    def next_event_time(self, t: float) -> float:
        """The next control cycle, or the running step's minimum end or timeout if sooner."""
        if self.state in (PEAK_SHAVING, DISPATCH):
            if self.state == PEAK_SHAVING:
                cycle = self.params.peak.cycle_s
            elif abs(self._dispatch_target() - self._dispatched_w) > _EPS:
                cycle = self.modes.dispatch_cycle_s  # ramping
            else:
                cycle = self.modes.cycle_s  # at the setpoint: only the band to watch
            since = t - self._cycle_from
            return self._cycle_from + (math.floor(since / cycle + _EPS) + 1) * cycle
        if self.state in _CYCLED:
            cycle = self.modes.cycle_s
            since = t - self._cycle_from
            return self._cycle_from + (math.floor(since / cycle + _EPS) + 1) * cycle
        if self.state != BLACK_START:
            return math.inf
        scan = self.params.scan_s
        since = t - self._command_at
        nxt = self._command_at + (math.floor(since / scan + _EPS) + 1) * scan
        step = self._order[self._index]
        for due in (self._step_at + step.min_s, self._step_at + step.timeout_s):
            if t + _EPS < due < nxt:
                nxt = due
        return nxt

    def update(self, t: float) -> bool:
        """End the running step if it is done at ``t`` (and begin the next), or give it up at its
        timeout; returns whether anything changed (the plant then settles and asks again). In
        PEAK_SHAVING: one control cycle (at most one per instant)."""
        if self.state == PEAK_SHAVING:
            return self._shave(t)
        if self.state == DISPATCH:
            return self._dispatch_cycle(t)
        if self.state in _CYCLED:
            return self._energy_cycle(t)
        if self.state != BLACK_START:
            return False
        step = self._order[self._index]
        done = self._handlers[step.name][1]
        if t + _EPS >= self._step_at + step.min_s and done(t):
            self.log.append(LoggedStep(step.name, t - self._command_at))
            self._emit(f"ems.step:{step.name}")
            self._index += 1
            if self._index == len(self._order):
                self.state = ISLANDED
                self._cycle_from = t
                self._last_cycle = t
                self._emit("ems.islanded")
            else:
                self._begin(t)
            return True
        if t + _EPS >= self._step_at + step.timeout_s:
            self.state = FAULT
            self._emit(f"ems.fault:{step.name}")
            return True
        return False

    def _begin(self, t: float) -> None:
        self._step_at = t
        self._handlers[self._order[self._index].name][0](t)

    # -- what the steps do and wait for ---------------------------------------------------------

    def _bms_ready(self, _t: float) -> bool:
        """Self-test passed: no protection alarm, no failed contactor, on any pack."""
        return all(not b.protections and b.contactor_state != 3.0 for b in self._batteries)

    def _heartbeats(self, _t: float) -> bool:
        return not any(b.heartbeat_lost for b in self._batteries)

    def _connect_first(self, _t: float) -> None:
        for battery in self._first:
            _hold(battery, False)

    def _first_precharging(self, _t: float) -> bool:
        return all(b.contactor_state in (1.0, 2.0) for b in self._first)

    def _first_closed(self, _t: float) -> bool:
        return all(b.contactor_closed for b in self._first)

    def _form(self, t: float) -> None:
        for unit in self.formers:
            if unit.battery.contactor_closed:
                unit.black_start(t, self.params.soft_start_s)

    def _formed(self, t: float) -> bool:
        soft = self.params.soft_start_s
        return any(u.forming for u in self.formers) and t + _EPS >= self._step_at + soft

    def _vf_ok(self, _t: float) -> bool:
        v, f = self._bus()
        low, high = self.params.voltage_window_pu
        tol = self.params.frequency_tolerance_hz
        return low <= v / self._vn <= high and abs(f - self._fn) <= tol

    def _pick_up(self, priority: str) -> Callable[[float], None]:
        def close(_t: float) -> None:
            capacity = sum(u.params.rated_power_w for u in self.formers if u.forming)
            waiting = [ld for ld in self.loads.loads if ld.priority == priority and not ld.closed]
            added = sum(ld.rated_power_w for ld in waiting)
            if self.loads.nominal_w + added <= self.params.surge_margin * capacity:
                for load in waiting:
                    load.close()
            else:
                self._emit(f"ems.skip:{priority}")

        return close

    def _connect_others(self, _t: float) -> None:
        for battery in self._others:
            _hold(battery, False)

    def _all_closed(self, _t: float) -> bool:
        return all(b.contactor_closed for b in self._batteries)

    # -- readings --------------------------------------------------------------------------------

    def channels(self) -> dict[str, Callable[[], float]]:
        """``ems.black_start``: 1 from a black-start command until the EMS is told NORMAL or
        SHUTDOWN again (the EMS's status relay, wired to the analyzer's digital input)."""
        return {
            "ems.black_start": lambda: 1.0 if self.state in (BLACK_START, ISLANDED, FAULT) else 0.0
        }


def _hold(battery: Battery, hold: bool) -> None:
    if battery.bms is not None:
        battery.bms.command_open(hold)


def _nothing(_t: float) -> None:
    """A step that only waits for its condition (and its minimum time)."""


def _done(_t: float) -> bool:
    """A step done once its minimum time (its settling) has passed."""
    return True


__all__ = ["GRID_MODES", "STATES", "Ems", "LoggedStep", "StepParams"]
