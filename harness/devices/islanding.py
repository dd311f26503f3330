"""Intentional islanding of a SunSpec inverter: can it form an island, switch it on, is it forming.

SunSpec model 702 rates the intentional-island categories a unit can operate in
(``IntIslandCatRtg``: INT_ISL_CAPABLE, ISOCH_CAPABLE, BLACK_START_CAPABLE) and holds the ones it
is set to (``IntIslandCat``, writable); model 701 ``DERMode`` says whether it is forming the grid
now (bit GRID_FORMING). Both are bitfields: a value is the sum of 2**bit of its categories.

The functions take the ``sunspec`` driver (anything with ``modbus_device()``); every read and
write goes through its map and write guard, as the driver's own do.
"""

from __future__ import annotations

from typing import Any

from harness.devices.roles import DeviceError
from harness.transports.modbus import MappedDevice, ModbusError, WriteRefused

RATING = "DERCapacity.IntIslandCatRtg"
SETTING = "DERCapacity.IntIslandCat"
MODE = "DERMeasureAC.DERMode"
ISLAND_CAPABLE = "INT_ISL_CAPABLE"


def _device(inverter: Any) -> MappedDevice:
    getter = getattr(inverter, "modbus_device", None)
    if getter is None:
        raise DeviceError(f"{inverter.name}: no SunSpec map to read intentional islanding from")
    device: MappedDevice = getter()
    return device


def _bits(device: MappedDevice, name: str) -> set[str]:
    """The symbols of the bits set in bitfield point ``name``; empty if not implemented."""
    if name not in device.regmap:
        return set()
    try:
        value = device.read(name)
    except ModbusError as exc:
        raise DeviceError(f"{device.client.label}: reading {name} failed: {exc}") from exc
    if not isinstance(value, float):
        return set()
    raw = int(value)
    return {sym for sym, bit in device.regmap.point(name).symbols.items() if raw >> bit & 1}


def island_categories(inverter: Any) -> set[str]:
    """The intentional-island categories the unit is rated for (702 IntIslandCatRtg)."""
    return _bits(_device(inverter), RATING)


def island_capable(inverter: Any) -> bool:
    """Whether the unit can form an intentional island (rated INT_ISL_CAPABLE)."""
    return ISLAND_CAPABLE in island_categories(inverter)


def island_setting(inverter: Any) -> set[str]:
    """The categories the unit is set to now (702 IntIslandCat)."""
    return _bits(_device(inverter), SETTING)


def set_island_setting(inverter: Any, categories: set[str]) -> None:
    """Set 702 IntIslandCat to ``categories`` (a subset of the rating; empty: islanding off)."""
    device = _device(inverter)
    symbols = device.regmap.point(SETTING).symbols
    unknown = sorted(categories - set(symbols))
    if unknown:
        raise ValueError(f"{SETTING}: unknown categories {unknown}; known: {sorted(symbols)}")
    value = float(sum(1 << symbols[c] for c in categories))
    try:
        device.write(SETTING, value)
    except WriteRefused as exc:
        raise WriteRefused(f"{inverter.name}: {exc}") from None
    except ModbusError as exc:
        raise DeviceError(f"{inverter.name}: setting {SETTING} failed: {exc}") from exc


def enable_islanding(inverter: Any) -> set[str]:
    """Switch intentional islanding on (the setting becomes the rated categories); returns the
    setting it had, for :func:`set_island_setting` to put back."""
    before = island_setting(inverter)
    rated = island_categories(inverter)
    if ISLAND_CAPABLE not in rated:
        raise DeviceError(f"{inverter.name}: not rated {ISLAND_CAPABLE} (702 IntIslandCatRtg)")
    set_island_setting(inverter, rated - {"UNCATEGORIZED"})
    return before


def grid_forming_now(inverter: Any) -> bool:
    """Whether the unit reports it is forming the grid (701 DERMode GRID_FORMING)."""
    return "GRID_FORMING" in _bits(_device(inverter), MODE)
