"""The EMS's dispatch defects are caught on their clauses: `harness run` end to end on the
cluster, restricted to one scenario of testplans/test_ems_dispatch.py each.

The clean EMS takes the cluster's four units to 80 % of their summed rating at its 20 %/s (C.7.41:
30 %/s, marginal 3 %/s). With ``ramp_uncoordinated`` every unit gets its share at once and the
PCC sees the units' own ramps together: 80 % of the rating in 0.8 s, 80 %/s over the 1 s window.
The defect is on or off, so one run has it on (fails) and one has it off (passes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DefectSite
from tests.harness_runner import CONTRACT, ROOT, run

CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"
RAMP = "C.7.41"


@pytest.mark.slow
@pytest.mark.parametrize(("value", "verdict"), [(1, "fail"), (0, "pass")], ids=["on", "off"])
def test_uncoordinated_dispatch_is_caught_on_its_clause(
    tmp_path: Path, defect_site: DefectSite, value: int, verdict: str
) -> None:
    site = defect_site(
        f"  - {{device: site.ems, kind: ramp_uncoordinated, value: {value}}}", CLUSTER
    )
    result = run(tmp_path, site, CONTRACT, "--", "-k", "test_ems_dispatch_ramp")
    judged = {
        clause: v["verdict"]
        for (clause, _node), v in result.by_clause().items()
        if v["verdict"] != "not_covered"
    }
    assert judged == {RAMP: verdict}, result.out
    measured = result.by_clause()[RAMP, None]["value"]
    if verdict == "fail":
        assert measured == pytest.approx(80.0, abs=2.0), result.out
        assert result.code == 1 and f"clause {RAMP}" in result.out, result.out
    else:
        assert measured == pytest.approx(20.0, abs=0.5), result.out


@pytest.mark.slow
@pytest.mark.parametrize(("value", "verdict"), [(1, "fail"), (0, "pass")], ids=["on", "off"])
def test_ignored_soc_band_is_caught_on_its_clause(
    tmp_path: Path, defect_site: DefectSite, value: int, verdict: str
) -> None:
    """The clean EMS stops charging each pack at its band's top (95 %: C.7.42 allows 95.5 %);
    ignoring its band it charges on until the BMS ends the charge at 100 %. At the bottom the
    inverters' own reserve (12 %) stops the discharge either way, inside C.7.43's 10 %."""
    site = defect_site(f"  - {{device: site.ems, kind: soc_band_ignored, value: {value}}}", CLUSTER)
    result = run(tmp_path, site, CONTRACT, "--", "-k", "test_ems_soc_band")
    judged = {
        (clause, node): v["verdict"]
        for (clause, node), v in result.by_clause().items()
        if v["verdict"] != "not_covered"
    }
    homes = [f"home-{i}" for i in range(1, 5)]
    expected = {("C.7.42", h): verdict for h in homes} | {("C.7.43", h): "pass" for h in homes}
    assert judged == expected, result.out
    highest = [result.by_clause()["C.7.42", h]["value"] for h in homes]
    if verdict == "fail":
        assert min(highest) > 99.0 and result.code == 1, result.out
    else:
        assert max(highest) <= 95.5, result.out
