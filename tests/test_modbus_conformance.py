"""The Modbus conformance checker and the write fuzzer against real servers on loopback: the clean
virtual inverter and I/O module pass; each defect, a lax YAML-mapped device and a broken SunSpec
chain give the violations they must; nothing is left changed on the device.

The plant behind the inverter is the plain stand-in of test_modbus_endpoint; the Modbus stack is
real end to end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.conformance.fuzz import fuzz_writes
from harness.conformance.modbus import Violation, check_mapped, check_sunspec, sunspec_ranges
from harness.devices.inverter import CONTROL_POINTS
from harness.transports.aioloop import LoopThread
from harness.transports.modbus import MappedDevice, ModbusClient
from harness.transports.regmap import RegisterMap, Value
from harness.transports.sunspec import build_sunspec_map, discover
from harness.transports.yamlmap import load_yaml_map
from tests.test_modbus_endpoint import IDENTITY, Node, PcCBreaker, Plant
from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint
from virtual_devices.endpoints.io_module import DEFAULT_MAP, IoModuleEndpoint
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint

FUZZED = ["DERCtlAC.WSetEna", "DERCtlAC.WSetMod", "DERCtlAC.WSet", "DERCtlAC.WSetPct"]


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while (extra := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not extra, f"threads left running: {sorted(t.name for t in extra)}"


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread("test-conformance")
    try:
        yield lt
    finally:
        lt.stop()


class Inverter:
    """A virtual SunSpec inverter (with the given defect options) and a client to it."""

    def __init__(self, loop: LoopThread, **options: Any) -> None:
        self.node = Node()
        self.endpoint = SunSpecInverterEndpoint(
            self.node, Plant(), IDENTITY, lock=threading.RLock(), loop=loop, **options
        )
        self.endpoint.start()
        self.client = ModbusClient("127.0.0.1", self.endpoint.port, timeout=1.0)

    def close(self) -> None:
        self.client.close()
        self.endpoint.stop()

    def device(self) -> MappedDevice:
        found = discover(lambda a, n: self.client.read_holding(a, n, 1))
        return MappedDevice(self.client, found.regmap, 1)

    def image(self) -> list[int]:
        """Every register from the marker to the end model: the device's whole visible state."""
        regs: list[int] = []
        for address in range(40000, 40436, 109):
            regs += self.client.read_holding(address, min(109, 40436 - address))
        return regs

    def check(self) -> list[Violation]:
        return check_sunspec(self.client, 1, required_writable=CONTROL_POINTS).violations


@pytest.fixture
def inverter(loop: LoopThread, request: pytest.FixtureRequest) -> Iterator[Inverter]:
    rig = Inverter(loop, **getattr(request, "param", {}))
    try:
        yield rig
    finally:
        rig.close()


def _by_check(violations: list[Violation]) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for v in violations:
        out.setdefault(v.check, set()).add(v.point)
    return out


# -- the clean devices ------------------------------------------------------------------------


def test_clean_virtual_inverter_conforms_and_is_left_as_found(inverter: Inverter) -> None:
    inverter.device().write_many(
        {"DERCtlAC.WSetMod": "WATTS", "DERCtlAC.WSet": 1500.0, "DERCtlAC.WSetEna": "ENABLED"}
    )
    before, setpoint = inverter.image(), inverter.node.inverter.setpoint_w
    assert setpoint == 1500.0
    report = check_sunspec(inverter.client, 1, name="inv", required_writable=CONTROL_POINTS)
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert [m["id"] for m in report.models] == [1, 701, 702, 703, 704, 713, 802]
    for probe in ("read point", "write read-only", "round trip", "out of range"):
        assert report.probes[probe] > 0, probe
    assert report.probes["illegal address"] == 1  # past 65535: the chain is not the whole device
    assert report.probes["request size"] == 4
    assert any("AntiIslEna: not adjustable" in n for n in report.notes)  # tolerated, said
    assert inverter.image() == before
    assert inverter.node.inverter.setpoint_w == setpoint


def test_clean_io_module_conforms_and_the_breaker_stays_closed(loop: LoopThread) -> None:
    breaker = PcCBreaker()
    io = IoModuleEndpoint(breaker, lock=threading.RLock(), loop=loop)
    io.start()
    try:
        with ModbusClient("127.0.0.1", io.port, timeout=1.0) as client:
            report = check_mapped(client, load_yaml_map(DEFAULT_MAP), io.unit, name="pcc")
    finally:
        io.stop()
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert breaker.closed  # the coil was written its present value only
    assert report.probes["illegal address"] == 3  # past 65535, coil 1, the holding table it lacks


# -- inverter defects -------------------------------------------------------------------------


@pytest.mark.parametrize("inverter", [{"accept_beyond": 0.001}], indirect=True)
def test_accept_invalid_writes_is_caught_and_undone(inverter: Inverter) -> None:
    before = inverter.image()
    violations = inverter.check()
    assert {(v.check, v.point) for v in violations} == {
        ("out_of_range", "DERCtlAC.WSet"),
        ("out_of_range", "DERCtlAC.WSetPct"),
    }
    assert len(violations) == 4  # one step past each end of both ranges
    above = next(v for v in violations if "5001" in v.expected)
    assert "exception 3" in above.expected and "accepted" in above.observed
    assert above.address == inverter.endpoint.regmap.point("DERCtlAC.WSet").address
    assert inverter.image() == before


@pytest.mark.parametrize(
    "inverter", [{"scale_factor_error": ("DERMeasureAC.W", 11)}], indirect=True
)
def test_scale_factor_outside_its_range_is_a_violation(inverter: Inverter) -> None:
    found = _by_check(inverter.check())
    assert found == {"scale_factor": {"DERMeasureAC.W_SF", "DERMeasureAC.W", "DERMeasureAC.WL1"}}


@pytest.mark.parametrize("inverter", [{"scale_factor_error": ("DERMeasureAC.W", 1)}], indirect=True)
def test_a_valid_but_wrong_scale_factor_is_left_to_the_telemetry_clause(
    inverter: Inverter,
) -> None:
    # Published exponent 1 instead of 0 is a well-formed register: no protocol check can know
    # it is wrong. The reading is 10x the truth, which inverter.telemetry.power_error catches.
    assert inverter.check() == []
    assert inverter.device().read("DERMeasureAC.W") == pytest.approx(
        10 * inverter.node.inverter.power_w, abs=10
    )


# -- a broken SunSpec chain -------------------------------------------------------------------


class Overrides:
    """A provider of fixed values (model constants come from the map unless overridden)."""

    def __init__(self, values: Mapping[str, Value]) -> None:
        self.values = dict(values)

    def read_points(self) -> Mapping[str, Value]:
        return self.values

    def write_point(self, name: str, value: Value) -> None:
        raise KeyError(name)


def _serve(loop: LoopThread, regmap: RegisterMap, values: Mapping[str, Value]) -> Any:
    server = ModbusServerEndpoint(regmap, 1, Overrides(values), threading.RLock(), loop)
    server.start()
    return server


@pytest.mark.parametrize(
    ("overrides", "check", "point", "expected"),
    [
        ({"SunS": "SunX"}, "discovery", "SunS", '"SunS"'),
        ({"end.L": 4.0}, "discovery", "end.L", "L = 0"),
        ({"DERStorageCapacity.L": 6.0}, "model_length", "model 713", "L = 7"),
        ({"common.ID": 713.0}, "discovery", "model 1", "model 1 (common) first"),
        ({"DERStorageCapacity.ID": 9999.0}, "model_id", "model 9999", "vendor model"),
    ],
)
def test_discovery_chain_violations(
    loop: LoopThread, overrides: dict[str, Value], check: str, point: str, expected: str
) -> None:
    regmap = build_sunspec_map([1, 713])
    values: dict[str, Value] = {"common.Mn": "Acme", "common.Md": "M", "common.SN": "1"}
    server = _serve(loop, regmap, {**values, **overrides})
    try:
        with ModbusClient("127.0.0.1", server.port, timeout=1.0) as client:
            violations = check_sunspec(client, 1, bases=(40000,)).violations
    finally:
        server.stop()
    hit = [v for v in violations if v.check == check and v.point == point]
    assert hit and expected in hit[0].expected, "\n".join(map(str, violations))


# -- a YAML-mapped device ---------------------------------------------------------------------

EMS_MAP = """\
name: ems
holding:
  - {name: Ctl.ExportLimit, address: 100, type: int16, scale: 1, unit: W, access: RW, min: -5000, max: 5000}
  - {name: Ctl.Mode, address: 101, type: enum16, access: RW, symbols: {AUTO: 0, MANUAL: 1}}
  - {name: Ctl.Counter, address: 102, type: uint16, access: RW}
  - {name: Info.Model, address: 103, type: string, size: 4}
  - {name: Meas.SoC, address: 110, type: uint16, scale: -1, unit: "%", min: 0, max: 100}
coils:
  - {name: Out.Relay1, address: 0, access: RW}
  - {name: Out.Relay2, address: 1, access: RW}
"""


class Ems:
    """A provider for EMS_MAP; ``lax`` stores whatever arrives (as a firmware without checks)."""

    def __init__(self) -> None:
        self.values: dict[str, Value] = {
            "Ctl.ExportLimit": 1200.0,
            "Ctl.Mode": 0.0,
            "Ctl.Counter": 7.0,
            "Info.Model": "EMS-1",
            "Meas.SoC": 55.5,
            "Out.Relay1": 1.0,
            "Out.Relay2": 0.0,
        }

    def read_points(self) -> Mapping[str, Value]:
        return self.values

    def write_point(self, name: str, value: Value) -> None:
        self.values[name] = value


@pytest.fixture
def ems_map(tmp_path: Path) -> RegisterMap:
    (tmp_path / "ems.yaml").write_text(EMS_MAP)
    return load_yaml_map(tmp_path / "ems.yaml")


def _check_ems(loop: LoopThread, served: RegisterMap, declared: RegisterMap) -> tuple[Any, Ems]:
    ems = Ems()
    server = ModbusServerEndpoint(served, 4, ems, threading.RLock(), loop)
    server.start()
    try:
        with ModbusClient("127.0.0.1", server.port, timeout=1.0) as client:
            return check_mapped(client, declared, 4, name="ems"), ems
    finally:
        server.stop()


def test_yaml_mapped_device_conforms_and_is_restored(
    loop: LoopThread, ems_map: RegisterMap
) -> None:
    report, ems = _check_ems(loop, ems_map, ems_map)
    assert report.violations == [], "\n".join(map(str, report.violations))
    assert report.probes["out of range"] == 3  # ExportLimit above and below, Mode 2
    assert ems.values == Ems().values  # round trips restored every value


def test_yaml_mapped_device_that_ignores_its_map_is_caught(
    loop: LoopThread, ems_map: RegisterMap
) -> None:
    # The firmware enforces no range, lets SoC be written, lacks the second relay and answers
    # for a register its map does not declare.
    points = [p for p in ems_map if p.name != "Out.Relay2"]
    extra = replace(ems_map.point("Meas.SoC"), name="Meas.Undocumented", address=111)
    served = RegisterMap("ems-fw", [*(_loosen(p) for p in points), extra])
    report, ems = _check_ems(loop, served, ems_map)
    found = _by_check(report.violations)
    assert found.pop("out_of_range") == {"Ctl.ExportLimit"}
    assert found.pop("read_only") == {"Meas.SoC"}
    assert found.pop("readable") == {"Out.Relay2"}
    assert found.pop("illegal_address") == {None}
    assert found == {}
    unmapped = [v for v in report.violations if v.check == "illegal_address"]
    assert {v.address for v in unmapped} == {111, 110}  # past the end, and across it
    assert all("answered with data" in v.observed for v in unmapped)
    assert ems.values["Ctl.ExportLimit"] == 1200.0  # the accepted 5010 W was written back


def _loosen(point: Any) -> Any:
    return replace(
        point, min=None, max=None, access="RW" if point.name == "Meas.SoC" else point.access
    )


# -- property-based fuzzing -------------------------------------------------------------------


def test_fuzzing_the_clean_inverter_finds_nothing_and_restores(inverter: Inverter) -> None:
    inverter.client.write_registers(
        inverter.endpoint.regmap.point("DERCtlAC.WSet").address, [0, 1500]
    )
    before = inverter.image()
    device = inverter.device()
    result = fuzz_writes(
        inverter.client, device.regmap, FUZZED, 1, limits=sunspec_ranges(device), max_examples=15
    )
    assert result.failure is None and result.invalid_accepted == {}
    assert result.examples == 15 and result.steps >= 15 and not result.skipped
    assert inverter.image() == before


@pytest.mark.parametrize("inverter", [{"accept_beyond": 0.001}], indirect=True)
def test_fuzzing_finds_an_accepted_invalid_write_and_shrinks_it(inverter: Inverter) -> None:
    before = inverter.image()
    device = inverter.device()
    result = fuzz_writes(
        inverter.client, device.regmap, FUZZED, 1, limits=sunspec_ranges(device), max_examples=15
    )
    assert result.invalid_accepted, result.to_json()
    assert {p for p, _ in result.invalid_accepted} <= {"DERCtlAC.WSet", "DERCtlAC.WSetPct"}
    assert result.failure and "accepted" in result.failure
    (step,) = result.minimal  # shrunk to the one write that shows it
    assert step.outcome == "accepted" and not step.valid
    assert step.to_json()["registers"] and step.to_json()["function"] == 16
    assert inverter.image() == before


def test_fuzzing_reports_a_write_that_does_not_stick(
    loop: LoopThread, ems_map: RegisterMap
) -> None:
    class Forgetful(Ems):
        def write_point(self, name: str, value: Value) -> None:
            return None  # acknowledges, keeps nothing

    server = ModbusServerEndpoint(ems_map, 4, Forgetful(), threading.RLock(), loop)
    server.start()
    try:
        with ModbusClient("127.0.0.1", server.port, timeout=1.0) as client:
            result = fuzz_writes(client, ems_map, ["Ctl.ExportLimit"], 4, max_examples=10)
    finally:
        server.stop()
    assert result.invalid_accepted == {}
    assert result.failure and "Ctl.ExportLimit reads" in result.failure
