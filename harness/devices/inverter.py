"""The ``sunspec`` driver of the :class:`Inverter` role: an inverter reached through its SunSpec
Modbus map (models 1, 701, 702, 704), discovered from the device itself.

Values are read fresh with their scale factors on every call. Failures become
:class:`DeviceError` naming the device and what failed; a write the write guard refuses raises
:class:`WriteRefused` (a ValueError) naming the device, the point and the allowed range.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.devices.roles import DeviceError, Identity, Inverter
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError, WriteRefused
from harness.transports.regmap import Value
from harness.transports.sunspec import SunSpecError, discover

# SunSpec 701 InvSt symbols -> the role's state vocabulary (ON / OFF / TRIPPED).
ROLE_STATE = {
    "RUNNING": "ON",
    "THROTTLED": "ON",
    "FAULT": "TRIPPED",
    "OFF": "OFF",
    "SLEEPING": "OFF",
    "STARTING": "OFF",
    "SHUTTING_DOWN": "OFF",
    "STANDBY": "OFF",
}
VOLTAGE_POINTS = ("DERMeasureAC.LNV", "DERMeasureAC.VL1", "DERMeasureAC.LLV")
WSET = "DERCtlAC.WSet"
CONTROL_POINTS = ("DERCtlAC.WSetEna", "DERCtlAC.WSetMod", WSET)


class SunSpecInverter(Inverter):
    """An inverter behind a :class:`MappedDevice` whose map holds SunSpec models 1/701/702/704."""

    def __init__(self, name: str, device: MappedDevice) -> None:
        self.name = name
        self.device = device
        if device.client.label is None:  # transactions are recorded under the device's name
            device.client.label = name

    @classmethod
    def connect(cls, name: str, client: ModbusClient, unit: int = 1) -> SunSpecInverter:
        """Discover the device's SunSpec map over ``client`` and bind a driver to it."""
        try:
            found = discover(lambda address, count: client.read_holding(address, count, unit))
        except (ModbusError, SunSpecError) as exc:
            raise DeviceError(
                f"{name}: SunSpec discovery at {client.endpoint} failed: {exc}"
            ) from exc
        return cls(name, MappedDevice(client, found.regmap, unit))

    def modbus_device(self) -> MappedDevice:
        """The Modbus device behind the role (client, unit, discovered map), for protocol-level
        checks (conformance, fuzzing) that must go below the role's methods."""
        return self.device

    def control_points(self) -> tuple[str, ...]:
        """The points this driver writes (:meth:`set_power`); they must accept writes."""
        return tuple(p for p in CONTROL_POINTS if p in self.device.regmap)

    # -- reading ----------------------------------------------------------------------------

    def _read_many(self, names: list[str], what: str) -> Mapping[str, Value]:
        try:
            return self.device.read_many(names)
        except KeyError as exc:
            raise DeviceError(f"{self.name}: cannot read {what}: {exc.args[0]}") from None
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: reading {what} failed: {exc}") from exc

    def _number(self, name: str, what: str) -> float:
        value = self._read_many([name], what)[name]
        if not isinstance(value, float):
            raise DeviceError(f"{self.name}: {what} ({name}) is not implemented by the device")
        return value

    def identity(self) -> Identity:
        names = ["common.Mn", "common.Md", "common.SN", "common.Vr", "common.Opt"]
        v = self._read_many(names, "identity (model 1)")

        def text(key: str) -> str:
            value = v[key]
            return value if isinstance(value, str) else ""

        extra = {"options": text("common.Opt")} if text("common.Opt") else {}
        return Identity(
            manufacturer=text("common.Mn"),
            model=text("common.Md"),
            serial=text("common.SN"),
            firmware=text("common.Vr"),
            extra=extra,
        )

    def power(self) -> float:
        return self._number("DERMeasureAC.W", "active power")

    def voltage(self) -> float:
        present = [n for n in VOLTAGE_POINTS if n in self.device.regmap]
        values = self._read_many(present, "AC voltage")
        for name in present:
            value = values[name]
            if isinstance(value, float):
                return value
        raise DeviceError(f"{self.name}: AC voltage is not implemented ({', '.join(present)})")

    def frequency(self) -> float:
        return self._number("DERMeasureAC.Hz", "frequency")

    def rated_power(self) -> float:
        return self._number("DERCapacity.WMaxRtg", "rated power")

    def raw_state(self) -> str:
        """The 701 InvSt symbol as the device reports it (e.g. RUNNING, FAULT)."""
        value = self._read_many(["DERMeasureAC.InvSt"], "operating state")["DERMeasureAC.InvSt"]
        symbol = self.device.regmap.point("DERMeasureAC.InvSt").symbol(value)
        if symbol is None:
            raise DeviceError(f"{self.name}: operating state InvSt={value!r} has no SunSpec symbol")
        return symbol

    def state(self) -> str:
        """ON, OFF or TRIPPED, from the device's InvSt (see ROLE_STATE)."""
        return ROLE_STATE[self.raw_state()]

    # -- commands ---------------------------------------------------------------------------

    def _guard_setpoint(self) -> None:
        """Give WSet the range +-rated power if the map does not declare one yet."""
        regmap = self.device.regmap
        if WSET not in regmap:
            raise DeviceError(f"{self.name}: the device has no {WSET} (model 704 missing)")
        point = regmap.point(WSET)
        if point.min is None and point.max is None:
            rated = self.rated_power()
            self.device.regmap = regmap.with_limits({WSET: (-rated, rated)})

    def set_power(self, watts: float) -> None:
        """Enable the active-power setpoint in watts and command ``watts`` (within +-rated)."""
        self._guard_setpoint()
        values: dict[str, Value] = {"DERCtlAC.WSetEna": "ENABLED", WSET: float(watts)}
        if "DERCtlAC.WSetMod" in self.device.regmap:
            values["DERCtlAC.WSetMod"] = "WATTS"
        try:
            self.device.write_many(values)
        except WriteRefused as exc:
            raise WriteRefused(f"{self.name}: {exc}") from None
        except ModbusError as exc:
            raise DeviceError(
                f"{self.name}: setting active power to {watts:g} W failed: {exc}"
            ) from exc

    def disconnect(self) -> None:
        self.device.client.close()
