"""A grid-following battery inverter: trips, anti-islanding, enter service, ramped setpoint.

The inverter is a state machine driven by the plant at discrete instants (:meth:`update`) and a
power controller advanced every step (:meth:`update_power`). Every timer stores the instant its
condition began, and :meth:`next_event_time` tells the plant when the next one expires, so the
plant lands a step on it and trips, ceases and enters service at exact times, never quantized to
the step.

Protection semantics (IEEE 1547 style): for each configured function a timer runs while the bus
is beyond the threshold (over-functions: value >= threshold; under-functions: value <= threshold)
and trips when it reaches the clearing time; it resets as soon as the bus is back inside. Timers
only run while the unit energizes.

Anti-islanding: from the first update off the grid, the unit ceases after its detection time for
the island's frequency as it measures it (params.island_clearing_at_s: an active frequency-drift
curve, slowest in its non-detection zone); the deadline is re-read at every update, so it follows
the island's frequency as the bus settles at the load's resonance.

Enter service: while not energizing, a delay runs as long as the grid is connected and inside
the enter-service window, restarts whenever it leaves it, and on expiry the unit energizes and
scales its output from 0 to the setpoint over the ramp period. The clearing times, delay and ramp
applied are the parameters' *actual* values (see :class:`InverterParams`: defects make them
differ from the settings the unit reports).

Operation: the output follows its setpoint at the setpoint ramp, inside the battery's limits and
the unit's SoC reserve (no discharge at or below its floor, no charge at or above its ceiling).
A unit with a dispatch delay (a defect) keeps each commanded setpoint pending for that long; the
pending setpoint's due time is one of the unit's timers, so it is applied at that exact instant.

Communication loss (plant/comm_supervision.py): once armed, no Modbus request for the timeout
reverts the setpoint to the safe one, at that exact instant (another of the unit's timers).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from virtual_devices.plant.battery import Battery
from virtual_devices.plant.comm_supervision import CommSupervision
from virtual_devices.plant.params import TRIP_FUNCTIONS, InverterParams

OFF = "OFF"
"""Not started, or waiting for enter service."""
ON = "ON"
"""Energizing."""
TRIPPED = "TRIPPED"
"""Ceased to energize after a trip or island detection; restarts through enter service."""


def _ignore(_event: str) -> None:
    """Default sink for an inverter used outside a plant."""


class GridFollowingInverter:
    """One home's battery inverter. Power is AC, W, positive = discharge / export."""

    def __init__(
        self,
        params: InverterParams,
        battery: Battery,
        name: str = "inverter",
        emit: Callable[[str], None] = _ignore,
        notify: Callable[[str], None] = _ignore,
    ) -> None:
        """``emit`` receives discrete events (``<name>.trip:ov2``) as they happen inside a step;
        ``notify`` receives commands from outside (setpoint changes) so the plant can refine."""
        self.params = params
        self.battery = battery
        self.name = name
        self._emit = emit
        self._notify = notify
        self._eff = params.efficiency
        self._rate = params.applied_ramp_w_per_s
        self._floor = params.soc_floor_pct
        self._ceiling = params.soc_ceiling_pct
        self._dispatch_delay = params.dispatch_delay_s
        # Setpoints commanded but not yet applied (dispatch delay): [commanded at, watts]; the
        # instant is stamped NaN until the next update, which runs at the command's instant.
        self._pending: list[list[float]] = []
        self._commanded_w = 0.0
        self._rated = params.rated_power_w
        self._vn = params.nominal_voltage_v
        self._island_clearing = params.island_clearing_at_s
        self._fn = params.nominal_frequency_hz
        self._island_due = math.inf
        self._es = params.enter_service
        self._delay = params.es_delay_s
        self._ramp = params.es_ramp_s
        self._ignore_window = params.ignore_enter_service_window
        # Trip functions as flat rows for a tight loop: [name, over?, on frequency?, threshold,
        # clearing time]; their timers' start instants live in ``_trip_since``.
        self._trips: list[tuple[str, bool, bool, float, float]] = [
            (fn, fn[0] == "o", fn[1] == "f", s.threshold, params.trip_clearing_s(fn))
            for fn in TRIP_FUNCTIONS
            if (s := params.trips.get(fn)) is not None
        ]
        self._trip_since: list[float | None] = [None] * len(self._trips)
        self._state = OFF
        self._trip_cause: str | None = None
        self._island_since: float | None = None
        self._es_since: float | None = None
        self._es_at = -math.inf
        self._ramp_end = -math.inf
        self._setpoint_w = 0.0
        self._power_w = 0.0
        self._bus_v = 0.0
        self.comm = CommSupervision(params.comm_loss_delay_s, params.comm_loss_ignored)
        self._reverted_at = -math.inf
        """Communication-loss supervision; the Modbus endpoint reports requests to it."""

    # -- commands ----------------------------------------------------------------------------

    def set_power_setpoint(self, w: float) -> None:
        """Command AC power (positive = discharge/export), clamped to +-rated.

        Battery limits apply continuously on top, and the output follows at the setpoint ramp.
        """
        w = max(-self._rated, min(self._rated, float(w)))
        self.comm.reverted = False  # a new setpoint ends a reversion
        if self._dispatch_delay > 0.0:
            if w != self._commanded_w:
                self._commanded_w = w
                self._pending.append([math.nan, w])
                self._notify(f"{self.name}.command:{w:g}")
            return
        if w != self._setpoint_w:
            self._setpoint_w = w
            self._notify(f"{self.name}.setpoint:{w:g}")

    def configure_comm_supervision(
        self,
        *,
        enabled: bool | None = None,
        timeout_s: float | None = None,
        safe_setpoint_w: float | None = None,
    ) -> None:
        """Change the communication-loss settings (the plant re-plans its next event)."""
        self.comm.configure(enabled=enabled, timeout_s=timeout_s, safe_setpoint_w=safe_setpoint_w)
        self._notify(f"{self.name}.comm_supervision")

    def start_in_service(self) -> None:
        """Begin energizing at once, already in service (no delay, no ramp): the plant's start."""
        self._state = ON
        self._trip_cause = None
        self._es_since = None
        self._es_at = -math.inf
        self._ramp_end = -math.inf
        self._island_since = None

    # -- readings ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def energizing(self) -> bool:
        return self._state == ON

    @property
    def trip_cause(self) -> str | None:
        """What made the unit cease ("ov2", ..., "island"); None once back in service."""
        return self._trip_cause

    @property
    def setpoint_w(self) -> float:
        return self._setpoint_w

    @property
    def power_w(self) -> float:
        return self._power_w

    @property
    def current_a(self) -> float:
        """AC current, A rms: |P| / bus voltage; 0 when not energizing or on a dead bus."""
        if self._state != ON or self._bus_v <= 1e-6:
            return 0.0
        return abs(self._power_w) / self._bus_v

    @property
    def dc_power_w(self) -> float:
        """Power drawn from the battery, W (positive = discharge), after conversion losses."""
        p = self._power_w
        return p / self._eff if p > 0.0 else p * self._eff

    @property
    def enter_service_due(self) -> float | None:
        """Instant the running enter-service delay ends, or None when no delay is running."""
        if self._es_since is None:
            return None
        return self._es_since + self._delay

    # -- plant interface ---------------------------------------------------------------------

    def next_event_time(self, t: float) -> float:
        """Earliest instant after ``t`` at which a timer of this unit expires (inf if none)."""
        nxt = math.inf
        if self._pending and t < (due := self._pending[0][0] + self._dispatch_delay):
            nxt = due
        if t < (due := self.comm.due()) < nxt:
            nxt = due
        if self._state == ON:
            since = self._trip_since
            trips = self._trips
            for i in range(len(trips)):
                s = since[i]
                if s is not None:
                    due = s + trips[i][4]
                    if t < due < nxt:
                        nxt = due
            if self._island_since is not None:
                due = self._island_due
                if t < due < nxt:
                    nxt = due
            if t < self._ramp_end < nxt:
                nxt = self._ramp_end
        elif self._es_since is not None:
            due = self._es_since + self._delay
            if t < due < nxt:
                nxt = due
        return nxt

    def update(self, t: float, bus_v: float, bus_hz: float, grid_connected: bool) -> None:
        """Run protection, anti-islanding and enter-service logic for the bus state at ``t``."""
        if self._pending:
            self._apply_due(t)
        if self.comm.armed and self.comm.expire(t):
            self._revert(t)
        self._bus_v = bus_v
        v_pu = bus_v / self._vn
        if self._state == ON:
            since = self._trip_since
            trips = self._trips
            for i in range(len(trips)):
                fn, over, on_freq, threshold, clearing = trips[i]
                value = bus_hz if on_freq else v_pu
                if (value >= threshold) if over else (value <= threshold):
                    s = since[i]
                    if s is None:
                        since[i] = s = t
                    if t >= s + clearing:
                        self._cease(fn)
                        self._emit(f"{self.name}.trip:{fn}")
                        break
                else:
                    since[i] = None
            if self._state == ON:
                if grid_connected:
                    self._island_since = None
                else:
                    if self._island_since is None:
                        self._island_since = t
                    self._island_due = self._island_since + self._island_clearing(bus_hz - self._fn)
                    if t >= self._island_due:
                        self._cease("island")
                        self._emit(f"{self.name}.cease:island")
        if self._state != ON:
            if grid_connected and (self._ignore_window or self.in_service_window(bus_v, bus_hz)):
                if self._es_since is None:
                    self._es_since = t
                if t >= self._es_since + self._delay:
                    self._enter_service(t)
                    self._emit(f"{self.name}.enter_service")
            else:
                self._es_since = None

    def in_service_window(self, bus_v: float, bus_hz: float) -> bool:
        """Whether the bus is inside the enter-service voltage and frequency window."""
        es = self._es
        v_pu = bus_v / self._vn
        return es.v_low_pu <= v_pu <= es.v_high_pu and es.f_low_hz <= bus_hz <= es.f_high_hz

    def update_power(self, t: float, dt: float) -> None:
        """Move the output toward the setpoint for the interval that starts at ``t``.

        The target is the setpoint within the battery's present limits, scaled linearly from 0
        during the enter-service ramp; the output follows it at the setpoint ramp rate, except
        that a tightened battery limit applies at once.
        """
        if self._state != ON:
            self._power_w = 0.0
            return
        battery = self.battery
        hi = battery.max_discharge_power_w * self._eff
        lo = -battery.max_charge_power_w / self._eff
        if self._floor is not None and hi > 0.0 and battery.soc_pct <= self._floor:
            hi = 0.0  # at its SoC reserve: no more discharge
        if self._ceiling is not None and lo < 0.0 and battery.soc_pct >= self._ceiling:
            lo = 0.0
        target = self._setpoint_w
        if target > hi:
            target = hi
        elif target < lo:
            target = lo
        if t < self._ramp_end:
            target *= (t - self._es_at) / self._ramp
        if t - dt < self._reverted_at:  # reverted inside this step: no ramp before the instant
            dt = max(0.0, t - self._reverted_at)
        p = self._power_w
        move = self._rate * dt
        if target > p + move:
            p += move
        elif target < p - move:
            p -= move
        else:
            p = target
        self._power_w = hi if p > hi else lo if p < lo else p

    # -- transitions -------------------------------------------------------------------------

    def _apply_due(self, t: float) -> None:
        """Stamp setpoints commanded at ``t`` and apply those whose dispatch delay is over."""
        pending = self._pending
        for entry in pending:
            if math.isnan(entry[0]):
                entry[0] = t
        while pending and t >= pending[0][0] + self._dispatch_delay:
            w = pending.pop(0)[1]
            if w != self._setpoint_w:
                self._setpoint_w = w
                self._emit(f"{self.name}.setpoint:{w:g}")

    def _revert(self, t: float) -> None:
        """Communication lost: the safe setpoint replaces whatever was commanded, from ``t``
        on (the step that ends at ``t`` does not already ramp toward it)."""
        w = max(-self._rated, min(self._rated, self.comm.safe_setpoint_w))
        self._reverted_at = t
        self._pending.clear()
        self._commanded_w = w
        self._setpoint_w = w
        self._emit(f"{self.name}.comm_loss:{w:g}")

    def _cease(self, cause: str) -> None:
        self._state = TRIPPED
        self._trip_cause = cause
        self._power_w = 0.0
        self._island_since = None
        self._es_since = None
        self._ramp_end = -math.inf
        for i in range(len(self._trip_since)):
            self._trip_since[i] = None

    def _enter_service(self, t: float) -> None:
        self._state = ON
        self._trip_cause = None
        self._es_since = None
        self._island_since = None
        self._power_w = 0.0
        self._es_at = t
        self._ramp_end = t + self._ramp
