"""A home's PV: an array under an irradiance profile and its grid-following PV inverter.

The array (IEC 61215 rating at standard test conditions) delivers

    P_dc = rating * G / G_stc * (1 + gamma * (T_cell - T_stc)),
    T_cell = T_air + (NOCT - T_noct_air) * G / G_noct,

with G the plane-of-array irradiance (the data file's profile against site time, or the level a
PV simulator instrument programs), gamma the power temperature coefficient and NOCT the nominal
operating cell temperature: the usual first-order model of crystalline silicon. The numbers are
product data in data/pv.yaml, not code.

The PV inverter tracks the array's maximum power point (no I-V curve is modelled: the simulator
sets the curve's level), converts at a flat efficiency and clips at its AC rating; a curtailment
limit caps it further. It is grid-following and follows the same enter-service rules as the
battery units (the profile's window, delay and ramp): it energizes only on a live grid, ceases
``anti_islanding_detection`` after an island forms, and after a return waits the enter-service
delay inside the window, then ramps its output from zero over the ramp period. It carries no
trip settings of its own (the trip-settings scenarios test the battery units). It never feeds
an intentional island held by grid-forming units either: their load sharing balances battery
units only, so PV there is curtailed to zero once its detection time has passed (until then its
output is not in the held island's balance: a limitation of this model; PV re-enable after a
black start is the EMS's step, not modelled here). Like them it
keeps every timer as the instant its condition began and tells the plant when the next expires
(:meth:`PvInverter.next_event_time`), so it ceases and enters service at exact instants.

Power is AC, W, positive = export (a PV inverter never imports).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from harness.config.errors import ConfigErrors
from harness.config.units import UnitError, to_unit

if TYPE_CHECKING:
    from virtual_devices.plant.params import EnterServiceParams

DEFAULT_PV = Path(__file__).resolve().parent.parent / "data" / "pv.yaml"
"""The PV physics shipped with the virtual devices."""

IRRADIANCE = "W/m^2"


@dataclass(frozen=True)
class IrradianceProfile:
    """Irradiance, W/m^2, against site time, s: linear between points, the ends held."""

    times_s: tuple[float, ...]
    irradiance_w_m2: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.times_s or len(self.times_s) != len(self.irradiance_w_m2):
            raise ValueError("an irradiance profile needs [time_s, W/m^2] points")
        for i in range(1, len(self.times_s)):
            if self.times_s[i] <= self.times_s[i - 1]:
                raise ValueError(f"profile times must rise strictly (point {i})")
        if any(g < 0 or not math.isfinite(g) for g in self.irradiance_w_m2):
            raise ValueError("profile irradiance must be finite and >= 0 W/m^2")

    def __call__(self, t: float) -> float:
        x = self.times_s
        y = self.irradiance_w_m2
        if t <= x[0]:
            return y[0]
        if t >= x[-1]:
            return y[-1]
        i = bisect.bisect_right(x, t) - 1
        return y[i] + (y[i + 1] - y[i]) * (t - x[i]) / (x[i + 1] - x[i])

    @classmethod
    def constant(cls, irradiance_w_m2: float) -> IrradianceProfile:
        return cls((0.0,), (float(irradiance_w_m2),))


@dataclass(frozen=True)
class PvSettings:
    """The module and inverter physics of data/pv.yaml (see the module docstring)."""

    stc_irradiance_w_m2: float
    stc_cell_c: float
    temperature_coefficient_pct_per_c: float
    noct_c: float
    noct_irradiance_w_m2: float
    noct_ambient_c: float
    efficiency: float
    anti_islanding_detection_s: float
    profile: IrradianceProfile


def _get(path: Path, data: Any, keys: tuple[str, ...], unit: str, bare: bool = False) -> float:
    where = ".".join(keys)
    node = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ConfigErrors.single(path, f"missing {where!r} (a value in {unit})", None, where)
        node = node[key]
    try:
        return to_unit(node, unit, require_unit=not bare)
    except UnitError as exc:
        raise ConfigErrors.single(path, str(exc), None, where) from None


def _profile(path: Path, data: Any) -> IrradianceProfile:
    points = data.get("profile")
    if not isinstance(points, list) or not points:
        raise ConfigErrors.single(
            path, "'profile' must list [time_s, W/m^2] points", None, "profile"
        )
    times: list[float] = []
    levels: list[float] = []
    for i, point in enumerate(points):
        if not (isinstance(point, list) and len(point) == 2):
            raise ConfigErrors.single(
                path, f"point {i} must be [time_s, W/m^2], got {point!r}", None, f"profile[{i}]"
            )
        times.append(float(point[0]))
        levels.append(float(point[1]))
    try:
        return IrradianceProfile(tuple(times), tuple(levels))
    except ValueError as exc:
        raise ConfigErrors.single(path, str(exc), None, "profile") from None


@lru_cache(maxsize=4)
def load_pv_settings(path: Path = DEFAULT_PV) -> PvSettings:
    """Read a PV data file; an error names the file and the field."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigErrors.single(path, "expected a mapping with module, inverter and profile")
    efficiency = _get(path, data, ("inverter", "efficiency"), "", bare=True)
    if not 0 < efficiency <= 1:
        raise ConfigErrors.single(
            path, f"must be in (0, 1], not {efficiency:g}", None, "inverter.efficiency"
        )
    settings = PvSettings(
        stc_irradiance_w_m2=_get(path, data, ("module", "stc_irradiance"), IRRADIANCE),
        stc_cell_c=_get(path, data, ("module", "stc_cell_temperature"), "degC"),
        temperature_coefficient_pct_per_c=_get(
            path, data, ("module", "temperature_coefficient"), "", bare=True
        ),
        noct_c=_get(path, data, ("module", "noct"), "degC"),
        noct_irradiance_w_m2=_get(path, data, ("module", "noct_irradiance"), IRRADIANCE),
        noct_ambient_c=_get(path, data, ("module", "noct_ambient"), "degC"),
        efficiency=efficiency,
        anti_islanding_detection_s=_get(path, data, ("inverter", "anti_islanding_detection"), "s"),
        profile=_profile(path, data),
    )
    for key in ("stc_irradiance_w_m2", "noct_irradiance_w_m2"):
        if getattr(settings, key) <= 0:
            raise ConfigErrors.single(path, f"{key} must be > 0", None, "module")
    return settings


@dataclass
class PvParams:
    """One home's PV: the array's DC rating at STC, the PV inverter's AC rating, the air the
    array stands in, and the physics (data/pv.yaml unless a test gives its own)."""

    array_rating_w: float
    inverter_rating_w: float
    ambient_c: float = 25.0
    settings: PvSettings = field(default_factory=load_pv_settings)

    def __post_init__(self) -> None:
        if not (self.array_rating_w > 0 and math.isfinite(self.array_rating_w)):
            raise ValueError(f"PV array rating must be > 0 W: {self.array_rating_w}")
        if not (self.inverter_rating_w > 0 and math.isfinite(self.inverter_rating_w)):
            raise ValueError(f"PV inverter rating must be > 0 W: {self.inverter_rating_w}")


class PvArray:
    """The array's maximum DC power at an irradiance and the air temperature."""

    def __init__(self, params: PvParams) -> None:
        self.params = params
        self.ambient_c = params.ambient_c
        self.irradiance_override: float | None = None
        """The level a PV simulator programmed, W/m^2 (None: the profile applies)."""
        s = params.settings
        self._per_w_m2 = params.array_rating_w / s.stc_irradiance_w_m2
        self._gamma = s.temperature_coefficient_pct_per_c / 100.0
        self._heat = (s.noct_c - s.noct_ambient_c) / s.noct_irradiance_w_m2

    def irradiance_w_m2(self, t: float) -> float:
        """Plane-of-array irradiance at site time ``t``: the simulator's level, or the profile."""
        g = self.irradiance_override
        return self.params.settings.profile(t) if g is None else g

    def cell_temperature_c(self, irradiance_w_m2: float) -> float:
        return self.ambient_c + self._heat * irradiance_w_m2

    def dc_power_w(self, irradiance_w_m2: float) -> float:
        """Maximum-power-point DC power, W, at ``irradiance_w_m2`` (never negative)."""
        if irradiance_w_m2 <= 0.0:
            return 0.0
        derate = 1.0 + self._gamma * (
            self.cell_temperature_c(irradiance_w_m2) - self.params.settings.stc_cell_c
        )
        return max(0.0, self._per_w_m2 * irradiance_w_m2 * derate)


def _ignore(_event: str) -> None:
    """Default event sink outside a plant."""


class PvInverter:
    """A home's grid-following PV inverter; see the module docstring."""

    def __init__(
        self,
        params: PvParams,
        enter_service: EnterServiceParams,
        nominal_voltage_v: float,
        name: str = "pv",
        emit: Callable[[str], None] = _ignore,
    ) -> None:
        self.params = params
        self.name = name
        self.array = PvArray(params)
        self._emit = emit
        self._es = enter_service
        self._vn = nominal_voltage_v
        self._eff = params.settings.efficiency
        self._rated = params.inverter_rating_w
        self._island_clearing = params.settings.anti_islanding_detection_s
        self.limit_w: float | None = None
        """Curtailment: the most it may export, W (None: its rating)."""
        self._on = False
        self._island_since: float | None = None
        self._es_since: float | None = None
        self._es_at = -math.inf
        self._ramp_end = -math.inf
        self._power_w = 0.0
        self._bus_v = 0.0
        self._irradiance = 0.0

    # -- readings ----------------------------------------------------------------------------

    @property
    def energizing(self) -> bool:
        return self._on

    @property
    def power_w(self) -> float:
        """AC power exported, W."""
        return self._power_w

    @property
    def dc_power_w(self) -> float:
        """DC power taken from the array, W."""
        return self._power_w / self._eff

    @property
    def available_w(self) -> float:
        """What the array would give through the inverter now, W AC, before clipping."""
        return self.array.dc_power_w(self._irradiance) * self._eff

    @property
    def irradiance_w_m2(self) -> float:
        """Irradiance at the last update, W/m^2."""
        return self._irradiance

    @property
    def current_a(self) -> float:
        if not self._on or self._bus_v <= 1e-6:
            return 0.0
        return self._power_w / self._bus_v

    # -- plant interface ---------------------------------------------------------------------

    def start_in_service(self) -> None:
        """Energizing at once, already in service: the plant's start on a healthy grid."""
        self._on = True
        self._es_since = None
        self._island_since = None
        self._ramp_end = -math.inf

    def in_service_window(self, bus_v: float, bus_hz: float) -> bool:
        es = self._es
        v_pu = bus_v / self._vn
        return es.v_low_pu <= v_pu <= es.v_high_pu and es.f_low_hz <= bus_hz <= es.f_high_hz

    def next_event_time(self, t: float) -> float:
        """Earliest instant after ``t`` a timer of this unit expires (inf: none)."""
        nxt = math.inf
        if self._on:
            if self._island_since is not None:
                nxt = self._island_since + self._island_clearing
            if t < self._ramp_end < nxt:
                nxt = self._ramp_end
        elif self._es_since is not None:
            nxt = self._es_since + self._es.delay_s
        return nxt if nxt > t else math.inf

    def update(self, t: float, bus_v: float, bus_hz: float, grid_connected: bool) -> None:
        """Anti-islanding and enter-service logic for the bus state at ``t``."""
        self._bus_v = bus_v
        if self._on:
            if grid_connected:
                self._island_since = None
            else:
                if self._island_since is None:
                    self._island_since = t
                if t >= self._island_since + self._island_clearing:
                    self._on = False
                    self._power_w = 0.0
                    self._island_since = None
                    self._ramp_end = -math.inf
                    self._emit(f"{self.name}.cease:island")
        if not self._on:
            if grid_connected and self.in_service_window(bus_v, bus_hz):
                if self._es_since is None:
                    self._es_since = t
                if t >= self._es_since + self._es.delay_s:
                    self._on = True
                    self._es_since = None
                    self._es_at = t
                    self._ramp_end = t + self._es.ramp_s
                    self._emit(f"{self.name}.enter_service")
            else:
                self._es_since = None

    def update_power(self, t: float, dt: float) -> None:
        """Output for the interval that starts at ``t``: the array's power at ``t`` through the
        inverter, clipped at the rating and the curtailment, scaled during the enter-service
        ramp. (The irradiance profile moves over minutes: holding it over a step is exact
        enough at the plant's steps of at most a second.)"""
        self._irradiance = self.array.irradiance_w_m2(t)
        if not self._on:
            self._power_w = 0.0
            return
        p = self.array.dc_power_w(self._irradiance) * self._eff
        cap = self._rated if self.limit_w is None else min(self._rated, self.limit_w)
        if p > cap:
            p = cap
        if t < self._ramp_end:
            p *= (t - self._es_at) / (self._ramp_end - self._es_at)
        self._power_w = p


def pv_channels(units: list[PvInverter]) -> dict[str, Callable[[], float]]:
    """The analyzer's channels of the PV inverters: the site's total AC power and current
    (``pv.power``, ``pv.current``, apart from the battery units' ``inverters.*``) and each
    unit's (``<node>.pv.power``, ``.current``, ``.energizing``)."""
    channels: dict[str, Callable[[], float]] = {
        "pv.power": lambda: sum(u.power_w for u in units),
        "pv.current": lambda: sum(u.current_a for u in units),
    }
    for unit in units:
        channels.update(_unit_channels(unit))
    return channels


def _unit_channels(unit: PvInverter) -> dict[str, Callable[[], float]]:
    return {
        f"{unit.name}.power": lambda: unit.power_w,
        f"{unit.name}.current": lambda: unit.current_a,
        f"{unit.name}.energizing": lambda: 1.0 if unit.energizing else 0.0,
    }
