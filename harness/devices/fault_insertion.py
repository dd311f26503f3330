"""The fault-insertion role and its ``modbus_fiu`` driver: a bench box that breaks a battery's
inverter CAN link and drives its BMS's sense lines from its own sources.

A BMS's protections exist for what a compliant inverter never does: it follows the limits its BMS
advertises (the stateful dispatch scenario proves it), so it never overcharges, empties or
overloads a pack, and heating a pack tens of degrees takes hours. A BMS acceptance bench
therefore breaks links and drives the BMS's inputs instead: a relay in the inverter's CAN
cable, a source on one cell tap, one in place of the temperature sensor, one on the shunt
signal. The BMS then sees the fault at once and its response can be timed to the millisecond.

The unit is reached over Modbus through its YAML map (``fixtures/maps/bms-fiu.yaml``), so every
write passes the write guard (declared writable, inside the declared range). A line is driven by
writing its value first, then its coil; released by clearing the coil.
"""

from __future__ import annotations

from pathlib import Path

from harness.devices.roles import Device, DeviceError, Identity
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError
from harness.transports.yamlmap import load_yaml_map

DEFAULT_MAP = Path(__file__).resolve().parents[2] / "fixtures" / "maps" / "bms-fiu.yaml"
"""The map of the fault-insertion unit a virtual battery comes with."""
LINK = "InverterCan.Connected"
LINES = {
    # line -> (coil, value register)
    "cell_voltage": ("CellTap.Driven", "CellTap.Voltage"),
    "temperature": ("Sensor.Driven", "Sensor.Temperature"),
    "current": ("Shunt.Driven", "Shunt.Current"),
}
ENABLE = "BmsEnable.Connected"
PRECHARGE_OPEN = "PrechargeResistor.Open"


class FaultInsertion(Device):
    """What a scenario may ask of a battery's fault-insertion unit."""

    def disconnect_inverter_can(self) -> None:
        """Open the relay in the inverter's CAN cable: the BMS no longer hears the inverter."""
        raise NotImplementedError

    def reconnect_inverter_can(self) -> None:
        raise NotImplementedError

    def drive(self, line: str, value: float) -> None:
        """Drive ``line`` (``cell_voltage`` V, ``temperature`` degC, ``current`` A, + charging)."""
        raise NotImplementedError

    def release(self, line: str) -> None:
        """Give ``line`` back to the pack."""
        raise NotImplementedError

    def set_bms_enable(self, on: bool) -> None:
        """Give (True) or take away the BMS's enable input: away, it opens its contactors."""
        raise NotImplementedError

    def open_precharge_resistor(self, opened: bool) -> None:
        """Open (True) the precharge resistor, so no precharge can complete; False restores it."""
        raise NotImplementedError

    def release_all(self) -> None:
        """Every line back to the pack, the CAN link connected: the battery as delivered."""
        for line in LINES:
            self.release(line)
        self.reconnect_inverter_can()


class ModbusFaultInsertion(FaultInsertion):
    """A fault-insertion unit behind a :class:`MappedDevice` with the points of ``bms-fiu``."""

    def __init__(self, name: str, device: MappedDevice) -> None:
        self.name = name
        self.device = device
        if device.client.label is None:  # transactions are recorded under the device's name
            device.client.label = name
        for point in (LINK, *(p for pair in LINES.values() for p in pair)):
            device.regmap.point(point)

    @classmethod
    def from_map(
        cls, name: str, client: ModbusClient, map_path: Path = DEFAULT_MAP, unit: int = 1
    ) -> ModbusFaultInsertion:
        return cls(name, MappedDevice(client, load_yaml_map(map_path), unit))

    def modbus_device(self) -> MappedDevice:
        """The Modbus device behind the role, for protocol-level checks."""
        return self.device

    def identity(self) -> Identity:
        return Identity(
            model=f"Fault-insertion unit ({self.device.regmap.name})",
            extra={"endpoint": self.device.client.endpoint},
        )

    def _write(self, values: dict[str, float], what: str) -> None:
        try:
            self.device.write_many(values)
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: {what} failed: {exc}") from exc

    def disconnect_inverter_can(self) -> None:
        self._write({LINK: 0.0}, "breaking the inverter's CAN link")

    def reconnect_inverter_can(self) -> None:
        self._write({LINK: 1.0}, "reconnecting the inverter's CAN link")

    def _line(self, line: str) -> tuple[str, str]:
        try:
            return LINES[line]
        except KeyError:
            raise DeviceError(
                f"{self.name}: no sense line {line!r}; known: {', '.join(LINES)}"
            ) from None

    def drive(self, line: str, value: float) -> None:
        coil, register = self._line(line)
        self._write({register: float(value)}, f"setting {register}")
        self._write({coil: 1.0}, f"driving the {line} line")

    def release(self, line: str) -> None:
        coil, _ = self._line(line)
        self._write({coil: 0.0}, f"releasing the {line} line")

    def _switch(self, coil: str, on: bool, what: str) -> None:
        if coil not in self.device.regmap:
            raise DeviceError(f"{self.name}: the unit has no {coil} ({what})")
        self._write({coil: 1.0 if on else 0.0}, what)

    def set_bms_enable(self, on: bool) -> None:
        self._switch(ENABLE, on, f"{'giving' if on else 'taking away'} the BMS's enable input")

    def open_precharge_resistor(self, opened: bool) -> None:
        self._switch(
            PRECHARGE_OPEN, opened, f"{'opening' if opened else 'closing'} the precharge resistor"
        )

    def disconnect(self) -> None:
        self.device.client.close()
