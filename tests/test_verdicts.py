"""Contract evaluation: limits, marginal bands, uncertainty, coverage and per-node clauses."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.contract import load_contract
from harness.verdicts.evaluate import evaluate, judge_value, overall
from harness.verdicts.journal import Journal, read_journals
from harness.verdicts.model import Measurement, Verdict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("c") / "contract.yaml"
    path.write_text(
        "contract: {id: T, title: test}\nclauses:\n"
        "  - {id: A, title: island, quantity: islanding.clearing_time, max: 2 s, marginal: 0.1 s}\n"
        "  - {id: B, title: telemetry, quantity: inverter.telemetry.power_error, max: 5 %}\n"
    )
    return load_contract(path)


def _clause(contract, cid):
    return next(c for c in contract.clauses if c.id == cid)


@pytest.mark.parametrize(
    ("value", "uncertainty", "expected"),
    [
        (1.0, 0.0, Verdict.PASS),
        (1.9, 0.0, Verdict.PASS),  # exactly on the band's edge
        (1.95, 0.0, Verdict.MARGINAL),  # inside the marginal band
        (2.0, 0.0, Verdict.MARGINAL),  # on the limit
        (2.0005, 0.001, Verdict.MARGINAL),  # over, but within the instrument's uncertainty
        (2.002, 0.001, Verdict.FAIL),
        (2.01, 0.0, Verdict.FAIL),
    ],
)
def test_max_limit_with_band_and_uncertainty(contract, value, uncertainty, expected):
    assert judge_value(_clause(contract, "A"), value, uncertainty) is expected


def test_limit_without_band_is_inclusive(contract):
    clause = _clause(contract, "B")
    assert judge_value(clause, 5.0) is Verdict.PASS
    assert judge_value(clause, 5.0001) is Verdict.FAIL
    assert judge_value(clause, 4.9, uncertainty=0.2) is Verdict.MARGINAL


def test_every_clause_once_per_node_and_worst_measurement_counts(contract):
    ms = [
        Measurement("islanding.clearing_time", 0.5, "s", "h1", "t::a"),
        Measurement("islanding.clearing_time", 2.5, "s", "h1", "t::b"),
        Measurement("islanding.clearing_time", 0.6, "s", "h2", "t::a"),
    ]
    verdicts = evaluate(contract, ["h1", "h2"], ms)
    table = {(v.clause, v.node): v for v in verdicts}
    assert len(verdicts) == 4
    assert table["A", "h1"].verdict is Verdict.FAIL and table["A", "h1"].test == "t::b"
    assert table["A", "h2"].verdict is Verdict.PASS
    assert table["B", "h1"].verdict is Verdict.NOT_COVERED
    assert overall(verdicts) is Verdict.FAIL


def test_failed_measurement_is_an_error_verdict(contract):
    ms = [Measurement("inverter.telemetry.power_error", None, "%", "h1", "t", error="no answer")]
    verdicts = {(v.clause, v.node): v for v in evaluate(contract, ["h1"], ms)}
    assert verdicts["B", "h1"].verdict is Verdict.ERROR
    assert "no answer" in verdicts["B", "h1"].note


def test_journal_survives_a_torn_line(tmp_path: Path):
    journal = Journal(tmp_path, "w1")
    journal.append(Measurement("islanding.clearing_time", 0.4, "s", "h1", "t"))
    journal.close()
    with (tmp_path / "w1.jsonl").open("a") as fh:
        fh.write('{"quantity": "islanding.clea')  # killed mid-write
    got = list(read_journals(tmp_path))
    assert [m.value for m in got] == [0.4]


# -- campaign scope ---------------------------------------------------------------------------


def test_a_campaign_leaves_out_only_what_none_of_its_scenarios_measure(contract, tmp_path):
    from harness.report.results import exit_status
    from harness.verdicts.scope import read_scope, scope_of, write_scope

    kept = [("test_telemetry.py", "test_inverter_power_telemetry")]
    scope = scope_of("field", kept)
    assert "inverter.telemetry.power_error" not in scope.outside
    assert "islanding.clearing_time" in scope.outside
    write_scope(tmp_path, scope)
    assert read_scope(tmp_path) == scope

    verdicts = evaluate(contract, ["n1"], [], scope)
    by_clause = {v.clause: v for v in verdicts}
    assert by_clause["A"].verdict is Verdict.NOT_COVERED  # islanding: outside the campaign
    assert by_clause["A"].details == {"out_of_scope": True}
    assert "outside the 'field' campaign" in by_clause["A"].note
    assert by_clause["B"].details == {}  # telemetry: the campaign should have measured it
    assert exit_status(verdicts) == 1  # ... so its absence fails the run

    measured = Measurement("inverter.telemetry.power_error", 1.0, "%", "n1", "t")
    assert exit_status(evaluate(contract, ["n1"], [measured], scope)) == 0
    assert exit_status(evaluate(contract, ["n1"], [measured])) == 1  # no campaign: all in scope
