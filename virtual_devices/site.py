"""Build a virtual site from a site file: the plant, its endpoints, and the defects it carries.

Every endpoint is a real protocol server (Modbus TCP, python-can virtual bus, SCPI over TCP) on
127.0.0.1 with an OS-chosen port. The harness is handed only their addresses, as on a bench;
it never reads the plant directly.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import can

from harness.config.site import (
    CanEndpoint,
    InstrumentConfig,
    ModbusTcpEndpoint,
    Site,
    VisaEndpoint,
)
from harness.transports.aioloop import LoopThread
from virtual_devices.defects import AppliedDefect, defects_for, parse_defects
from virtual_devices.endpoints.bms import VirtualBms
from virtual_devices.endpoints.instruments import (
    GridSimulatorHandler,
    LoadBankHandler,
    PowerAnalyzerHandler,
    build_instrument,
)
from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint, defect_options
from virtual_devices.endpoints.io_module import IoModuleEndpoint
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

HOST = "127.0.0.1"

BusFactory = Callable[[str], can.BusABC]
"""Opens the bus a virtual BMS transmits on, given its channel name."""


def sim_time_bus(channel: str) -> can.BusABC:
    """An in-process virtual bus that keeps each frame's site-time stamp (the lock-step SimClock).

    Out of process (``harness site up``) the site passes a bus that stamps wall-clock time instead.
    """
    return can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)


@dataclass
class VirtualSite:
    """A running virtual site; ``endpoints`` maps device keys to real transport addresses."""

    site: Site
    plant: Plant
    lock: Any
    loop: LoopThread
    endpoints: dict[str, Any] = field(default_factory=dict)
    _bms: list[VirtualBms] = field(default_factory=list)
    _servers: list[Any] = field(default_factory=list)

    @classmethod
    def start(cls, site: Site, lock: Any, can_bus: BusFactory = sim_time_bus) -> VirtualSite:
        defects = parse_defects(site)
        plant = Plant(plant_params(site, defects))
        vsite = cls(site=site, plant=plant, lock=lock, loop=LoopThread("virtual-site"))
        try:
            vsite._start_endpoints(defects, can_bus)
        except BaseException:
            vsite.stop()
            raise
        return vsite

    def _start_endpoints(self, defects: list[AppliedDefect], can_bus: BusFactory) -> None:
        tag = uuid.uuid4().hex[:8]
        for node in self.site.spec.nodes:
            pnode = self.plant.nodes[node.name]
            if node.inverter.endpoint.transport == "virtual":
                ident = node.inverter.identity
                server = SunSpecInverterEndpoint(
                    pnode,
                    self.plant,
                    identity={
                        "Mn": ident.manufacturer,
                        "Md": ident.model,
                        "SN": ident.serial,
                        "Vr": ident.firmware,
                    },
                    lock=self.lock,
                    loop=self.loop,
                    **defect_options(defects_for(defects, node.name, "inverter")),
                )
                server.start()
                self._servers.append(server)
                self.endpoints[f"{node.name}.inverter"] = ModbusTcpEndpoint(
                    transport="modbus_tcp", host=HOST, port=server.port, unit=server.unit
                )
            if node.bms.endpoint.transport == "virtual":
                channel = f"vsite-{tag}-{node.name}"
                bus = can_bus(channel)
                try:
                    bms = VirtualBms.for_site(
                        bus,
                        pnode.battery,
                        identity=node.bms.identity.manufacturer,
                        dbc=self.site.resolve(node.bms.dbc),
                        defects=defects_for(defects, node.name, "bms"),
                    )
                except BaseException:
                    bus.shutdown()
                    raise
                self._bms.append(bms)
                self.endpoints[f"{node.name}.bms"] = CanEndpoint(
                    transport="can", interface="virtual", channel=channel, bitrate=None
                )
        inst = self.site.spec.instruments
        self._instrument("grid", inst.grid, GridSimulatorHandler)
        self._instrument("analyzer", inst.analyzer, PowerAnalyzerHandler)
        if inst.load_bank is not None:
            self._instrument("load_bank", inst.load_bank, LoadBankHandler)
        if inst.pcc_breaker is not None and inst.pcc_breaker.endpoint.transport == "virtual":
            io = IoModuleEndpoint(self.plant.pcc, lock=self.lock, loop=self.loop)
            io.start()
            self._servers.append(io)
            self.endpoints["pcc_breaker"] = ModbusTcpEndpoint(
                transport="modbus_tcp", host=HOST, port=io.port, unit=io.unit
            )

    def _instrument(self, key: str, cfg: InstrumentConfig, kind: Any) -> None:
        if cfg.endpoint.transport != "virtual":
            return
        ident = cfg.identity
        identity = InstrumentIdentity(ident.manufacturer, ident.model, ident.serial, ident.firmware)
        # The site's driver name is the dialect the virtual instrument speaks, as the driver does.
        handler = build_instrument(kind, cfg.driver, self.plant, self.lock, identity, cfg.options)
        server = ScpiServer(handler, loop=self.loop)
        server.start()
        self._servers.append(server)
        self.endpoints[key] = VisaEndpoint(
            transport="visa", resource=f"TCPIP::{HOST}::{server.port}::SOCKET"
        )

    def advance(self, until: float) -> None:
        """Step the plant and the CAN nodes together: each frame carries its due time's values."""
        while True:
            due = min((b.node.next_due() for b in self._bms), default=until)
            if due > until:
                break
            self.plant.advance(due)
            for bms in self._bms:
                bms.advance(due)
        self.plant.advance(until)
        for bms in self._bms:
            bms.advance(until)

    def stop(self) -> None:
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):  # keep tearing down the rest
                server.stop()
        for bms in self._bms:
            bms.close()
        self.loop.stop()
