"""The ``meter`` role and its ``sunspec`` driver: a settlement meter reached through its SunSpec
Modbus map (model 1 for its identity, 203 / 201 / 202 / 204 for its readings), discovered from
the device itself.

A site has at most one (``meter:`` in the site file, at the PCC). Its energy registers are what
the utility settles on, so the buyer checks them against the power analyzer's integrator
(testplans/test_performance.py). Values are read fresh with their scale factors on every call.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

from harness.devices.roles import Device, DeviceError, Identity
from harness.devices.sunspec_discovery import discover_device
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError
from harness.transports.regmap import Value

METER_MODELS = ("ac_meter_abcn", "ac_meter_abc", "ac_meter", "ac_meter_split")
"""pysunspec2 group names of the meter models a driver reads (203 wye, 204 delta, 201 single
phase, 202 split phase), in order of preference: the first the device holds is read."""


class Meter(Device):
    @abstractmethod
    def power(self) -> float:
        """Total active power, W (positive = imported from the grid)."""

    @abstractmethod
    def energy(self) -> tuple[float, float]:
        """The energy registers now: (imported, exported), Wh, both counting up."""


class SunSpecMeter(Meter):
    """A meter behind a :class:`MappedDevice` whose map holds model 1 and a meter model."""

    def __init__(self, name: str, device: MappedDevice) -> None:
        self.name = name
        self.device = device
        if device.client.label is None:  # transactions are recorded under the device's name
            device.client.label = name
        found = [m for m in METER_MODELS if f"{m}.W" in device.regmap]
        if not found:
            raise DeviceError(f"{name}: no SunSpec meter model (201-204) on the device")
        self.model = found[0]

    @classmethod
    def connect(cls, name: str, client: ModbusClient, unit: int = 1) -> SunSpecMeter:
        """Discover the device's SunSpec map over ``client`` and bind a driver to it."""
        return cls(name, discover_device(name, client, unit))

    def _read(self, points: list[str], what: str) -> Mapping[str, Value]:
        try:
            return self.device.read_many(points)
        except KeyError as exc:
            raise DeviceError(f"{self.name}: cannot read {what}: {exc.args[0]}") from None
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: reading {what} failed: {exc}") from exc

    def identity(self) -> Identity:
        values = self._read(["common.Mn", "common.Md", "common.SN", "common.Vr"], "identity")

        def text(key: str) -> str:
            value = values[f"common.{key}"]
            return value if isinstance(value, str) else ""

        return Identity(text("Mn"), text("Md"), text("SN"), text("Vr"))

    def power(self) -> float:
        name = f"{self.model}.W"
        value = self._read([name], "active power")[name]
        if not isinstance(value, float):
            raise DeviceError(f"{self.name}: active power ({name}) is not implemented")
        return value

    def energy(self) -> tuple[float, float]:
        names = [f"{self.model}.TotWhImp", f"{self.model}.TotWhExp"]
        values = self._read(names, "energy registers")
        out = [values[n] for n in names]
        if not all(isinstance(v, float) for v in out):
            raise DeviceError(f"{self.name}: energy registers ({', '.join(names)}) unreadable")
        return float(out[0]), float(out[1])  # type: ignore[arg-type]

    def disconnect(self) -> None:
        self.device.client.close()
