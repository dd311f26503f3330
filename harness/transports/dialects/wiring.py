"""How a power analyzer with numbered input elements is wired to the site's measurement points.

An analyzer such as a Yokogawa WT has input *elements* (one voltage and one current input each,
numbered 1..6) and computes *functions* on them (URMS, IRMS, P, FU ...). It knows nothing of
``pcc.voltage``: which element is on which measurement point is the bench's wiring, so it is site
data (the analyzer's ``options``)::

    elements: {grid: 1, pcc: 2, home-1.inverter: 3, home-1.battery: 4, inverters: SIGMA}
    dc_elements: [home-1.battery]     # measured as DC: voltage -> UDC, current -> IDC
    aux: {pcc.breaker: 1}             # the breaker's auxiliary contact on analog input AUX1

A channel ``<point>.<quantity>`` is then the item ``<function>,<element>``: the function comes
from the dialect (``functions: {ac: {voltage: URMS ...}, dc: {...}}``), the element from the
site. The driver and the virtual analyzer build the same :class:`Wiring`, one reading it forward
(channel -> item), the other backward (item -> the plant's channel).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.transports.dialects import DialectError, RoleDialect


def _item(function: str, element: str | None) -> str:
    return function if element is None else f"{function},{element}"


def normalize_item(text: str) -> str:
    """``urms, 1`` -> ``URMS,1``: how an item is compared, whatever the spelling sent."""
    return ",".join(part.strip().strip("\"'").upper() for part in text.split(","))


@dataclass(frozen=True)
class Wiring:
    """Channel name <-> analyzer item (``URMS,1``, ``AUX1``), with each item's function."""

    items: Mapping[str, str]
    functions: Mapping[str, str]

    @classmethod
    def from_options(cls, dialect: RoleDialect, options: Mapping[str, Any]) -> Wiring:
        table = dialect.setting("functions")
        if not isinstance(table, dict):
            raise DialectError(f"dialect {dialect.family!r}: analyzer needs 'functions'")
        allowed = {str(e).upper() for e in dialect.setting("elements", [])}
        elements = options.get("elements")
        if not isinstance(elements, dict) or not elements:
            raise DialectError(
                f"a {dialect.family} analyzer needs options.elements: which input element is "
                "wired to which measurement point, e.g. {pcc: 1, home-1.inverter: 2}"
            )
        dc_points = set(options.get("dc_elements") or [])
        items: dict[str, str] = {}
        functions: dict[str, str] = {}
        for point, element in elements.items():
            text = str(element).upper()
            if allowed and text not in allowed:
                raise DialectError(
                    f"options.elements.{point}: {element!r} is not an element of a "
                    f"{dialect.family}; expected one of: {', '.join(sorted(allowed))}"
                )
            for quantity, function in table["dc" if point in dc_points else "ac"].items():
                channel = f"{point}.{quantity}"
                items[channel] = _item(str(function), text)
                functions[channel] = str(function)
        aux_function = str(dialect.setting("aux_function", "AUX<n>"))
        for channel, number in (options.get("aux") or {}).items():
            function = aux_function.replace("<n>", str(int(number)))
            items[str(channel)] = function
            functions[str(channel)] = function
        return cls(items, functions)

    @property
    def channels(self) -> list[str]:
        return list(self.items)

    def inverse(self) -> dict[str, str]:
        """Normalized item -> channel (what the virtual analyzer reads)."""
        return {normalize_item(item): channel for channel, item in self.items.items()}

    def unit(self, dialect: RoleDialect, channel: str) -> str:
        units = dialect.setting("units", {})
        function = self.functions[channel]
        if function in units:
            return str(units[function])
        return str(units.get(function.rstrip("0123456789"), ""))
