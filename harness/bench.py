"""The site as the harness reaches it: its clock and a driver per role, whatever is behind them.

``open_bench`` starts the virtual parts of a site (if any), resolves every endpoint to a real
transport address and binds drivers to them by the names the site file gives. Scenarios see only
roles; nothing here tells them whether a device is virtual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.clock import Clock, RealClock, SimClock
from harness.config.contract import Contract
from harness.config.errors import ConfigErrors
from harness.config.settings import Settings
from harness.config.site import InstrumentConfig, Site
from harness.config.units import to_unit
from harness.devices.absent import absent, is_present
from harness.devices.registry import DeviceRegistry, default_registry
from harness.devices.roles import (
    Bms,
    Breaker,
    DeviceError,
    GridSimulator,
    Inverter,
    PowerAnalyzer,
)


@dataclass
class NodeDevices:
    name: str
    inverter: Inverter
    bms: Bms
    fault_insertion: Any | None = None
    """The bench's fault-insertion unit on this home's battery, if it has one
    (harness.devices.fault_insertion)."""


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
    ems: Any | None = None
    """The site's EMS (harness.devices.ems), if the site file names one."""
    meter: Any | None = None
    """The settlement meter at the PCC (harness.devices.meter), if the site file names one."""
    chamber: Any | None = None
    """The climate chamber the batteries stand in (harness.devices.chamber), if any."""
    pv_simulator: Any | None = None
    """The DC source standing in for the PV arrays (harness.devices.pv_simulator), if any."""
    _stack: ExitStack = field(default_factory=ExitStack)
    expected_alarms: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per home, BMS alarms a running fault test provokes on purpose (see :meth:`provoking`)."""

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

    @staticmethod
    def hertz(value: Any) -> float:
        return to_unit(value, "Hz")

    @staticmethod
    def per_unit(value: Any) -> float:
        """A value given in pu (e.g. "0.02 pu") as a plain fraction of nominal."""
        return to_unit(value, "pu")

    @property
    def settings(self) -> Settings:
        """The trip and enter-service settings the contract prescribes (from its profile)."""
        if self.contract.settings is None:
            raise LookupError(
                f"contract {self.contract.info.id} has no 'settings' (trips, enter_service): "
                "extend a profile that has them"
            )
        return self.contract.settings

    def set_grid(
        self, *, voltage_pu: float | None = None, frequency_hz: float | None = None
    ) -> None:
        """Program the grid simulator: voltage in pu of the site's nominal, frequency in Hz."""
        if voltage_pu is not None:
            self.grid.set_voltage(voltage_pu * self.nominal_voltage)
        if frequency_hz is not None:
            self.grid.set_frequency(frequency_hz)

    def dispatch_all(self, fraction: float) -> None:
        """Command every inverter to ``fraction`` of its rated power (+ export)."""
        for node in self.nodes.values():
            node.inverter.set_power(fraction * node.inverter.rated_power())

    def wait_for_output(self, fraction: float, timeout: float, tolerance: float = 0.01) -> bool:
        """Wait until the analyzer shows every inverter at ``fraction`` of its rated power
        (within ``tolerance`` of rated); returns whether it did within ``timeout`` s.

        A unit that has just entered service is still on its enter-service ramp: a scenario
        that needs a steady operating point waits here after :meth:`dispatch_all`. Polled every
        5 s of site time: each poll is an instrument query, and a ramp takes minutes.
        """
        targets = {
            f"{name}.inverter.power": node.inverter.rated_power()
            for name, node in self.nodes.items()
        }
        return self.clock.wait_until(
            lambda: all(
                abs(self.analyzer.measure(channel) - fraction * rated) <= tolerance * rated
                for channel, rated in targets.items()
            ),
            timeout=timeout,
            poll=5.0,
        )

    def bring_to_soc(
        self, names: list[str], soc_pct: float, timeout: float, poll: float = 10.0
    ) -> dict[str, float]:
        """Charge or discharge the batteries of homes ``names`` at their inverters' rated power
        until each BMS reports ``soc_pct`` (reaching or crossing it), then set that inverter to
        0 W; returns the SoC each reported when it got there. Other homes are left as they are.

        Raises TimeoutError naming the homes that did not get there within ``timeout`` s.
        """
        pending: dict[str, float] = {}  # name -> +1 discharging, -1 charging
        reached: dict[str, float] = {}
        now = self.reported_soc(names)
        for name in names:
            node = self.nodes[name]
            soc = now[name]
            if soc == soc_pct:
                reached[name] = soc
                node.inverter.set_power(0.0)
                continue
            pending[name] = 1.0 if soc > soc_pct else -1.0
            node.inverter.set_power(pending[name] * node.inverter.rated_power())

        def arrived() -> bool:
            for name, sign in list(pending.items()):
                soc = self.nodes[name].bms.soc()
                if (soc - soc_pct) * sign <= 0:
                    self.nodes[name].inverter.set_power(0.0)
                    reached[name] = soc
                    del pending[name]
            return not pending

        if not self.clock.wait_until(arrived, timeout=timeout, poll=poll):
            for name in pending:
                self.nodes[name].inverter.set_power(0.0)
            raise TimeoutError(
                f"{', '.join(pending)}: not at {soc_pct:g} % SoC within {timeout:g} s"
            )
        return reached

    def ensure_soc(
        self,
        names: list[str],
        min_pct: float,
        timeout: float,
        poll: float = 10.0,
    ) -> dict[str, float]:
        """Charge the batteries of the homes among ``names`` whose BMS reports less than
        ``min_pct`` up to it (see :meth:`bring_to_soc`); the others are left alone. Returns the
        SoC of the homes charged.

        A scenario that needs its units to export for a while calls this first, so that its
        result does not depend on what an earlier scenario left in the packs (an endurance test
        ends with them near empty).
        """
        socs = self.reported_soc(names)
        low = [name for name in names if socs[name] < min_pct]
        return self.bring_to_soc(low, min_pct, timeout, poll) if low else {}

    def reported_soc(self, names: list[str], first_frame: float = 5.0) -> dict[str, float]:
        """The SoC each home's BMS reports now. At the start of a run a BMS may not have sent
        its first frame yet: each gets ``first_frame`` s to report (DeviceError naming the
        silent ones after that)."""
        socs: dict[str, float] = {}

        def reported() -> bool:
            for name in names:
                if name not in socs:
                    try:
                        socs[name] = self.nodes[name].bms.soc()
                    except DeviceError:
                        return False
            return True

        if not self.clock.wait_until(reported, timeout=first_frame, poll=0.1):
            silent = ", ".join(name for name in names if name not in socs)
            raise DeviceError(f"{silent}: no SoC from the BMS within {first_frame:g} s")
        return socs

    @contextmanager
    def provoking(self, names: list[str], alarms: set[str]) -> Iterator[None]:
        """While the block runs, the BMSs of homes ``names`` raise ``alarms`` on purpose (a fault
        test): the safety supervisor lets those alarms pass on those homes, and the temperature
        they report too when ``overtemp`` is one of them. It still acts on every other alarm and
        home. Keep the block open until the BMSs have cleared them again."""
        before = dict(self.expected_alarms)
        for name in names:
            self.expected_alarms[name] = frozenset(alarms) | before.get(name, frozenset())
        try:
            yield
        finally:
            self.expected_alarms = before

    def restore(self) -> None:
        """Back to normal: grid nominal, PCC closed, island load off, units back in service.

        Waits at most the profile's enter-service delay plus ramp (with a margin) for every
        inverter to be back in service.
        """
        if is_present(self.grid):
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
            poll=5.0,
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
            endpoints = vsite.endpoints | vsite.bench_endpoints
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
                fault_insertion=_fault_insertion(node, endpoints, build),
            )
        inst = site.spec.instruments
        bench = Bench(
            site=site,
            contract=contract,
            clock=clock,
            nodes=nodes,
            grid=build("grid", "grid", inst.grid)
            if inst.grid
            else absent("grid simulator", "instruments.grid"),
            analyzer=build("analyzer", "analyzer", inst.analyzer)
            if inst.analyzer
            else absent("power analyzer", "instruments.analyzer"),
            load_bank=build("load_bank", "load_bank", inst.load_bank) if inst.load_bank else None,
            pcc_breaker=build("breaker", "pcc_breaker", inst.pcc_breaker)
            if inst.pcc_breaker
            else None,
            ems=build("ems", "ems", site.spec.ems) if site.spec.ems else None,
            meter=build("meter", "meter", site.spec.meter) if site.spec.meter else None,
            chamber=build("chamber", "chamber", inst.chamber) if inst.chamber else None,
            pv_simulator=build("pv_simulator", "pv_simulator", inst.pv_simulator)
            if inst.pv_simulator
            else None,
            _stack=stack,
        )
        return bench
    except BaseException:
        stack.close()
        raise


def _fault_insertion(node: Any, endpoints: dict[str, Any], build: Callable[..., Any]) -> Any:
    """The home's fault-insertion unit: the one the site names, else the one a virtual battery
    comes with, else none."""
    key = f"{node.name}.fault_insertion"
    cfg = node.fault_insertion
    if cfg is None and key in endpoints:
        cfg = InstrumentConfig(driver="modbus_fiu", endpoint=endpoints[key])
    return build("fault_insertion", key, cfg) if cfg is not None else None


Builder = Callable[..., Any]
__all__ = ["Bench", "ConfigErrors", "NodeDevices", "open_bench"]
