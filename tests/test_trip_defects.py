"""Trip-time defects are caught on their clause: `harness run` end to end, plus the site mapping.

Each end-to-end run carries two defects: one just past its clause's limit (that clause fails) and
one just inside another's (that clause passes), so two runs cover both sides for a fast function
(OV2, 0.16 s) and a slow one (UF1, 300 s). Every other trip and ride-through clause must pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from tests.conftest import DefectSite
from tests.harness_runner import CONTRACT, Result, run
from virtual_devices.defects import parse_defects
from virtual_devices.plant_config import plant_params


def family_run(tmp_path: Path, site: Path, module: str) -> Result:
    """`harness run` of one scenario module: the clauses of other families stay not covered.

    A full run costs several times as much; the clean full run (tests/test_run_e2e.py) shows the
    other families pass, and these defects change only protection and enter-service behaviour.
    """
    return run(tmp_path, site, CONTRACT, "--", "-k", module)


def wrong_verdicts(result: Result, prefixes: tuple[str, ...], failing: set[str]) -> dict[str, str]:
    """Clauses whose verdict is not what the run should give: fail for ``failing``, pass for the
    rest of the family (quantities starting with ``prefixes``), not covered outside it."""
    wrong = {}
    for (clause, _node), v in result.by_clause().items():
        if v["quantity"].startswith(prefixes):
            expected = "fail" if clause in failing else "pass"
        else:
            expected = "not_covered"
        if v["verdict"] != expected:
            wrong[clause] = v["verdict"]
    return wrong


def test_trip_time_defect_sets_the_units_clearing_time(defect_site: DefectSite) -> None:
    path = defect_site(
        "  - {device: home-1.inverter, kind: trip_time, function: ov2, value: 250 ms}\n"
        "  - {device: home-1.inverter, kind: trip_time, function: UF1, value: 301.5 s}"
    )
    site = load_site(path)
    inverter = plant_params(site, parse_defects(site)).nodes[0].inverter
    assert inverter.trip_times_s == {"ov2": 0.25, "uf1": 301.5}
    assert inverter.trip_clearing_s("ov2") == 0.25
    assert inverter.trip_clearing_s("ov1") == inverter.trips["ov1"].clearing_time_s
    assert inverter.trips["ov2"].clearing_time_s == pytest.approx(0.16)  # settings untouched


def test_trip_time_defect_names_a_known_function(defect_site: DefectSite) -> None:
    path = defect_site("  - {device: home-1.inverter, kind: trip_time, function: ov3, value: 1 s}")
    site = load_site(path)
    with pytest.raises(ConfigErrors, match="trip_time: unknown function 'ov3'"):
        plant_params(site, parse_defects(site))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("defects", "failing", "measured"),
    [
        (
            # OV2 limit 0.193 s: 0.20 s fails; UF1 limit 303 s, 1 s marginal: 301.5 s passes.
            "  - {device: home-1.inverter, kind: trip_time, function: ov2, value: 0.20 s}\n"
            "  - {device: home-1.inverter, kind: trip_time, function: uf1, value: 301.5 s}",
            "1547-TRIP-OV2",
            {"1547-TRIP-OV2": 0.20, "1547-TRIP-UF1": 301.5},
        ),
        (
            # OV2 0.175 s is outside the 0.01 s marginal band; UF1 304 s is past 303 s.
            "  - {device: home-1.inverter, kind: trip_time, function: ov2, value: 0.175 s}\n"
            "  - {device: home-1.inverter, kind: trip_time, function: uf1, value: 304 s}",
            "1547-TRIP-UF1",
            {"1547-TRIP-OV2": 0.175, "1547-TRIP-UF1": 304.0},
        ),
    ],
    ids=["ov2-past-uf1-inside", "ov2-inside-uf1-past"],
)
def test_trip_time_defect_fails_its_clause(
    tmp_path: Path,
    defect_site: DefectSite,
    defects: str,
    failing: str,
    measured: dict[str, float],
) -> None:
    result = family_run(tmp_path, defect_site(defects), "test_trip_settings")
    assert wrong_verdicts(result, ("trip.", "ride_through."), {failing}) == {}, result.out
    table = result.by_clause()
    for clause, value in measured.items():
        assert table[clause, "home-1"]["value"] == pytest.approx(value, abs=1e-3)
    assert result.code == 1, result.out
    assert f"clause {failing}" in result.out
