"""A name in the site file selects a driver (as python-can's interface registry does for adapters).

A builder takes the device's key, its resolved endpoint, its configuration section, the site
clock and the site, and returns a connected driver. Drivers are imported when first used, so a
site that names no VISA instrument never imports pyvisa.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.clock import Clock
from harness.config.errors import ConfigErrors
from harness.config.site import (
    CanEndpoint,
    ModbusRtuEndpoint,
    ModbusTcpEndpoint,
    Site,
    VisaEndpoint,
)
from harness.devices.roles import Device, DeviceError

Builder = Callable[[str, Any, Any, Clock, Site], Device]


def _modbus_client(key: str, endpoint: Any) -> Any:
    from harness.transports.modbus import ModbusClient

    if isinstance(endpoint, ModbusTcpEndpoint):
        return ModbusClient(endpoint.host, endpoint.port, timeout=endpoint.timeout)
    if isinstance(endpoint, ModbusRtuEndpoint):
        from harness.transports.serial_line import LINES

        # Devices on one RS-485 port share its one master (harness/transports/serial_line.py).
        return LINES.handle(
            endpoint.port,
            baudrate=endpoint.baudrate,
            parity=endpoint.parity,
            timeout=endpoint.timeout,
        )
    raise DeviceError(
        f"{key}: a Modbus driver needs a modbus_tcp or modbus_rtu endpoint, "
        f"not {endpoint.transport}"
    )


def _sunspec_inverter(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from harness.devices.inverter import SunSpecInverter

    client = _modbus_client(key, endpoint)
    try:
        return SunSpecInverter.connect(key, client, endpoint.unit)
    except BaseException:
        client.close()
        raise


def _coil_breaker(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from pathlib import Path

    from harness.devices.breaker import DEFAULT_POINT, ModbusCoilBreaker

    if "map" not in cfg.options:
        raise ConfigErrors.single(
            site.path,
            "needs options.map (the I/O module's register map)",
            site.line("instruments", "pcc_breaker"),
            "instruments.pcc_breaker.options.map",
        )
    client = _modbus_client(key, endpoint)
    point = cfg.options.get("point", DEFAULT_POINT)
    return ModbusCoilBreaker.from_map(
        key, client, site.resolve(Path(cfg.options["map"])), endpoint.unit, point
    )


def _modbus_fiu(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from pathlib import Path

    from harness.devices.fault_insertion import DEFAULT_MAP, ModbusFaultInsertion

    client = _modbus_client(key, endpoint)
    map_path = site.resolve(Path(cfg.options["map"])) if "map" in cfg.options else DEFAULT_MAP
    try:
        return ModbusFaultInsertion.from_map(key, client, map_path, endpoint.unit)
    except BaseException:
        client.close()
        raise


def _modbus_ems(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from pathlib import Path

    from harness.devices.ems import DEFAULT_MAP, ModbusEms

    client = _modbus_client(key, endpoint)
    map_path = site.resolve(Path(cfg.options["map"])) if "map" in cfg.options else DEFAULT_MAP
    try:
        return ModbusEms.from_map(key, client, map_path, endpoint.unit)
    except BaseException:
        client.close()
        raise


def _sunspec_meter(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from harness.devices.meter import SunSpecMeter

    client = _modbus_client(key, endpoint)
    try:
        return SunSpecMeter.connect(key, client, endpoint.unit)
    except BaseException:
        client.close()
        raise


def _dbc_bms(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from harness.devices.bms import DbcBms, load_bms_map
    from harness.transports.can import CanTransport, load_database, open_bus

    if not isinstance(endpoint, CanEndpoint):
        raise DeviceError(f"{key}: a DBC BMS needs a can endpoint, not {endpoint.transport}")
    db = load_database(site.resolve(cfg.dbc))
    bms_map = load_bms_map(site.resolve(cfg.binding), db)
    transport = CanTransport(
        open_bus(endpoint.interface, endpoint.channel, endpoint.bitrate), db, clock.bus_time
    )
    if clock.simulated:
        clock.add_advancer(transport.advance)  # type: ignore[attr-defined]
    else:
        transport.start()
    return DbcBms(transport, bms_map, clock.now, stale_after_s=cfg.stale_after, name=key)


def _scpi(cls_path: str, clocked: bool = False, options: bool = False) -> Builder:
    def build(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
        import importlib

        if not isinstance(endpoint, VisaEndpoint):
            raise DeviceError(
                f"{key}: an SCPI instrument needs a visa endpoint, not {endpoint.transport}"
            )
        module, _, name = cls_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        # The driver name is the command dialect (harness/transports/dialects/<driver>.yaml).
        extra: dict[str, Any] = {"clock": clock} if clocked else {}
        if clocked or options:
            extra["options"] = dict(cfg.options)
        device: Device = cls.open(
            key, endpoint.resource, timeout_s=endpoint.timeout, dialect=cfg.driver, **extra
        )
        return device

    return build


def _relay_bank(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    """A relay-stepped load bank: a controller per branch (harness/devices/relay_loadbank.py)."""
    from harness.devices.relay_loadbank import RelayLoadBank

    return RelayLoadBank.open(key, endpoint, cfg.options, cfg.driver)


def _operator_breaker(key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site) -> Device:
    from harness.devices.operator import OperatorBreaker

    return OperatorBreaker.from_options(key, clock, cfg.options)


class DeviceRegistry:
    """(role, driver name) -> builder."""

    def __init__(self) -> None:
        self._builders: dict[tuple[str, str], Builder] = {}

    def register(self, role: str, driver: str, builder: Builder) -> None:
        self._builders[role, driver] = builder

    def drivers(self, role: str) -> list[str]:
        return sorted(d for r, d in self._builders if r == role)

    def build(
        self, role: str, driver: str, key: str, endpoint: Any, cfg: Any, clock: Clock, site: Site
    ) -> Device:
        builder = self._builders.get((role, driver))
        if builder is None:
            known = ", ".join(self.drivers(role)) or "none"
            raise ConfigErrors.single(
                site.path,
                f"unknown {role} driver {driver!r}; expected one of: {known}",
                None,
                f"{key}.driver",
            )
        return builder(key, endpoint, cfg, clock, site)


def default_registry() -> DeviceRegistry:
    registry = DeviceRegistry()
    registry.register("inverter", "sunspec", _sunspec_inverter)
    registry.register("bms", "dbc", _dbc_bms)
    registry.register("breaker", "modbus_coil", _coil_breaker)
    registry.register("fault_insertion", "modbus_fiu", _modbus_fiu)
    registry.register("ems", "modbus_ems", _modbus_ems)
    registry.register("meter", "sunspec", _sunspec_meter)
    # Every instrument dialect (a data file per family: scpi, chroma-61800, yokogawa-wt1800 ...)
    # registers the table-driven SCPI driver of each role it serves, under the family's name.
    from harness.transports.dialects import available, load_dialect

    scpi_drivers = {
        "grid": _scpi("harness.devices.grid.ScpiGridSimulator"),
        "analyzer": _scpi("harness.devices.analyzer.ScpiPowerAnalyzer", clocked=True),
        "load_bank": _scpi("harness.devices.loadbank.ScpiLoadBank"),
        "chamber": _scpi("harness.devices.chamber.ScpiChamber"),
        "pv_simulator": _scpi("harness.devices.pv_simulator.ScpiPvSimulator", options=True),
    }
    for family in available():
        for role, spec in load_dialect(family).roles.items():
            relays = role == "load_bank" and spec.setting("style") == "relay_bank"
            registry.register(role, family, _relay_bank if relays else scpi_drivers[role])
    registry.register("breaker", "operator", _operator_breaker)
    return registry
