"""Parameters of the virtual EMS: its black-start sequence (data/ems_black_start.yaml) and the
defects that make it run that sequence wrong.

Kept apart from :mod:`virtual_devices.plant.ems` so the plant's parameters can name them without
importing the controller, and so a bad data file is reported (file, field, what was expected)
before any plant is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from harness.config.units import UnitError, to_unit
from virtual_devices.plant.ems_modes import EmsModesParams, load_ems_modes

DEFAULT_EMS_SETTINGS = Path(__file__).resolve().parent.parent / "data" / "ems_black_start.yaml"
"""The black-start behaviour shipped with the virtual EMS."""
DEFAULT_PEAK_SETTINGS = Path(__file__).resolve().parent.parent / "data" / "ems_peak_shaving.yaml"
"""The peak-shaving behaviour shipped with the virtual EMS."""

STEPS: tuple[str, ...] = (
    "bms_wake",
    "heartbeat",
    "negative_contactor",
    "precharge",
    "positive_contactor",
    "grid_forming_start",
    "vf_check",
    "pick_up_critical",
    "pick_up_essential",
    "pick_up_deferrable",
    "parallel_banks",
    "pv_enable",
)
"""Every step the EMS knows how to take (what each does is in ems.py; the order is data)."""


@dataclass(frozen=True)
class StepParams:
    """One step of the sequence: at least ``min_s`` long, given up after ``timeout_s``."""

    name: str
    min_s: float
    timeout_s: float


@dataclass(frozen=True)
class PeakShavingParams:
    """Peak shaving: the import threshold at start, the control cycle and deadband. Defect:
    ``offset_w`` is added to whatever threshold is written (the EMS holds the import there)."""

    threshold_w: float = 5000.0
    cycle_s: float = 1.0
    deadband_w: float = 50.0
    offset_w: float = 0.0

    def __post_init__(self) -> None:
        if not (self.cycle_s > 0 and math.isfinite(self.cycle_s)):
            raise ValueError(f"peak shaving: cycle must be > 0 s: {self.cycle_s}")
        if self.threshold_w < 0 or self.deadband_w < 0:
            raise ValueError("peak shaving: threshold and deadband must be >= 0 W")


@dataclass(frozen=True)
class EmsParams:
    """The EMS's black start as it runs it: steps in order, control cycle, soft start, windows.

    ``voltage_window_pu`` and ``frequency_tolerance_hz`` are the V/f check's window (around the
    site's nominal); ``surge_margin`` the fraction of the forming units' ratings the picked-up
    loads may reach. Defects: ``order`` is the order the EMS really takes the steps it names (they
    keep the places they have between them; the other steps stay where they are); ``delays_s``
    adds seconds to a step.
    """

    steps: tuple[StepParams, ...]
    scan_s: float = 0.05
    soft_start_s: float = 1.0
    voltage_window_pu: tuple[float, float] = (0.95, 1.05)
    frequency_tolerance_hz: float = 0.5
    surge_margin: float = 0.8
    order: tuple[str, ...] | None = None
    delays_s: dict[str, float] = field(default_factory=dict)
    peak: PeakShavingParams = field(default_factory=PeakShavingParams)
    modes: EmsModesParams = field(default_factory=load_ems_modes)
    """Self-consumption, TOU, the SoC band and island load shedding (data/ems_modes.yaml)."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        for name in (*names, *(self.order or ()), *self.delays_s):
            if name not in STEPS:
                raise ValueError(f"unknown EMS step {name!r}; known: {', '.join(STEPS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"EMS steps repeat: {names}")
        if self.order is not None:
            missing = [n for n in self.order if n not in names]
            if missing or len(set(self.order)) != len(self.order) or len(self.order) < 2:
                raise ValueError(f"order {list(self.order)}: two or more different steps")
        if not (self.scan_s > 0 and math.isfinite(self.scan_s)):
            raise ValueError(f"EMS scan must be > 0 s: {self.scan_s}")

    @property
    def run_order(self) -> tuple[StepParams, ...]:
        """The steps in the order the EMS actually takes them (its order defect applied), each
        with its defect delay added to its minimum time."""
        order = list(self.steps)
        if self.order is not None:
            by_name = {s.name: s for s in order}
            places = sorted(i for i, s in enumerate(order) if s.name in self.order)
            for place, name in zip(places, self.order, strict=True):
                order[place] = by_name[name]
        return tuple(
            replace(s, min_s=s.min_s + self.delays_s.get(s.name, 0.0), timeout_s=s.timeout_s)
            for s in order
        )

    def with_defects(self, order: tuple[str, ...] | None, delays_s: dict[str, float]) -> EmsParams:
        return replace(self, order=order, delays_s=dict(delays_s))

    def with_peak_offset(self, offset_w: float) -> EmsParams:
        """Peak shaving that holds the import ``offset_w`` above the threshold written."""
        return replace(self, peak=replace(self.peak, offset_w=offset_w))


def load_peak_shaving_settings(path: Path = DEFAULT_PEAK_SETTINGS) -> PeakShavingParams:
    """Read the EMS's peak-shaving data file; errors name the file and the field."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with threshold, cycle and deadband")
    values = {}
    for key, unit in (("threshold", "W"), ("cycle", "s"), ("deadband", "W")):
        try:
            values[key] = to_unit(data[key], unit)
        except (KeyError, UnitError) as exc:
            raise ValueError(f"{path}: field '{key}': expected a value in {unit} ({exc})") from None
    try:
        return PeakShavingParams(values["threshold"], values["cycle"], values["deadband"])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _seconds(value: Any, where: str, path: Path) -> float:
    try:
        seconds = to_unit(value, "s")
    except UnitError as exc:
        raise ValueError(f"{path}: field '{where}': {exc}") from None
    if seconds < 0:
        raise ValueError(f"{path}: field '{where}': {value!r} must be >= 0 s")
    return seconds


def load_ems_settings(path: Path = DEFAULT_EMS_SETTINGS) -> EmsParams:
    """Read the EMS's black-start data file; errors name the file and the field."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ValueError(f"{path}: expected a mapping with a 'steps' list")
    steps = []
    for i, body in enumerate(data["steps"]):
        where = f"steps[{i}]"
        if not isinstance(body, dict) or set(body) != {"name", "min", "timeout"}:
            raise ValueError(f"{path}: field '{where}': expected {{name, min, timeout}}")
        steps.append(
            StepParams(
                str(body["name"]),
                _seconds(body["min"], f"{where}.min", path),
                _seconds(body["timeout"], f"{where}.timeout", path),
            )
        )
    gf = data.get("grid_forming", {})
    loads = data.get("loads", {})
    try:
        window = tuple(to_unit(v, "pu") for v in gf["voltage_window"])
        tolerance = to_unit(gf["frequency_tolerance"], "Hz")
        margin = float(loads["surge_margin"])
    except (KeyError, TypeError, UnitError) as exc:
        raise ValueError(
            f"{path}: grid_forming.voltage_window, grid_forming.frequency_tolerance and "
            f"loads.surge_margin are required with their units: {exc}"
        ) from None
    if len(window) != 2 or not window[0] < window[1]:
        raise ValueError(f"{path}: field 'grid_forming.voltage_window': [low pu, high pu]")
    try:
        return EmsParams(
            steps=tuple(steps),
            scan_s=_seconds(data.get("scan"), "scan", path),
            soft_start_s=_seconds(gf.get("soft_start"), "grid_forming.soft_start", path),
            voltage_window_pu=(window[0], window[1]),
            frequency_tolerance_hz=tolerance,
            surge_margin=margin,
            peak=load_peak_shaving_settings(),
            modes=load_ems_modes(),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
