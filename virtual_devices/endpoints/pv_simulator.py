"""The virtual PV simulator: the DC source behind every virtual PV array of the site.

An SCPI instrument in the site's dialect (role ``pv_simulator``), served like the other virtual
instruments. Programming an irradiance holds every array of the plant (virtual_devices/plant/
pv.py) at that level from the present instant; ``follow_profile`` lets them follow the data
profile again. The measured power is the arrays' DC power as the PV inverters draw it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from harness.transports.dialects import GENERIC, Dialect
from virtual_devices.endpoints.instruments import DialectHandler
from virtual_devices.endpoints.scpi_server import (
    DATA_OUT_OF_RANGE,
    Command,
    InstrumentIdentity,
    ScpiError,
    fmt,
    number,
)
from virtual_devices.plant.pv import PvInverter

RANGE_W_M2 = (0.0, 1500.0)
"""Levels this simulator accepts, W/m^2 (others: SCPI error -222, data out of range). Real
plane-of-array irradiance stays below about 1400 W/m^2 even under cloud enhancement."""


class PvPlant(Protocol):
    @property
    def t(self) -> float: ...

    @property
    def nodes(self) -> Mapping[str, Any]: ...

    def mark_event(self, name: str | None = None) -> None: ...


class PvSimulatorHandler(DialectHandler):
    """Irradiance level and delivered DC power of the plant's PV arrays."""

    role = "pv_simulator"

    def __init__(
        self,
        plant: PvPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str = GENERIC,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.plant = plant
        self._units: list[PvInverter] = [
            n.pv for n in plant.nodes.values() if getattr(n, "pv", None) is not None
        ]

    def _set(self, args: str) -> None:
        value = number(args)
        low, high = RANGE_W_M2
        if not low <= value <= high:
            raise ScpiError(DATA_OUT_OF_RANGE, f"{value:g} W/m^2 not in {low:g}..{high:g}")
        for unit in self._units:
            unit.array.irradiance_override = value
        self.plant.mark_event(f"pv_simulator:{value:g}")

    def _profile(self, _args: str) -> None:
        for unit in self._units:
            unit.array.irradiance_override = None
        self.plant.mark_event("pv_simulator:profile")

    def _irradiance(self, _args: str) -> str:
        if not self._units:
            return fmt(0.0)
        return fmt(self._units[0].array.irradiance_w_m2(self.plant.t))

    def _power(self, _args: str) -> str:
        return fmt(sum(unit.dc_power_w for unit in self._units))

    def bindings(self) -> Mapping[str, Command]:
        table: dict[str, Command] = {
            "set_irradiance": self._set,
            "irradiance": self._irradiance,
            "follow_profile": self._profile,
            "power": self._power,
        }
        return table
