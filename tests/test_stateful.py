"""The stateful dispatch property's bookkeeping (harness/conformance/stateful.py), and the state
machine run in-process against a virtual site (real Modbus, CAN and SCPI endpoints)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.bench import Bench, open_bench
from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.quantities import catalogue
from harness.config.site import load_site
from harness.conformance.stateful import (
    CURRENT,
    SOC,
    Check,
    DispatchCampaign,
    Plan,
    StatefulResult,
    Step,
    Tally,
    Unit,
    classify,
    current_checks,
    minimal_sequence,
    soc_checks,
    units_of,
)
from harness.verdicts.evaluate import judge_value
from harness.verdicts.model import Verdict
from tests.harness_runner import CONTRACT, ROOT

METHOD = dict(catalogue()["bms.current_limit.violations"].parameters)
DERATED = "  - {device: home-1.bms, kind: current_limit_derating_ignored, value: 0.9}"


# -- comparisons and counts -----------------------------------------------------------------------


def test_a_reading_is_a_violation_only_beyond_its_uncertainty() -> None:
    assert classify(0.3, 0.2) == "violation"
    assert classify(0.2, 0.2) == "doubtful"
    assert classify(-0.1, 0.2) == "doubtful"
    assert classify(-0.2, 0.2) == "inside"
    assert classify(0.0, 0.0) == "inside"  # exactly at a limit known exactly


def test_soc_is_compared_with_both_edges_of_the_band() -> None:
    below, above = soc_checks("h", 9.0, (10.0, 95.0), 0.5)
    assert (below.side, below.excess, below.outcome) == ("below", 1.0, "violation")
    assert (above.side, above.excess, above.outcome) == ("above", -86.0, "inside")
    assert "SoC 9 % below the SoC band's low edge 10 %" in below.describe()


def test_current_is_compared_with_the_limit_of_the_way_it_flows() -> None:
    (charge,) = current_checks("h", 95.0, 90.0, 108.0, 0.25)
    assert (charge.side, charge.measured, charge.limit, charge.excess) == ("charge", 95, 90, 5)
    (discharge,) = current_checks("h", -107.9, 90.0, 108.0, 0.25)
    assert discharge.side == "discharge" and discharge.outcome == "doubtful"
    assert discharge.measured == pytest.approx(107.9)
    assert current_checks("h", 0.0, 0.0, 0.0, 0.05) == []  # at rest: no direction to judge
    assert "beyond the charge current limit the BMS advertises, 90 A" in charge.describe()


def _check(side: str, excess: float, node: str = "h") -> Check:
    return Check(node, CURRENT, side, 100.0 + excess, 100.0, excess, 0.25)


def test_the_tally_counts_distinct_limits_and_keeps_the_closest_approach() -> None:
    tally = Tally()
    assert tally.add([_check("discharge", -5.0)]) == []
    broken = tally.add([_check("discharge", 2.0), _check("charge", 0.1)])
    assert [c.side for c in broken] == ["discharge"]
    tally.add([_check("discharge", 3.0), _check("charge", -0.1, node="other")])
    assert tally.count("h", CURRENT) == (2, 1)  # discharge violated, charge only doubtful
    assert tally.count("other", CURRENT) == (1, 1)
    assert tally.count("h", SOC) == (0, 0)
    assert tally.closest["h", CURRENT, "discharge"].excess == 3.0
    assert tally.violations["h", CURRENT, "discharge"].excess == 2.0  # the first one seen
    assert tally.checks == 5


@pytest.mark.parametrize(
    ("violated", "doubtful", "verdict"),
    [(0, 0, Verdict.PASS), (0, 2, Verdict.MARGINAL), (1, 0, Verdict.FAIL), (1, 1, Verdict.FAIL)],
)
def test_a_count_fails_on_a_violation_and_is_marginal_when_only_doubtful(
    violated: int, doubtful: int, verdict: Verdict
) -> None:
    tally = Tally()
    tally.add([_check(s, 1.0) for s in ("charge", "discharge")[:violated]])
    tally.add([_check(s, 0.1) for s in ("discharge", "charge")[violated : violated + doubtful]])
    (clause,) = load_contract(CONTRACT).clauses_for("bms.current_limit.violations")
    value, uncertainty = tally.count("h", CURRENT)
    assert judge_value(clause, value, uncertainty) is verdict


# -- plan and script ------------------------------------------------------------------------------


def test_the_plan_follows_the_campaign_and_the_contract_settings() -> None:
    ci = Plan.from_method(METHOD, "ci", (300.0, 300.0))
    factory = Plan.from_method(METHOD, "factory", (300.0, 300.0))
    default = Plan.from_method(METHOD, None, (300.0, 300.0))
    assert default.max_examples == METHOD["max_examples"]["default"]
    assert factory.max_examples > ci.max_examples and factory.max_steps > ci.max_steps
    assert factory.wait[1] > ci.wait[1] and ci.wait[0] == 1.0
    assert ci.enter_service_timeout == pytest.approx(300.0 * METHOD["enter_service_factor"])
    assert Plan.from_method(METHOD, "ci", None).enter_service_timeout is None


def test_the_script_is_the_minimal_sequence_with_what_each_step_did() -> None:
    plan = Plan.from_method(METHOD, "ci", (300.0, 300.0))
    result = StatefulResult(plan, (10.0, 100.0), failure="home-1: discharge current ...")
    start = Step("start", {}, 0.0, "every setpoint 0 W")
    step = Step("operate", {"setpoints": {"home-1": 1.0}}, 0.0, "home-1 +5000 W; then 2 s")
    step.readings = {
        "home-1": {
            "soc_pct": 70,
            "current_a": -109.5,
            "charge_limit_a": 90,
            "discharge_limit_a": 108,
        }
    }
    step.broken = ["home-1: discharge current 109.5 A beyond ..."]
    result.minimal = [start, step]
    script = result.script("test_dispatch_stateful").splitlines()
    assert script[0].startswith("# test_dispatch_stateful: the minimal failing sequence")
    operate = script.index("state.operate(setpoints={'home-1': 1.0})")
    assert script[operate - 3 : operate] == [
        "state = DispatchMachine()",
        "#   at t=0 s: every setpoint 0 W",
        "",
    ]
    assert script[operate + 1 :] == [
        "#   at t=0 s: home-1 +5000 W",
        "#             then 2 s",
        "#   read home-1: SoC 70 %, battery current -109.5 A, limits charge 90 A / discharge 108 A",
        "#   BROKEN: home-1: discharge current 109.5 A beyond ...",
    ]


def test_the_minimal_sequence_is_the_last_one_that_broke_during_its_steps() -> None:
    def log(name: str, broke_at: int | None) -> list[Step]:
        steps = [Step("start", {}, 0.0), Step("wait", {"seconds": 1.0}, 0.0, name)]
        if broke_at is not None:
            steps[broke_at].broken = ["x"]
        return steps

    found, shrunk = log("found", 1), log("shrunk", 1)
    assert minimal_sequence([log("ok", None), found, shrunk, log("ok", None)]) is shrunk
    # A site already outside the band when a sequence starts: the one that took it there.
    assert minimal_sequence([found, log("inherited", 0), log("inherited", 0)]) is found
    inherited = log("inherited", 0)
    assert minimal_sequence([log("ok", None), inherited]) is inherited
    assert minimal_sequence([log("ok", None)]) == []


def test_a_failure_hypothesis_could_not_replay_is_marked_in_the_script() -> None:
    plan = Plan.from_method(METHOD, "ci", (300.0, 300.0))
    result = StatefulResult(plan, (10.0, 100.0), failure="Inconsistent data generation!")
    result.minimal = [Step("start", {}, 0.0, "every setpoint 0 W")]
    assert "NOT REPRODUCED" not in result.script("t")
    result.reproduced = False
    assert "# NOT REPRODUCED: replayed, this sequence did not fail" in result.script("t")
    assert result.to_json()["reproduced"] is False


# -- against a virtual site -----------------------------------------------------------------------


@pytest.fixture
def make_bench(defect_site) -> Iterator[Callable[..., Bench]]:
    """Opens the virtual home (with ``defects``, a site file's ``defects:`` list, if given)."""
    opened: list[Bench] = []

    def make(defects: str | None = None) -> Bench:
        site = defect_site(defects) if defects else ROOT / "fixtures/sites/virtual-home.yaml"
        opened.append(open_bench(load_site(site), load_contract(CONTRACT)))
        return opened[-1]

    try:
        yield make
    finally:
        for bench in opened:
            bench.close()


@pytest.fixture
def bench(make_bench: Callable[..., Bench]) -> Bench:
    return make_bench()


def _campaign(bench: Bench, units: list[Unit] | None = None, **plan: object) -> DispatchCampaign:
    method = METHOD | {"max_examples": 1, "max_steps": 3} | plan
    settings = bench.contract.settings
    assert settings is not None and settings.enter_service is not None
    es = settings.enter_service
    return DispatchCampaign(
        bench.clock,
        units if units is not None else units_of(bench),
        bench.analyzer,
        bench.pcc_breaker,
        (10.0, 100.0),
        Plan.from_method(method, "ci", (es.delay, es.ramp)),
    )


def test_a_clean_site_keeps_the_property_and_its_readings_are_recorded(bench: Bench) -> None:
    result = _campaign(bench).run()
    assert result.failure is None and result.error is None and not result.minimal
    assert result.examples >= 1 and result.tally.checks > 0
    first = result.sequences[0]
    assert first[1].call() == "state.operate(setpoints={'home-1': 1.0})"  # the simplest example
    reading = first[1].readings["home-1"]
    assert reading["current_a"] == pytest.approx(-109.5, abs=1.0)  # 5 kW from a ~50 V pack
    assert (reading["charge_limit_a"], reading["discharge_limit_a"]) == (100.0, 120.0)


def test_a_derated_limit_the_inverter_ignores_is_shrunk_to_one_setpoint(
    make_bench: Callable[..., Bench],
) -> None:
    result = _campaign(make_bench(DERATED)).run()
    assert result.error is None
    assert [s.call() for s in result.minimal] == [
        "state = DispatchMachine()",
        "state.operate(setpoints={'home-1': 1.0})",
    ]
    (broken,) = result.minimal[-1].broken
    assert broken.startswith("home-1: discharge current 109")
    assert "limit the BMS advertises, 108 A" in broken
    assert result.count("home-1", CURRENT)[0] >= 1 and result.count("home-1", SOC) == (0, 0)


def test_a_seed_gives_the_same_sequences_again(bench: Bench) -> None:
    runs = [_campaign(bench, derandomize=False, seed=7, max_steps=2).run() for _ in range(2)]
    calls = [[[s.call() for s in seq] for seq in r.sequences] for r in runs]
    assert calls[0] == calls[1] and runs[0].seed == runs[1].seed == 7


def test_a_device_that_fails_ends_the_run_as_an_error_not_a_failure(bench: Bench) -> None:
    (unit,) = units_of(bench)
    broken = replace(unit, channel="home-1.battery.nothing")
    result = _campaign(bench, [broken]).run()
    assert result.failure is None and not result.minimal
    assert result.error is not None and "home-1.battery.nothing" in result.error
    assert result.examples == 1  # nothing shrunk, nothing repeated


def test_the_contract_defines_the_soc_band_and_an_extending_one_may_change_it(
    tmp_path: Path,
) -> None:
    band = load_contract(CONTRACT).definitions
    assert band is not None and band.soc_band is not None
    assert (band.soc_band.min, band.soc_band.max) == (10.0, 100.0)
    child = tmp_path / "child.yaml"
    child.write_text(
        f"contract: {{id: X, title: child}}\nextends: {CONTRACT}\n"
        "definitions: {soc_band: {min: 20 %, max: 90 %}}\n"
    )
    merged = load_contract(child).definitions
    assert merged is not None and merged.soc_band is not None
    assert (merged.soc_band.min, merged.soc_band.max) == (20.0, 90.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "contract: {id: X, title: bad}\ndefinitions: {soc_band: {min: 90 %, max: 20 %}}\n"
    )
    with pytest.raises(ConfigErrors, match="min < max"):
        load_contract(bad)
