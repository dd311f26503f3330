"""The ``modbus_coil`` driver of the :class:`Breaker` role: a breaker driven through one coil of
a Modbus I/O module (1 = closed), whose map is a YAML file such as ``fixtures/maps/pcc-io.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from harness.devices.roles import Breaker, DeviceError, Identity
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError
from harness.transports.yamlmap import load_yaml_map

DEFAULT_POINT = "PCC.Closed"


class ModbusCoilBreaker(Breaker):
    """Opens, closes and reads a breaker through the coil ``point`` of ``device``'s map."""

    def __init__(self, name: str, device: MappedDevice, point: str = DEFAULT_POINT) -> None:
        self.name = name
        self.device = device
        if device.client.label is None:  # transactions are recorded under the device's name
            device.client.label = name
        self.point = device.regmap.point(point)
        if self.point.table != "coil":
            raise ValueError(f"{name}: {point} is not a coil in map {device.regmap.name}")

    @classmethod
    def from_map(
        cls,
        name: str,
        client: ModbusClient,
        map_path: Path,
        unit: int = 1,
        point: str = DEFAULT_POINT,
    ) -> ModbusCoilBreaker:
        return cls(name, MappedDevice(client, load_yaml_map(map_path), unit), point)

    def modbus_device(self) -> MappedDevice:
        """The Modbus I/O module behind the role (client, unit, its YAML map), for
        protocol-level checks (conformance) that must go below the role's methods."""
        return self.device

    def identity(self) -> Identity:
        # An I/O module has no identity registers; say what it is and where it is reached.
        return Identity(
            model=f"Modbus I/O ({self.device.regmap.name})",
            extra={"endpoint": self.device.client.endpoint, "point": self.point.name},
        )

    def _write(self, closed: bool) -> None:
        try:
            self.device.write(self.point.name, 1.0 if closed else 0.0)
        except ModbusError as exc:
            action = "closing" if closed else "opening"
            raise DeviceError(f"{self.name}: {action} the breaker failed: {exc}") from exc

    def open(self) -> None:
        self._write(False)

    def close(self) -> None:
        self._write(True)

    def is_closed(self) -> bool:
        try:
            value = self.device.read(self.point.name)
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: reading the breaker state failed: {exc}") from exc
        return value == 1.0

    def disconnect(self) -> None:
        self.device.client.close()
