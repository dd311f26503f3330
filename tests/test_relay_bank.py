"""A relay-stepped RLC load bank (ICS Electronics 8064 relay controllers, one per branch): step-map
mistakes and the site checks that report them by file and field, the residual the driver reports,
and the controller's own commands over real pyvisa-py to SCPI servers on loopback driving a real
IslandLoad. The closest-sum choice and the islanding sweep end to end on the relay-bank site are
in tests/test_relay_loadbank.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.checks import check_file
from harness.config.errors import ConfigErrors
from harness.devices.loadbank import LoadBank
from harness.devices.relay_loadbank import RelayLoadBank
from harness.devices.roles import DeviceError
from harness.transports.aioloop import LoopThread
from harness.transports.dialects import load_dialect
from harness.transports.dialects.relay_bank import (
    RelayBankEndpoints,
    StepMapError,
    parse_branches,
)
from harness.transports.visa import ScpiConnection, open_connections
from tests.harness_runner import ROOT
from virtual_devices.endpoints.relay_bank import relay_bank_handlers
from virtual_devices.endpoints.scpi_server import InstrumentIdentity, ScpiServer
from virtual_devices.plant.load import IslandLoad

SITE = ROOT / "fixtures/sites/virtual-home-relay-bank.yaml"
FAMILY = "ics-8064"
STEPS = {
    "resistive": {1: "60 W", 2: "120 W", 3: "240 W", 4: "480 W", 5: "960 W", 6: "1920 W"},
    "inductive": {1: "45 var", 2: "90 var", 3: "180 var", 4: "360 var", 5: "720 var"},
    "capacitive": {1: "45 var", 2: "90 var", 3: "180 var", 4: "360 var", 5: "720 var"},
}
OPTIONS = {"branches": {name: {"steps": steps} for name, steps in STEPS.items()}}


# -- the step map ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"resistive": {"steps": {1: "60 var"}}}, "branches.resistive.steps.1", "in W"),
        ({"inductive": {"steps": {0: "45 var"}}}, "branches.inductive.steps", "relay 0"),
        ({"capacitive": {"steps": {1: "-5 var"}}}, "branches.capacitive.steps.1", "not a step"),
        ({"capacitive": {}}, "branches.capacitive.steps", "missing"),
        ({"damping": {"steps": {1: "1 W"}}}, "branches.damping", "unknown branch"),
    ],
)
def test_malformed_step_map_names_the_field(
    change: dict[str, object], field: str, reason: str
) -> None:
    branches = {**OPTIONS["branches"], **change}
    with pytest.raises(StepMapError) as info:
        parse_branches({"branches": branches}, ("instruments", "load_bank", "options"))
    assert ".".join(map(str, info.value.loc)) == f"instruments.load_bank.options.{field}"
    assert reason in info.value.reason


def test_dialect_cites_svp_and_marks_the_assumed_reply() -> None:
    dialect = load_dialect(FAMILY)
    assert dialect.unverified() == ["load_bank.state"]  # Q?'s reply format is assumed
    role = dialect.role("load_bank")
    assert role.op("close").render(relays="(@1,3,7)") == "C (@1,3,7)"
    assert role.op("open_all").render() == "ROUT:OPEN:ALL"


# -- driver and virtual controllers over loopback ----------------------------------------------


class LoadPlant:
    def __init__(self) -> None:
        self.island_load = IslandLoad(0.0, 1.0, 240.0, 60.0)


@dataclass
class Bank:
    plant: LoadPlant
    driver: RelayLoadBank
    servers: dict[str, ScpiServer]


@pytest.fixture
def bank() -> Iterator[Bank]:
    plant, lock, loop = LoadPlant(), threading.RLock(), LoopThread("test-relay-bank")
    identity = InstrumentIdentity("ICS Electronics", "8064", "RB-1", "2.1")
    handlers = relay_bank_handlers(plant, lock, identity, FAMILY, parse_branches(OPTIONS))
    servers = {name: ScpiServer(h, loop) for name, h in handlers.items()}
    driver: RelayLoadBank | None = None
    try:
        for server in servers.values():
            server.start()
        endpoints = RelayBankEndpoints({n: s.resource for n, s in servers.items()})
        driver = RelayLoadBank.open("load_bank", endpoints, OPTIONS, FAMILY)
        yield Bank(plant, driver, servers)
    finally:
        if driver is not None:
            driver.disconnect()
        for server in servers.values():
            server.stop()
        loop.stop()
        assert open_connections() == 0


def test_balance_sets_the_closest_steps_and_reports_them(bank: Bank) -> None:
    assert isinstance(bank.driver, LoadBank)
    bank.driver.balance(power=1000.0, quality_factor=1.0, capacitive_pct=97.0)
    setting = bank.driver.setting()
    assert setting["resistive"].relays == (1, 5) and setting["resistive"].achieved == 1020.0
    assert setting["inductive"].achieved == 990.0  # 1000 var asked: 720+180+90
    assert setting["capacitive"].achieved == 990.0  # 970 var asked, 990 is 20 off, 945 is 25
    assert setting["capacitive"].residual == pytest.approx(20.0)
    load = bank.plant.island_load  # what the virtual relays made of it
    assert load.power_w == 1020.0
    assert load.inductive_var == pytest.approx(990.0) and load.capacitive_var == pytest.approx(
        990.0
    )
    assert bank.driver.power() == 1020.0
    assert bank.driver.reactive() == pytest.approx((99.0, 99.0))


def test_refused_target_leaves_every_relay_as_it_was(bank: Bank) -> None:
    bank.driver.balance(power=1000.0, quality_factor=1.0)
    before = bank.driver.setting()
    with pytest.raises(DeviceError, match="load_bank: inductive branch cannot set 2000 var"):
        bank.driver.balance(power=2000.0, quality_factor=1.0)  # R reaches it, L does not
    assert bank.driver.setting() == before and bank.plant.island_load.power_w == 1020.0
    bank.driver.set_power(0.0)  # the safe state: every branch open
    assert all(s.relays == () for s in bank.driver.setting().values())
    assert bank.plant.island_load.power_w == 0.0


def test_controller_speaks_the_svp_commands(bank: Bank) -> None:
    conn = ScpiConnection(bank.servers["resistive"].resource, 1.0)
    try:
        conn.write("C (@2,4)")
        assert conn.errors() == [] and conn.query("Q?") == "(@2,4)"
        assert bank.plant.island_load.power_w == 600.0
        conn.write("C (@17)")  # the 8064 has 16 relays
        assert conn.errors()[0].startswith("-222,")
        conn.write("ROUT:OPEN:ALL")
        assert conn.query("Q?") == "(@)" and bank.plant.island_load.power_w == 0.0
        assert conn.query("SYSTem:VERSion?") == "2.1"
        assert conn.query("*IDN?") == "ICS Electronics,8064,RB-1-R,2.1"
    finally:
        conn.close()


# -- the site file -------------------------------------------------------------------------------


def _variant(old: str, new: str) -> Path:
    text = SITE.read_text()
    assert old in text, old
    path = SITE.parent / f".test-relay-{abs(hash((old, new))) % 10**8}.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        (
            "driver: ics-8064 ",
            "driver: ics-8046 ",
            ("instruments.load_bank.driver: unknown load_bank driver 'ics-8046'", "ics-8064"),
        ),
        (
            "3: 240 W,",
            "3: 240 kWh,",
            ("instruments.load_bank.options.branches.resistive.steps.3:", "not a step size in W"),
        ),
        (  # on a bench every branch names its controller
            "endpoint: {transport: virtual}\n    identity: {manufacturer: ICS",
            'endpoint: {transport: visa, resource: "TCPIP::10.1.32.63::INSTR"}\n'
            "    identity: {manufacturer: ICS",
            ("instruments.load_bank.options.branches.inductive.resource: missing",),
        ),
    ],
)
def test_check_refuses_bad_dialect_and_step_map(
    old: str, new: str, fragments: tuple[str, ...]
) -> None:
    path = _variant(old, new)
    try:
        with pytest.raises(ConfigErrors) as info:  # what `harness check` prints, then exits 2
            check_file(path)
    finally:
        path.unlink()
    text = str(info.value)
    assert f"{path}:" in text, text
    for fragment in fragments:
        assert fragment in text, text


def test_check_accepts_the_relay_bank_site() -> None:
    assert "Virtual single home (relay-stepped load bank)" in check_file(SITE)
