"""The virtual climate chamber: every virtual battery of the site stands in it.

An SCPI instrument in the site's dialect (role ``chamber``), served like the other virtual
instruments. Its set point is the ambient of every pack's thermal model
(virtual_devices/plant/thermal.py); the air follows the set point at once (a chamber's own
settling is minutes, a pack's hours), the packs follow with their own time constant. It starts
at the ambient the site file gives the batteries (the first one's, if they differ).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
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

RANGE_C = (-40.0, 100.0)
"""Set points this chamber accepts, degC (others: SCPI error -222, data out of range)."""


class ThermalLike(Protocol):
    ambient_c: float


class ChamberPlant(Protocol):
    @property
    def nodes(self) -> Mapping[str, Any]: ...

    def mark_event(self, name: str | None = None) -> None: ...


class ChamberHandler(DialectHandler):
    """Set point and air temperature of the chamber holding the plant's batteries."""

    role = "chamber"

    def __init__(
        self,
        plant: ChamberPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str = GENERIC,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.plant = plant
        models: list[ThermalLike] = [n.battery.thermal for n in plant.nodes.values()]
        self._models = models
        self.setpoint_c = models[0].ambient_c if models else 25.0

    def _set(self, args: str) -> None:
        value = number(args)
        low, high = RANGE_C
        if not low <= value <= high:
            raise ScpiError(DATA_OUT_OF_RANGE, f"{value:g} degC not in {low:g}..{high:g}")
        self.setpoint_c = value
        for model in self._models:
            model.ambient_c = value
        self.plant.mark_event(f"chamber:{value:g}")

    def bindings(self) -> Mapping[str, Command]:
        read: Callable[[str], str] = lambda _a: fmt(self.setpoint_c)  # noqa: E731
        return {"set_temperature": self._set, "temperature_setpoint": read, "temperature": read}
