"""The dc_bus and hybrid topologies (fixtures/sites/virtual-dc-bus.yaml, virtual-hybrid.yaml)
with the virtual EMS dispatching them and a grid-forming unit holding their island: energy is
conserved on every DC bus while the EMS moves the setpoints every control cycle, the PCC flow
goes to the EMS's deadband, and the island the forming unit holds (on a shared bank or a
hybrid home's two packs) balances too.

The ledger is the one of tests/test_plant_topology.py: the plant's present values integrated
interval by interval, one plant step per interval, so a wiring or an EMS that moved power
without moving the packs' charge breaks it.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.config.site import load_site
from tests.test_plant_topology import SITES, Ledger, soc_charge_as
from virtual_devices.plant.ems import SELF_CONSUMPTION, TOU
from virtual_devices.plant.ems_params import load_ems_settings
from virtual_devices.plant.island_params import GridFormingParams
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

SETTINGS = load_ems_settings()
CYCLE_S = SETTINGS.modes.cycle_s
"""The ledger's interval: the EMS's control cycle, so its instants are the steps' ends."""


def ems_plant(name: str, *, forming: bool = True) -> Plant:
    """A shipped site's plant with the virtual EMS and (``forming``) its first home's unit
    able to form an island; stepping once per EMS control cycle."""
    params = plant_params(load_site(SITES / f"{name}.yaml"), [])
    nodes = list(params.nodes)
    if forming:
        first = nodes[0]
        gf = dataclasses.replace(first.inverter, grid_forming=GridFormingParams(enabled=True))
        nodes[0] = dataclasses.replace(first, inverter=gf)
    params = dataclasses.replace(
        params,
        nodes=nodes,
        ems=SETTINGS,
        fine_step_s=CYCLE_S,
        coarse_step_s=CYCLE_S,
        steady_step_s=CYCLE_S,
    )
    return Plant(params)


def integrate(plant: Plant, seconds: float, ledger: Ledger | None = None) -> Ledger:
    """Advance ``seconds`` one control cycle at a time, integrating the held values of every
    pack and unit (as tests/test_plant_topology.py's run_cycle does, without dispatching)."""
    ledger = ledger or Ledger()
    packs = plant.wiring.batteries
    inverters = [node.inverter for node in plant.nodes.values()]
    end = plant.t + seconds
    while plant.t < end - 1e-9:
        dt = min(CYCLE_S, end - plant.t)
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


def assert_balanced(plant: Plant, ledger: Ledger, soc0: dict[str, float]) -> None:
    """Cells less losses is the units' AC energy; the packs' terminals feed the units' DC
    side; every pack's SoC integrates its own current."""
    assert ledger.cells_wh != 0.0  # energy moved: a balance of nothing proves nothing
    balance = ledger.cells_wh - ledger.pack_loss_wh - ledger.conversion_loss_wh
    assert balance == pytest.approx(ledger.ac_wh, rel=1e-9, abs=1e-6)
    assert sum(ledger.terminal_wh.values()) == pytest.approx(ledger.inverter_dc_wh, abs=1e-6)
    for pack in plant.wiring.batteries:
        assert soc_charge_as(pack, soc0[pack.name]) == pytest.approx(
            ledger.charge_as[pack.name], rel=1e-9, abs=1e-6
        )


def socs(plant: Plant) -> dict[str, float]:
    return {pack.name: pack.soc_pct for pack in plant.wiring.batteries}


def set_sun(plant: Plant, irradiance_w_m2: float) -> None:
    for node in plant.nodes.values():
        if node.pv is not None:
            node.pv.array.irradiance_override = irradiance_w_m2


@pytest.mark.parametrize("name", ["virtual-dc-bus", "virtual-hybrid"])
def test_self_consumption_balances_and_zeroes_the_pcc_then_the_island_balances(name: str) -> None:
    plant = ems_plant(name)
    ems = plant.ems
    assert ems is not None
    set_sun(plant, 900.0)
    plant.advance(float(CYCLE_S))
    ems.self_consumption(plant.t)
    soc0 = socs(plant)
    # Half the time under a PV surplus, half under a load the sun does not cover.
    ledger = integrate(plant, 120.0)
    surplus_flow = plant.pcc_power_w
    charged = sum(n.inverter.setpoint_w for n in plant.nodes.values())
    set_sun(plant, 0.0)
    plant.island_load.set(4000.0, 1.0)
    integrate(plant, 120.0, ledger)
    assert_balanced(plant, ledger, soc0)
    assert abs(surplus_flow) <= SETTINGS.modes.deadband_w
    assert charged < 0.0  # the surplus went into the packs
    assert abs(plant.pcc_power_w) <= SETTINGS.modes.deadband_w
    assert sum(n.inverter.setpoint_w for n in plant.nodes.values()) > 0.0
    # The grid goes: the forming unit holds the island on its (shared) storage.
    plant.pcc.open()
    plant.advance(plant.t + 5.0)
    former = next(iter(plant.nodes.values())).inverter
    assert plant.island.forming and former.power_w > 0.0
    soc1 = socs(plant)
    island = integrate(plant, 60.0)
    assert_balanced(plant, island, soc1)
    assert ems.state == SELF_CONSUMPTION


@pytest.mark.parametrize("name", ["virtual-dc-bus", "virtual-hybrid"])
def test_tou_discharge_window_balances_on_each_topology(name: str) -> None:
    plant = ems_plant(name, forming=False)
    ems = plant.ems
    assert ems is not None
    peak = next(p for p in SETTINGS.modes.tou.periods if p.action == "discharge")
    ems.modes = dataclasses.replace(
        ems.modes, tou=dataclasses.replace(ems.modes.tou, day_starts_at_s=peak.start_s)
    )
    ems.tou(plant.t)
    soc0 = socs(plant)
    ledger = integrate(plant, 120.0)
    assert ems.state == TOU and ems.period == peak.name
    assert_balanced(plant, ledger, soc0)
    for node in plant.nodes.values():
        expected = peak.fraction * node.inverter.params.rated_power_w
        assert node.inverter.setpoint_w == pytest.approx(expected)
    assert all(plant.wiring.batteries[i].soc_pct < s for i, s in enumerate(soc0.values()))
