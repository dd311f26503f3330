"""Communication-loss and precharge defects are caught on their clauses: `harness run` end to
end, plus the mapping from the site file to the plant.

Each end-to-end run (the single-home site, only testplans/test_comm_faults.py) carries defects
just past or just inside the example contract's limits. The healthy unit reverts 10.48 s after
its last transaction (10 s timeout, then 2.4 kW down at rated power per second into the 2 %
band) against 11 s, and the healthy BMS gives up a blocked precharge after 15 s against 16 s:
an inverter 0.55 s late (11.03 s) and a BMS 1.05 s late (16.05 s) fail C.8.6 and C.8.7; an
inverter that ignores the lost link fails C.8.6 with the capture's length as lower bound; 0.4 s
late (10.88 s) and 0.9 s late (15.9 s) pass.
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

CLAUSES = {"C.8.6": "inverter.comm_loss.response_time", "C.8.7": "bms.precharge.fault_time"}


def test_comm_fault_defects_set_the_plant(defect_site: DefectSite) -> None:
    path = defect_site(
        "  - {device: home-1.inverter, kind: comm_loss_delay, value: 550 ms}\n"
        "  - {device: home-1.inverter, kind: comm_loss_ignored, value: 1}\n"
        "  - {device: home-1.bms, kind: precharge_failure, value: 2 s}"
    )
    site = load_site(path)
    node = plant_params(site, parse_defects(site)).nodes[0]
    assert node.inverter.comm_loss_delay_s == pytest.approx(0.55)
    assert node.inverter.comm_loss_ignored is True
    assert node.battery.precharge_delay_s == 2.0


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("home-1.inverter, kind: comm_loss_ignored, value: 2", "value is 1"),
        ("home-1.inverter, kind: comm_loss_delay, value: -1 s", "negative"),
        ("home-1.bms, kind: precharge_failure, value: -1 s", "negative"),
    ],
)
def test_comm_fault_defects_are_checked(defect_site: DefectSite, defect: str, message: str) -> None:
    site = load_site(defect_site(f"  - {{device: {defect}}}"))
    with pytest.raises(ConfigErrors, match=message):
        plant_params(site, parse_defects(site))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("defects", "only", "failing", "measured"),
    [
        (
            "  - {device: home-1.inverter, kind: comm_loss_delay, value: 0.55 s}\n"
            "  - {device: home-1.bms, kind: precharge_failure, value: 1.05 s}",
            "test_comm_faults",
            {"C.8.6", "C.8.7"},
            {"C.8.6": 11.03, "C.8.7": 16.05},
        ),
        (
            "  - {device: home-1.inverter, kind: comm_loss_ignored, value: 1}",
            "test_inverter_comm_loss",
            {"C.8.6"},
            {},
        ),
        (
            "  - {device: home-1.inverter, kind: comm_loss_delay, value: 0.4 s}\n"
            "  - {device: home-1.bms, kind: precharge_failure, value: 0.9 s}",
            "test_comm_faults",
            set(),
            {"C.8.6": 10.88, "C.8.7": 15.9},
        ),
    ],
    ids=["past", "ignored", "inside"],
)
def test_comm_fault_defect_is_caught_on_its_clause(
    tmp_path: Path,
    defect_site: DefectSite,
    defects: str,
    only: str,
    failing: set[str],
    measured: dict[str, float],
) -> None:
    result = run(tmp_path, defect_site(defects), CONTRACT, "--", "-k", only)
    table = result.by_clause()
    ran = set(CLAUSES) if only == "test_comm_faults" else {"C.8.6"}
    wrong = {}
    for (clause, _node), v in table.items():
        expected = "fail" if clause in failing else "pass" if clause in ran else "not_covered"
        if v["verdict"] != expected:
            wrong[clause] = v["verdict"]
    assert wrong == {}, result.out
    for clause, value in measured.items():
        assert table[clause, "home-1"]["value"] == pytest.approx(value, abs=2e-3)
    if only == "test_inverter_comm_loss":  # no reversion at all: the capture's length bounds it
        assert table["C.8.6", "home-1"]["value"] >= 22.0 - 0.2
        assert table["C.8.6", "home-1"]["details"]["no_response_in_capture"] is True
    if failing:
        assert result.code == 1, result.out
        assert all(f"clause {clause}" in result.out for clause in failing), result.out
