"""The field campaign: read-only checks of one node through its own interfaces, and a dispatch
round trip that on a live site runs only after the operator allows it.

The gate is proven against the virtual devices by counting what reached them: the write audit
(every Modbus write passes the write guard) and the plant's own setpoint (tests only). The
scenarios are called as the plugin would call them, with a bench and a scripted person at the
"terminal"; the end-to-end runs show each defect a field engineer meets fails its own clause.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.bench import Bench, open_bench
from harness.checks import check_file
from harness.config.contract import ApprovedEquipment, load_contract
from harness.config.site import load_site
from harness.devices.prompts import NonInteractive, PromptService, Terminal
from harness.safety.audit import WriteAudit
from harness.safety.field_gate import FieldGate
from harness.verdicts.recorder import VerdictRecorder
from testplans import test_field_commissioning as scenarios
from tests.conftest import DefectSite
from tests.harness_runner import CONTRACT, ROOT, SITE, run

CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"
PROFILE = ROOT / "fixtures/profiles/ieee1547-2018-cat-ii.yaml"
FIELD = ("C.11.1", "C.11.2", "C.11.3", "C.11.4")
HOME = "home-1"


@dataclass
class Person:
    """The engineer at the terminal: answers each question with the next line (None: silent)."""

    answers: list[str]
    shown: list[str] = field(default_factory=list)

    def __call__(self) -> Terminal:
        return self

    def write(self, text: str) -> None:
        self.shown.append(text)

    def readline(self, timeout_s: float) -> str | None:
        return self.answers.pop(0) if self.answers else None

    def close(self) -> None:
        pass


def nobody() -> Terminal:
    raise NonInteractive("no controlling terminal")


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = open_bench(load_site(SITE), load_contract(CONTRACT))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def audit(bench: Bench) -> Iterator[WriteAudit]:
    a = WriteAudit(None, now=bench.clock.now)
    try:
        yield a
    finally:
        a.close()


def _plant(bench: Bench) -> Any:
    """The plant behind the virtual site: the truth of what reached the devices (tests only)."""
    return bench.clock._advancers[0].__self__.plant  # type: ignore[attr-defined]


def _modbus_writes(audit: WriteAudit) -> list[dict[str, Any]]:
    return [e for e in audit.entries if e["transport"] == "modbus"]


def _dispatch(bench: Bench, gate: FieldGate, folder: Path) -> VerdictRecorder:
    """The dispatch round trip on home-1, called as the plugin calls it."""
    verdicts = VerdictRecorder(bench.contract, None, "dispatch")
    node = bench.nodes[HOME]
    scenarios.test_field_dispatch_round_trip(
        bench, HOME, node.inverter, node.bms, verdicts, folder, gate
    )
    return verdicts


@pytest.mark.parametrize(
    ("answers", "because"),
    [(["no"], "declined"), ([], "no answer"), (None, "non-interactive")],
    ids=["declined", "silent", "no-terminal"],
)
def test_a_step_not_allowed_on_a_live_site_writes_nothing(
    bench: Bench, audit: WriteAudit, tmp_path: Path, answers: list[str] | None, because: str
) -> None:
    plant = _plant(bench)
    person = Person(answers) if answers is not None else None
    gate = FieldGate(virtual=False, prompts=PromptService(bench.clock, 1.0, person or nobody))
    before = list(plant.events)
    with pytest.raises(pytest.skip.Exception, match=because) as skipped:
        _dispatch(bench, gate, tmp_path)
    assert "nothing was written" in str(skipped.value)
    bench.clock.sleep(1.0)
    assert _modbus_writes(audit) == []  # nothing reached the inverter
    assert plant.nodes[HOME].inverter.setpoint_w == 0.0
    assert [e for e in plant.events if e not in before] == []
    if person is not None:
        assert any("change home-1.inverter" in text for text in person.shown)


def test_an_allowed_step_writes_measures_and_leaves_the_unit_as_found(
    bench: Bench, audit: WriteAudit, tmp_path: Path
) -> None:
    person = Person([""])
    gate = FieldGate(virtual=False, prompts=PromptService(bench.clock, 1.0, person))
    verdicts = VerdictRecorder(bench.contract, None, "dispatch")
    node = bench.nodes[HOME]
    found = node.inverter.power_control()  # type: ignore[attr-defined]
    scenarios.test_field_dispatch_round_trip(
        bench, HOME, node.inverter, node.bms, verdicts, tmp_path, gate
    )
    (m,) = verdicts.measurements
    assert m.quantity == "field.dispatch_error" and m.value is not None and m.value < 0.5
    assert m.details["commanded_w"] == pytest.approx(500.0)
    assert m.details["reported_export_w"] == pytest.approx(500.0, abs=10)
    assert m.details["bms_current_while_exporting_a"] < 0  # discharging while exporting
    assert len(person.shown) == 1 and not person.answers  # asked once, before any write
    assert len(_modbus_writes(audit)) >= 3  # export, zero, the control put back
    assert node.inverter.power_control() == found  # type: ignore[attr-defined]
    assert _plant(bench).nodes[HOME].inverter.setpoint_w == 0.0


def test_a_virtual_site_is_not_asked_and_a_dry_run_does_not_start_the_step(
    bench: Bench, tmp_path: Path
) -> None:
    person = Person([])  # would fail the step if it were asked
    virtual = FieldGate(virtual=True, prompts=PromptService(bench.clock, 1.0, person))
    assert virtual.refusal("home-1.inverter", "export") is None
    assert person.shown == []
    dry = WriteAudit(None, dry_run=True, now=bench.clock.now)
    try:
        for gate in (virtual, FieldGate(virtual=False, prompts=PromptService(bench.clock))):
            with pytest.raises(pytest.skip.Exception, match="dry run"):
                _dispatch(bench, gate, tmp_path)
        assert person.shown == []  # a dry run asks nobody: nothing would change
        assert [e["transport"] for e in dry.entries] == ["field-gate", "operator"]
    finally:
        dry.close()


def test_the_read_only_scenarios_write_nothing(
    bench: Bench, audit: WriteAudit, tmp_path: Path
) -> None:
    verdicts = VerdictRecorder(bench.contract, None, "read-only")
    node = bench.nodes[HOME]
    scenarios.test_field_identity(bench, HOME, node.inverter, node.bms, verdicts, tmp_path)
    scenarios.test_field_settings(bench, HOME, node.inverter, verdicts, tmp_path)
    scenarios.test_field_telemetry_plausibility(
        bench, HOME, node.inverter, node.bms, verdicts, tmp_path
    )
    assert audit.entries == []  # not one write, sent, kept off the wire or refused
    values = {m.quantity: m.value for m in verdicts.measurements}
    assert values == {
        "field.identity_mismatches": 0.0,
        "field.settings_deviations": 0.0,
        "field.telemetry_implausible": 0.0,
    }
    identity = json.loads((tmp_path / "home-1-field-identity.json").read_text())
    assert identity["reported"]["inverter"]["firmware"] == "1.4.2"
    assert "bms: reports no firmware version" in identity["not_verifiable"]


def test_approved_firmware_is_compared_number_by_number() -> None:
    entry = ApprovedEquipment(role="inverter", manufacturer="Acme", min_firmware="1.10")
    assert entry.accepts_firmware("v1.10.0") and entry.accepts_firmware("2.0")
    assert not entry.accepts_firmware("1.9.9")
    with pytest.raises(ValidationError, match="quote a version"):
        ApprovedEquipment.model_validate({"role": "bms", "manufacturer": "A", "min_firmware": 1.10})


def test_the_field_node_example_is_a_valid_live_site() -> None:
    summary = check_file(ROOT / "fixtures/sites/field-node.example.yaml")
    assert "1 node(s), live endpoints" in summary
    node = load_site(ROOT / "fixtures/sites/field-node.example.yaml").spec.nodes[0]
    assert (node.inverter.endpoint.transport, node.bms.endpoint.transport) == ("modbus_tcp", "can")


# -- end to end -----------------------------------------------------------------------------------


def _node_edit(text: str, node: str, old: str, new: str) -> str:
    """Replace ``old`` once inside the site file's block of ``node``."""
    head, sep, rest = text.partition(f"  - name: {node}\n")
    block, nxt, tail = rest.partition("\n  - name: ")
    assert sep and block.count(old) == 1, (node, old)
    return head + sep + block.replace(old, new) + nxt + tail


@pytest.mark.slow
def test_field_campaign_on_the_clean_site_passes_and_reads_before_it_writes(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, SITE, CONTRACT, "--campaign", "field", "--", "-k", "test_field")
    table = result.by_clause()
    assert {table[c, HOME]["verdict"] for c in FIELD} == {"pass"}, result.out
    # The run passes: clauses only other campaigns measure are outside it, not failures.
    assert result.code == 0, result.out
    black = table["C.4.2", HOME]
    assert black["verdict"] == "not_covered" and black["details"] == {"out_of_scope": True}
    assert "outside the 'field' campaign" in result.out
    audit = [json.loads(line) for line in (result.folder / "audit.jsonl").read_text().splitlines()]
    assert audit[0]["transport"] == "field-gate", audit  # nothing was written before the step
    assert "not asked" in audit[0]["write"]  # a virtual site


@pytest.mark.slow
def test_field_defects_fail_their_own_clause(tmp_path: Path, defect_site: DefectSite) -> None:
    """home-1's inverter runs firmware older than approved; home-2's BMS reports 101 % SoC (97 %
    + 4 points), home-3's 100 % (just inside) and home-3's inverter reports its power with the
    wrong sign; every inverter is set to a 1.06 pu enter-service voltage high, not the 1.05 pu
    of the contract. home-4 is as delivered."""
    profile = tmp_path / "wrong-settings.yaml"
    text = PROFILE.read_text().split("\nclauses:\n")[0]
    assert "    voltage_high: 1.05 pu\n" in text
    profile.write_text(text.replace("    voltage_high: 1.05 pu\n", "    voltage_high: 1.06 pu\n"))
    site = defect_site(
        "  - {device: home-2.bms, kind: soc_offset, value: 4 %}\n"
        "  - {device: home-3.bms, kind: soc_offset, value: 3 %}\n"
        "  - {device: home-3.inverter, kind: power_reading_gain, value: -1}",
        CLUSTER,
    )
    text = site.read_text().replace(
        "settings: ../profiles/ieee1547-2018-cat-ii.yaml", f"settings: {profile}"
    )
    text = _node_edit(text, "home-1", "firmware: 1.4.2}", "firmware: 1.3.9}")
    for node in ("home-2", "home-3"):
        text = _node_edit(text, node, "initial_soc: 70 %", "initial_soc: 97 %")
    site.write_text(text)
    result = run(tmp_path, site, CONTRACT, "--campaign", "field", "--", "-k", "test_field")
    expected = {
        node: dict.fromkeys(FIELD, "pass") for node in ("home-1", "home-2", "home-3", "home-4")
    }
    for node in expected:
        expected[node]["C.11.2"] = "fail"
    expected["home-1"]["C.11.1"] = "fail"
    expected["home-2"]["C.11.3"] = "fail"
    expected["home-3"]["C.11.4"] = "fail"
    table = result.by_clause()
    got = {node: {c: table[c, node]["verdict"] for c in FIELD} for node in expected}
    assert got == expected, result.out
    assert result.code == 1
    details = {(c, n): table[c, n]["details"] for c, n in table if c in FIELD}
    assert any("1.3.9" in m and "1.4" in m for m in details["C.11.1", "home-1"]["mismatches"])
    assert details["C.11.2", "home-4"]["deviations"] == [
        "enter_service.voltage_high: unit 1.06, contract 1.05"
    ]
    assert any("SoC 101 %" in m for m in details["C.11.3", "home-2"]["implausible"])
    assert table["C.11.3", "home-3"]["value"] == 0  # 100 %: just inside
    assert table["C.11.4", "home-3"]["value"] == pytest.approx(20.0, abs=0.5)  # -500 W for +500 W


def test_a_node_without_instruments_is_commissioned_and_a_bench_scenario_names_what_it_lacks(
    tmp_path: Path,
) -> None:
    """A laptop and the node's own interfaces: the site names no instruments at all. The field
    campaign passes; a scenario that needs the power analyzer fails saying which field adds it."""
    text = SITE.read_text()
    start, end = text.index("instruments:\n"), text.index("\nsafety:")
    site = SITE.parent / f".test-no-instruments-{tmp_path.name}.yaml"
    site.write_text(text[:start] + text[end + 1 :])
    try:
        field_run = run(tmp_path / "field", site, CONTRACT, "--campaign", "field")
        bench_run = run(
            tmp_path / "bench", site, CONTRACT, "--", "-k", "test_inverter_power_telemetry"
        )
    finally:
        site.unlink()
    assert field_run.code == 0, field_run.out
    assert {field_run.by_clause()[c, HOME]["verdict"] for c in FIELD} == {"pass"}
    assert bench_run.code == 1
    junit = (bench_run.folder / "junit.xml").read_text()
    assert "needs a power analyzer, and the site names none" in junit
    assert "instruments.analyzer" in junit
