"""The fleet poller against real pymodbus servers: virtual SunSpec inverters of a real plant on
127.0.0.1, read by :class:`FleetPoller` from one loop, and checked against the sync client."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.config.site import load_site
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import MappedDevice, ModbusClient, Transaction
from harness.transports.modbus_poller import FleetPoller, Poll, Target
from harness.transports.regmap import RegisterMap
from harness.transports.sunspec import discover
from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

SITE = Path(__file__).resolve().parents[1] / "fixtures/sites/virtual-home.yaml"
NODES = 3
TELEMETRY = [f"DERMeasureAC.{n}" for n in ("InvSt", "W", "VA", "Var", "PF", "A", "LLV", "Hz")]


@dataclasses.dataclass
class Fleet:
    endpoints: list[SunSpecInverterEndpoint]
    regmap: RegisterMap
    plant: Plant
    lock: threading.RLock

    @property
    def targets(self) -> list[Target]:
        return [Target("127.0.0.1", e.port) for e in self.endpoints]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Three inverters of one plant (exporting, so the values are not all zero), one server loop."""
    template = plant_params(load_site(SITE), [])
    home = template.nodes[0]
    nodes = [dataclasses.replace(home, name=f"n{i}") for i in range(NODES)]
    plant = Plant(dataclasses.replace(template, nodes=nodes))
    for i, node in enumerate(plant.nodes.values()):
        node.inverter.set_power_setpoint((0.2 + 0.2 * i) * node.inverter.params.rated_power_w)
    plant.advance(10.0)
    lock, loop = threading.RLock(), LoopThread("test-fleet-servers")
    endpoints = []
    try:
        for node in plant.nodes.values():
            identity = {"Mn": "Test", "Md": "VP", "SN": node.name, "Vr": "1"}
            endpoint = SunSpecInverterEndpoint(node, plant, identity, lock=lock, loop=loop)
            endpoint.start()
            endpoints.append(endpoint)
        with ModbusClient("127.0.0.1", endpoints[0].port) as probe:
            regmap = discover(lambda a, n: probe.read_holding(a, n, 1)).regmap
        yield Fleet(endpoints, regmap, plant, lock)
    finally:
        for endpoint in endpoints:
            endpoint.stop()
        loop.stop()


def test_a_poll_reads_what_the_sync_client_reads(fleet: Fleet) -> None:
    """Same points, same scaling, each device its own values (the plant does not move here)."""
    with FleetPoller(fleet.targets, fleet.regmap, TELEMETRY) as poller:
        polled = poller.poll_once()
    for endpoint, values in zip(fleet.endpoints, polled, strict=True):
        with ModbusClient("127.0.0.1", endpoint.port) as client:
            expected = MappedDevice(client, fleet.regmap).read_many(TELEMETRY)
        assert values == expected
    powers = [v["DERMeasureAC.W"] for v in polled if isinstance(v, dict)]
    assert len(set(powers)) == NODES and all(isinstance(p, float) and p > 0 for p in powers)


def test_a_poll_is_one_request_and_is_recorded(fleet: Fleet) -> None:
    seen: list[Transaction] = []
    ModbusClient.add_global_listener(seen.append)
    try:
        with FleetPoller(fleet.targets[:1], fleet.regmap, TELEMETRY) as poller:
            poller.poll_once()
    finally:
        ModbusClient.remove_global_listener(seen.append)
    assert len(seen) == 1 and seen[0].ok
    w_sf = fleet.regmap.point("DERMeasureAC.W_SF")
    assert seen[0].address <= fleet.regmap.point("DERMeasureAC.InvSt").address
    assert seen[0].address + seen[0].count >= w_sf.end and seen[0].count <= 125


def test_points_that_need_two_requests_are_refused(fleet: Fleet) -> None:
    far = ["DERMeasureAC.W", "DERCtlAC.WSetPct"]  # models 701 and 704: no single read holds both
    with pytest.raises(ValueError, match="need 2 requests"):
        FleetPoller(fleet.targets, fleet.regmap, far)


def test_scheduled_polls_meet_their_slots(fleet: Fleet) -> None:
    polls: list[Poll] = []
    with FleetPoller(fleet.targets, fleet.regmap, TELEMETRY) as poller:
        stats = poller.run(20.0, 4, on_poll=polls.append)
    assert stats.polls == NODES * 4 and stats.errors == 0
    assert sorted({p.device for p in polls}) == list(range(NODES))
    assert all(p.values is not None and p.done >= p.start for p in polls)
    assert stats.percentile(50) < 0.05  # generous: three loopback reads on a shared machine


def test_a_device_that_goes_away_is_an_error_naming_it(fleet: Fleet) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{dead}"):
        FleetPoller(
            [*fleet.targets, Target("127.0.0.1", dead)], fleet.regmap, TELEMETRY, timeout=0.5
        ).connect()


def test_polls_follow_the_plant(fleet: Fleet) -> None:
    """The servers remember encodings, never values: a new power is served at the next poll,
    and a power that comes back is served as it was."""
    inverter = next(iter(fleet.plant.nodes.values())).inverter
    rated = inverter.params.rated_power_w
    powers = []
    with FleetPoller(fleet.targets[:1], fleet.regmap, TELEMETRY) as poller:
        for fraction in (0.3, 0.7, 0.3):
            with fleet.lock:
                inverter.set_power_setpoint(fraction * rated)
                fleet.plant.advance(fleet.plant.t + 30.0)
                truth = float(inverter.power_w)
            values = poller.poll_once()[0]
            assert isinstance(values, dict)
            polled = values["DERMeasureAC.W"]
            assert isinstance(polled, float)
            assert polled == pytest.approx(truth, abs=0.01 * rated)
            powers.append(polled)
    assert powers[1] > powers[0] + 0.3 * rated and powers[2] == pytest.approx(powers[0], abs=1.0)
