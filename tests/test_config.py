"""Site and contract files: good ones load, bad ones name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from harness.config.units import UnitError, to_unit

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "fixtures/sites/virtual-home.yaml"
CONTRACT = ROOT / "fixtures/contracts/example.yaml"


def _errors(loader, path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        loader(path)
    return [str(e) for e in info.value.errors]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_contract_resolves_its_profile():
    contract = load_contract(CONTRACT)
    ids = [c.id for c in contract.clauses]
    assert "1547-8.1.2" in ids and "C.4.2" in ids  # inherited + own
    clause = next(c for c in contract.clauses if c.id == "C.4.2")
    assert (clause.max, clause.marginal, clause.unit) == (2.0, 0.05, "s")
    assert contract.settings is not None
    assert contract.settings.trip_threshold("ov2") == pytest.approx(1.2)
    assert contract.settings.enter_service is not None
    assert contract.settings.enter_service.delay == 300.0
    assert len(contract.sha256) == 64


def test_contract_override_replaces_profile_clause(tmp_path: Path):
    profile = ROOT / "fixtures/profiles/ieee1547-2018-cat-ii.yaml"
    path = _write(
        tmp_path,
        "c.yaml",
        f"contract: {{id: X, title: T}}\nextends: {profile}\nclauses:\n"
        "  - {id: '1547-8.1.2', title: tighter, quantity: islanding.clearing_time, max: 1500 ms}\n",
    )
    contract = load_contract(path)
    clause = next(c for c in contract.clauses if c.id == "1547-8.1.2")
    assert clause.max == pytest.approx(1.5)
    assert clause.title == "tighter"


def test_site_loads_with_typed_units():
    site = load_site(SITE)
    node = site.spec.nodes[0]
    assert node.inverter.rated_power == 5000.0
    assert node.battery is not None and node.battery.capacity == 100.0
    assert site.is_virtual


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "contract: {id: X, title: T}\nclauses:\n  - id: A\n    title: t\n    quantity: islanding.clearing_time\n    max: 2\n",
            6,
            'clauses[0].max: "2" has no unit',
        ),
        (
            "contract: {id: X, title: T}\nclauses:\n  - id: A\n    title: t\n    quantity: islanding.clearing_tme\n    max: 2 s\n",
            5,
            "unknown quantity 'islanding.clearing_tme'",
        ),
        (
            "contract: {id: X, title: T}\nclauses:\n  - id: A\n    title: t\n    quantity: islanding.clearing_time\n    max: 2 s\n    colour: red\n",
            7,
            "clauses[0].colour: unknown field",
        ),
        (
            "contract: {id: X, title: T}\nclauses:\n  - id: A\n    title: t\n    quantity: islanding.clearing_time\n    max: 2 V\n",
            6,
            "not convertible to s",
        ),
        (
            "contract: {id: X, title: T}\nclauses:\n  - id: A\n    title: t\n    quantity: islanding.clearing_time\n",
            3,
            "has no limit",
        ),
        (
            "contract: {id: X, title: T}\nclauses:\n  - id: A\n    title: [t\n",
            5,
            "YAML syntax error",
        ),
    ],
)
def test_bad_contracts_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, fragment: str
):
    path = _write(tmp_path, "bad.yaml", text)
    errors = _errors(load_contract, path)
    assert any(fragment in e for e in errors), errors
    assert any(e.startswith(f"{path}:{line}:") for e in errors), errors


def test_missing_file_is_named(tmp_path: Path):
    errors = _errors(load_site, tmp_path / "nope.yaml")
    assert errors == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_site_unknown_field_and_bad_unit(tmp_path: Path):
    text = (
        SITE.read_text()
        .replace("rated_power: 5 kW", "rated_power: 5 kg")
        .replace("topology: ac_coupled", "topology: ac_coupled\n  colour: blue")
    )
    path = _write(tmp_path, "site.yaml", text)
    path.parent.joinpath("../maps").resolve()
    errors = _errors(load_site, path)
    assert any("site.colour: unknown field" in e for e in errors), errors
    assert any(
        "nodes[0].inverter.rated_power" in e and "not convertible to W" in e for e in errors
    ), errors


def test_site_referenced_files_must_exist(tmp_path: Path):
    path = _write(tmp_path, "site.yaml", SITE.read_text())
    errors = _errors(load_site, path)
    assert any(
        "nodes[0].bms.dbc: file ../../dbc/pylontech_lv.dbc not found" in e for e in errors
    ), errors


def test_units_require_a_unit_where_one_is_expected():
    assert to_unit("1500 ms", "s") == pytest.approx(1.5)
    assert to_unit("89 %", "%") == pytest.approx(89.0)
    assert to_unit(3, "count", require_unit=False) == 3.0
    with pytest.raises(UnitError, match="has no unit"):
        to_unit("2", "s")
    with pytest.raises(UnitError, match="unknown unit"):
        to_unit("2 furlongz", "s")
