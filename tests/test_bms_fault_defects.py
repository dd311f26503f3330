"""BMS protection defects are caught on their clause: `harness run` end to end, plus the mapping
from the site file to the plant's BMS.

Each end-to-end run (the single-home site, only testplans/test_bms_faults.py) carries defects
just past or just inside the example contract's limits: a cell over-voltage protection 1.05 s
late (2.05 s against 2 s), a disabled cell under-voltage protection and a BMS that ignores a
lost heartbeat fail their own clauses while the other fault clauses pass; 0.9 s late (1.9 s),
an over-current protection 0.4 s late (0.9 s against 1 s) and a heartbeat supervision 1.8 s late
(4.8 s against 5 s) all pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from tests.conftest import DefectSite
from tests.harness_runner import CONTRACT, run
from virtual_devices.defects import parse_defects
from virtual_devices.plant_config import plant_params

FAULTS = {
    "C.8.1": "bms.cell_overvoltage.response_time",
    "C.8.2": "bms.cell_undervoltage.response_time",
    "C.8.3": "bms.overtemp.response_time",
    "C.8.4": "bms.overcurrent.response_time",
    "C.8.5": "bms.heartbeat_loss.response_time",
}


def test_bms_defects_set_the_packs_protections(defect_site: DefectSite) -> None:
    path = defect_site(
        "  - {device: home-1.bms, kind: protection_delay, protection: overcurrent, value: 300 ms}\n"
        "  - {device: home-1.bms, kind: protection_delay, protection: heartbeat, value: 2 s}\n"
        "  - {device: home-1.bms, kind: heartbeat_loss_ignored, value: 1}\n"
        "  - {device: home-1.bms, kind: protection_disabled, protection: overcurrent, value: 1}"
    )
    site = load_site(path)
    battery = plant_params(site, parse_defects(site)).nodes[0].battery
    assert battery.protection_delays_s == {
        "charge_overcurrent": 0.3,
        "discharge_overcurrent": 0.3,
        "heartbeat": 2.0,
    }
    assert battery.ignore_heartbeat_loss is True
    assert battery.protections_disabled == {"charge_overcurrent", "discharge_overcurrent"}


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("kind: protection_delay, protection: overvoltage, value: 1 s", "unknown protection"),
        ("kind: heartbeat_loss_ignored, value: 2", "value is 1"),
        ("kind: protection_disabled, protection: overtemp, value: 0.5", "value is 1"),
        ("kind: protection_disabled, protection: smoke, value: 1", "unknown protection"),
    ],
)
def test_bms_defects_are_checked(defect_site: DefectSite, defect: str, message: str) -> None:
    site = load_site(defect_site(f"  - {{device: home-1.bms, {defect}}}"))
    with pytest.raises(ConfigErrors, match=message):
        plant_params(site, parse_defects(site))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("defects", "failing", "measured"),
    [
        (
            "  - {device: home-1.bms, kind: protection_delay, protection: cell_overvoltage,"
            " value: 1.05 s}\n"
            "  - {device: home-1.bms, kind: heartbeat_loss_ignored, value: 1}\n"
            "  - {device: home-1.bms, kind: protection_disabled, protection: cell_undervoltage,"
            " value: 1}",
            {"C.8.1", "C.8.2", "C.8.5"},
            {"C.8.1": 2.05},
        ),
        (
            "  - {device: home-1.bms, kind: protection_delay, protection: cell_overvoltage,"
            " value: 0.9 s}\n"
            "  - {device: home-1.bms, kind: protection_delay, protection: overcurrent,"
            " value: 0.4 s}\n"
            "  - {device: home-1.bms, kind: protection_delay, protection: heartbeat, value: 1.8 s}\n"
            "  - {device: home-1.bms, kind: heartbeat_loss_ignored, value: 0}\n"
            "  - {device: home-1.bms, kind: protection_disabled, protection: cell_undervoltage,"
            " value: 0}",
            set(),
            {"C.8.1": 1.9, "C.8.4": 0.9, "C.8.5": 4.8},
        ),
    ],
    ids=["past", "inside"],
)
def test_bms_fault_defect_is_caught_on_its_clause(
    tmp_path: Path,
    defect_site: DefectSite,
    defects: str,
    failing: set[str],
    measured: dict[str, float],
) -> None:
    result = run(tmp_path, defect_site(defects), CONTRACT, "--", "-k", "test_bms_faults")
    wrong = {}
    for (clause, _node), v in result.by_clause().items():
        expected = "fail" if clause in failing else "pass" if clause in FAULTS else "not_covered"
        if v["verdict"] != expected:
            wrong[clause] = v["verdict"]
    assert wrong == {}, result.out
    table = result.by_clause()
    for clause, value in measured.items():
        assert table[clause, "home-1"]["value"] == pytest.approx(value, abs=2e-3)
    if "C.8.5" in failing:  # no response at all: the capture's length is the lower bound
        assert table["C.8.5", "home-1"]["value"] >= 10.0 - 1e-9
    if "C.8.2" in failing:  # the disabled protection: no response within the capture either
        assert table["C.8.2", "home-1"]["value"] > 2.0
    if failing:
        assert result.code == 1, result.out
        assert all(f"clause {clause}" in result.out for clause in failing), result.out
