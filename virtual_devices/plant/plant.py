"""The virtual plant: grid source, PCC breaker, home bus, island load, homes (inverter + pack).

Lock-step on a simulated clock: :meth:`Plant.advance` brings the plant to a target time in
adaptive steps, coarse in steady state and fine for a window after any event, and always lands a
step exactly on the next scheduled discrete event (a trip timer, an island-detection deadline, the
end of an enter-service delay), so event times are exact to floating point. Setters on the grid,
breaker, load and inverter setpoints call :meth:`Plant.mark_event`, which logs the event, settles
the plant at the present instant and refines the step. Callers serialize access (the SimClock's
lock): the plant is not thread-safe by itself.

Home bus physics:

* PCC closed and grid output on: the bus is the grid (V and f).
* Islanded (PCC open or grid output off), some inverter energizing: grid-following inverters are
  current sources in phase with the bus, so the resistive balance sets the voltage,
  V = Vnom * sqrt(P_inv / P_load), and the island sits at the RLC load's resonance (the
  inverters inject no reactive power): the nominal frequency for a balanced load, off it for a
  detuned one (plant/load.py). The bus voltage and frequency relax toward those values with the
  load's time constant 2 R C. With no island load
  the inverters' behaviour is undefined; the model holds nominal voltage and leaves it to the
  anti-islanding detection to clear.
* Islanded, nothing energizing: the bus voltage decays exponentially from its last value with the
  same time constant (5 ms without load) and the frequency keeps its last value.
* The homes' priority loads (resistive, behind their breakers) add to the island's load.
* Islanded and held by grid-forming units: see virtual_devices.plant.grid_forming.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from virtual_devices.plant.battery import Battery
from virtual_devices.plant.breaker import Breaker
from virtual_devices.plant.ems import Ems
from virtual_devices.plant.energy import EnergyCounter
from virtual_devices.plant.grid import GridSource
from virtual_devices.plant.grid_forming import (
    GridFormingInverter,
    IslandController,
    island_channels,
)
from virtual_devices.plant.inverter import GridFollowingInverter
from virtual_devices.plant.load import IslandLoad, PriorityLoad, SiteLoads
from virtual_devices.plant.params import InverterParams, NodeParams, PlantParams
from virtual_devices.plant.pv import PvInverter, pv_channels
from virtual_devices.plant.recorder import Recorder, unknown_channel
from virtual_devices.plant.topology import battery_channels, wire


@dataclass
class Node:
    """One home on the bus."""

    name: str
    inverter: GridFollowingInverter
    battery: Battery
    """The pack the home's BMS reports: its own, or a dc_bus site's shared bank."""
    pv: PvInverter | None = None


class Plant:
    """The whole site's physics; see the module docstring for the bus model."""

    def __init__(self, params: PlantParams) -> None:
        self.params = params
        self.t = 0.0
        self.steps = 0
        """Number of integration steps taken so far (for tests and benchmarks)."""
        self.events: list[tuple[float, str]] = []
        """Ground-truth log of discrete events: (time, name)."""
        self._vn = params.nominal_voltage_v
        self._fn = params.nominal_frequency_hz
        self._fine_until = -math.inf
        self._next_event = math.inf
        self.grid = GridSource(self._vn, self._fn, notify=self.mark_event)
        self.pcc = Breaker(closed=True, notify=self.mark_event)
        load = params.island_load
        self.island_load = IslandLoad(
            load.power_w, load.quality_factor, self._vn, self._fn, notify=self.mark_event
        )
        self.nodes: dict[str, Node] = {}
        # Which packs exist and which inverter draws on which: the site's topology.
        self.wiring = wire(params, lambda p, name: Battery(p, name=name, emit=self._emit))
        for node_params in params.nodes:
            name = node_params.name
            supply = self.wiring.supplies[name]
            inverter = self._make_inverter(name, node_params.inverter, supply)
            battery = self.wiring.home_batteries[name]
            self.nodes[name] = Node(name, inverter, battery, self._make_pv(node_params))
        self.wiring.connect({node.name: node.inverter for node in self.nodes.values()})
        self._pairs = self.wiring.pairs
        self._batteries = self.wiring.batteries
        self._inverters = [node.inverter for node in self.nodes.values()]
        self._pv = [node.pv for node in self.nodes.values() if node.pv is not None]
        self.loads = SiteLoads(
            [
                PriorityLoad(
                    f"{n.name}.load.{ld.name}", ld.priority, ld.power_w, self._vn, self._emit
                )
                for n in params.nodes
                for ld in n.loads
            ]
        )
        self.island = IslandController(
            [inv for inv in self._inverters if isinstance(inv, GridFormingInverter)],
            self._inverters,
            self.loads,
            self._vn,
            self._fn,
            self._emit,
        )
        self.ems: Ems | None = None
        """The site controller (black start, shutdown), if the site has one."""
        if params.ems is not None:
            self.ems = Ems(
                params.ems,
                self.island.formers,
                self._batteries,
                self.loads,
                lambda: (self._bus_v, self._bus_f),
                lambda: self.pcc.closed and self.grid.output_on,
                self._vn,
                self._fn,
                self._emit,
                inverters=self._inverters,
                import_w=lambda: self.pcc_power_w,
            )
        self.pcc_energy = EnergyCounter()
        """The PCC's energy as the power analyzer's integrator counts it."""
        self.pcc_counters: list[EnergyCounter] = [self.pcc_energy]
        """Every counter of the PCC's energy: a settlement meter adds its own (own gain)."""
        metered: list[GridFollowingInverter | PvInverter] = [*self._inverters, *self._pv]
        self._unit_energy = [(unit, EnergyCounter()) for unit in metered]
        self._connected = True
        self._bus_v = self.grid.voltage_v
        self._bus_f = self.grid.frequency_hz
        self._channels = self._build_channels()
        self.recorder = Recorder(self._channels, lambda: self.t)
        # At t = 0 a healthy grid finds the units already in service: scenarios do not wait for
        # a 300 s enter-service delay before they can start.
        for inverter in self._inverters:
            if inverter.in_service_window(self._bus_v, self._bus_f):
                inverter.start_in_service()
        for pv in self._pv:
            if pv.in_service_window(self._bus_v, self._bus_f):
                pv.start_in_service()
        self._settle()

    def _make_inverter(
        self, node: str, params: InverterParams, battery: Battery
    ) -> GridFollowingInverter:
        """A grid-following unit, or a grid-forming one if its parameters say it can form."""
        name = f"{node}.inverter"
        if params.grid_forming is not None:
            return GridFormingInverter(
                params, battery, name, self._emit, self.mark_event, pcc=self.pcc, grid=self.grid
            )
        return GridFollowingInverter(
            params, battery, name=name, emit=self._emit, notify=self.mark_event
        )

    def _make_pv(self, node: NodeParams) -> PvInverter | None:
        """The home's PV inverter, entering service by the same profile as its battery unit."""
        if node.pv is None:
            return None
        return PvInverter(
            node.pv, node.inverter.enter_service, self._vn, f"{node.name}.pv", self._emit
        )

    # -- readings ----------------------------------------------------------------------------

    @property
    def bus_voltage_v(self) -> float:
        """Home-side voltage of the PCC, V rms."""
        return self._bus_v

    @property
    def bus_frequency_hz(self) -> float:
        return self._bus_f

    @property
    def grid_connected(self) -> bool:
        """Whether the home bus is tied to a live grid (PCC closed and grid output on)."""
        return self._connected

    @property
    def pcc_power_w(self) -> float:
        """Active power through the PCC, W, positive = import from the grid."""
        if not self._connected:
            return 0.0
        exported = 0.0
        for inverter in self._inverters:
            exported += inverter.power_w
        for pv in self._pv:
            exported += pv.power_w
        return self.island_load.power_at(self._bus_v) + self.loads.power_at(self._bus_v) - exported

    def channel(self, name: str) -> float:
        """Instantaneous value of a recorder channel (see :meth:`Recorder.channels`)."""
        getter = self._channels.get(name)
        if getter is None:
            raise unknown_channel(name, self._channels)
        return getter()

    # -- events ------------------------------------------------------------------------------

    def mark_event(self, name: str | None = None) -> None:
        """Something changed from outside at the present instant: log it, settle, refine."""
        if name:
            self.events.append((self.t, name))
        self._fine_until = max(self._fine_until, self.t + self.params.fine_window_s)
        self._settle()
        if self.recorder.active:
            self.recorder.sample(self.t)

    def _emit(self, name: str) -> None:
        """A component's discrete event inside a step (the plant's time is already its time)."""
        self.events.append((self.t, name))
        self._fine_until = max(self._fine_until, self.t + self.params.fine_window_s)

    def _settle(self) -> None:
        """Re-evaluate the bus and all discrete logic at the present instant (no time passes)."""
        t = self.t
        self._connected = self.pcc.closed and self.grid.output_on
        if self._connected:
            self._bus_v = self.grid.voltage_v
            self._bus_f = self.grid.frequency_hz
            self.island.grid_back()
        self._update_discrete(t)
        for inverter in self._inverters:
            inverter.update_power(t, 0.0)
        for load, battery in self._pairs:
            battery.step(0.0, load.dc_power_w)
        for pv in self._pv:
            pv.update_power(t, 0.0)
        if not self._connected and self.island.forming:
            self._hold_island(t)

    def _update_discrete(self, t: float) -> None:
        bus_v = self._bus_v
        bus_f = self._bus_f
        connected = self._connected or self.island.forming  # a held bus is a grid to a follower
        nxt = math.inf
        for inverter in self._inverters:
            inverter.update(t, bus_v, bus_f, connected)
            due = inverter.next_event_time(t)
            if due < nxt:
                nxt = due
        for pv in self._pv:  # PV feeds no island, held or not (see virtual_devices/plant/pv.py)
            pv.update(t, bus_v, bus_f, self._connected)
            due = pv.next_event_time(t)
            if due < nxt:
                nxt = due
        self._next_event = nxt

    # -- time --------------------------------------------------------------------------------

    def advance(self, until: float) -> None:
        """Step the plant up to ``until`` (s on the site clock); nothing if it is not ahead."""
        t = self.t
        if until <= t:
            return
        if not math.isfinite(until):
            raise ValueError(f"cannot advance the plant to {until} s")
        params = self.params
        coarse = params.coarse_step_s
        steady = params.steady_step_s
        quiet = params.steady_after_s
        fine = params.fine_step_s
        snap = fine * 1e-6  # closer than this, a step boundary is moved onto the target
        pairs = self._pairs
        inverters = self._inverters
        pvs = self._pv
        recorder = self.recorder
        load = self.island_load
        while t < until:
            fine_until = self._fine_until
            if t < fine_until:
                t1 = t + fine
                if -snap < t1 - fine_until < snap:  # end the window on it, not one step past
                    t1 = fine_until
            elif t < fine_until + quiet or recorder.active or not self._connected:
                t1 = t + coarse
            else:  # quiet on the grid, nothing recorded: see PlantParams.steady_step_s
                t1 = t + steady
            if t1 > until - snap:
                t1 = until
            nxt = self._next_event
            bms_due = self._bms_due()  # a protection delay, heartbeat timeout, precharge
            if bms_due < nxt:
                nxt = bms_due
            ems_due = self.ems.next_event_time(t) if self.ems is not None else math.inf
            if ems_due < nxt:
                nxt = ems_due
            if t < nxt < t1 + snap and nxt <= until:
                t1 = nxt
            dt = t1 - t
            self._count_energy(dt)
            for source, battery in pairs:
                battery.step(dt, source.dc_power_w)
            bus_moved = False
            if not self._connected:
                bus_moved = self._island_step(dt, load)
            t = t1
            self.t = t
            self.steps += 1
            if bus_moved or t >= nxt:
                self._update_discrete(t)
            for inverter in inverters:
                inverter.update_power(t, dt)
            for source, battery in pairs:
                battery.step(0.0, source.dc_power_w)
            for pv in pvs:
                pv.update_power(t, dt)
            if t + 2 * snap >= ems_due:  # a hair short is the instant (the EMS's next is later)
                self._run_ems(t)
            if recorder.active:
                recorder.sample(t)

    def _run_ems(self, t: float) -> None:
        """Let the EMS take every step it can at ``t``, settling the plant after each."""
        ems = self.ems
        assert ems is not None
        for _ in range(64):  # a bound, not a limit: a sequence has a dozen steps
            if not ems.update(t):
                return
            self._fine_until = max(self._fine_until, t + self.params.fine_window_s)
            self._settle()

    def _count_energy(self, dt: float) -> None:
        """The interval's energy into every counter: the PCC's (the analyzer's integrator and
        any meter's, see :attr:`pcc_counters`) and each unit's at its AC terminals."""
        if dt <= 0.0:
            return
        pcc = self.pcc_power_w
        for counter in self.pcc_counters:
            counter.add(pcc, dt)
        for inverter, counter in self._unit_energy:
            counter.add(-inverter.power_w, dt)  # import = into the unit (charging)

    def _bms_due(self) -> float:
        """Earliest instant a BMS timer of any pack expires (inf: none running)."""
        due = math.inf
        for battery in self._batteries:
            nxt = battery.next_event
            if nxt < due:
                due = nxt
        return due

    def _island_step(self, dt: float, load: IslandLoad) -> bool:
        """Advance the islanded bus over ``dt``; returns whether its voltage or frequency moved."""
        if self.island.forming and self._hold_island(self.t + dt):
            return True
        if self.island.forming:
            return False
        energizing = False
        injected = 0.0
        for inverter in self._inverters:
            if inverter.energizing:
                energizing = True
                injected += inverter.power_w
        for pv in self._pv:  # until its anti-islanding detection clears it
            if pv.energizing:
                energizing = True
                injected += pv.power_w
        v = self._bus_v
        f = self._bus_f
        f_target = f
        demand = load.power_w + self.loads.nominal_w  # the island's load at nominal voltage
        if energizing:
            if demand > 0.0:
                target = self._vn * math.sqrt(injected / demand) if injected > 0 else 0.0
                f_target = load.resonant_frequency_hz
            else:
                target = self._vn
        else:
            target = 0.0
        if v != target or f != f_target:
            decay = math.exp(-dt / load.time_constant_s)
            v = target + (v - target) * decay
            f = f_target + (f - f_target) * decay
            if abs(f - f_target) < 1e-9:  # settled: stop reporting a moving bus
                f = f_target
        moved = v != self._bus_v or f != self._bus_f
        self._bus_v = v
        self._bus_f = f
        return moved

    def _hold_island(self, t: float) -> bool:
        """The bus as grid-forming units hold it at ``t``; returns whether it moved or changed
        discretely (False, and the bus untouched, once no unit holds it any more)."""
        held = self.island.hold(t, self.island_load)
        if held is None:
            return False
        v, f, changed = held
        moved = changed or v != self._bus_v or f != self._bus_f
        self._bus_v = v
        self._bus_f = f
        return moved

    # -- channels ----------------------------------------------------------------------------

    def _build_channels(self) -> dict[str, Callable[[], float]]:
        inverters = self._inverters
        channels: dict[str, Callable[[], float]] = {
            "pcc.voltage": lambda: self._bus_v,
            "pcc.frequency": lambda: self._bus_f,
            "pcc.breaker": lambda: 1.0 if self.pcc.closed else 0.0,
            "pcc.power": lambda: self.pcc_power_w,
            "grid.voltage": lambda: self.grid.output_voltage_v,
            "grid.frequency": lambda: self.grid.frequency_hz,
            "inverters.current": lambda: sum(inv.current_a for inv in inverters),
            "inverters.power": lambda: sum(inv.power_w for inv in inverters),
        }
        for node in self.nodes.values():
            channels.update(_node_channels(node))
        channels.update(pv_channels(self._pv))
        if self.wiring.shared is not None:
            channels.update(battery_channels(self.wiring.shared))
        channels.update(self._energy_channels())
        if self.ems is not None:
            channels.update(self.ems.channels())
        channels.update(
            island_channels(
                lambda: self._bus_v, lambda: self._bus_f, self.loads, self.island.formers
            )
        )
        return channels

    def _energy_channels(self) -> dict[str, Callable[[], float]]:
        """The analyzer's integrators, Wh counting up from the site's start: the PCC's import
        and export, and each unit's at its AC terminals (import: charging, export: discharge)."""
        pcc = self.pcc_energy
        channels: dict[str, Callable[[], float]] = {
            "pcc.energy_import": lambda: pcc.import_wh,
            "pcc.energy_export": lambda: pcc.export_wh,
        }
        for inverter, counter in self._unit_energy:
            channels[f"{inverter.name}.energy_import"] = _reading(counter, "import_wh")
            channels[f"{inverter.name}.energy_export"] = _reading(counter, "export_wh")
        return channels


def _reading(counter: EnergyCounter, name: str) -> Callable[[], float]:
    """A getter of one of ``counter``'s readings (``import_wh`` or ``export_wh``)."""
    return lambda: float(getattr(counter, name))


def _node_channels(node: Node) -> dict[str, Callable[[], float]]:
    """Channels of one home, named ``<node>.inverter.*`` and ``<node>.battery.*``."""
    inv = node.inverter
    bat = node.battery
    name = node.name
    return {
        f"{name}.inverter.power": lambda: inv.power_w,
        f"{name}.inverter.current": lambda: inv.current_a,
        f"{name}.inverter.energizing": lambda: 1.0 if inv.energizing else 0.0,
        f"{name}.battery.voltage": lambda: bat.voltage_v,
        f"{name}.battery.current": lambda: bat.current_a,
        f"{name}.battery.soc": lambda: bat.soc_pct,
        f"{name}.battery.temperature": lambda: bat.pack_temperature_c,
        f"{name}.battery.contactor": lambda: 1.0 if bat.contactor_closed else 0.0,
        # The BMS's sense inputs, as a bench's DAQ sees them at its connector (a fault-insertion
        # unit may drive them): the highest and lowest cell tap, the sensor, the shunt.
        f"{name}.bms.cell_max.voltage": lambda: bat.cell_voltage_max_v,
        f"{name}.bms.cell_min.voltage": lambda: bat.cell_voltage_min_v,
        f"{name}.bms.sensor.temperature": lambda: bat.temperature_c,
        f"{name}.bms.shunt.current": lambda: bat.sensed_current_a,
        # The precharge relay's coil (1 energized): a bench's DAQ times the precharge on it.
        f"{name}.bms.precharge_relay": lambda: 1.0 if bat.contactor_state == 1.0 else 0.0,
    }
