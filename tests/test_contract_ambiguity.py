"""`harness check` flags an ambiguous contract: each undefined term the seed requires, definitions
that contradict each other, a misspelt quantity (with the nearest real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.checks import check_file
from harness.config.ambiguity import required_terms
from harness.config.errors import ConfigErrors
from tests.harness_runner import ROOT, harness

CLAUSE = "  - {id: A, title: t, quantity: islanding.clearing_time, max: 2 s}\n"
ALL_TERMS = (
    "definitions:\n"
    "  soc_band: {min: 10 %, max: 95 %}\n"
    "  depth_of_discharge: 85 %\n"
    "  critical_load: {starting_soc: 60 %, duration: 20 min}\n"
    "  black_start: {sequence: [bms_wake, precharge, grid_forming_start]}\n"
    "  rated_storage: {power: 5 kW, energy: 5 kWh}\n"
)


def _contract(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "contract.yaml"
    path.write_text("contract: {id: X, title: T}\n" + body + "clauses:\n" + CLAUSE)
    return path


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        check_file(path)
    return [str(e) for e in caught.value.errors]


def test_every_required_term_left_undefined_is_named_with_its_line(tmp_path: Path) -> None:
    path = _contract(tmp_path, "definitions:\n  soc_band: {min: 10 %, max: 95 %}\n")
    errors = _errors(path)
    missing = set(required_terms()) - {"soc_band"}
    assert len(errors) == len(missing), errors
    for term in missing:
        assert any(
            e.startswith(f"{path}:3: definitions.{term}: not defined; expected") for e in errors
        ), errors


def test_a_contract_without_definitions_names_them_all_at_its_header(tmp_path: Path) -> None:
    errors = _errors(_contract(tmp_path, ""))
    assert len(errors) == len(required_terms())
    assert all(":1: definitions." in e and "ambiguous" in e for e in errors), errors


def test_a_depth_of_discharge_deeper_than_the_soc_band_is_a_contradiction(tmp_path: Path) -> None:
    path = _contract(tmp_path, ALL_TERMS.replace("85 %", "90 %"))
    assert _errors(path) == [
        f"{path}:4: definitions.depth_of_discharge: 90 % is deeper than the SoC band allows "
        "(10 % .. 95 %: at most 85 %); expected the two to agree"
    ]


def test_a_complete_contract_and_a_bare_profile_pass(tmp_path: Path) -> None:
    assert "1 clauses" in check_file(_contract(tmp_path, ALL_TERMS))
    assert "clauses" in check_file(ROOT / "fixtures/profiles/ieee1547-2018-cat-i.yaml")


def test_the_command_exits_2_and_suggests_the_quantity_meant(tmp_path: Path) -> None:
    path = _contract(tmp_path, ALL_TERMS)
    path.write_text(path.read_text().replace("islanding.clearing_time", "islanding.clearing_tme"))
    proc = harness("check", path)
    assert proc.returncode == 2, proc.stdout
    assert "did you mean 'islanding.clearing_time'?" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_each_clause_counts_in_exactly_one_scorecard_category(tmp_path: Path) -> None:
    card = (
        "scorecard:\n  categories:\n"
        "    fit: {title: Fit, weight: 60, quantities: ['islanding.*', 'trip.*']}\n"
        "    grid: {title: Grid, weight: 30, quantities: ['trip.*']}\n"
        "    record: {title: Record, weight: 10, external: true}\n"
    )
    path = _contract(tmp_path, ALL_TERMS + card)
    path.write_text(
        path.read_text()
        + "  - {id: B, title: t, quantity: trip.ov1.clearing_time, max: 2 s}\n"
        + "  - {id: C, title: t, quantity: bms.soc_error, max: 5 %}\n"
    )
    errors = _errors(path)
    assert errors == [
        f"{path}:9: scorecard.categories: clause B (trip.ov1.clearing_time) falls in 2 "
        "categories (fit, grid); expected exactly one category's quantity patterns to match it",
        f"{path}:9: scorecard.categories: clause C (bms.soc_error) falls in no category; "
        "expected exactly one category's quantity patterns to match it",
    ]
