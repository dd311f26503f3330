"""A virtual fault-insertion unit: one home's battery, BMS and inverter CAN link, on Modbus TCP.

The map is data (``fixtures/maps/bms-fiu.yaml``). Coil ``InverterCan.Connected`` is the relay in
the inverter's CAN cable (:class:`~virtual_devices.endpoints.inverter_can.InverterHeartbeat`);
coils ``CellTap.Driven``, ``Sensor.Driven`` and ``Shunt.Driven`` switch one of the BMS's sense
lines from the pack to the unit's own source, set by the matching holding register. Coil
``BmsEnable.Connected`` is the BMS's enable input, ``PrechargeResistor.Open`` a relay that opens
its precharge resistor (:data:`SWITCHES`). Every change
reaches the plant's BMS at once (``set_override``) and is marked as a plant event, so the BMS
sees it at the exact instant of the write, as it would a relay closing.

A virtual site gives every virtual battery one of these (a virtual pack's wiring is the bench's
to change), reached like any other endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.transports.aioloop import LoopThread
from harness.transports.regmap import Value
from harness.transports.yamlmap import load_yaml_map
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint, ServedUnit

DEFAULT_MAP = Path(__file__).resolve().parents[2] / "fixtures" / "maps" / "bms-fiu.yaml"
LINK = "InverterCan.Connected"
LINES = {
    # coil -> (holding register with the source's value, the BMS's sense line)
    "CellTap.Driven": ("CellTap.Voltage", "cell_voltage"),
    "Sensor.Driven": ("Sensor.Temperature", "temperature"),
    "Shunt.Driven": ("Shunt.Current", "current"),
}
SWITCHES = {
    # coil -> (value on start, the plant BMS's method that takes the coil's value)
    "BmsEnable.Connected": (True, "set_enable"),
    "PrechargeResistor.Open": (False, "set_precharge_blocked"),
}


class FaultInsertionEndpoint(ServedUnit):
    """A Modbus TCP server driving one battery's BMS sense lines and inverter CAN link.

    ``bms`` is the plant battery's :class:`~virtual_devices.plant.bms_logic.BmsLogic`, ``link``
    anything with a ``connected`` attribute (None: no inverter link to break), ``notify`` the
    plant's ``mark_event``.
    """

    def __init__(
        self,
        name: str,
        bms: Any,
        link: Any | None,
        notify: Callable[[str], None],
        *,
        lock: threading.RLock,
        loop: LoopThread,
        unit: int = 1,
        map_path: Path = DEFAULT_MAP,
    ) -> None:
        self.name = name
        self.bms = bms
        self.link = link
        self.notify = notify
        self.unit = unit
        self.regmap = load_yaml_map(map_path)
        for point in (LINK, *LINES, *SWITCHES, *(reg for reg, _ in LINES.values())):
            self.regmap.point(point)  # the map must name every point this unit serves
        self._driven = dict.fromkeys(LINES, False)
        self._values = {reg: 0.0 for reg, _ in LINES.values()}
        self._switches = {coil: start for coil, (start, _) in SWITCHES.items()}
        self.server = ModbusServerEndpoint(self.regmap, unit, self, lock, loop)

    def read_points(self) -> Mapping[str, Value]:
        points: dict[str, Value] = {LINK: 1.0 if self.link is None or self.link.connected else 0.0}
        points.update({coil: 1.0 if on else 0.0 for coil, on in self._driven.items()})
        points.update({coil: 1.0 if on else 0.0 for coil, on in self._switches.items()})
        points.update(self._values)
        return points

    def write_point(self, name: str, value: Value) -> None:
        if not isinstance(value, float):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        if name == LINK:
            if self.link is None:
                raise KeyError(name)  # no inverter on this battery's bus to disconnect
            self.link.connected = _bit(name, value)
            self.notify(f"{self.name}.inverter_can:{'connected' if value else 'broken'}")
            return
        if name in SWITCHES:
            on = self._switches[name] = _bit(name, value)
            getattr(self.bms, SWITCHES[name][1])(on)
            self.notify(f"{self.name}.{name}:{int(on)}")
            return
        if name in LINES:
            self._driven[name] = _bit(name, value)
            self._apply(name)
            return
        for coil, (register, _line) in LINES.items():
            if name == register:
                self._values[register] = value
                if self._driven[coil]:
                    self._apply(coil)
                return
        raise KeyError(name)

    def _apply(self, coil: str) -> None:
        register, line = LINES[coil]
        value = self._values[register] if self._driven[coil] else None
        self.bms.set_override(line, value)
        self.notify(f"{self.name}.{line}:{'released' if value is None else f'{value:g}'}")


def _bit(name: str, value: float) -> bool:
    if value not in (0.0, 1.0):
        raise ValueError(f"{name} is 0 or 1, not {value:g}")
    return value == 1.0
