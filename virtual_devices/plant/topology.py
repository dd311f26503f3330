"""How the homes' inverters reach their storage: the site's topology, wired once at start.

* ``ac_coupled``: each home's inverter draws on its own pack (the plant's original wiring).
* ``dc_bus``: one shared bank on a central DC bus feeds every home's inverter. Each home's BMS
  endpoint reports that bank (as the bank's BMS would, on each home's link); each inverter may
  draw its share of the bank's present power limits, its rated power over the homes' total, so
  the units together never ask the bank for more than it can give.
* ``hybrid``: each home has its own inverter and pack, and a bulk bank on a common DC bus backs
  them all. The EMS-less plant splits every home's DC power at a fixed share: ``share`` of it
  from the bulk bank, the rest from the home's own pack. A unit may draw what both can give at
  that split (its own pack's limit over ``1 - share``, its share of the bulk bank's over
  ``share``, whichever is less); the unit's SoC reserve watches its own pack.

Energy is conserved on every bus: a pack is stepped once per plant step with the sum of the DC
powers the inverters on it draw (times their fraction), so its coulomb count integrates exactly
what the inverters' AC power and efficiency take (tests/test_plant_topology.py).

The inverters see a *supply* (:class:`BankShare`, :class:`HybridSupply` or, ac-coupled, the pack
itself). A supply has the few members of :class:`~virtual_devices.plant.battery.Battery` an
inverter uses (power limits, SoC, BMS, contactor, ``step(0, ...)`` to re-settle its operating
point), so the inverter models need not know the topology.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

from virtual_devices.plant.battery import Battery
from virtual_devices.plant.bms_logic import BmsLogic
from virtual_devices.plant.params import BatteryParams, PlantParams


class DcLoad(Protocol):
    """Anything that draws DC power from a pack (an inverter, a :class:`Feed`)."""

    @property
    def dc_power_w(self) -> float: ...


@dataclass
class Feed:
    """Everything on one pack: inverters and the fraction of each one's DC power it carries."""

    parts: list[tuple[DcLoad, float]] = field(default_factory=list)

    @property
    def dc_power_w(self) -> float:
        total = 0.0
        for load, fraction in self.parts:
            total += fraction * load.dc_power_w
        return total


class _Supply:
    """What one inverter draws on when it is not simply its own pack (see the module doc)."""

    def __init__(self, home: Battery, settle: Callable[[], None]) -> None:
        self._home = home
        self._settle = settle

    @property
    def soc_pct(self) -> float:
        return self._home.soc_pct

    @property
    def bms(self) -> BmsLogic | None:
        return self._home.bms

    @property
    def contactor_closed(self) -> bool:
        return self._home.contactor_closed

    def step(self, dt: float, _dc_power_w: float) -> None:
        """The inverter's request moved at this instant: re-settle the packs it draws on from
        every inverter's present DC power (a supply never integrates: the plant steps packs)."""
        if dt != 0.0:
            raise ValueError("a shared supply is stepped by the plant, not by an inverter")
        self._settle()


class BankShare(_Supply):
    """One home's share of a dc_bus bank: ``weight`` of its power limits."""

    def __init__(self, bank: Battery, weight: float, settle: Callable[[], None]) -> None:
        super().__init__(bank, settle)
        self._bank = bank
        self.weight = weight

    @property
    def max_discharge_power_w(self) -> float:
        return self._bank.max_discharge_power_w * self.weight

    @property
    def max_charge_power_w(self) -> float:
        return self._bank.max_charge_power_w * self.weight


class HybridSupply(_Supply):
    """One home's own pack plus ``weight`` of the bulk bank, split at ``share`` (bulk part)."""

    def __init__(
        self,
        own: Battery,
        bulk: Battery,
        share: float,
        weight: float,
        settle: Callable[[], None],
    ) -> None:
        super().__init__(own, settle)
        self._own = own
        self._bulk = bulk
        self._share = share
        self.weight = weight

    @property
    def max_discharge_power_w(self) -> float:
        s = self._share
        return min(
            self._own.max_discharge_power_w / (1.0 - s),
            self._bulk.max_discharge_power_w * self.weight / s,
        )

    @property
    def max_charge_power_w(self) -> float:
        s = self._share
        return min(
            self._own.max_charge_power_w / (1.0 - s),
            self._bulk.max_charge_power_w * self.weight / s,
        )


@dataclass
class Wiring:
    """The packs of a plant and who draws on which.

    ``home_batteries``: the pack each home's BMS reports (its own, or a dc_bus bank);
    ``supplies``: what each home's inverter draws on; ``shared``: the dc_bus or bulk bank;
    ``batteries``: every pack once; ``pairs``: (what draws, pack) for the plant's stepping;
    ``fractions``: per home, the packs its inverter draws on and the part of its DC power each
    carries (they sum to 1); ``feeds``: per pack (by id), everything on it.
    """

    topology: str
    home_batteries: dict[str, Battery]
    supplies: dict[str, Battery]
    shared: Battery | None
    batteries: list[Battery]
    feeds: dict[int, Feed] = field(default_factory=dict)
    fractions: dict[str, list[tuple[Battery, float]]] = field(default_factory=dict)
    pairs: list[tuple[DcLoad, Battery]] = field(default_factory=list)

    def connect(self, inverters: dict[str, DcLoad]) -> None:
        """Put each home's inverter on its packs (after the inverters exist)."""
        if self.topology == "ac_coupled":  # the fast path: the inverter is its pack's only load
            self.pairs = [(inverters[h], b) for h, b in self.home_batteries.items()]
            return
        for home, inverter in inverters.items():
            for battery, fraction in self.fractions[home]:
                self.feeds.setdefault(id(battery), Feed()).parts.append((inverter, fraction))
        self.pairs = [(self.feeds[id(b)], b) for b in self.batteries]

    def settle(self) -> None:
        """Re-solve every shared pack's operating point at the present instant."""
        for load, battery in self.pairs:
            battery.step(0.0, load.dc_power_w)


def wire(
    params: PlantParams,
    make: Callable[[BatteryParams, str], Battery],
) -> Wiring:
    """Build the packs of ``params``'s topology (``make(params, name)`` builds one) and the
    supplies its inverters draw on; call :meth:`Wiring.connect` once the inverters exist."""
    nodes = params.nodes
    storage = params.shared_storage
    topology = params.topology
    if topology == "ac_coupled" or storage is None:
        own = {n.name: make(n.battery, f"{n.name}.battery") for n in nodes}
        return Wiring(topology, own, dict(own), None, list(own.values()))
    rated = sum(n.inverter.rated_power_w for n in nodes)
    weights = {n.name: n.inverter.rated_power_w / rated for n in nodes}
    name = "bank" if topology == "dc_bus" else "bulk"
    shared = make(storage.battery, f"{name}.battery")
    wiring = Wiring(topology, {}, {}, shared, [])
    settle = wiring.settle
    if topology == "dc_bus":
        for n in nodes:
            wiring.home_batteries[n.name] = shared
            wiring.supplies[n.name] = _as_battery(BankShare(shared, weights[n.name], settle))
            wiring.fractions[n.name] = [(shared, 1.0)]
        wiring.batteries = [shared]
        return wiring
    s = storage.share
    for n in nodes:
        own_pack = make(n.battery, f"{n.name}.battery")
        wiring.home_batteries[n.name] = own_pack
        wiring.supplies[n.name] = _as_battery(
            HybridSupply(own_pack, shared, s, weights[n.name], settle)
        )
        wiring.fractions[n.name] = [(own_pack, 1.0 - s), (shared, s)]
        wiring.batteries.append(own_pack)
    wiring.batteries.append(shared)
    return wiring


def _as_battery(supply: _Supply) -> Battery:
    """A supply stands in for the pack an inverter model is typed with: it has every member
    of Battery the inverters use (see the module docstring); the rest is the plant's."""
    return cast(Battery, supply)


def battery_channels(battery: Battery) -> dict[str, Callable[[], float]]:
    """The analyzer's DC channels of a shared bank, named after it (``bank.battery.soc`` ...)."""
    name = battery.name
    return {
        f"{name}.voltage": lambda: battery.voltage_v,
        f"{name}.current": lambda: battery.current_a,
        f"{name}.soc": lambda: battery.soc_pct,
        f"{name}.temperature": lambda: battery.pack_temperature_c,
        f"{name}.contactor": lambda: 1.0 if battery.contactor_closed else 0.0,
    }
