"""Values with units, as contracts and site files write them ("2 s", "89 %", "5 kW", "1.10 pu").

pint parses and converts; everything inside the harness is a float in the SI base unit of its
dimension (s, W, V, A, Hz, A*h) or in percent, so conversions happen once, at the edge.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

import pint
from pydantic import BeforeValidator

ureg: pint.UnitRegistry[Any] = pint.UnitRegistry()
ureg.define("per_unit = [per_unit] = pu")
ureg.define("count = [] ")


class UnitError(ValueError):
    """A value whose unit is missing or of the wrong kind."""


_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


@lru_cache(maxsize=512)
def _parse(text: str) -> pint.Quantity[Any]:
    match = _NUMBER.match(text)
    if not match:
        raise UnitError(f"{text!r} is not a number with a unit")
    number, unit = match.groups()
    try:
        return ureg.Quantity(float(number), unit or "dimensionless")
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError):
        raise UnitError(f"{text!r} has an unknown unit {unit!r}") from None
    except Exception:  # pint raises assorted tokenizer errors on garbage
        raise UnitError(f"{text!r} is not a number with a unit") from None


def _bare(q: pint.Quantity[Any]) -> bool:
    return str(q.units) == "dimensionless"


def has_unit(text: str) -> bool:
    return not _bare(_parse(text))


def to_unit(value: Any, unit: str, *, require_unit: bool = True) -> float:
    """Convert ``value`` (a string such as "2 s", or a bare number) to a float in ``unit``.

    A bare number is accepted only where ``require_unit`` is false (counts, ratios).
    """
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a quantity; expected a value in {unit}")
    if isinstance(value, (int, float)):
        if require_unit and unit not in ("", "1", "count"):
            raise UnitError(f'"{value}" has no unit; expected a value such as "{value} {unit}"')
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a quantity; expected a value in {unit}")
    q = _parse(value.strip())
    if _bare(q) and require_unit and unit not in ("", "1", "count"):
        raise UnitError(f'"{value}" has no unit; expected a value such as "{value} {unit}"')
    target = "percent" if unit == "%" else unit
    try:
        return float(q.to(target).magnitude)
    except pint.errors.DimensionalityError:
        raise UnitError(f'"{value}" is not convertible to {unit}') from None


def _typed(unit: str) -> Any:
    def convert(value: Any) -> float:
        return to_unit(value, unit)

    return BeforeValidator(convert)


Seconds = Annotated[float, _typed("s")]
Watts = Annotated[float, _typed("W")]
Volts = Annotated[float, _typed("V")]
Amperes = Annotated[float, _typed("A")]
Hertz = Annotated[float, _typed("Hz")]
AmpHours = Annotated[float, _typed("A*h")]
Percent = Annotated[float, _typed("%")]
PerUnit = Annotated[float, _typed("pu")]
Celsius = Annotated[float, _typed("degC")]
Ohms = Annotated[float, _typed("ohm")]
