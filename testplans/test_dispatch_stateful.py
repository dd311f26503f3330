"""Operation: whatever is commanded, in whatever order, every battery stays inside the contract's
SoC band and inside the current limits its own BMS advertises (property-based, stateful)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.conformance.stateful import CURRENT, SOC, DispatchCampaign, Plan, units_of
from harness.devices.roles import DeviceError

QUANTITIES = {SOC: "storage.soc.band_violations", CURRENT: "bms.current_limit.violations"}


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_dispatch_stateful(site, verdicts, evidence_dir, pytestconfig, restore_after):
    """Hypothesis draws sequences of setpoints to any inverter (charge and discharge, within and
    at the edges of its rating), islanding at the PCC, reconnection (waiting for enter service
    as the contract's settings say) and time passing. After every step each home's SoC (BMS) must
    be inside the contract's SoC band and its battery current (power analyzer) inside the limits
    its BMS advertises. A failing sequence is shrunk and attached as a script for the vendor."""
    judged = {kind: q for kind, q in QUANTITIES.items() if verdicts.judged(q)}
    verdicts.require(next(iter(judged.values()), QUANTITIES[CURRENT]))
    if pytestconfig.getoption("harness_dry_run", default=False):
        pytest.skip("the sequences are writes; a dry run sends none, so nothing is judged")
    plan = Plan.from_method(
        verdicts.method(next(iter(judged.values()))),
        pytestconfig.getoption("harness_campaign"),
        _enter_service(site),
    )
    band = _soc_band(site, verdicts, judged)
    if not judged:
        return
    try:
        units = units_of(site)  # every home: its inverter, its BMS, its DC channel on the analyzer
    except DeviceError as exc:
        return _errors(site, verdicts, judged, str(exc))

    campaign = DispatchCampaign(
        site.clock,
        units,
        site.analyzer,
        site.pcc_breaker,
        band,
        plan,
        current_limits=CURRENT in judged,
    )
    result = campaign.run()

    evidence = result.write(evidence_dir, "dispatch-stateful", "test_dispatch_stateful")
    if result.error:
        return _errors(site, verdicts, judged, f"a device failed: {result.error}")
    for kind, quantity in judged.items():
        for node in site.nodes:
            count, doubtful = result.count(node, kind)
            verdicts.record(
                quantity,
                count,
                node=node,
                uncertainty=doubtful,  # limits seen only within the measuring uncertainty
                evidence=evidence,
                examples=result.examples,
                steps=result.steps,
                failure=result.failure,
            )


def _enter_service(site: Any) -> tuple[float, float] | None:
    """The contract's enter-service delay and ramp; without them the site is not islanded."""
    settings = site.contract.settings
    es = settings.enter_service if settings else None
    return (es.delay, es.ramp) if es else None


def _soc_band(site: Any, verdicts: Any, judged: dict[str, str]) -> tuple[float, float] | None:
    """The contract's SoC band when its clause is judged; without a band that clause errs."""
    definitions = site.contract.definitions
    band = definitions.soc_band if definitions else None
    if SOC not in judged:
        return None
    if band is None:
        _errors(site, verdicts, {SOC: judged.pop(SOC)}, "the contract defines no SoC band")
        return None
    return (band.min, band.max)


def _errors(site: Any, verdicts: Any, judged: dict[str, str], reason: str) -> None:
    for quantity in judged.values():
        for node in site.nodes:
            verdicts.record_error(quantity, reason, node=node)
