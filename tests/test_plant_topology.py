"""Topologies of the virtual plant (virtual_devices/plant/topology.py): energy is conserved on
every DC bus, a shared bank's SoC integrates what every inverter on it draws, and a site of each
topology loads from its file and steps.

The energy balance is checked against an integration of our own, interval by interval, from the
plant's present values (the operating point a step holds): the energy the cells give up, less
the packs' I^2 R and the inverters' conversion losses, must equal the AC energy the units export.
A wiring that stepped a shared bank once per home, or split a hybrid home's power wrongly, would
break it by a whole inverter's worth.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from virtual_devices.plant.battery import Battery
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"
STEP_S = 5.0
CYCLE = ((0.8, 1800.0), (0.0, 300.0), (-0.6, 1800.0))
"""The dispatch cycle: (fraction of each unit's rating, seconds): discharge, rest, charge."""


def site_plant(name: str, *, step_s: float = STEP_S) -> Plant:
    """The plant of a shipped site file, stepping uniformly (one step per ``step_s``)."""
    site = load_site(SITES / f"{name}.yaml")
    params = plant_params(site, [])
    params = dataclasses.replace(
        params, fine_step_s=step_s, coarse_step_s=step_s, steady_step_s=step_s
    )
    return Plant(params)


@dataclasses.dataclass
class Ledger:
    cells_wh: float = 0.0
    """Energy the cells gave up: integral of OCV * (-I)."""
    pack_loss_wh: float = 0.0
    conversion_loss_wh: float = 0.0
    ac_wh: float = 0.0
    charge_as: dict[str, float] = dataclasses.field(default_factory=dict)
    terminal_wh: dict[str, float] = dataclasses.field(default_factory=dict)
    inverter_dc_wh: float = 0.0


def run_cycle(plant: Plant) -> Ledger:
    """Dispatch every unit through :data:`CYCLE`, integrating each interval's held values."""
    ledger = Ledger()
    packs = plant.wiring.batteries
    inverters = [node.inverter for node in plant.nodes.values()]
    for fraction, seconds in CYCLE:
        for inverter in inverters:
            inverter.set_power_setpoint(fraction * inverter.params.rated_power_w)
        end = plant.t + seconds
        while plant.t < end - 1e-9:
            dt = min(STEP_S, end - plant.t)
            for pack in packs:
                i = pack.current_a
                ledger.cells_wh += pack.open_circuit_voltage_v * -i * dt / 3600
                ledger.pack_loss_wh += i * i * pack.params.resistance_ohm * dt / 3600
                ledger.charge_as[pack.name] = ledger.charge_as.get(pack.name, 0.0) + i * dt
                ledger.terminal_wh[pack.name] = (
                    ledger.terminal_wh.get(pack.name, 0.0) + pack.power_w * dt / 3600
                )
            for inverter in inverters:
                ledger.ac_wh += inverter.power_w * dt / 3600
                ledger.inverter_dc_wh += inverter.dc_power_w * dt / 3600
                ledger.conversion_loss_wh += (inverter.dc_power_w - inverter.power_w) * dt / 3600
            steps = plant.steps
            plant.advance(plant.t + dt)
            assert plant.steps == steps + 1, "the ledger needs one plant step per interval"
    return ledger


def soc_charge_as(pack: Battery, soc_before: float) -> float:
    """Charge into the pack from its SoC change, A s (what coulomb counting must agree with)."""
    p = pack.params
    held_as = p.capacity_ah * (1 - p.capacity_shortfall) * p.soh_pct / 100 * 3600
    return (pack.soc_pct - soc_before) / 100 * held_as


@pytest.mark.parametrize("name", ["virtual-dc-bus", "virtual-hybrid", "virtual-cluster"])
def test_energy_is_conserved_over_a_dispatch_cycle(name: str) -> None:
    plant = site_plant(name)
    soc0 = {pack.name: pack.soc_pct for pack in plant.wiring.batteries}
    ledger = run_cycle(plant)
    assert ledger.ac_wh != 0.0 and ledger.cells_wh > 0.0  # the cycle moved energy
    balance = ledger.cells_wh - ledger.pack_loss_wh - ledger.conversion_loss_wh
    assert balance == pytest.approx(ledger.ac_wh, rel=1e-9, abs=1e-6)
    # What the packs delivered at their terminals is what the inverters drew, in total.
    assert sum(ledger.terminal_wh.values()) == pytest.approx(ledger.inverter_dc_wh, abs=1e-6)
    # Every pack's SoC integrates exactly the current through it.
    for pack in plant.wiring.batteries:
        assert soc_charge_as(pack, soc0[pack.name]) == pytest.approx(
            ledger.charge_as[pack.name], rel=1e-9
        )
    # The analyzer's per-unit integrators count the same AC energy.
    export = sum(plant.channel(f"{n}.inverter.energy_export") for n in plant.nodes)
    imported = sum(plant.channel(f"{n}.inverter.energy_import") for n in plant.nodes)
    assert export - imported == pytest.approx(ledger.ac_wh, rel=1e-9)


def test_dc_bus_bank_is_every_home_pack_and_integrates_all_of_them() -> None:
    plant = site_plant("virtual-dc-bus")
    bank = plant.wiring.shared
    assert bank is not None and plant.wiring.batteries == [bank]
    assert all(node.battery is bank for node in plant.nodes.values())
    soc0 = bank.soc_pct
    ledger = run_cycle(plant)
    assert list(ledger.charge_as) == [bank.name]
    assert soc_charge_as(bank, soc0) == pytest.approx(ledger.charge_as[bank.name], rel=1e-9)
    assert plant.channel("bank.battery.soc") == bank.soc_pct
    # Three units on one bank: its current is their sum, not one unit's.
    for node in plant.nodes.values():
        node.inverter.set_power_setpoint(4000.0)
    plant.advance(plant.t + 60.0)
    dc = sum(node.inverter.dc_power_w for node in plant.nodes.values())
    assert bank.power_w == pytest.approx(dc)
    assert dc > 2 * 4000.0


def test_dc_bus_units_share_the_bank_limit_by_rating() -> None:
    site = load_site(SITES / "virtual-dc-bus.yaml")
    params = plant_params(site, [])
    storage = params.shared_storage
    assert storage is not None
    weak = dataclasses.replace(storage.battery, max_discharge_current_a=15.0)
    plant = Plant(
        dataclasses.replace(params, shared_storage=dataclasses.replace(storage, battery=weak))
    )
    bank = plant.wiring.shared
    assert bank is not None
    for node in plant.nodes.values():
        node.inverter.set_power_setpoint(5000.0)
    plant.advance(120.0)
    assert bank.max_discharge_power_w < 3 * 5000.0  # the bank, not the units, is the limit
    assert bank.power_w == pytest.approx(bank.max_discharge_power_w, rel=1e-3)
    assert bank.power_w <= bank.max_discharge_power_w * (1 + 1e-9)


def test_hybrid_home_power_splits_at_the_fixed_share() -> None:
    plant = site_plant("virtual-hybrid")
    storage = plant.params.shared_storage
    bulk = plant.wiring.shared
    assert storage is not None and bulk is not None and 0 < storage.share < 1
    for node in plant.nodes.values():
        node.inverter.set_power_setpoint(3000.0)
    plant.advance(60.0)
    total_dc = 0.0
    for node in plant.nodes.values():
        dc = node.inverter.dc_power_w
        total_dc += dc
        assert node.battery is not bulk
        assert node.battery.power_w == pytest.approx((1 - storage.share) * dc)
    assert bulk.power_w == pytest.approx(storage.share * total_dc)
    ledger = run_cycle(plant)
    assert ledger.terminal_wh[bulk.name] == pytest.approx(
        storage.share * ledger.inverter_dc_wh, rel=1e-9
    )


@pytest.mark.parametrize("name", ["virtual-dc-bus", "virtual-hybrid"])
def test_site_of_each_topology_loads_and_steps(name: str) -> None:
    site = load_site(SITES / f"{name}.yaml")
    assert site.spec.site.topology == name.removeprefix("virtual-").replace("-", "_")
    plant = Plant(plant_params(site, []))
    assert len(plant.nodes) >= 3
    assert plant.params.topology == site.spec.site.topology
    plant.advance(30.0)
    assert plant.grid_connected
    assert all(node.inverter.energizing for node in plant.nodes.values())


def test_topology_and_shared_storage_must_agree(tmp_path: Path) -> None:
    text = (SITES / "virtual-hybrid.yaml").read_text(encoding="utf-8")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace("topology: hybrid", "topology: ac_coupled"), encoding="utf-8")
    with pytest.raises(ConfigErrors, match="shared_storage"):
        load_site(wrong)
    wrong.write_text(text.replace("  share: 30 %", ""), encoding="utf-8")
    with pytest.raises(ConfigErrors, match="share"):
        load_site(wrong)


def test_plant_refuses_storage_that_does_not_fit_its_topology() -> None:
    params = plant_params(load_site(SITES / "virtual-hybrid.yaml"), [])
    storage = params.shared_storage
    assert storage is not None
    with pytest.raises(ValueError, match="ac_coupled plant has no shared storage"):
        dataclasses.replace(params, topology="ac_coupled")
    with pytest.raises(ValueError, match="dc_bus bank carries all"):
        dataclasses.replace(params, topology="dc_bus")
    with pytest.raises(ValueError, match="needs its shared storage"):
        dataclasses.replace(params, shared_storage=None)
    with pytest.raises(ValueError, match="share must be in"):
        dataclasses.replace(storage, share=0.0)
