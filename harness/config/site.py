"""Site files: what the site is made of and how to reach each endpoint.

The same scenarios run on a bench, in the field and in CI; only this file changes. An endpoint is
``virtual`` (started in-process by virtual_devices) or a real transport.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.config.errors import ConfigError, ConfigErrors
from harness.config.units import AmpHours, Celsius, Hertz, Ohms, Percent, Seconds, Volts, Watts
from harness.config.validation import field_path, validate
from harness.config.yamlsrc import LineMap, load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VirtualEndpoint(_Strict):
    transport: Literal["virtual"]


class ModbusTcpEndpoint(_Strict):
    transport: Literal["modbus_tcp"]
    host: str
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255)
    timeout: Seconds = 1.0


class ModbusRtuEndpoint(_Strict):
    transport: Literal["modbus_rtu"]
    port: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    unit: int = Field(1, ge=0, le=247)
    timeout: Seconds = 1.0


class CanEndpoint(_Strict):
    transport: Literal["can"]
    interface: str
    channel: str
    bitrate: int | None = 500000


class VisaEndpoint(_Strict):
    transport: Literal["visa"]
    resource: str
    timeout: Seconds = 2.0


class ManualEndpoint(_Strict):
    """No automated link: an operator acts on the device when a step asks (``driver: operator``)."""

    transport: Literal["manual"]


Endpoint = Annotated[
    VirtualEndpoint
    | ModbusTcpEndpoint
    | ModbusRtuEndpoint
    | CanEndpoint
    | VisaEndpoint
    | ManualEndpoint,
    Field(discriminator="transport"),
]


class IdentityConfig(_Strict):
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""


class GridFormingConfig(_Strict):
    """A virtual inverter that can form an intentional island (virtual_devices/plant/
    grid_forming.py). ``enabled``: intentional islanding on at start (SunSpec 702 IntIslandCat
    switches it at run time); off, the unit is grid-following in every respect."""

    mode: Literal["droop", "isochronous"] = "droop"
    enabled: bool = False
    detection: Seconds = 0.02
    transfer: Seconds = 0.02
    voltage_ramp: Seconds = 0.01
    frequency_droop: Percent = Field(1.0, gt=0, le=10)
    reserve_soc: Percent = Field(10.0, ge=0, lt=100)


class InverterVirtual(_Strict):
    """Behaviour of a virtual inverter (ignored for real endpoints)."""

    anti_islanding_detection: Seconds = 0.5
    efficiency: float = Field(0.96, gt=0, le=1)
    grid_forming: GridFormingConfig | None = None


class InverterConfig(_Strict):
    driver: Literal["sunspec"] = "sunspec"
    endpoint: Endpoint
    rated_power: Watts
    identity: IdentityConfig = IdentityConfig()
    virtual: InverterVirtual = InverterVirtual()


class BmsConfig(_Strict):
    driver: Literal["dbc"] = "dbc"
    dbc: Path
    binding: Path
    endpoint: Endpoint
    node: str = "BMS"
    identity: IdentityConfig = IdentityConfig()
    stale_after: Seconds = 5.0


class BatteryConfig(_Strict):
    """The virtual battery behind a virtual BMS.

    ``thermal_capacity`` (J/degC) and ``cooling`` (W/degC, to ambient) shape its first-order
    thermal model; what its BMS decides (derating, protections) is virtual_devices data.
    """

    cells_in_series: int = Field(15, ge=1)
    capacity: AmpHours = 100.0
    initial_soc: Percent = 60.0
    resistance: Ohms = 0.02
    ambient: Celsius = 25.0
    thermal_capacity: float = Field(40000.0, gt=0)
    cooling: float = Field(8.0, gt=0)
    charge_voltage_limit: Volts
    discharge_voltage_limit: Volts
    max_charge_current: float = Field(100.0, gt=0)
    max_discharge_current: float = Field(100.0, gt=0)


class PvConfig(_Strict):
    """A home's PV array and its grid-following PV inverter (virtual: virtual_devices/plant/
    pv.py, irradiance from its data profile or a ``pv_simulator``). ``rating``: the array's DC
    power at standard test conditions; ``inverter_rating``: the PV inverter's AC rating (default:
    the array's); ``ambient``: the air the array stands in."""

    rating: Watts = Field(gt=0)
    inverter_rating: Watts | None = Field(None, gt=0)
    ambient: Celsius = 25.0


class SharedStorageConfig(_Strict):
    """The storage a ``dc_bus`` or ``hybrid`` site shares (virtual_devices/plant/topology.py):
    the one bank on the central DC bus, or the bulk bank backing every home. ``share``
    (hybrid only): the fixed part of each home's DC power the bulk bank carries."""

    battery: BatteryConfig
    share: Percent | None = Field(None, gt=0, lt=100)


class LoadConfig(_Strict):
    """A home's load behind its own breaker (virtual sites: resistive, ``power`` at nominal)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    priority: Literal["critical", "essential", "deferrable"]
    power: Watts


class NodeConfig(_Strict):
    """One home. ``fault_insertion``: the bench's fault-insertion unit on its battery (BMS sense
    lines, the inverter's CAN link), e.g. ``{driver: modbus_fiu, endpoint: {transport:
    modbus_tcp, host: ...}, options: {map: ../maps/bms-fiu.yaml}}``; a virtual battery comes with
    a virtual one when none is named."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    inverter: InverterConfig
    bms: BmsConfig
    battery: BatteryConfig | None = None
    loads: list[LoadConfig] = Field(default_factory=list)
    fault_insertion: InstrumentConfig | None = None
    pv: PvConfig | None = None

    @field_validator("loads")
    @classmethod
    def _unique_loads(cls, loads: list[LoadConfig]) -> list[LoadConfig]:
        names = [load.name for load in loads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"load names must be unique in a home; repeated: {', '.join(dupes)}")
        return loads


class InstrumentConfig(_Strict):
    driver: str
    endpoint: Endpoint
    identity: IdentityConfig = IdentityConfig()
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _manual_means_operator(self) -> InstrumentConfig:
        manual = self.endpoint.transport == "manual"
        if manual != (self.driver == "operator"):
            raise ValueError(
                "driver 'operator' goes with endpoint {transport: manual} (a person acts on the "
                f"device when asked); got driver {self.driver!r} with a {self.endpoint.transport} "
                "endpoint"
            )
        return self


class Instruments(_Strict):
    """The bench's instruments. All optional: a field node has none, and a scenario that needs
    one it lacks says so (harness/devices/absent.py)."""

    grid: InstrumentConfig | None = None
    analyzer: InstrumentConfig | None = None
    load_bank: InstrumentConfig | None = None
    pcc_breaker: InstrumentConfig | None = None
    chamber: InstrumentConfig | None = None
    """A climate chamber the batteries stand in (role ``chamber``, SCPI): the thermal scenario
    sets it to the contract's worst-case ambient; a virtual one sets the virtual packs'."""
    pv_simulator: InstrumentConfig | None = None
    """The DC source standing in for the homes' PV arrays (role ``pv_simulator``, SCPI): a
    scenario programs its irradiance level; a virtual one drives every virtual array."""


class IslandLoadConfig(_Strict):
    power: Watts = 0.0
    quality_factor: float = Field(1.0, ge=0)


class SiteInfo(_Strict):
    name: str
    topology: Literal["ac_coupled", "dc_bus", "hybrid"]
    nominal_voltage: Volts
    nominal_frequency: Hertz
    settings: Path | None = None


class SafetyConfig(_Strict):
    """Limits the safety supervisor enforces throughout a run (DESIGN section 9)."""

    max_cell_temperature: Celsius | None = None
    trip_on_alarms: list[str] | None = None  # None: any alarm the BMS map defines
    poll_period: Seconds = 0.5


class Defect(_Strict):
    """A wrong behaviour injected into a virtual device (DESIGN section 6)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    device: str = Field(pattern=r"^[A-Za-z0-9_-]+\.[a-z_]+$")
    kind: str
    value: str | float


class SiteFile(_Strict):
    site: SiteInfo
    nodes: list[NodeConfig] = Field(min_length=1)
    instruments: Instruments = Field(default_factory=Instruments)
    ems: InstrumentConfig | None = None
    """The site's energy management system (role ``ems``: shutdown, black start), e.g.
    ``{driver: modbus_ems, endpoint: {transport: virtual}, options: {map: ../maps/ems.yaml}}``;
    a site without one leaves out the scenarios that need it."""
    meter: InstrumentConfig | None = None
    """The settlement meter at the PCC (role ``meter``), e.g. ``{driver: sunspec, endpoint:
    {transport: virtual}}``: SunSpec models 1 and 203 over Modbus."""
    island_load: IslandLoadConfig = IslandLoadConfig()
    shared_storage: SharedStorageConfig | None = None
    """The dc_bus bank or hybrid bulk bank (site.topology); none on an ac_coupled site."""
    safety: SafetyConfig = SafetyConfig()
    defects: list[Defect] = Field(default_factory=list)

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, nodes: list[NodeConfig]) -> list[NodeConfig]:
        names = [n.name for n in nodes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"node names must be unique; repeated: {', '.join(sorted(dupes))}")
        return nodes

    @model_validator(mode="after")
    def _storage_fits_topology(self) -> SiteFile:
        topology = self.site.topology
        storage = self.shared_storage
        if topology == "ac_coupled":
            if storage is not None:
                raise ValueError(
                    "shared_storage: an ac_coupled site has none (each home has its own "
                    "battery); use topology dc_bus or hybrid"
                )
            return self
        if storage is None:
            raise ValueError(f"a {topology} site needs 'shared_storage' (its shared bank)")
        if topology == "dc_bus" and storage.share is not None:
            raise ValueError("shared_storage.share: a dc_bus bank carries all the homes' power")
        if topology == "hybrid" and storage.share is None:
            raise ValueError(
                "shared_storage.share: a hybrid site needs the part of each home's power its "
                "bulk bank carries (e.g. 30 %)"
            )
        return self

    @model_validator(mode="after")
    def _virtual_needs_battery(self) -> SiteFile:
        if self.site.topology == "dc_bus":
            return self  # every home's BMS reports the shared bank
        for node in self.nodes:
            if node.bms.endpoint.transport == "virtual" and node.battery is None:
                raise ValueError(f"node {node.name}: a virtual BMS needs a 'battery' section")
        return self


class Site(BaseModel):
    """A loaded site: the file's content with paths resolved against the file's folder."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    spec: SiteFile
    sha256: str
    lines: LineMap | None = None

    def line(self, *loc: str | int) -> int | None:
        """Source line of a field, for errors found after loading (e.g. defects)."""
        return self.lines.line(loc) if self.lines else None

    @property
    def is_virtual(self) -> bool:
        return all(e.transport == "virtual" for e in self.endpoints())

    @property
    def has_virtual(self) -> bool:
        return any(e.transport == "virtual" for e in self.endpoints())

    def endpoints(self) -> list[Any]:
        out: list[Any] = []
        for node in self.spec.nodes:
            out += [node.inverter.endpoint, node.bms.endpoint]
            if node.fault_insertion is not None:
                out.append(node.fault_insertion.endpoint)
        instruments = self.spec.instruments
        for inst in (
            instruments.grid,
            instruments.analyzer,
            instruments.load_bank,
            instruments.pcc_breaker,
            instruments.chamber,
            instruments.pv_simulator,
            self.spec.meter,
        ):
            if inst is not None:
                out.append(inst.endpoint)
        if self.spec.ems is not None:
            out.append(self.spec.ems.endpoint)
        return out

    def resolve(self, relative: Path) -> Path:
        return relative if relative.is_absolute() else (self.path.parent / relative)

    def node(self, name: str) -> NodeConfig:
        for node in self.spec.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def load_site(path: Path) -> Site:
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigErrors.single(
            path, "expected a mapping with 'site', 'nodes' and 'instruments'", 1
        )
    spec = validate(SiteFile, data, path, lines)
    from harness.config.serial_lines import line_conflicts  # imports this module

    conflicts = line_conflicts(spec)
    if conflicts:  # devices on one serial port share one line (harness/transports/serial_line.py)
        raise ConfigErrors(
            [ConfigError(path, lines.line(loc), field_path(loc), msg) for loc, msg in conflicts]
        )
    site = Site(
        path=path, spec=spec, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), lines=lines
    )
    missing: list[tuple[tuple[str | int, ...], Path]] = []
    for i, node in enumerate(spec.nodes):
        for key, rel in (("dbc", node.bms.dbc), ("binding", node.bms.binding)):
            if not site.resolve(rel).is_file():
                missing.append(((("nodes", i, "bms", key)), rel))
    if spec.site.settings is not None and not site.resolve(spec.site.settings).is_file():
        missing.append((("site", "settings"), spec.site.settings))
    if missing:
        raise ConfigErrors(
            [
                ConfigError(
                    path,
                    lines.line(loc),
                    field_path(loc),
                    f"file {rel} not found (relative to {path.parent})",
                )
                for loc, rel in missing
            ]
        )
    return site
