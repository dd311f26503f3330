"""The ``sunspec`` driver of the :class:`Inverter` role: an inverter reached through its SunSpec
Modbus map (models 1, 701, 702, 704; 703, 713, 802 where present), discovered from the
device itself.

Values are read fresh with their scale factors on every call. Failures become
:class:`DeviceError` naming the device and what failed; a write the write guard refuses raises
:class:`WriteRefused` (a ValueError) naming the device, the point and the allowed range.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.devices.roles import DeviceError, Identity, Inverter
from harness.devices.sunspec_discovery import discover_device
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError, WriteRefused
from harness.transports.regmap import Value

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
# SunSpec 703 point -> (name in a profile's settings.enter_service, factor to the profile's unit).
ENTER_SERVICE = {
    "DEREnterService.ESVHi": ("voltage_high", 0.01),  # % of nominal voltage -> pu
    "DEREnterService.ESVLo": ("voltage_low", 0.01),
    "DEREnterService.ESHzHi": ("frequency_high", 1.0),
    "DEREnterService.ESHzLo": ("frequency_low", 1.0),
    "DEREnterService.ESDlyTms": ("delay", 1.0),
    "DEREnterService.ESRmpTms": ("ramp", 1.0),
}
# The unit's operation settings: name -> point (704 ramp in % of rated per second, 802 reserve %).
OPERATION = {
    "setpoint_ramp_pct_per_s": "DERCtlAC.WRmp",
    "soc_reserve_min_pct": "battery.SoCRsvMin",
    "soc_reserve_max_pct": "battery.SocRsvMax",
}
# What the unit reports of its battery: quantity -> points in order of preference (802, 713).
STORAGE_POINTS = {"soc": ("battery.SoC", "DERStorageCapacity.SoC"), "voltage": ("battery.V",)}


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
        return cls(name, discover_device(name, client, unit))

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

    def enter_service_settings(self) -> dict[str, float]:
        """The enter-service settings the unit reports (SunSpec 703), named and scaled as a
        profile's ``settings.enter_service``: voltages in pu, frequencies in Hz, times in s.
        Settings the device does not implement are left out; without model 703, DeviceError."""
        present = [p for p in ENTER_SERVICE if p in self.device.regmap]
        if not present:
            raise DeviceError(f"{self.name}: no enter-service settings (SunSpec model 703)")
        values = self._read_many(present, "enter-service settings (model 703)")
        return {
            ENTER_SERVICE[p][0]: v * ENTER_SERVICE[p][1]
            for p, v in values.items()
            if isinstance(v, float)
        }

    def operation_settings(self) -> dict[str, float]:
        """The setpoint ramp and SoC reserve the unit reports (SunSpec 704 WRmp, 802 SoCRsvMin
        and SocRsvMax), named as :data:`OPERATION`; those it does not implement are left out."""
        present = {name: p for name, p in OPERATION.items() if p in self.device.regmap}
        values = self._read_many(list(present.values()), "operation settings") if present else {}
        return {name: value for name, p in present.items() if isinstance(value := values[p], float)}

    def storage_readings(self) -> dict[str, float]:
        """What the unit itself reports of its battery (SunSpec 802, SoC also 713): ``soc`` %,
        ``voltage`` V. Those the device does not implement are left out."""
        wanted = {
            q: [p for p in points if p in self.device.regmap]
            for q, points in STORAGE_POINTS.items()
        }
        names = [p for points in wanted.values() for p in points]
        values = self._read_many(names, "battery readings (models 802, 713)") if names else {}
        out: dict[str, float] = {}
        for quantity, points in wanted.items():
            found = [v for p in points if isinstance(v := values[p], float)]
            if found:
                out[quantity] = found[0]
        return out

    def power_control(self) -> dict[str, Value]:
        """The active-power control as the device holds it now (704 WSetEna, WSetMod, WSet),
        to be put back with :meth:`restore_power_control` after a step that changed it."""
        present = [p for p in CONTROL_POINTS if p in self.device.regmap]
        values = self._read_many(present, "active-power control (model 704)")
        return {name: value for name, value in values.items() if value is not None}

    # -- commands ---------------------------------------------------------------------------

    def restore_power_control(self, saved: Mapping[str, Value]) -> None:
        """Write back what :meth:`power_control` read (the unit as it was found)."""
        self._guard_setpoint()
        try:
            self.device.write_many(dict(saved))
        except WriteRefused as exc:
            raise WriteRefused(f"{self.name}: {exc}") from None
        except ModbusError as exc:
            raise DeviceError(
                f"{self.name}: restoring the active-power control failed: {exc}"
            ) from exc

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
