"""`harness run` end to end on the cluster, restricted to the island-transfer scenarios: each
grid-forming defect just past the example contract's limit fails its own clause only, and both
just inside pass (one run for the two, to keep the suite short)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness_runner import CONTRACT, ROOT, run

CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"
TRANSFER, ENDURANCE = "C.4.5", "C.4.6"

pytestmark = pytest.mark.slow


def defect(kind: str, value: str) -> str:
    return f"  - {{device: home-1.inverter, kind: {kind}, value: {value}}}"


@pytest.mark.parametrize(
    ("defects", "expected"),
    [
        # Loss of grid is bridged in 0.049 s (detection 0.02 + transfer 0.02 + soft start):
        # 0.06 s later is 0.109 s against the 0.1 s limit.
        ([defect("transfer_time", "0.06 s")], {TRANSFER: "fail", ENDURANCE: "pass"}),
        # From 60 % to home-1's 40 % reserve the critical and essential loads (1.9 kW) last
        # about 29.5 min; 1.1 kW more drawn from the battery, about 18.8 min against 20 min.
        ([defect("standby_drain", "1100 W")], {TRANSFER: "pass", ENDURANCE: "fail"}),
        # Just inside: 0.035 s later is 0.084 s, outside the 0.01 s marginal band; 0.6 kW more
        # lasts about 22.5 min, past the 22 min observed (20 min + 10 %), so at least that long,
        # outside the 1 min marginal band.
        (
            [defect("transfer_time", "0.035 s"), defect("standby_drain", "600 W")],
            {TRANSFER: "pass", ENDURANCE: "pass"},
        ),
    ],
    ids=["transfer-delay-past", "standby-drain-past", "both-inside"],
)
def test_grid_forming_defect_is_caught_on_its_clause(
    tmp_path: Path, defect_site, defects: list[str], expected: dict[str, str]
):
    site = defect_site("\n".join(defects), CLUSTER)
    result = run(tmp_path, site, CONTRACT, "--", "-k", "test_island_transfer")
    judged = {
        clause: v["verdict"]
        for (clause, _node), v in result.by_clause().items()
        if v["verdict"] != "not_covered"  # the families this run left out
    }
    assert judged == expected, result.out
    for clause, verdict in expected.items():
        assert (f"clause {clause}" in result.out) == (verdict == "fail"), result.out
