"""The settlement meter and the climate chamber of a virtual site, through their real endpoints:
the meter's SunSpec map (models 1 and 203) discovered over Modbus TCP, the chamber's SCPI over
pyvisa-py, both on loopback, against the plant's truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.bench import open_bench
from harness.config.contract import load_contract
from harness.config.site import load_site
from harness.devices.roles import DeviceError
from tests.harness_runner import CONTRACT, SITE


@pytest.fixture(scope="module")
def bench() -> Iterator[Any]:
    b = open_bench(load_site(SITE), load_contract(CONTRACT))
    try:
        yield b
    finally:
        b.close()


def _plant(bench: Any) -> Any:
    owners = [getattr(a, "__self__", None) for a in bench.clock._advancers]
    return next(o.plant for o in owners if hasattr(o, "plant"))


def test_meter_says_who_it_is_and_counts_the_pcc_energy(bench: Any) -> None:
    meter = bench.meter
    assert meter.identity().serial == "VMTR-0001"
    assert meter.model == "ac_meter_abcn"  # SunSpec 203, discovered from the device
    before = meter.energy()
    bench.dispatch_all(1.0)
    bench.clock.sleep(600.0)
    after = meter.energy()
    plant = _plant(bench)
    assert meter.power() == pytest.approx(plant.pcc_power_w, abs=1.0)  # W_SF 0: 1 W
    exported = after[1] - before[1]
    assert exported > 500.0  # 5 kW out, 1 kW of loads, for 10 min
    # The registers count whole watt-hours of the meter's own counter.
    assert after[1] == round(plant.pcc_counters[1].export_wh)
    assert after[1] == pytest.approx(plant.pcc_energy.export_wh, abs=1.0)
    bench.dispatch_all(0.0)


def test_chamber_sets_the_packs_ambient_and_refuses_what_it_cannot_do(bench: Any) -> None:
    chamber = bench.chamber
    battery = next(iter(_plant(bench).nodes.values())).battery
    assert chamber.temperature_setpoint() == battery.thermal.ambient_c == 25.0
    chamber.set_temperature(40.0)
    assert chamber.temperature() == 40.0
    assert battery.thermal.ambient_c == 40.0
    with pytest.raises(DeviceError, match="out of range"):
        chamber.set_temperature(150.0)
    assert battery.thermal.ambient_c == 40.0  # nothing changed
    chamber.set_temperature(25.0)


def test_meter_gain_defect_is_refused_on_a_node(tmp_path: Path, defect_site: Any) -> None:
    from harness.config.errors import ConfigErrors

    site = defect_site("  - {device: home-1.meter, kind: gain_error, value: 1 %}")
    with pytest.raises(ConfigErrors, match=r"site\.meter"):
        open_bench(load_site(site), load_contract(CONTRACT))
