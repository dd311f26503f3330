"""How the virtual inverter operates in normal service: its setpoint ramp and SoC reserve.

The values are product data of the virtual unit (data/inverter_operation.yaml), kept out of code
so that the contract's limits and the unit's behaviour can be read side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import ConfigErrors
from harness.config.units import UnitError, to_unit

DEFAULT_OPERATION = Path(__file__).resolve().parent.parent / "data" / "inverter_operation.yaml"
"""The operation settings shipped with the virtual devices."""


@dataclass(frozen=True)
class OperationSettings:
    """``setpoint_ramp_pct_per_s``: % of rated power per second; ``soc_reserve_pct``: (min, max)."""

    setpoint_ramp_pct_per_s: float
    soc_reserve_pct: tuple[float, float]

    def ramp_w_per_s(self, rated_power_w: float) -> float:
        return self.setpoint_ramp_pct_per_s / 100.0 * rated_power_w


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
def load_operation_settings(path: Path = DEFAULT_OPERATION) -> OperationSettings:
    """Read an operation data file; an error names the file and the field."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigErrors.single(path, "expected a mapping with setpoint_ramp and soc_reserve")
    ramp = _value(path, data, ("setpoint_ramp",), "%/s")
    if ramp <= 0:
        raise ConfigErrors.single(path, f"must be > 0 %/s, not {ramp:g}", None, "setpoint_ramp")
    low = _value(path, data, ("soc_reserve", "min"), "%")
    high = _value(path, data, ("soc_reserve", "max"), "%")
    if not 0 <= low < high <= 100:
        raise ConfigErrors.single(
            path, f"need 0 % <= min < max <= 100 %, not {low:g}..{high:g} %", None, "soc_reserve"
        )
    return OperationSettings(ramp, (low, high))
