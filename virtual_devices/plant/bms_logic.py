"""The BMS of a virtual pack: derated current limits, protections, contactor, heartbeat.

What the BMS decides is data (``virtual_devices/data/bms_logic.yaml``): derating curves over SoC
and temperature, each protection's sensed quantity, warning / alarm / release thresholds, delay
and response, the heartbeat timeout and the contactor's precharge. This module only runs it:

* **Sensing.** The BMS sees its pack through cell taps, a temperature sensor and a shunt. A
  fault-insertion unit can drive any of them (``set_override``): a cell tap at a set voltage (it
  becomes the highest or lowest cell the BMS sees), the sensor at a set temperature, the shunt
  at a set current. The BMS reports and protects on what it senses, as a real one does.
* **Scanning.** Sensed values are sampled every ``scan`` (and at once when a sense line is
  driven); timers (protection delays, heartbeat timeout, precharge) run on exact instants that
  :meth:`BmsLogic.next_event` tells the plant, so a response lands on its due time whatever the
  plant's step.
* **Protections.** A warning while the value is beyond its warning threshold; the alarm once it
  has stayed beyond the alarm threshold for the delay; both clear once the value is back past
  the release threshold. An alarm zeroes the limits of the directions it blocks and opens the
  contactor once it has lasted ``open_contactor_after``.
* **Heartbeat.** Once heard, an inverter heartbeat missing for ``timeout`` zeroes both limits
  (warning ``heartbeat_lost``) and, ``open_contactor_after`` later, opens the contactor.
* **Contactor.** Closed at start (the site is running). Opened by a protection or a lost
  heartbeat; closed again through precharge once nothing has kept it open for ``reclose_after``.
  While it is not closed the pack carries no current and both limits are zero.
* **Precharge.** The precharge relay charges the DC link for ``precharge``; a precharge that
  cannot complete (the precharge resistor open, :meth:`set_precharge_blocked`) is given up
  ``precharge_timeout`` after it began: the contactor state latches ``fault`` and the alarm
  ``precharge_fault`` is raised until the BMS's enable input is taken away (:meth:`set_enable`,
  the bench's key switch), which resets it.

Defect hooks (``virtual_devices/data/defects/bms_faults.yaml``): ``extra_delays_s`` makes a
protection (or the heartbeat timeout) respond that much later; ``disabled`` protections never
respond (no alarm, no zero limit, no contactor opening); ``ignore_heartbeat_loss`` makes the
BMS never act on a lost heartbeat; ``precharge_extra_s`` makes it give up a failed precharge that
much later than ``precharge_timeout``. All change behaviour only; the settings stay as they are.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config.units import UnitError, to_unit

DEFAULT_SETTINGS = Path(__file__).resolve().parent.parent / "data" / "bms_logic.yaml"
"""The BMS behaviour shipped with the virtual devices."""

SENSES = (
    "cell_voltage_max",
    "cell_voltage_min",
    "temperature",
    "charge_current",
    "discharge_current",
)
"""What a protection can watch."""
OVERRIDES = ("cell_voltage", "temperature", "current")
"""Sense lines a fault-insertion unit can drive: one cell tap (V), the temperature sensor
(degC), the shunt (A, positive = charging)."""
DIRECTIONS = ("charge", "discharge")
CONTACTOR_STATES = ("open", "precharging", "closed", "fault")
"""Contactor states, in the order a CAN status signal numbers them (0..3)."""
HEARTBEAT = "heartbeat"
"""The name under which ``extra_delays_s`` delays the heartbeat supervision."""
HEARTBEAT_LOST = "heartbeat_lost"
PRECHARGE_FAULT = "precharge_fault"
"""The alarm a failed precharge raises (latched with the contactor state ``fault``)."""
"""The warning set while the inverter heartbeat is lost."""
EPS_S = 1e-7
"""A timer is due this close to its instant (the pack's clock sums its steps)."""

_SENSE_UNITS = {
    "cell_voltage_max": "V",
    "cell_voltage_min": "V",
    "temperature": "degC",
    "charge_current": "1",
    "discharge_current": "1",
}


def _ignore(_event: str) -> None:
    """Default event sink for a BMS used outside a plant."""


class Curve:
    """A factor versus a quantity, linear between points and flat beyond the first and last."""

    __slots__ = ("_slope", "_x", "_y")

    def __init__(self, points: list[tuple[float, float]], source: str = "<curve>") -> None:
        if len(points) < 1:
            raise ValueError(f"{source}: a curve needs at least one [x, factor] point")
        xs = [float(x) for x, _ in points]
        ys = [float(y) for _, y in points]
        for i in range(1, len(xs)):
            if xs[i] <= xs[i - 1]:
                raise ValueError(f"{source}: x must rise strictly (point {i}: {xs[i]:g})")
        for y in ys:
            if not 0.0 <= y <= 1.0:
                raise ValueError(f"{source}: a derating factor must be within 0..1, not {y:g}")
        self._x, self._y = xs, ys
        self._slope = [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(zip(self._x, self._y, strict=True))

    def __call__(self, x: float) -> float:
        xs = self._x
        if x <= xs[0]:
            return self._y[0]
        if x >= xs[-1]:
            return self._y[-1]
        i = bisect.bisect_right(xs, x) - 1
        return self._y[i] + self._slope[i] * (x - xs[i])


@dataclass(frozen=True)
class Protection:
    """One protection as the data file states it (current thresholds as ratios of rated)."""

    name: str
    flag: str
    sense: str
    above: bool
    warning: float
    alarm: float
    release: float
    delay_s: float
    blocks: frozenset[str]
    open_contactor_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.sense not in SENSES:
            raise ValueError(f"protection {self.name}: unknown sense {self.sense!r}")
        if self.above and not self.release <= self.warning <= self.alarm:
            raise ValueError(f"protection {self.name}: need release <= warning <= alarm")
        if not self.above and not self.release >= self.warning >= self.alarm:
            raise ValueError(f"protection {self.name}: need release >= warning >= alarm")
        if self.delay_s < 0 or (self.open_contactor_after_s or 0.0) < 0:
            raise ValueError(f"protection {self.name}: times must be >= 0 s")
        if not self.blocks <= set(DIRECTIONS):
            raise ValueError(f"protection {self.name}: blocks is a subset of {DIRECTIONS}")

    def scaled(self, factor: float) -> Protection:
        """The same protection with its thresholds multiplied (ratios of rated current -> A)."""
        return Protection(
            self.name,
            self.flag,
            self.sense,
            self.above,
            self.warning * factor,
            self.alarm * factor,
            self.release * factor,
            self.delay_s,
            self.blocks,
            self.open_contactor_after_s,
        )


@dataclass(frozen=True)
class BmsSettings:
    """Everything :class:`BmsLogic` runs on, as read from a data file."""

    scan_s: float
    soc_charge: Curve
    soc_discharge: Curve
    temperature_charge: Curve
    temperature_discharge: Curve
    protections: tuple[Protection, ...]
    heartbeat_timeout_s: float
    heartbeat_open_contactor_after_s: float | None
    precharge_s: float
    precharge_timeout_s: float
    reclose_after_s: float
    source: Path = field(default=DEFAULT_SETTINGS, compare=False)

    def protection(self, name: str) -> Protection:
        for p in self.protections:
            if p.name == name:
                return p
        raise KeyError(f"no protection {name!r}; known: {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        """Protection names, plus ``heartbeat`` (what ``extra_delays_s`` may name)."""
        return (*(p.name for p in self.protections), HEARTBEAT)


def _time(value: Any, where: str, path: Path) -> float:
    try:
        seconds = to_unit(value, "s")
    except UnitError as exc:
        raise ValueError(f"{path}: {where}: {exc}") from None
    if seconds < 0:
        raise ValueError(f"{path}: {where}: must be >= 0 s, not {seconds:g} s")
    return seconds


def _curve(data: Any, where: str, path: Path) -> Curve:
    if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 for p in data):
        raise ValueError(f"{path}: {where}: expected a list of [x, factor] points")
    return Curve([(float(x), float(y)) for x, y in data], f"{path}: {where}")


def _protection(name: str, body: Any, path: Path) -> Protection:
    if not isinstance(body, dict):
        raise ValueError(f"{path}: protections.{name}: expected a mapping")
    sense = str(body.get("sense"))
    unit = _SENSE_UNITS.get(sense)
    if unit is None:
        raise ValueError(f"{path}: protections.{name}.sense: expected one of {', '.join(SENSES)}")

    def level(key: str) -> float:
        try:
            return to_unit(body[key], unit, require_unit=unit != "1")
        except KeyError:
            raise ValueError(f"{path}: protections.{name}: missing {key!r}") from None
        except UnitError as exc:
            raise ValueError(f"{path}: protections.{name}.{key}: {exc}") from None

    after = body.get("open_contactor_after")
    try:
        return Protection(
            name=name,
            flag=str(body.get("flag", name)),
            sense=sense,
            above=bool(body.get("above", True)),
            warning=level("warning"),
            alarm=level("alarm"),
            release=level("release"),
            delay_s=_time(body.get("delay", "0 s"), f"protections.{name}.delay", path),
            blocks=frozenset(str(b) for b in body.get("blocks", [])),
            open_contactor_after_s=None
            if after is None
            else _time(after, f"protections.{name}.open_contactor_after", path),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@functools.lru_cache(maxsize=8)
def load_bms_settings(path: Path = DEFAULT_SETTINGS) -> BmsSettings:
    """Read a BMS data file; every error names the file and the key."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    try:
        derating, protections = data["derating"], data["protections"]
        heartbeat, contactor = data["heartbeat"], data["contactor"]
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc}") from None
    hb_after = heartbeat.get("open_contactor_after")
    return BmsSettings(
        scan_s=_time(data.get("scan", "0.2 s"), "scan", path) or 0.2,
        soc_charge=_curve(derating["soc"]["charge"], "derating.soc.charge", path),
        soc_discharge=_curve(derating["soc"]["discharge"], "derating.soc.discharge", path),
        temperature_charge=_curve(
            derating["temperature"]["charge"], "derating.temperature.charge", path
        ),
        temperature_discharge=_curve(
            derating["temperature"]["discharge"], "derating.temperature.discharge", path
        ),
        protections=tuple(_protection(str(k), v, path) for k, v in protections.items()),
        heartbeat_timeout_s=_time(heartbeat["timeout"], "heartbeat.timeout", path),
        heartbeat_open_contactor_after_s=None
        if hb_after is None
        else _time(hb_after, "heartbeat.open_contactor_after", path),
        precharge_s=_time(contactor["precharge"], "contactor.precharge", path),
        precharge_timeout_s=_time(
            contactor["precharge_timeout"], "contactor.precharge_timeout", path
        ),
        reclose_after_s=_time(contactor["reclose_after"], "contactor.reclose_after", path),
        source=Path(path),
    )


class BmsLogic:
    """One pack's BMS. The battery calls :meth:`update` as time passes and reads the outcome:
    :attr:`alarms`, :attr:`warnings`, :attr:`contactor`, :meth:`limit_factor`, :attr:`sensed`.

    ``rated_charge_a`` / ``rated_discharge_a`` turn the over-current ratios into amperes.
    ``sense`` returns the pack's physical (cell voltage, temperature, current) when called.
    """

    def __init__(
        self,
        settings: BmsSettings,
        rated_charge_a: float,
        rated_discharge_a: float,
        *,
        name: str = "bms",
        emit: Callable[[str], None] = _ignore,
        extra_delays_s: Mapping[str, float] | None = None,
        disabled: Collection[str] = (),
        ignore_heartbeat_loss: bool = False,
        precharge_extra_s: float = 0.0,
        start_s: float = 0.0,
    ) -> None:
        extra = dict(extra_delays_s or {})
        unknown = sorted((set(extra) | set(disabled)) - set(settings.names))
        if unknown:
            raise ValueError(f"defects name unknown protections {unknown}; known: {settings.names}")
        self.settings = settings
        self.name = name
        self._emit = emit
        self.ignore_heartbeat_loss = ignore_heartbeat_loss
        scale = {"charge_current": rated_charge_a, "discharge_current": rated_discharge_a}
        self._protections = [p.scaled(scale.get(p.sense, 1.0)) for p in settings.protections]
        self._sense_index = [SENSES.index(p.sense) for p in self._protections]
        # A disabled protection's alarm is due at infinity: it never comes.
        self._delays = [
            math.inf if p.name in disabled else p.delay_s + extra.get(p.name, 0.0)
            for p in self._protections
        ]
        self._hb_timeout = (
            math.inf
            if HEARTBEAT in disabled
            else settings.heartbeat_timeout_s + extra.get(HEARTBEAT, 0.0)
        )
        if not (math.isfinite(precharge_extra_s) and precharge_extra_s >= 0):
            raise ValueError(f"precharge_extra_s must be >= 0 s, not {precharge_extra_s!r}")
        self._precharge_timeout = settings.precharge_timeout_s + precharge_extra_s
        self.enabled = True
        """The BMS's enable input (the site's key switch); taken away, the contactor opens."""
        self.precharge_blocked = False
        """The precharge circuit cannot charge the DC link (a fault-insertion line)."""
        n = len(self._protections)
        self._since: list[float | None] = [None] * n
        self._alarm_at: list[float | None] = [None] * n
        self.alarms: set[str] = set()
        """Flags of the protections in alarm (a live set: the battery hands it out)."""
        self.warnings: set[str] = set()
        """Flags beyond their warning threshold, plus ``heartbeat_lost`` (a live set)."""
        self.overrides: dict[str, float] = {}
        """Sense lines driven by a fault-insertion unit (see :data:`OVERRIDES`)."""
        self.sensed: tuple[float, ...] = (math.nan,) * len(SENSES)
        """The values of :data:`SENSES` at the last scan."""
        self.contactor = "closed"
        self.last_heartbeat: float | None = None
        self.heartbeat_lost = False
        self._hb_lost_at: float | None = None
        self._open_causes_cleared: float | None = None
        self._precharge_start: float | None = None
        self.commanded_open = False
        """The site controller holds the contactor open (a dead site, a bank not yet paralleled)."""
        self._factor = {"charge": 1.0, "discharge": 1.0}
        self._factor_base = (1.0, 1.0)
        self._next_scan = start_s
        self._dirty = True
        self.next_event = math.inf
        """Earliest instant a timer of this BMS expires (inf: none running)."""

    # -- inputs -----------------------------------------------------------------------------

    def set_override(self, line: str, value: float | None) -> None:
        """Drive a sense line at ``value`` (None: release it to the pack's own signal)."""
        if line not in OVERRIDES:
            raise ValueError(f"unknown sense line {line!r}; known: {', '.join(OVERRIDES)}")
        if value is None:
            self.overrides.pop(line, None)
        else:
            if not math.isfinite(value):
                raise ValueError(f"{line}: {value!r} is not a finite value")
            self.overrides[line] = float(value)
        self._dirty = True

    def command_open(self, hold: bool) -> None:
        """The site controller (EMS) holds the contactor open, or releases it: released, the
        BMS closes it at once through its precharge (a commanded connect does not wait for
        ``reclose_after``, which is for recovering from a fault)."""
        hold = bool(hold)
        if hold == self.commanded_open:
            return
        self.commanded_open = hold
        if not hold and self.contactor == "open":
            self._open_causes_cleared = -math.inf
        self._dirty = True

    def set_enable(self, on: bool) -> None:
        """The enable input: off opens the contactor (and resets a latched precharge fault); back
        on, the BMS closes it at once through its precharge, as on a commanded connect."""
        on = bool(on)
        if on == self.enabled:
            return
        self.enabled = on
        if on and self.contactor == "open":
            self._open_causes_cleared = -math.inf
        self._dirty = True

    def set_precharge_blocked(self, blocked: bool) -> None:
        """Open (True) or restore the precharge circuit: open, no precharge can complete."""
        self.precharge_blocked = bool(blocked)
        self._dirty = True

    def heartbeat(self, t: float) -> None:
        """The inverter's heartbeat frame arrived at ``t``."""
        if self.last_heartbeat is None or t > self.last_heartbeat:
            self.last_heartbeat = t
            if not self.heartbeat_lost:
                self.next_event = min(self.next_event, t + self._hb_timeout)
            self._dirty = True

    # -- outputs ----------------------------------------------------------------------------

    def limit_factor(self, direction: str) -> float:
        """What the pack's rated current is multiplied by for the limit advertised now."""
        return self._factor[direction]

    @property
    def closed(self) -> bool:
        return self.contactor == "closed"

    @property
    def overrides_changed(self) -> bool:
        """A sense line was driven or released, or a heartbeat came, since the last scan."""
        return self._dirty

    @property
    def contactor_state(self) -> float:
        """The contactor state as a CAN status signal numbers it (see CONTACTOR_STATES)."""
        return float(CONTACTOR_STATES.index(self.contactor))

    # -- time -------------------------------------------------------------------------------

    def update(
        self,
        t: float,
        sense: Callable[[], tuple[float, float, float]],
        soc_pct: float,
    ) -> bool:
        """Bring the BMS to ``t``; returns whether its limits or contactor changed.

        ``sense`` gives the pack's own (cell voltage, temperature, current A + charging); it is
        only called on a scan. Between scans and timers nothing can change, and nothing is done.
        """
        scan = self._dirty or t + EPS_S >= self._next_scan
        if not scan and t + EPS_S < self.next_event:
            return False
        if scan:
            self._scan(t, sense(), soc_pct)
        return self._evaluate(t)

    def _scan(self, t: float, pack: tuple[float, float, float], soc_pct: float) -> None:
        cell_v, temperature, current = pack
        ovr = self.overrides
        tap = ovr.get("cell_voltage")
        cell_max = cell_v if tap is None or tap < cell_v else tap
        cell_min = cell_v if tap is None or tap > cell_v else tap
        temperature = ovr.get("temperature", temperature)
        current = ovr.get("current", current)
        self.sensed = (
            cell_max,
            cell_min,
            temperature,
            current if current > 0.0 else 0.0,
            -current if current < 0.0 else 0.0,
        )
        s = self.settings
        self._factor_base = (
            s.soc_charge(soc_pct) * s.temperature_charge(temperature),
            s.soc_discharge(soc_pct) * s.temperature_discharge(temperature),
        )
        self._next_scan = t + s.scan_s
        self._dirty = False

    def _evaluate(self, t: float) -> bool:
        """Protections, heartbeat and contactor at ``t`` on the last scanned values."""
        values = self.sensed
        nxt = math.inf
        want_open = self.commanded_open or not self.enabled
        blocked_charge = blocked_discharge = False
        alarms, warnings = self.alarms, self.warnings
        alarms.clear()
        warnings.clear()
        for i, p in enumerate(self._protections):
            v = values[self._sense_index[i]]
            above = p.above
            at = self._alarm_at[i]
            if at is not None and ((v < p.release) if above else (v > p.release)):
                self._alarm_at[i] = at = None
                self._since[i] = None
                self._emit(f"{self.name}.release:{p.name}")
            if at is None:
                if (v >= p.alarm) if above else (v <= p.alarm):
                    since = self._since[i]
                    if since is None:
                        self._since[i] = since = t
                    due = since + self._delays[i]
                    if t + EPS_S >= due:
                        self._alarm_at[i] = at = due
                        self._emit(f"{self.name}.alarm:{p.name}")
                    elif due < nxt:
                        nxt = due
                else:
                    self._since[i] = None
            if at is not None:
                alarms.add(p.flag)
                warnings.add(p.flag)
                if "charge" in p.blocks:
                    blocked_charge = True
                if "discharge" in p.blocks:
                    blocked_discharge = True
                after = p.open_contactor_after_s
                if after is not None:
                    if t + EPS_S >= at + after:
                        want_open = True
                    elif at + after < nxt:
                        nxt = at + after
            elif (v >= p.warning) if above else (v <= p.warning):
                warnings.add(p.flag)
        # Heartbeat supervision: armed by the first heartbeat, never by a silent bus.
        last = self.last_heartbeat
        if last is not None and not self.ignore_heartbeat_loss:
            deadline = last + self._hb_timeout
            if t + EPS_S >= deadline:
                if not self.heartbeat_lost:
                    self.heartbeat_lost = True
                    self._hb_lost_at = deadline
                    self._emit(f"{self.name}.{HEARTBEAT_LOST}")
                blocked_charge = blocked_discharge = True
                warnings.add(HEARTBEAT_LOST)
                after = self.settings.heartbeat_open_contactor_after_s
                if after is not None:
                    if t + EPS_S >= deadline + after:
                        want_open = True
                    elif deadline + after < nxt:
                        nxt = deadline + after
            else:
                if self.heartbeat_lost:
                    self.heartbeat_lost = False
                    self._hb_lost_at = None
                    self._emit(f"{self.name}.heartbeat_back")
                if deadline < nxt:
                    nxt = deadline
        was = self.contactor
        nxt = min(nxt, self._contactor(t, want_open))
        if self.contactor == "fault":
            alarms.add(PRECHARGE_FAULT)
        closed = self.contactor == "closed"
        base = self._factor_base
        charge = base[0] if closed and not blocked_charge else 0.0
        discharge = base[1] if closed and not blocked_discharge else 0.0
        changed = self.contactor != was or (charge, discharge) != (
            self._factor["charge"],
            self._factor["discharge"],
        )
        self._factor["charge"], self._factor["discharge"] = charge, discharge
        self.next_event = nxt
        return changed

    def _contactor(self, t: float, want_open: bool) -> float:
        """Run the contactor's state machine; returns its next timer instant (inf: none)."""
        s = self.settings
        state = self.contactor
        if want_open:
            self._open_causes_cleared = None
            if state in ("closed", "precharging") or (state == "fault" and not self.enabled):
                self._set_contactor("open")  # a latched fault is reset by the enable input only
            return math.inf
        if state == "open":
            cleared = self._open_causes_cleared
            if cleared is None:
                self._open_causes_cleared = cleared = t
            if t + EPS_S < cleared + s.reclose_after_s:
                return cleared + s.reclose_after_s
            self._open_causes_cleared = None
            self._precharge_start = t
            self._set_contactor("precharging")
            state = "precharging"
        if state == "precharging":
            start = self._precharge_start if self._precharge_start is not None else t
            if self.precharge_blocked or s.precharge_s > s.precharge_timeout_s:
                give_up = start + self._precharge_timeout
                if t + EPS_S >= give_up:
                    self._set_contactor("fault")  # latched: the precharge circuit failed
                    return math.inf
                return give_up
            if t + EPS_S >= start + s.precharge_s:
                self._set_contactor("closed")
                return math.inf
            return start + s.precharge_s
        return math.inf

    def _set_contactor(self, state: str) -> None:
        self.contactor = state
        self._emit(f"{self.name}.contactor:{state}")
