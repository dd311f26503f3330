"""Grid-forming inverters and the intentional island they hold (IEEE 1547-2018 8.2).

A :class:`GridFormingInverter` is a grid-following inverter (same trips, enter service, setpoint
ramp) that, with intentional islanding enabled, does not cease when the grid is lost: it detects
the loss, switches over (break before make: no output meanwhile) and forms the home bus as a
voltage source (see :class:`~virtual_devices.plant.island_params.GridFormingParams` for the
timing). With islanding disabled it is a grid-following unit in every respect, anti-islanding
included, so the unintentional-islanding test means the same on a site that has one.

The :class:`IslandController` is the island's physics while at least one unit forms it:

* Voltage: each forming unit raises the bus linearly from where it was to its setpoint over its
  voltage ramp; the bus sits at the rating-weighted mean of the forming units' voltages.
* Power balance: the forming units supply what the bus's loads (the homes' priority loads and
  the RLC test load, resistive: P ~ V^2) draw minus what the grid-following units inject, and
  absorb a surplus. Droop units share it by their droop gains k = rated / (droop x f_nom), and
  the frequency settles at f = f_nom - P / sum(k); an isochronous unit holds f_nom and takes the
  whole load (shared by rating with other isochronous units).
* Grid-following units see a held bus as a grid: their anti-islanding does not detect it (the
  forming unit is stiff), and they keep exporting as long as the bus stays inside their trip
  settings; a unit that tripped during the transfer gap enters service again on the held bus
  after its enter-service delay, as it would on the grid.
* Loads: when the island is first held, deferrable loads are shed (breakers opened) and
  essential ones too if critical plus essential exceed the forming units' ratings; they close
  again when the grid returns.
* A forming unit stops (ceases, and re-enters service through enter service on the grid's
  return) when its battery reaches its reserve SoC or cannot deliver its share (the BMS's power
  limits); the others then carry the island alone, or it collapses.
* The grid returns (PCC closed, grid output on): forming units resynchronize and follow again
  at once, without a trip.

Everything a forming unit delivers comes from its battery through its conversion efficiency
(coulomb counting in :class:`~virtual_devices.plant.battery.Battery`), so an island drains the
packs and critical-load endurance from a starting SoC is the energy the packs hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from virtual_devices.plant.battery import Battery
from virtual_devices.plant.inverter import ON, GridFollowingInverter
from virtual_devices.plant.load import IslandLoad, PriorityLoad, SiteLoads
from virtual_devices.plant.params import InverterParams

_DEAD_BUS_PU = 0.1
"""Below this fraction of nominal voltage a circuit has no frequency to measure."""


def _ignore(_event: str) -> None:
    """Default event sink for a unit used outside a plant."""


class BreakerState(Protocol):
    @property
    def closed(self) -> bool: ...


class GridOutput(Protocol):
    @property
    def output_on(self) -> bool: ...


class GridFormingInverter(GridFollowingInverter):
    """A battery inverter that can hold an intentional island; see the module docstring."""

    def __init__(
        self,
        params: InverterParams,
        battery: Battery,
        name: str = "inverter",
        emit: Callable[[str], None] = _ignore,
        notify: Callable[[str], None] = _ignore,
        *,
        pcc: BreakerState,
        grid: GridOutput,
    ) -> None:
        """``pcc`` and ``grid`` tell the unit whether the grid is there: the PCC breaker's
        auxiliary contact and the grid's presence behind it."""
        super().__init__(params, battery, name, emit, notify)
        gf = params.grid_forming
        if gf is None:
            raise ValueError(f"{name}: a grid-forming inverter needs grid_forming parameters")
        self.gf = gf
        self._pcc = pcc
        self._grid = grid
        self._enabled = gf.enabled
        self._vset = gf.voltage_pu * params.nominal_voltage_v
        self.droop_gain_w_per_hz = params.rated_power_w / (
            gf.frequency_droop_pct / 100.0 * params.nominal_frequency_hz
        )
        """Droop gain k, W/Hz: the power the unit takes on per hertz the frequency falls."""
        self._lost_at: float | None = None
        self._detect_at = math.inf
        self._transfer_at: float | None = None
        self._formed_at: float | None = None
        self._ramp_from_v = 0.0
        self._soft_start_s: float | None = None  # a black start's ramp instead of voltage_ramp_s

    # -- commands ----------------------------------------------------------------------------

    @property
    def island_enabled(self) -> bool:
        """The intentional-islanding setting (SunSpec 702 IntIslandCat INT_ISL_CAPABLE)."""
        return self._enabled

    def set_island_enabled(self, on: bool) -> None:
        """Enable or disable intentional islanding; disabling it while the unit holds (or is
        switching over to) an island makes it cease."""
        on = bool(on)
        if on == self._enabled:
            return
        self._enabled = on
        if not on:
            holding = self._transfer_at is not None
            self._clear_island()
            if holding and self._state == ON:
                self._cease("islanding_disabled")
        self._notify(f"{self.name}.islanding:{'on' if on else 'off'}")

    def black_start(self, t: float, soft_start_s: float) -> bool:
        """Form a dead bus on the site controller's command (no grid behind the PCC): the unit
        energizes as a voltage source and ramps the bus from where it is to its setpoint over
        ``soft_start_s``; returns False (nothing done) while the grid is there. Its
        intentional-islanding setting does not apply: that is about riding through a loss of
        grid, this is a start without one. Logs ``<name>.black_start``."""
        if self._pcc.closed and self._grid.output_on:
            return False
        self.start_in_service()
        self._lost_at = t
        self._detect_at = t
        self._transfer_at = t
        self._formed_at = t
        self._ramp_from_v = self._bus_v
        self._soft_start_s = soft_start_s
        self._emit(f"{self.name}.black_start")
        return True

    # -- readings ----------------------------------------------------------------------------

    @property
    def forming(self) -> bool:
        """Whether the unit is holding the bus as a voltage source now."""
        return self._formed_at is not None

    @property
    def transferring(self) -> bool:
        """Whether the unit is switching over to forming (no output meanwhile)."""
        return self._transfer_at is not None and self._formed_at is None

    @property
    def energizing(self) -> bool:
        return self._state == ON and not self.transferring

    @property
    def dc_power_w(self) -> float:
        p = super().dc_power_w
        return p + self.gf.standby_drain_w if self._formed_at is not None else p

    def voltage_at(self, t: float) -> float:
        """The bus voltage the unit forms at ``t``: its soft start, then its setpoint."""
        formed = self._formed_at
        if formed is None:
            return 0.0
        ramp = self._ramp_s
        if ramp <= 0.0 or t >= formed + ramp:
            return self._vset
        return self._ramp_from_v + (self._vset - self._ramp_from_v) * (t - formed) / ramp

    def available_w(self, power_w: float) -> bool:
        """Whether the unit (its rating, its battery's present limits) can deliver ``power_w``
        (negative: absorb) while forming."""
        if abs(power_w) > self._rated:
            return False
        battery = self.battery
        if power_w >= 0.0:
            return power_w / self._eff + self.gf.standby_drain_w <= battery.max_discharge_power_w
        return -power_w * self._eff - self.gf.standby_drain_w <= battery.max_charge_power_w

    # -- plant interface ---------------------------------------------------------------------

    def next_event_time(self, t: float) -> float:
        if self._formed_at is not None:
            end = self._formed_at + self._ramp_s
            return end if t < end else math.inf
        if self._transfer_at is not None:
            due = self._transfer_at + self.gf.takeover_s
            return due if t < due else math.inf
        nxt = super().next_event_time(t)
        if self._lost_at is not None and t < self._detect_at < nxt:
            nxt = self._detect_at
        return nxt

    def update(self, t: float, bus_v: float, bus_hz: float, grid_connected: bool) -> None:
        """As a grid-following unit while the grid is there or islanding is disabled
        (``grid_connected`` is then whether the bus is held, by the grid or a forming unit);
        otherwise detect the loss, switch over and form."""
        self._bus_v = bus_v
        if self._pcc.closed and self._grid.output_on:
            if self._lost_at is not None:
                self._rejoin()
            super().update(t, bus_v, bus_hz, True)
            return
        if self._formed_at is not None:
            return  # holding the bus: the island controller stops the unit if it must
        if self._lost_at is None:
            if not (self._enabled and self._state == ON):
                super().update(t, bus_v, bus_hz, grid_connected)
                return
            self._lost_at = t
            self._detect_at = t + self.gf.detection_s
        if not self._pcc.closed and self._detect_at > t:
            self._detect_at = t  # the breaker's auxiliary contact: known at once
        started = self._transfer_at
        if started is None:
            if t < self._detect_at:
                # Still following its setpoint until it notices: trips run, anti-islanding not.
                super().update(t, bus_v, bus_hz, True)
                if self._state != ON:
                    self._clear_island()  # tripped first: nothing to take over
                return
            self._begin_transfer(t)
            started = t
        if t >= started + self.gf.takeover_s:
            self._formed_at = t
            self._ramp_from_v = bus_v
            self._emit(f"{self.name}.form")

    def update_power(self, t: float, dt: float) -> None:
        if self._formed_at is not None:
            return  # set by the island controller (set_island_output)
        if self._transfer_at is not None:
            self._power_w = 0.0
            return
        super().update_power(t, dt)

    def set_island_output(self, power_w: float, bus_v: float) -> None:
        """The unit's share of the island (from the island controller) at bus voltage
        ``bus_v``; its battery's operating point follows at once."""
        self._power_w = power_w
        self._bus_v = bus_v
        self.battery.step(0.0, self.dc_power_w)

    def stop_forming(self, cause: str) -> None:
        """Cease holding the island (reserve reached, overload); logs ``<name>.cease:<cause>``."""
        self._cease(cause)
        self._emit(f"{self.name}.cease:{cause}")

    # -- transitions -------------------------------------------------------------------------

    def _begin_transfer(self, t: float) -> None:
        self._transfer_at = t
        self._power_w = 0.0
        self._island_since = None
        for i in range(len(self._trip_since)):
            self._trip_since[i] = None
        self._emit(f"{self.name}.transfer")

    def _rejoin(self) -> None:
        """The grid is back: a unit holding the island follows it again, without a trip."""
        holding = self._transfer_at is not None
        self._clear_island()
        if holding and self._state == ON:
            self._emit(f"{self.name}.resync")

    @property
    def _ramp_s(self) -> float:
        """The soft start in force: a black start's, else the transfer's voltage ramp."""
        soft = self._soft_start_s
        return self.gf.voltage_ramp_s if soft is None else soft

    def _clear_island(self) -> None:
        self._soft_start_s = None
        self._lost_at = None
        self._detect_at = math.inf
        self._transfer_at = None
        self._formed_at = None

    def _cease(self, cause: str) -> None:
        super()._cease(cause)
        self._clear_island()


class IslandController:
    """The physics of an island held by grid-forming units; see the module docstring."""

    def __init__(
        self,
        formers: list[GridFormingInverter],
        inverters: list[GridFollowingInverter],
        loads: SiteLoads,
        nominal_voltage_v: float,
        nominal_frequency_hz: float,
        emit: Callable[[str], None] = _ignore,
    ) -> None:
        self.formers = formers
        self.loads = loads
        self._others = [inv for inv in inverters if inv not in formers]
        self._vn = nominal_voltage_v
        self._fn = nominal_frequency_hz
        self._emit = emit
        self._held = False
        self._shed: list[PriorityLoad] = []
        self._last: tuple[Any, Any] = (None, None)

    @property
    def forming(self) -> bool:
        """Whether any unit holds the bus now."""
        return any(unit.forming for unit in self.formers)

    def hold(self, t: float, rlc: IslandLoad) -> tuple[float, float, bool] | None:
        """Bus voltage and frequency at ``t`` with the forming units' shares set, and whether a
        discrete change happened (loads shed, a unit stopped); None if no unit holds the bus
        any more (it collapses as an unheld island)."""
        active = [unit for unit in self.formers if unit.forming]
        if not active:
            return None
        changed = False
        if not self._held:
            self._held = True
            self._shed_loads(active)
            changed = True
        while True:
            rated = sum(unit.params.rated_power_w for unit in active)
            v = sum(unit.voltage_at(t) * unit.params.rated_power_w for unit in active) / rated
            injected = 0.0
            for inv in self._others:
                if inv.energizing:
                    injected += inv.power_w
            for unit in self.formers:  # a unit that stopped since is no source any more
                if unit.energizing and not unit.forming:
                    injected += unit.power_w
            demand = self.loads.power_at(v) + rlc.power_at(v) - injected
            key = (tuple(active), demand)
            if key != self._last[0]:  # steady state: the same split as the step before
                self._last = (key, self._share(active, demand))
            f, shares = self._last[1]
            stopped = self._stop_one(shares)
            if stopped is None:
                break
            active.remove(stopped)
            changed = True
            if not active:
                return None
        for unit, power in shares:
            unit.set_island_output(power, v)
        return v, f, changed

    def grid_back(self) -> None:
        """The grid is back: loads shed for the island close again."""
        self._held = False
        shed, self._shed = self._shed, []
        for load in shed:
            load.close()

    def _share(
        self, active: list[GridFormingInverter], demand: float
    ) -> tuple[float, list[tuple[GridFormingInverter, float]]]:
        iso = [unit for unit in active if unit.gf.mode == "isochronous"]
        if iso:  # held at nominal; droop units at nominal frequency take nothing
            rated = sum(unit.params.rated_power_w for unit in iso)
            shares = [
                (u, demand * u.params.rated_power_w / rated if u in iso else 0.0) for u in active
            ]
            return self._fn, shares
        gain = sum(unit.droop_gain_w_per_hz for unit in active)
        shares = [(unit, demand * unit.droop_gain_w_per_hz / gain) for unit in active]
        return self._fn - demand / gain, shares

    @staticmethod
    def _stop_one(shares: list[tuple[GridFormingInverter, float]]) -> GridFormingInverter | None:
        """Stop the first unit that must stop now (reserve reached, share beyond its limits)."""
        for unit, power in shares:
            if power > 0.0 and unit.battery.soc_pct <= unit.gf.reserve_soc_pct:
                unit.stop_forming("reserve")
                return unit
            if not unit.available_w(power):
                unit.stop_forming("overload")
                return unit
        return None

    def _shed_loads(self, active: list[GridFormingInverter]) -> None:
        """Deferrable loads always; essential ones too if they do not fit the units' ratings."""
        capacity = sum(unit.params.rated_power_w for unit in active)
        kept = sum(load.rated_power_w for load in self.loads.critical)
        essential = [load for load in self.loads.loads if load.priority == "essential"]
        keep_essential = kept + sum(load.rated_power_w for load in essential) <= capacity
        shed = {"deferrable"} if keep_essential else {"deferrable", "essential"}
        for load in self.loads.loads:
            if load.priority in shed and load.closed:
                load.open()
                self._shed.append(load)


def island_channels(
    bus_v: Callable[[], float],
    bus_f: Callable[[], float],
    loads: SiteLoads,
    formers: list[GridFormingInverter],
) -> dict[str, Callable[[], float]]:
    """Analyzer channels of the loads and the grid-forming units.

    ``critical_load.voltage`` / ``.frequency`` / ``.power``: the critical-load circuit (the bus
    while any critical load's breaker is closed; no frequency on a dead circuit);
    ``loads.power``; ``<node>.load.<name>.power`` / ``.breaker`` per load;
    ``<node>.inverter.forming`` per grid-forming unit (1 while it holds the bus).
    """
    channels: dict[str, Callable[[], float]] = {}
    if loads.critical:

        def critical_v() -> float:
            return bus_v() if loads.critical_supplied else 0.0

        def critical_f() -> float:
            v = critical_v()
            return bus_f() if v > _DEAD_BUS_PU * loads.critical[0].nominal_voltage_v else 0.0

        channels["critical_load.voltage"] = critical_v
        channels["critical_load.frequency"] = critical_f
        channels["critical_load.power"] = lambda: loads.critical_power_at(bus_v())
    if loads.loads:
        channels["loads.power"] = lambda: loads.power_at(bus_v())
    for load in loads.loads:
        channels.update(_load_channels(load, bus_v))
    for unit in formers:
        channels[f"{unit.name}.forming"] = _forming(unit)
    return channels


def _load_channels(
    load: PriorityLoad, bus_v: Callable[[], float]
) -> dict[str, Callable[[], float]]:
    return {
        f"{load.name}.power": lambda: load.power_at(bus_v()),
        f"{load.name}.breaker": lambda: 1.0 if load.closed else 0.0,
    }


def _forming(unit: GridFormingInverter) -> Callable[[], float]:
    return lambda: 1.0 if unit.forming else 0.0
