"""The EMS role and its ``modbus_ems`` driver: the site's energy management system, reached
through its own register map (``fixtures/maps/ems.yaml``).

A black-start scenario asks the EMS to shut the site down, to black-start it, and afterwards what
it did: its state and the log of the steps it completed, each with the seconds since the
command. The log is the EMS's own account; the scenario times what matters for the buyer (the
critical loads back) on the power analyzer, and compares the account's order with the
contract's codified sequence. Every write passes the write guard (declared writable, a declared
symbol).
"""

from __future__ import annotations

from pathlib import Path

from harness.devices.roles import Device, DeviceError, Identity
from harness.transports.modbus import MappedDevice, ModbusClient, ModbusError
from harness.transports.regmap import Value
from harness.transports.yamlmap import load_yaml_map

DEFAULT_MAP = Path(__file__).resolve().parents[2] / "fixtures" / "maps" / "ems.yaml"
"""The map of the virtual EMS (and of any EMS that implements it)."""
COMMAND, MODE, STATE, STEP, COUNT, THRESHOLD = (
    "Control.Command",
    "Control.Mode",
    "Status.State",
    "Status.Step",
    "Status.StepCount",
    "PeakShaving.Threshold",
)
SOC, SHED, SITE_POWER = "Status.AggregateSoc", "Status.ShedLoads", "Dispatch.SitePower"


class Ems(Device):
    """What a scenario may ask of the site's EMS."""

    def shutdown(self) -> None:
        """Site off: every battery's contactor held open, every load breaker open."""
        raise NotImplementedError

    def normal(self) -> None:
        """Normal operation: every battery released, every load breaker closed."""
        raise NotImplementedError

    def black_start(self) -> None:
        """Start the black-start sequence (the EMS refuses unless the site is shut down and
        the grid gone: :class:`DeviceError`)."""
        raise NotImplementedError

    def peak_shaving(self, threshold_w: float) -> None:
        """Hold the import through the PCC at ``threshold_w`` (W) by discharging the units."""
        raise NotImplementedError

    def self_consumption(self) -> None:
        """Hold the PCC flow near zero: charge from a PV surplus, discharge to cover the load."""
        raise NotImplementedError

    def tou(self) -> None:
        """Follow the EMS's own tariff day (charge, discharge, self-consume, idle)."""
        raise NotImplementedError

    def dispatch(self, site_power_w: float) -> None:
        """Take the units' total to ``site_power_w`` (W, + discharge): the EMS shares it among
        its units and brings them in at its own coordinated ramp (mode DISPATCH)."""
        raise NotImplementedError

    def aggregate_soc(self) -> float:
        """The site's SoC as the EMS aggregates it (energy-weighted), %."""
        raise NotImplementedError

    def shed_loads(self) -> int:
        """Load breakers the EMS holds open by its island load shedding."""
        raise NotImplementedError

    def state(self) -> str:
        """NORMAL, SHUTDOWN, BLACK_START (running), ISLANDED (done), FAULT (given up),
        PEAK_SHAVING, SELF_CONSUMPTION, TOU or DISPATCH."""
        raise NotImplementedError

    def current_step(self) -> str | None:
        """The step being taken, or the one given up on; None otherwise."""
        raise NotImplementedError

    def sequence(self) -> list[tuple[str, float]]:
        """The steps the last black start completed, in order: (step name, seconds since the
        command). Step names in lower case, as a contract writes them."""
        raise NotImplementedError


class ModbusEms(Ems):
    """An EMS behind a :class:`MappedDevice` with the points of ``ems.yaml``."""

    def __init__(self, name: str, device: MappedDevice) -> None:
        self.name = name
        self.device = device
        if device.client.label is None:  # transactions are recorded under the device's name
            device.client.label = name
        for point in (COMMAND, MODE, STATE, STEP, COUNT, "Log.1.Step", "Log.1.Time"):
            device.regmap.point(point)
        self.entries = 0
        while f"Log.{self.entries + 1}.Step" in device.regmap:
            self.entries += 1

    @classmethod
    def from_map(
        cls, name: str, client: ModbusClient, map_path: Path = DEFAULT_MAP, unit: int = 1
    ) -> ModbusEms:
        return cls(name, MappedDevice(client, load_yaml_map(map_path), unit))

    def modbus_device(self) -> MappedDevice:
        """The Modbus device behind the role, for protocol-level checks (conformance)."""
        return self.device

    def identity(self) -> Identity:
        return Identity(
            model=f"EMS ({self.device.regmap.name})",
            extra={"endpoint": self.device.client.endpoint},
        )

    def _symbol(self, point: str, value: Value) -> str:
        name = self.device.regmap.point(point).symbol(value)
        if name is None:
            raise DeviceError(f"{self.name}: {point} reads {value!r}, none of its symbols")
        return name

    def _number(self, point: str, symbol: str) -> float:
        return float(self.device.regmap.point(point).symbols[symbol])

    def _write(self, point: str, symbol: str, what: str) -> None:
        try:
            self.device.write(point, self._number(point, symbol))
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: {what} refused: {exc}") from exc

    def _read(self, names: list[str]) -> dict[str, Value]:
        try:
            return self.device.read_many(names)
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: reading {', '.join(names)} failed: {exc}") from exc

    def shutdown(self) -> None:
        self._write(MODE, "SHUTDOWN", "shutdown")

    def normal(self) -> None:
        self._write(MODE, "NORMAL", "normal operation")

    def black_start(self) -> None:
        self._write(COMMAND, "BLACK_START", "black start")

    def _mode_at(self, point: str, watts: float, mode: str, what: str) -> None:
        """Write a mode's power setting (the map's unit is kW), then switch to the mode."""
        try:
            self.device.write(point, watts / 1000.0)
        except ModbusError as exc:
            raise DeviceError(f"{self.name}: {what} setting refused: {exc}") from exc
        self._write(MODE, mode, what)

    def peak_shaving(self, threshold_w: float) -> None:
        self._mode_at(THRESHOLD, threshold_w, "PEAK_SHAVING", "peak shaving")

    def self_consumption(self) -> None:
        self._write(MODE, "SELF_CONSUMPTION", "self-consumption")

    def tou(self) -> None:
        self._write(MODE, "TOU", "time-of-use shift")

    def dispatch(self, site_power_w: float) -> None:
        self._mode_at(SITE_POWER, site_power_w, "DISPATCH", "site dispatch")

    def _value(self, point: str) -> float:
        value = self._read([point])[point]
        if not isinstance(value, float):
            raise DeviceError(f"{self.name}: {point} reads {value!r}")
        return value

    def aggregate_soc(self) -> float:
        return self._value(SOC)

    def shed_loads(self) -> int:
        return int(self._value(SHED))

    def state(self) -> str:
        return self._symbol(STATE, self._read([STATE])[STATE])

    def current_step(self) -> str | None:
        step = self._symbol(STEP, self._read([STEP])[STEP])
        return None if step == "NONE" else step.lower()

    def sequence(self) -> list[tuple[str, float]]:
        count = self._read([COUNT])[COUNT]
        if not isinstance(count, float):
            raise DeviceError(f"{self.name}: {COUNT} reads {count!r}")
        n = min(int(count), self.entries)
        names = [f"Log.{i}.{part}" for i in range(1, n + 1) for part in ("Step", "Time")]
        values = self._read(names) if names else {}
        out = []
        for i in range(1, n + 1):
            step = self._symbol(f"Log.{i}.Step", values[f"Log.{i}.Step"]).lower()
            at = values[f"Log.{i}.Time"]
            if not isinstance(at, float):
                raise DeviceError(f"{self.name}: Log.{i}.Time reads {at!r}")
            out.append((step, at))
        return out

    def disconnect(self) -> None:
        self.device.client.close()
