"""A virtual Modbus I/O module wired to the PCC breaker.

The map is data (``fixtures/maps/pcc-io.yaml``): coil 0 is the breaker, 1 = closed. Writing 0
opens it, writing 1 closes it, reading returns the breaker's actual state, as a digital output
with its auxiliary contact read back would.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from harness.transports.aioloop import LoopThread
from harness.transports.regmap import Value
from harness.transports.yamlmap import load_yaml_map
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint, ServedUnit

DEFAULT_MAP = Path(__file__).resolve().parents[2] / "fixtures" / "maps" / "pcc-io.yaml"
BREAKER_POINT = "PCC.Closed"


class BreakerLike(Protocol):
    @property
    def closed(self) -> bool: ...

    def open(self) -> None: ...

    def close(self) -> None: ...


class IoModuleEndpoint(ServedUnit):
    """A Modbus TCP server whose coil ``PCC.Closed`` drives and reads a breaker."""

    def __init__(
        self,
        breaker: BreakerLike,
        *,
        lock: threading.RLock,
        loop: LoopThread,
        unit: int = 1,
        map_path: Path = DEFAULT_MAP,
    ) -> None:
        self.breaker = breaker
        self.unit = unit
        self.regmap = load_yaml_map(map_path)
        self.regmap.point(BREAKER_POINT)  # the map must name the breaker coil
        self.server = ModbusServerEndpoint(self.regmap, unit, self, lock, loop)

    def read_points(self) -> Mapping[str, Value]:
        return {BREAKER_POINT: 1.0 if self.breaker.closed else 0.0}

    def write_point(self, name: str, value: Value) -> None:
        if name != BREAKER_POINT:
            raise KeyError(name)
        if value == 1.0:
            self.breaker.close()
        elif value == 0.0:
            self.breaker.open()
        else:
            raise ValueError(f"{name} is 0 (open) or 1 (closed), not {value!r}")
