"""EMS defects are caught on their clause: `harness run` end to end on the cluster, restricted
to testplans/test_black_start.py and test_ems_dispatch.py, plus the mapping from the site
file's defects to the plant's EMS.

The clean cluster gets its critical loads back 4.85 s after the command (BMS self-test 2 s,
heartbeat 1 s, contactors and precharge 0.35 s, soft start 1 s, V/f check 0.5 s) against the
example contract's 10 s (C.5.1, marginal 0.5 s). A BMS self-test 5.2 s longer brings them back at
10.05 s: C.5.1 fails, the order is right (C.5.2 passes). Precharge and positive contactor
confirmed in each other's place is one step out of order: C.5.2 fails; carried together with a
self-test 4.5 s longer (9.3 s: the swap saves the 0.05 s of the positive contactor's
confirmation; outside the marginal band) C.5.1 still passes.

Peak shaving holds the clean cluster's 60 s demand at 5.05 kW (threshold 5 kW, the load step's
first second unshaved) against 5.25 kW (C.7.40, marginal 0.05 kW): an offset of 0.25 kW gives
5.30 kW and fails; 0.1 kW gives 5.15 kW and passes. Each run carries one defect past its limit
and the others inside, so two runs show every clause both failing and passing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from tests.conftest import DefectSite
from tests.harness_runner import CONTRACT, ROOT, run
from virtual_devices.defects import parse_defects
from virtual_devices.plant_config import plant_params

CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"
TIME, ORDER, PEAK = "C.5.1", "C.5.2", "C.7.40"
SWAP = (
    "{device: site.ems, kind: black_start_order, order: [positive_contactor, precharge], value: 1}"
)


def offset(value: str) -> str:
    return f"{{device: site.ems, kind: peak_shaving_target_offset, value: {value}}}"


def delay(step: str, value: str) -> str:
    return f"{{device: site.ems, kind: black_start_step_delay, step: {step}, value: {value}}}"


def test_ems_defects_set_the_plants_sequence(defect_site: DefectSite) -> None:
    defects = f"  - {SWAP}\n  - {delay('vf_check', '2 s')}\n  - {offset('300 W')}"
    site = load_site(defect_site(defects, CLUSTER))
    ems = plant_params(site, parse_defects(site)).ems
    assert ems is not None
    assert ems.peak.offset_w == pytest.approx(300.0)
    assert ems.order == ("positive_contactor", "precharge")
    assert ems.delays_s == {"vf_check": 2.0}
    order = [s.name for s in ems.run_order]
    assert order.index("positive_contactor") < order.index("precharge")
    assert {s.name: s.min_s for s in ems.run_order}["vf_check"] == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        (delay("precharging", "1 s"), "unknown step 'precharging'"),
        (
            "{device: home-1.ems, kind: black_start_step_delay, step: vf_check, value: 1 s}",
            "device site.ems",
        ),
        (SWAP.replace("value: 1", "value: 2"), "value is 1"),
        (SWAP.replace("[positive_contactor, precharge]", "[precharge]"), "two or more"),
        (SWAP.replace("precharge]", "positive_contactor]"), "named twice"),
    ],
)
def test_ems_defects_are_checked(defect_site: DefectSite, defect: str, message: str) -> None:
    with pytest.raises(ConfigErrors, match=message):
        site = load_site(defect_site(f"  - {defect}", CLUSTER))
        plant_params(site, parse_defects(site))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("defects", "expected"),
    [
        (
            [delay("bms_wake", "5.2 s"), offset("0.1 kW")],
            {TIME: "fail", ORDER: "pass", PEAK: "pass"},
        ),
        (
            [SWAP, delay("bms_wake", "4.5 s"), offset("0.25 kW")],
            {TIME: "pass", ORDER: "fail", PEAK: "fail"},
        ),
    ],
    ids=["delay-past-offset-inside", "swap-offset-past-delay-inside"],
)
def test_black_start_defect_is_caught_on_its_clause(
    tmp_path: Path, defect_site: DefectSite, defects: list[str], expected: dict[str, str]
) -> None:
    site = defect_site("\n".join(f"  - {d}" for d in defects), CLUSTER)
    result = run(tmp_path, site, CONTRACT, "--", "-k", "test_black_start or test_peak_shaving")
    judged = {
        clause: v["verdict"]
        for (clause, _node), v in result.by_clause().items()
        if v["verdict"] != "not_covered"  # the families this run left out
    }
    assert judged == expected, result.out
    assert result.code == 1, result.out
    for clause, verdict in expected.items():
        assert (f"clause {clause}" in result.out) == (verdict == "fail"), result.out
