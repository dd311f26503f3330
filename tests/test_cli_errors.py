"""Bad input never shows a traceback: a clear message naming file, line and field, exit 2."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.harness_runner import CONTRACT, ROOT, SITE, harness


def _assert_setup_error(proc, *fragments: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text


def _contract(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "contract.yaml"
    path.write_text("contract: {id: X, title: T}\nclauses:\n" + body)
    return path


def test_missing_site_file(tmp_path: Path):
    proc = harness("run", "--site", tmp_path / "nope.yaml", "--out", tmp_path / "o")
    _assert_setup_error(proc, "nope.yaml: file not found")
    assert not (tmp_path / "o" / "verdicts.json").exists()


def test_yaml_syntax_error(tmp_path: Path):
    path = tmp_path / "site.yaml"
    path.write_text("site:\n  name: [oops\nnodes: []\n")
    _assert_setup_error(
        harness("run", "--site", path, "--out", tmp_path / "o"), f"{path}:", "YAML syntax error"
    )


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            "  - {id: A, title: t, quantity: islanding.clearing_time, max: 2}\n",
            [":3: clauses[0].max", "has no unit"],
        ),
        (
            "  - {id: A, title: t, quantity: islanding.clearing_tim, max: 2 s}\n",
            [":3: clauses[0].quantity", "unknown quantity 'islanding.clearing_tim'"],
        ),
        (
            "  - {id: A, title: t, quantity: islanding.clearing_time, max: 2 s, maximum: 3 s}\n",
            [":3: clauses[0].maximum", "unknown field"],
        ),
    ],
)
def test_bad_contract(tmp_path: Path, body: str, fragments: list[str]):
    contract = _contract(tmp_path, body)
    proc = harness("run", "--contract", contract, "--out", tmp_path / "o")
    _assert_setup_error(proc, str(contract), *fragments)


def test_unknown_site_field(tmp_path: Path):
    path = SITE.parent / f".test-{uuid.uuid4().hex[:12]}-unknown.yaml"
    path.write_text(
        SITE.read_text().replace(
            "  topology: ac_coupled", "  topology: ac_coupled\n  voltage: 240 V"
        )
    )
    try:
        _assert_setup_error(harness("check", path), "site.voltage: unknown field")
    finally:
        path.unlink()


def test_malformed_dbc(tmp_path: Path):
    dbc = tmp_path / "broken.dbc"
    dbc.write_text((ROOT / "dbc/pylontech_lv.dbc").read_text().replace("BO_ 849", "BO_ 849 849", 1))
    _assert_setup_error(harness("check", dbc), f"{dbc}", "not a valid DBC")


def test_unknown_defect_kind(tmp_path: Path):
    path = SITE.parent / f".test-{uuid.uuid4().hex[:12]}-defect.yaml"
    path.write_text(
        SITE.read_text().replace(
            "defects: []", "defects:\n  - {device: home-1.inverter, kind: gremlins, value: 1 s}"
        )
    )
    try:
        _assert_setup_error(
            harness("run", "--site", path, "--out", tmp_path / "o"), "unknown defect 'gremlins'"
        )
    finally:
        path.unlink()


def test_check_accepts_the_shipped_files():
    proc = harness(
        "check",
        SITE,
        CONTRACT,
        ROOT / "dbc/pylontech_lv.dbc",
        *sorted((ROOT / "fixtures/profiles").glob("*.yaml")),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("OK") == 6


def test_unreachable_device_is_a_setup_error(tmp_path: Path):
    """A live endpoint that does not answer: exit 2 naming the device, no verdicts judged."""
    path = SITE.parent / f".test-{uuid.uuid4().hex[:12]}-dead.yaml"
    text = SITE.read_text().replace(
        "      driver: sunspec\n      endpoint: {transport: virtual}",
        "      driver: sunspec\n      endpoint: {transport: modbus_tcp, host: 127.0.0.1, port: 9, timeout: 0.5 s}",
    )
    path.write_text(text)
    try:
        proc = harness("run", "--site", path, "--out", tmp_path / "o")
    finally:
        path.unlink()
    _assert_setup_error(proc, "could not be set up", "home-1.inverter", "127.0.0.1:9")
    assert not (tmp_path / "o" / "verdicts.json").exists()
