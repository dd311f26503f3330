"""The site as the harness reaches it: its clock and a driver per role, whatever is behind them.

``open_bench`` starts the virtual parts of a site (if any), resolves every endpoint to a real
transport address and binds drivers to them by the names the site file gives. Scenarios see only
roles; nothing here tells them whether a device is virtual.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from harness.clock import Clock, RealClock, SimClock
from harness.config.contract import Contract
from harness.config.errors import ConfigErrors
from harness.config.site import Site
from harness.config.units import to_unit
from harness.devices.registry import DeviceRegistry, default_registry
from harness.devices.roles import Bms, Breaker, GridSimulator, Inverter, PowerAnalyzer


@dataclass
class NodeDevices:
    name: str
    inverter: Inverter
    bms: Bms


@dataclass
class Bench:
    """Clock, nominal values and a device per role; ``close`` releases everything it opened."""

    site: Site
    contract: Contract
    clock: Clock
    nodes: dict[str, NodeDevices]
    grid: GridSimulator
    analyzer: PowerAnalyzer
    load_bank: Any | None
    pcc_breaker: Breaker | None
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def nominal_voltage(self) -> float:
        return self.site.spec.site.nominal_voltage

    @property
    def nominal_frequency(self) -> float:
        return self.site.spec.site.nominal_frequency

    def per_unit_voltage(self, value: Any) -> float:
        """A voltage given in pu (e.g. "0.05 pu") in volts at this site's nominal."""
        return to_unit(value, "pu") * self.nominal_voltage

    def per_unit_current(self, value: Any, rated_power_w: float) -> float:
        """A current in pu of a unit's rated current at nominal voltage, in amperes."""
        return to_unit(value, "pu") * rated_power_w / self.nominal_voltage

    @staticmethod
    def seconds(value: Any) -> float:
        return to_unit(value, "s")

    def dispatch_all(self, fraction: float) -> None:
        """Command every inverter to ``fraction`` of its rated power (+ export)."""
        for node in self.nodes.values():
            node.inverter.set_power(fraction * node.inverter.rated_power())

    def restore(self) -> None:
        """Back to normal: grid nominal, PCC closed, island load off, units back in service.

        Waits at most the profile's enter-service delay plus ramp (with a margin) for every
        inverter to be back in service.
        """
        self.grid.set_voltage(self.nominal_voltage)
        self.grid.set_frequency(self.nominal_frequency)
        self.grid.set_output(True)
        if self.pcc_breaker is not None and not self.pcc_breaker.is_closed():
            self.pcc_breaker.close()
        if self.load_bank is not None:
            self.load_bank.set_power(0.0)
        self.dispatch_all(0.0)
        settings = self.contract.settings
        es = settings.enter_service if settings else None
        timeout = (es.delay + es.ramp) * 1.2 + 10 if es else 60.0
        self.clock.wait_until(
            lambda: all(n.inverter.state() == "ON" for n in self.nodes.values()),
            timeout=timeout,
            poll=1.0,
        )

    def close(self) -> None:
        self._stack.close()


def open_bench(site: Site, contract: Contract, registry: DeviceRegistry | None = None) -> Bench:
    """Start what is virtual, connect to everything, return the bench; on failure undo it all."""
    registry = registry or default_registry()
    stack = ExitStack()
    try:
        clock: Clock
        endpoints: dict[str, Any] = {}
        if site.has_virtual:
            from virtual_devices.site import VirtualSite  # the one place the harness starts a plant

            sim = SimClock()
            vsite = VirtualSite.start(site, sim.lock)
            stack.callback(vsite.stop)
            sim.add_advancer(vsite.advance)
            endpoints = vsite.endpoints
            clock = sim
        else:
            clock = RealClock()

        def endpoint(key: str, configured: Any) -> Any:
            return endpoints.get(key, configured)

        def build(role: str, key: str, cfg: Any, **extra: Any) -> Any:
            device = registry.build(
                role, cfg.driver, key, endpoint(key, cfg.endpoint), cfg, clock, site, **extra
            )
            stack.callback(device.disconnect)
            return device

        nodes = {}
        for node in site.spec.nodes:
            nodes[node.name] = NodeDevices(
                name=node.name,
                inverter=build("inverter", f"{node.name}.inverter", node.inverter),
                bms=build("bms", f"{node.name}.bms", node.bms),
            )
        inst = site.spec.instruments
        bench = Bench(
            site=site,
            contract=contract,
            clock=clock,
            nodes=nodes,
            grid=build("grid", "grid", inst.grid),
            analyzer=build("analyzer", "analyzer", inst.analyzer),
            load_bank=build("load_bank", "load_bank", inst.load_bank) if inst.load_bank else None,
            pcc_breaker=build("breaker", "pcc_breaker", inst.pcc_breaker)
            if inst.pcc_breaker
            else None,
            _stack=stack,
        )
        return bench
    except BaseException:
        stack.close()
        raise


Builder = Callable[..., Any]
__all__ = ["Bench", "ConfigErrors", "NodeDevices", "open_bench"]
