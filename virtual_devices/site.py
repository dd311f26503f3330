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
from pathlib import Path
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
from harness.transports.can import load_database
from harness.transports.dialects.relay_bank import is_relay_bank
from virtual_devices.defects import AppliedDefect, defects_for, parse_defects
from virtual_devices.endpoints.bms import VirtualBms
from virtual_devices.endpoints.chamber import ChamberHandler
from virtual_devices.endpoints.ems import DEFAULT_MAP as EMS_MAP
from virtual_devices.endpoints.ems import EmsEndpoint
from virtual_devices.endpoints.fault_insertion import FaultInsertionEndpoint
from virtual_devices.endpoints.instruments import (
    GridSimulatorHandler,
    LoadBankHandler,
    PowerAnalyzerHandler,
    build_instrument,
)
from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint, defect_options
from virtual_devices.endpoints.inverter_can import InverterHeartbeat
from virtual_devices.endpoints.io_module import IoModuleEndpoint
from virtual_devices.endpoints.meter import meter_at_pcc
from virtual_devices.endpoints.pv_simulator import PvSimulatorHandler
from virtual_devices.endpoints.relay_bank import serve_relay_bank
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer
from virtual_devices.endpoints.sim_bus import sim_bus
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

HOST = "127.0.0.1"

BusFactory = Callable[[str], can.BusABC]
"""Opens the bus a virtual BMS transmits on, given its channel name."""


def _pv_rating(node: Any) -> float:
    """A home's PV inverter's AC rating, W (0: no PV), for the meter's full scale."""
    pv = node.pv
    if pv is None:
        return 0.0
    return float(pv.rating if pv.inverter_rating is None else pv.inverter_rating)


def sim_time_bus(channel: str) -> can.BusABC:
    """An in-process virtual bus that keeps each frame's site-time stamp (the lock-step SimClock).

    Out of process (``harness site up``) the site passes a bus that stamps wall-clock time instead.
    """
    return sim_bus(channel, preserve_timestamps=True)


@dataclass
class VirtualSite:
    """A running virtual site; ``endpoints`` maps device keys to real transport addresses."""

    site: Site
    plant: Plant
    lock: Any
    loop: LoopThread
    endpoints: dict[str, Any] = field(default_factory=dict)
    bench_endpoints: dict[str, Any] = field(default_factory=dict)
    """Test equipment the virtual batteries come with (``<node>.fault_insertion``): not devices
    of the site, so not in ``endpoints`` (nor in ``harness site up``'s endpoints file)."""
    _bms: list[VirtualBms] = field(default_factory=list)
    _heartbeats: list[InverterHeartbeat] = field(default_factory=list)
    _inverter_heartbeat: bool = True
    _servers: list[Any] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        site: Site,
        lock: Any,
        can_bus: BusFactory = sim_time_bus,
        inverter_heartbeat: bool | None = None,
    ) -> VirtualSite:
        """``inverter_heartbeat``: whether the virtual inverters send their heartbeat on their
        BMS's bus. By default they do on the in-process (simulated-time) site, as on a real one;
        out of process (``harness site up``) the buses are shared with outside clients, which
        stand in for the inverter's CAN side (see realtime.CanShare)."""
        defects = parse_defects(site)
        plant = Plant(plant_params(site, defects))
        vsite = cls(site=site, plant=plant, lock=lock, loop=LoopThread("virtual-site"))
        if inverter_heartbeat is None:
            inverter_heartbeat = can_bus is sim_time_bus
        vsite._inverter_heartbeat = inverter_heartbeat
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
                self._battery_bench(node, pnode, bms, can_bus, channel)
        inst = self.site.spec.instruments
        self._instrument("grid", inst.grid, GridSimulatorHandler)
        self._instrument("analyzer", inst.analyzer, PowerAnalyzerHandler)
        if inst.load_bank is not None and is_relay_bank(inst.load_bank.driver):
            self._relay_bank(inst.load_bank)
        elif inst.load_bank is not None:
            self._instrument("load_bank", inst.load_bank, LoadBankHandler)
        if inst.pcc_breaker is not None and inst.pcc_breaker.endpoint.transport == "virtual":
            io = IoModuleEndpoint(self.plant.pcc, lock=self.lock, loop=self.loop)
            io.start()
            self._servers.append(io)
            self.endpoints["pcc_breaker"] = ModbusTcpEndpoint(
                transport="modbus_tcp", host=HOST, port=io.port, unit=io.unit
            )
        if inst.chamber is not None:
            self._instrument("chamber", inst.chamber, ChamberHandler)
        if inst.pv_simulator is not None:
            self._instrument("pv_simulator", inst.pv_simulator, PvSimulatorHandler)
        self._meter(defects)
        ems = self.site.spec.ems
        if ems is not None and ems.endpoint.transport == "virtual" and self.plant.ems is not None:
            ems_map = self.site.resolve(Path(ems.options["map"])) if "map" in ems.options else None
            ems_server = EmsEndpoint(
                self.plant.ems,
                lambda: self.plant.t,
                self.plant.mark_event,
                lock=self.lock,
                loop=self.loop,
                map_path=ems_map or EMS_MAP,
            )
            ems_server.start()
            self._servers.append(ems_server)
            self.endpoints["ems"] = ModbusTcpEndpoint(
                transport="modbus_tcp", host=HOST, port=ems_server.port, unit=ems_server.unit
            )

    def _meter(self, defects: list[AppliedDefect]) -> None:
        """The settlement meter at the PCC, if the site has a virtual one."""
        cfg = self.site.spec.meter
        if cfg is None or cfg.endpoint.transport != "virtual":
            return
        ident = cfg.identity
        spec = self.site.spec
        server = meter_at_pcc(
            self.plant,
            {"Mn": ident.manufacturer, "Md": ident.model, "SN": ident.serial, "Vr": ident.firmware},
            defects_for(defects, "site", "meter"),
            max_power_w=sum(n.inverter.rated_power for n in spec.nodes)
            + sum(ld.power for n in spec.nodes for ld in n.loads)
            + sum(_pv_rating(n) for n in spec.nodes),
            nominal_voltage_v=spec.site.nominal_voltage,
            lock=self.lock,
            loop=self.loop,
        )
        server.start()
        self._servers.append(server)
        self.endpoints["meter"] = ModbusTcpEndpoint(
            transport="modbus_tcp", host=HOST, port=server.port, unit=server.unit
        )

    def _battery_bench(
        self, node: Any, pnode: Any, bms: VirtualBms, can_bus: BusFactory, channel: str
    ) -> None:
        """What sits around a virtual battery: its virtual inverter's CAN heartbeat on the BMS's
        bus (as on a real site, the inverter sends it), and a fault-insertion unit on its BMS's
        sense lines and that CAN link, unless the site names a real one."""
        link: InverterHeartbeat | None = None
        heartbeat = bms.binding.heartbeat
        virtual_inverter = node.inverter.endpoint.transport == "virtual"
        if virtual_inverter and heartbeat is not None and self._inverter_heartbeat:
            bus = can_bus(channel)
            try:
                link = InverterHeartbeat(bus, load_database(bms.binding.dbc), heartbeat)
            except BaseException:
                bus.shutdown()
                raise
            self._heartbeats.append(link)
        fiu = node.fault_insertion
        logic = getattr(pnode.battery, "bms", None)
        if logic is None or (fiu is not None and fiu.endpoint.transport != "virtual"):
            return
        server = FaultInsertionEndpoint(
            f"{node.name}.fault_insertion",
            logic,
            link,
            self.plant.mark_event,
            lock=self.lock,
            loop=self.loop,
        )
        server.start()
        self._servers.append(server)
        self.bench_endpoints[f"{node.name}.fault_insertion"] = ModbusTcpEndpoint(
            transport="modbus_tcp", host=HOST, port=server.port, unit=server.unit
        )

    def _instrument(self, key: str, cfg: InstrumentConfig | None, kind: Any) -> None:
        if cfg is None or cfg.endpoint.transport != "virtual":
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

    def _relay_bank(self, cfg: InstrumentConfig) -> None:
        """A relay-stepped load bank: a virtual relay controller per branch (relay_bank.py)."""
        if cfg.endpoint.transport != "virtual":
            return
        servers, endpoints = serve_relay_bank(cfg, self.plant, self.lock, self.loop)
        self._servers += servers
        self.endpoints["load_bank"] = endpoints

    def advance(self, until: float) -> None:
        """Step the plant and the CAN nodes together: each frame carries its due time's values.

        The inverters' heartbeats go out before the BMSs read their buses at the same instant.
        """
        heartbeats = self._heartbeats
        while True:
            due = min((b.node.next_due() for b in self._bms), default=until)
            if heartbeats:
                due = min(due, min(h.next_due() for h in heartbeats))
            if due > until:
                break
            self.plant.advance(due)
            for heartbeat in heartbeats:
                heartbeat.advance(due)
            for bms in self._bms:
                bms.advance(due)
        self.plant.advance(until)
        for heartbeat in heartbeats:
            heartbeat.advance(until)
        for bms in self._bms:
            bms.advance(until)

    def stop(self) -> None:
        for server in reversed(self._servers):
            with contextlib.suppress(Exception):  # keep tearing down the rest
                server.stop()
        for bms in self._bms:
            bms.close()
        for heartbeat in self._heartbeats:
            heartbeat.close()
        self.loop.stop()
