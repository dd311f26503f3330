"""Parameters of the virtual EMS's energy modes (self-consumption, time-of-use shift) and of its
load shedding on an island, read from ``data/ems_modes.yaml``.

Kept apart from the controller (ems.py) and its black-start data (ems_params.py) so the modes'
numbers are data, checked field by field (file, field, what was expected) before a plant is
built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config.units import UnitError, to_unit

DEFAULT_MODES = Path(__file__).resolve().parent.parent / "data" / "ems_modes.yaml"
"""The energy modes shipped with the virtual EMS."""
ACTIONS: tuple[str, ...] = ("charge", "discharge", "self_consumption", "idle")
"""What a tariff period may ask of the units."""
SHEDDABLE: tuple[str, ...] = ("deferrable", "essential")
"""Priorities the EMS may shed; critical loads are never shed."""
DAY_S = 86400.0


@dataclass(frozen=True)
class TouPeriod:
    """A tariff period: from ``start_s`` to ``end_s`` seconds of the day (wrapping midnight when
    ``end_s`` <= ``start_s``); ``fraction`` of each unit's rating for charge / discharge."""

    name: str
    start_s: float
    end_s: float
    action: str
    fraction: float = 0.0

    def covers(self, second_of_day: float) -> bool:
        if self.start_s < self.end_s:
            return self.start_s <= second_of_day < self.end_s
        return second_of_day >= self.start_s or second_of_day < self.end_s


@dataclass(frozen=True)
class TouParams:
    """The tariff day: the clock at simulated time 0, the periods, the action outside them."""

    day_starts_at_s: float
    periods: tuple[TouPeriod, ...]
    otherwise: str

    def period_at(self, t: float) -> TouPeriod | None:
        """The period in force at simulated time ``t`` (the first listed that covers it)."""
        second = (self.day_starts_at_s + t) % DAY_S
        for period in self.periods:
            if period.covers(second):
                return period
        return None


@dataclass(frozen=True)
class SheddingParams:
    """When an island sheds (SoC below ``reserve_pct``, forming units above ``overload`` of what
    they can deliver) and restores (SoC at ``restore_pct``, load at most ``restore_load``),
    priorities in ``order``, at least ``hold_s`` between actions."""

    order: tuple[str, ...]
    reserve_pct: float
    restore_pct: float
    overload: float
    restore_load: float
    hold_s: float


@dataclass(frozen=True)
class EmsModesParams:
    """Everything ``data/ems_modes.yaml`` says: cycle, SoC band, modes, shedding.

    ``dispatch_ramp_pct_s`` is how fast DISPATCH moves the units' total, in % of their summed
    rating per second (infinite: all at once, the ``ramp_uncoordinated`` defect)."""

    cycle_s: float
    soc_min_pct: float
    soc_max_pct: float
    deadband_w: float
    tou: TouParams
    shedding: SheddingParams
    dispatch_ramp_pct_s: float = 20.0
    dispatch_cycle_s: float = 0.1


def _clock(value: Any, where: str, path: Path) -> float:
    """``"hh:mm"`` as seconds of the day."""
    text = str(value)
    try:
        hours, minutes = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"{path}: field '{where}': expected \"hh:mm\", not {value!r}") from None
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or hours * 60 + minutes > 24 * 60:
        raise ValueError(f"{path}: field '{where}': {text} is no time of day")
    return float(hours * 3600 + minutes * 60)


def _qty(data: Any, key: str, unit: str, where: str, path: Path) -> float:
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"{path}: field '{where}{key}' is required (a value in {unit})")
    try:
        value = to_unit(data[key], unit)
    except UnitError as exc:
        raise ValueError(f"{path}: field '{where}{key}': {exc}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{path}: field '{where}{key}': must be >= 0 {unit}")
    return value


def _tou(data: Any, path: Path) -> TouParams:
    if not isinstance(data, dict) or not isinstance(data.get("periods"), list):
        raise ValueError(f"{path}: field 'tou': expected day_starts_at, periods, otherwise")
    periods = []
    for i, body in enumerate(data["periods"]):
        where = f"tou.periods[{i}]"
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            raise ValueError(f"{path}: field '{where}.action': one of {', '.join(ACTIONS)}")
        action = str(body["action"])
        fraction = 0.0
        if action in ("charge", "discharge"):
            fraction = _qty(body, "power", "%", f"{where}.", path) / 100.0
            if fraction > 1.0:
                raise ValueError(f"{path}: field '{where}.power': at most 100 % of the rating")
        periods.append(
            TouPeriod(
                str(body.get("name", f"period-{i}")),
                _clock(body.get("from"), f"{where}.from", path),
                _clock(body.get("to"), f"{where}.to", path),
                action,
                fraction,
            )
        )
    otherwise = data.get("otherwise")
    if otherwise not in ("self_consumption", "idle"):
        raise ValueError(f"{path}: field 'tou.otherwise': self_consumption or idle")
    start = _clock(data.get("day_starts_at"), "tou.day_starts_at", path)
    return TouParams(start, tuple(periods), str(otherwise))


def _shedding(data: Any, path: Path) -> SheddingParams:
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, list) or not order or any(p not in SHEDDABLE for p in order):
        raise ValueError(
            f"{path}: field 'shedding.order': a list of {', '.join(SHEDDABLE)} "
            "(critical loads are never shed)"
        )
    if len(set(order)) != len(order):
        raise ValueError(f"{path}: field 'shedding.order': a priority repeats")
    params = SheddingParams(
        tuple(str(p) for p in order),
        _qty(data, "reserve", "%", "shedding.", path),
        _qty(data, "restore", "%", "shedding.", path),
        _qty(data, "overload", "%", "shedding.", path) / 100.0,
        _qty(data, "restore_load", "%", "shedding.", path) / 100.0,
        _qty(data, "hold", "s", "shedding.", path),
    )
    if params.restore_pct <= params.reserve_pct:
        raise ValueError(f"{path}: field 'shedding.restore': above 'reserve' (hysteresis)")
    if params.restore_load >= params.overload:
        raise ValueError(f"{path}: field 'shedding.restore_load': below 'overload' (hysteresis)")
    return params


def load_ems_modes(path: Path = DEFAULT_MODES) -> EmsModesParams:
    """Read the EMS's modes data file; errors name the file and the field."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with cycle, soc_band, modes and shedding")
    cycle = _qty(data, "cycle", "s", "", path)
    if cycle <= 0:
        raise ValueError(f"{path}: field 'cycle': must be > 0 s")
    band = data.get("soc_band")
    low = _qty(band, "min", "%", "soc_band.", path)
    high = _qty(band, "max", "%", "soc_band.", path)
    if not low < high <= 100.0:
        raise ValueError(f"{path}: field 'soc_band': min < max <= 100 %")
    dispatch = data.get("dispatch")
    ramp = _qty(dispatch, "ramp", "%/s", "dispatch.", path)
    dispatch_cycle = _qty(dispatch, "cycle", "s", "dispatch.", path)
    if ramp <= 0 or dispatch_cycle <= 0:
        raise ValueError(f"{path}: field 'dispatch': ramp and cycle must be > 0")
    return EmsModesParams(
        cycle_s=cycle,
        soc_min_pct=low,
        soc_max_pct=high,
        deadband_w=_qty(data.get("self_consumption"), "deadband", "W", "self_consumption.", path),
        tou=_tou(data.get("tou"), path),
        shedding=_shedding(data.get("shedding"), path),
        dispatch_ramp_pct_s=ramp,
        dispatch_cycle_s=dispatch_cycle,
    )
