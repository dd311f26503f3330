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
    ILLEGAL_PARAMETER,
    Command,
    InstrumentIdentity,
    ScpiError,
    boolean,
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
    """Irradiance level and delivered DC power of the plant's PV arrays.

    A family that addresses channels (``SOUR:IRR 1000, (@1)``) is served on ``channel`` only,
    another channel being an illegal parameter; one with an execute command holds a new level
    until it comes. With the output off the arrays deliver nothing, whatever the level.
    """

    role = "pv_simulator"

    def __init__(
        self,
        plant: PvPlant,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str = GENERIC,
        channel: int = 1,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.plant = plant
        self.channel = int(channel)
        self._level: float | None = None  # the held level; None: the profile
        self._pending: float | None = None
        self._output = True
        self._units: list[PvInverter] = [
            n.pv for n in plant.nodes.values() if getattr(n, "pv", None) is not None
        ]

    def _args(self, args: str) -> str:
        """The parameters without a trailing channel list ``(@1)``, which must be ours."""
        head, sep, tail = args.rpartition("(@")
        if not sep:
            return args
        if tail.rstrip().rstrip(")").strip() != str(self.channel):
            raise ScpiError(ILLEGAL_PARAMETER, f"channel (@{tail}: this one is {self.channel}")
        return head.rstrip().rstrip(",")

    def _drive(self) -> None:
        """Hold every array at the level (0 with the output off), or release it to the profile."""
        level = self._level if self._output else 0.0
        for unit in self._units:
            unit.array.irradiance_override = level

    def _set(self, args: str) -> None:
        value = number(self._args(args))
        low, high = RANGE_W_M2
        if not low <= value <= high:
            raise ScpiError(DATA_OUT_OF_RANGE, f"{value:g} W/m^2 not in {low:g}..{high:g}")
        self._pending = value
        if not self.spec.has("execute"):
            self._execute("")

    def _execute(self, args: str) -> None:
        self._args(args)
        if self._pending is None:
            return
        self._level, self._pending = self._pending, None
        self._drive()
        self.plant.mark_event(f"pv_simulator:{self._level:g}")

    def _profile(self, args: str) -> None:
        self._args(args)
        self._level = None
        self._drive()
        self.plant.mark_event("pv_simulator:profile")

    def _set_output(self, args: str) -> None:
        self._output = boolean(self._args(args))
        self._drive()
        self.plant.mark_event(f"pv_simulator:output:{'on' if self._output else 'off'}")

    def _output_on(self, args: str) -> str:
        self._args(args)
        return self._on_off(self._output)

    def _irradiance(self, args: str) -> str:
        self._args(args)
        if not self._units:
            return fmt(0.0)
        return fmt(self._units[0].array.irradiance_w_m2(self.plant.t))

    def _power(self, args: str) -> str:
        self._args(args)
        return fmt(sum(unit.dc_power_w for unit in self._units))

    def bindings(self) -> Mapping[str, Command]:
        table: dict[str, Command] = {
            "set_irradiance": self._set,
            "irradiance": self._irradiance,
            "follow_profile": self._profile,
            "power": self._power,
        }
        optional: dict[str, Command] = {
            "execute": self._execute,
            "profile_reset": self._args,  # nothing to rewind: the profile is a function of time
            "set_output": self._set_output,
            "output_on": self._output_on,
        }
        table.update({name: f for name, f in optional.items() if self.spec.has(name)})
        return table
