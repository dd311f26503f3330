"""Binding a SunSpec driver to a device: discover its map over Modbus, once, for any role."""

from __future__ import annotations

from harness.devices.roles import DeviceError
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError
from harness.transports.sunspec import SunSpecError, discover


def discover_device(name: str, client: ModbusClient, unit: int = 1) -> MappedDevice:
    """The device at ``unit`` behind ``client`` with the SunSpec map it announces; a failed
    discovery is a DeviceError naming the device and its endpoint."""
    try:
        found = discover(lambda address, count: client.read_holding(address, count, unit))
    except (ModbusError, SunSpecError) as exc:
        raise DeviceError(f"{name}: SunSpec discovery at {client.endpoint} failed: {exc}") from exc
    return MappedDevice(client, found.regmap, unit)
