"""PV in the virtual plant (virtual_devices/plant/pv.py) and the PV simulator that drives it:
irradiance to power, temperature derating, clipping, energy at the PCC, anti-islanding and
enter service, and the PV simulator driver over pyvisa-py to the real SCPI server on loopback.

Expected values are computed here from the data file's coefficients by the textbook formulas
(the module's docstring), so a changed coefficient changes both sides, a changed formula only one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.bench import open_bench
from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from harness.devices.pv_simulator import PvSimulator, ScpiPvSimulator
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.visa import open_connections
from virtual_devices.endpoints.pv_simulator import RANGE_W_M2, PvSimulatorHandler
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer
from virtual_devices.plant.params import EnterServiceParams
from virtual_devices.plant.plant import Plant
from virtual_devices.plant.pv import (
    DEFAULT_PV,
    IrradianceProfile,
    PvArray,
    PvInverter,
    PvParams,
    load_pv_settings,
)
from virtual_devices.plant_config import plant_params

SITES = Path(__file__).resolve().parent.parent / "fixtures" / "sites"
CONTRACT = Path("fixtures/contracts/example.yaml")
SETTINGS = load_pv_settings()
V_NOM = 240.0
ES = EnterServiceParams(0.917, 1.05, 59.5, 60.1, delay_s=300.0, ramp_s=300.0)


def expected_dc_w(rating_w: float, g: float, air_c: float) -> float:
    s = SETTINGS
    cell = air_c + (s.noct_c - s.noct_ambient_c) * g / s.noct_irradiance_w_m2
    gamma = s.temperature_coefficient_pct_per_c / 100
    return rating_w * g / s.stc_irradiance_w_m2 * (1 + gamma * (cell - s.stc_cell_c))


def test_array_gives_its_rating_at_standard_test_conditions() -> None:
    s = SETTINGS
    g = s.stc_irradiance_w_m2
    # The air that puts the cells at exactly the STC cell temperature under STC irradiance.
    air = s.stc_cell_c - (s.noct_c - s.noct_ambient_c) * g / s.noct_irradiance_w_m2
    array = PvArray(PvParams(6000.0, 5000.0, ambient_c=air))
    assert array.cell_temperature_c(g) == pytest.approx(s.stc_cell_c)
    assert array.dc_power_w(g) == pytest.approx(6000.0)
    assert array.dc_power_w(g / 2) == pytest.approx(expected_dc_w(6000.0, g / 2, air))
    assert array.dc_power_w(0.0) == 0.0


def test_hot_air_derates_the_array() -> None:
    assert SETTINGS.temperature_coefficient_pct_per_c < 0
    cool = PvArray(PvParams(6000.0, 5000.0, ambient_c=10.0))
    hot = PvArray(PvParams(6000.0, 5000.0, ambient_c=45.0))
    for g in (200.0, 800.0, 1000.0):
        assert hot.dc_power_w(g) < cool.dc_power_w(g)
        assert hot.dc_power_w(g) == pytest.approx(expected_dc_w(6000.0, g, 45.0))
    # 35 degC more air: the textbook derating, coefficient times temperature difference.
    ratio = hot.dc_power_w(1000.0) / cool.dc_power_w(1000.0)
    gamma = SETTINGS.temperature_coefficient_pct_per_c / 100
    cell_cool = cool.cell_temperature_c(1000.0) - SETTINGS.stc_cell_c
    assert ratio == pytest.approx((1 + gamma * (cell_cool + 35)) / (1 + gamma * cell_cool))


def test_profile_interpolates_and_holds_its_ends() -> None:
    profile = IrradianceProfile((0.0, 100.0, 200.0), (100.0, 900.0, 0.0))
    assert profile(-5.0) == 100.0
    assert profile(25.0) == pytest.approx(300.0)
    assert profile(150.0) == pytest.approx(450.0)
    assert profile(1e6) == 0.0
    with pytest.raises(ValueError, match="rise strictly"):
        IrradianceProfile((0.0, 0.0), (1.0, 2.0))
    assert SETTINGS.profile(0.0) > 0.0  # the shipped day starts in daylight


def test_bad_pv_data_file_names_the_field(tmp_path: Path) -> None:
    text = DEFAULT_PV.read_text(encoding="utf-8")
    bad = tmp_path / "pv.yaml"
    bad.write_text(text.replace("noct: 45 degC", "noct: 45"), encoding="utf-8")
    with pytest.raises(ConfigErrors, match=r"module\.noct") as err:
        load_pv_settings(bad)
    assert str(bad) in str(err.value)


def inverter(rating_w: float = 6000.0, ac_w: float = 5000.0) -> PvInverter:
    unit = PvInverter(PvParams(rating_w, ac_w, ambient_c=25.0), ES, V_NOM, "home-1.pv")
    unit.start_in_service()
    unit.update(0.0, V_NOM, 60.0, True)
    return unit


def test_inverter_clips_at_its_rating_and_curtailment() -> None:
    unit = inverter(rating_w=8000.0, ac_w=5000.0)
    unit.array.irradiance_override = 1000.0
    unit.update_power(0.0, 0.0)
    available = expected_dc_w(8000.0, 1000.0, 25.0) * SETTINGS.efficiency
    assert available > 5000.0 and unit.available_w == pytest.approx(available)
    assert unit.power_w == 5000.0
    unit.limit_w = 2000.0
    unit.update_power(1.0, 1.0)
    assert unit.power_w == 2000.0
    unit.limit_w = None
    unit.array.irradiance_override = 300.0
    unit.update_power(2.0, 1.0)
    assert unit.power_w == pytest.approx(expected_dc_w(8000.0, 300.0, 25.0) * SETTINGS.efficiency)
    assert unit.dc_power_w == pytest.approx(unit.power_w / SETTINGS.efficiency)


def test_inverter_ceases_on_an_island_and_enters_service_by_the_rules() -> None:
    unit = inverter()
    unit.array.irradiance_override = 800.0
    unit.update(10.0, V_NOM, 60.0, False)  # the island forms at 10 s
    assert unit.energizing
    due = unit.next_event_time(10.0)
    assert due == pytest.approx(10.0 + SETTINGS.anti_islanding_detection_s)
    unit.update(due, V_NOM, 60.0, False)
    assert not unit.energizing
    unit.update_power(due, 0.0)
    assert unit.power_w == 0.0
    unit.update(20.0, V_NOM, 60.0, True)  # grid back, inside the window: the delay starts
    assert unit.next_event_time(20.0) == pytest.approx(20.0 + ES.delay_s)
    unit.update(100.0, 1.2 * V_NOM, 60.0, True)  # an excursion restarts it
    unit.update(110.0, V_NOM, 60.0, True)
    start = 110.0 + ES.delay_s
    assert unit.next_event_time(110.0) == pytest.approx(start)
    unit.update(start, V_NOM, 60.0, True)
    assert unit.energizing
    unit.update_power(start + ES.ramp_s / 4, 1.0)  # a quarter into the ramp
    full = expected_dc_w(6000.0, 800.0, 25.0) * SETTINGS.efficiency
    assert unit.power_w == pytest.approx(full / 4)


def pv_plant() -> Plant:
    return Plant(plant_params(load_site(SITES / "virtual-dc-bus.yaml"), []))


def test_pv_energy_reaches_the_pcc_and_its_counters() -> None:
    plant = pv_plant()
    units = [node.pv for node in plant.nodes.values() if node.pv is not None]
    assert len(units) == 2
    for unit in units:
        unit.array.irradiance_override = 600.0
    plant.mark_event("irradiance")
    plant.advance(3600.0)
    pv_w = sum(unit.power_w for unit in units)
    assert pv_w > 0.0 and plant.channel("pv.power") == pytest.approx(pv_w)
    batteries = sum(node.inverter.power_w for node in plant.nodes.values())
    loads = plant.loads.power_at(plant.bus_voltage_v)
    assert plant.pcc_power_w == pytest.approx(loads - batteries - pv_w)
    # Constant light and air: each unit exported its power for the whole hour (it was already
    # in service at the start), as the analyzer's integrator counts it.
    for unit in units:
        assert plant.channel(f"{unit.name}.energy_export") == pytest.approx(unit.power_w, rel=1e-3)


def test_pv_ceases_when_the_pcc_opens() -> None:
    plant = pv_plant()
    plant.advance(5.0)
    assert plant.channel("pv.power") > 0.0
    plant.pcc.open()
    plant.advance(5.0 + 2 * SETTINGS.anti_islanding_detection_s)
    ceased = [t for t, name in plant.events if name.endswith(".pv.cease:island")]
    assert len(ceased) == 2
    assert ceased[0] == pytest.approx(5.0 + SETTINGS.anti_islanding_detection_s, abs=1e-9)
    assert plant.channel("pv.power") == 0.0


# -- the PV simulator, over pyvisa-py to the real SCPI server --------------------------------


@pytest.fixture
def simulator() -> Iterator[tuple[Plant, ScpiPvSimulator]]:
    plant, lock, loop = pv_plant(), threading.RLock(), LoopThread("test-pv-simulator")
    identity = InstrumentIdentity("Virtual Instruments", "VPV-1", "VPV-01", "1.0")
    server = ScpiServer(PvSimulatorHandler(plant, lock, identity), loop)
    driver: ScpiPvSimulator | None = None
    try:
        server.start()
        driver = ScpiPvSimulator.open("pv_simulator", server.resource)
        yield plant, driver
    finally:
        if driver is not None:
            driver.disconnect()
        server.stop()
        loop.stop()
        assert open_connections() == 0


def test_pv_simulator_drives_the_arrays(simulator: tuple[Plant, ScpiPvSimulator]) -> None:
    plant, pv = simulator
    assert isinstance(pv, PvSimulator)
    assert pv.identity().model == "VPV-1"
    assert pv.irradiance() == pytest.approx(SETTINGS.profile(0.0))
    pv.set_irradiance(250.0)
    assert pv.irradiance() == 250.0
    plant.advance(1.0)
    units = [node.pv for node in plant.nodes.values() if node.pv is not None]
    assert all(u.irradiance_w_m2 == 250.0 for u in units)
    assert pv.power() == pytest.approx(sum(u.dc_power_w for u in units))
    assert pv.power() == pytest.approx(
        sum(expected_dc_w(u.params.array_rating_w, 250.0, u.params.ambient_c) for u in units)
    )
    pv.follow_profile()
    plant.advance(2.0)
    assert pv.irradiance() == pytest.approx(SETTINGS.profile(2.0))


def test_pv_simulator_refuses_a_level_out_of_range(
    simulator: tuple[Plant, ScpiPvSimulator],
) -> None:
    plant, pv = simulator
    with pytest.raises(DeviceError, match="out of range"):
        pv.set_irradiance(RANGE_W_M2[1] + 1.0)
    assert pv.irradiance() == pytest.approx(SETTINGS.profile(plant.t))


def test_pv_simulator_on_a_virtual_site_drives_what_the_analyzer_measures() -> None:
    """End to end: the site file's ``pv_simulator`` reaches the bench through the registry, its
    level reaches the arrays, and the analyzer's PV channel shows the resulting AC power."""
    contract = load_contract(Path(__file__).resolve().parent.parent / CONTRACT)
    bench = open_bench(load_site(SITES / "virtual-dc-bus.yaml"), contract)
    try:
        pv = bench.pv_simulator
        assert isinstance(pv, PvSimulator)
        site = bench.site.spec
        arrays = [
            (n.pv.rating, n.pv.inverter_rating or n.pv.rating, n.pv.ambient)
            for n in site.nodes
            if n.pv
        ]
        for level in (400.0, 900.0):
            pv.set_irradiance(level)
            bench.clock.sleep(5.0)
            expected = sum(
                min(ac, expected_dc_w(rating, level, air) * SETTINGS.efficiency)
                for rating, ac, air in arrays
            )
            assert bench.analyzer.measure("pv.power") == pytest.approx(expected, rel=1e-6)
            assert pv.power() == pytest.approx(
                sum(
                    min(ac / SETTINGS.efficiency, expected_dc_w(r, level, air))
                    for r, ac, air in arrays
                ),
                rel=1e-6,
            )
    finally:
        bench.close()
