"""How long a grid-following inverter's anti-islanding takes, given the island it is in.

An active frequency-drift method (data/anti_islanding.yaml explains the curve) is slowest for an
island whose load cancels its drift, its non-detection zone (NDZ), and fast away from it. The
inverter asks :meth:`IslandDetection.detection_s` with the island's frequency offset from nominal
as it measures it, every time the bus moves, so its deadline follows the island as it settles.
The numbers are product data of the virtual unit, kept out of code
(:func:`load_island_detection`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import ConfigErrors
from harness.config.units import UnitError, to_unit

DEFAULT_DETECTION = Path(__file__).resolve().parent.parent / "data" / "anti_islanding.yaml"
"""The anti-islanding curve shipped with the virtual devices."""


@dataclass(frozen=True)
class DetectionCurve:
    """The shape of the curve: ``center_hz`` and ``width_hz`` of the NDZ (frequency offset from
    nominal), ``fastest`` the detection time far from it as a fraction of the slowest."""

    center_hz: float
    width_hz: float
    fastest: float

    def __post_init__(self) -> None:
        if not (self.width_hz > 0 and math.isfinite(self.center_hz)):
            raise ValueError(f"NDZ needs a finite center and a width > 0 Hz: {self!r}")
        if not 0 < self.fastest <= 1:
            raise ValueError(f"fastest must be in (0, 1] of the slowest: {self.fastest}")


@dataclass(frozen=True)
class IslandDetection:
    """One unit's detection: the curve, its slowest time ``slowest_s`` at the NDZ's center, and
    where that center lies (``center_hz``, the curve's unless a defect moved it)."""

    curve: DetectionCurve
    slowest_s: float
    center_hz: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slowest_s) and self.slowest_s >= 0):
            raise ValueError(f"slowest detection time must be >= 0 s: {self.slowest_s}")

    @property
    def ndz_center_hz(self) -> float:
        return self.curve.center_hz if self.center_hz is None else self.center_hz

    def detection_s(self, offset_hz: float) -> float:
        """Detection time on an island ``offset_hz`` off nominal frequency, s."""
        curve = self.curve
        z = (offset_hz - self.ndz_center_hz) / curve.width_hz
        slow = math.exp(-0.5 * z * z)
        return self.slowest_s * (curve.fastest + (1.0 - curve.fastest) * slow)


def _value(path: Path, data: dict[str, Any], keys: tuple[str, ...], unit: str) -> float:
    field = ".".join(keys)
    node: Any = data
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ConfigErrors.single(path, f"missing {field!r} (a value in {unit})", None, field)
        node = node[key]
    try:
        return to_unit(node, unit)
    except UnitError as exc:
        raise ConfigErrors.single(path, str(exc), None, field) from None


@lru_cache(maxsize=4)
def load_island_detection(path: Path = DEFAULT_DETECTION) -> DetectionCurve:
    """Read an anti-islanding data file; an error names the file and the field."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigErrors.single(path, "expected a mapping with non_detection_zone and fastest")
    center = _value(path, data, ("non_detection_zone", "center"), "Hz")
    width = _value(path, data, ("non_detection_zone", "width"), "Hz")
    fastest = _value(path, data, ("fastest",), "%")
    if width <= 0:
        raise ConfigErrors.single(
            path, f"must be > 0 Hz, not {width:g}", None, "non_detection_zone.width"
        )
    if not 0 < fastest <= 100:
        raise ConfigErrors.single(path, f"must be in (0, 100] %, not {fastest:g}", None, "fastest")
    return DetectionCurve(center, width, fastest / 100.0)
