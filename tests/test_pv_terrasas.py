"""The PV simulator role in a real family's dialect, the AMETEK TerraSAS (channel-addressed
commands, a level applied on SOURce:EXECute, an output switch): the data file, the driver against
the virtual simulator over real pyvisa-py on loopback driving a real plant's arrays, and a site
file selecting it through the registry and the virtual site."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.bench import open_bench
from harness.checks import check_file
from harness.config.contract import load_contract
from harness.config.site import load_site
from harness.devices.pv_simulator import PvSimulator, ScpiPvSimulator
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.dialects import load_dialect
from harness.transports.visa import ScpiConnection, open_connections
from tests.harness_runner import CONTRACT, ROOT, harness
from virtual_devices.endpoints.instruments import build_instrument
from virtual_devices.endpoints.pv_simulator import PvSimulatorHandler
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer
from virtual_devices.plant.plant import Plant
from virtual_devices.plant.pv import load_pv_settings
from virtual_devices.plant_config import plant_params

FAMILY = "ametek-terrasas"
SITE = ROOT / "fixtures/sites/virtual-hybrid-terrasas.yaml"
PROFILE = load_pv_settings().profile


def test_dialect_cites_svp_and_marks_the_assumed_queries() -> None:
    dialect = load_dialect(FAMILY)
    assert dialect.unverified() == ["pv_simulator.irradiance", "pv_simulator.power"]
    role = dialect.role("pv_simulator")
    assert role.op("set_irradiance").render(value=800, channel=2) == "SOUR:IRR 800, (@2)"
    assert role.op("execute").render(channel=2) == "SOUR:EXEC (@2)"
    assert role.op("follow_profile").render(channel=1) == "TRIG (@1)"


@pytest.fixture
def simulator() -> Iterator[tuple[Plant, ScpiPvSimulator, ScpiServer]]:
    plant = Plant(plant_params(load_site(ROOT / "fixtures/sites/virtual-dc-bus.yaml"), []))
    lock, loop = threading.RLock(), LoopThread("test-pv-terrasas")
    identity = InstrumentIdentity("AMETEK", "TerraSAS", "TS-1", "1.0")
    handler = build_instrument(PvSimulatorHandler, FAMILY, plant, lock, identity, {"channel": 2})
    server = ScpiServer(handler, loop)
    driver: ScpiPvSimulator | None = None
    try:
        server.start()
        driver = ScpiPvSimulator.open("pv", server.resource, dialect=FAMILY, options={"channel": 2})
        yield plant, driver, server
    finally:
        if driver is not None:
            driver.disconnect()
        server.stop()
        loop.stop()
        assert open_connections() == 0


def test_level_output_and_profile_reach_the_arrays(
    simulator: tuple[Plant, ScpiPvSimulator, ScpiServer],
) -> None:
    plant, pv, _ = simulator
    units = [node.pv for node in plant.nodes.values() if node.pv is not None]
    pv.set_irradiance(612.4)  # sent as 612, as svp sends it (%d)
    plant.advance(1.0)
    assert pv.irradiance() == 612.0 and all(u.irradiance_w_m2 == 612.0 for u in units)
    assert pv.power() == pytest.approx(sum(u.dc_power_w for u in units)) and pv.power() > 0
    pv.set_output(False)
    plant.advance(2.0)
    assert pv.output_on() is False and pv.power() == 0.0
    pv.set_output(True)
    pv.follow_profile()
    plant.advance(3.0)
    assert pv.output_on() is True and pv.irradiance() == pytest.approx(PROFILE(3.0))


def test_level_waits_for_execute_and_other_channels_are_refused(
    simulator: tuple[Plant, ScpiPvSimulator, ScpiServer],
) -> None:
    plant, pv, server = simulator
    conn = ScpiConnection(server.resource, 1.0)
    try:
        conn.write("SOURce:IRRadiance 300, (@2)")
        assert conn.errors() == [] and pv.irradiance() == pytest.approx(PROFILE(plant.t))
        conn.write("SOUR:EXEC (@2)")
        assert pv.irradiance() == 300.0
        conn.write("SOUR:IRR 500, (@1)")  # channel 1 is not wired to the arrays here
        assert conn.errors()[0].startswith("-224,")
    finally:
        conn.close()
    with pytest.raises(DeviceError, match=r"'SOUR:IRR 2000, \(@2\)' rejected: -222"):
        pv.set_irradiance(2000.0)
    assert pv.irradiance() == 300.0


def test_site_file_selects_the_terrasas() -> None:
    assert "TerraSAS PV simulator" in check_file(SITE)
    bench = open_bench(load_site(SITE), load_contract(CONTRACT))
    try:
        pv = bench.pv_simulator
        assert isinstance(pv, PvSimulator)
        assert pv.identity().extra == {"dialect": FAMILY}
        pv.set_irradiance(900.0)
        bench.clock.sleep(2.0)
        assert pv.irradiance() == 900.0 and pv.power() > 0.0
    finally:
        bench.close()


def test_unknown_pv_dialect_is_a_setup_error(tmp_path: Path) -> None:
    text = SITE.read_text()
    path = SITE.parent / ".test-terrasas-unknown.yaml"
    path.write_text(text.replace("driver: ametek-terrasas", "driver: ametek-terasas"))
    try:
        proc = harness("check", path)
    finally:
        path.unlink()
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out
    assert "instruments.pv_simulator.driver: unknown pv_simulator driver 'ametek-terasas'" in out
