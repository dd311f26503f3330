"""Interoperability on CAN: the BMS speaks its DBC, whatever DBC the site names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.conformance.can import CanMonitor
from harness.devices.roles import DeviceError

CAN_QUANTITIES = (
    "bms.can.missing_messages",
    "bms.can.range_violations",
    "bms.can.cycle_time_deviation",
)


@pytest.mark.campaign("factory", "ci")
def test_bms_can_conformance(site, node, bms, verdicts, evidence_dir):
    """Interface agreement, Annex B: while the harness sends the heartbeat on its cycle (standing
    in for the inverter), every message the BMS must send arrives with its DBC length, on its
    DBC cycle time, with every signal inside its declared range."""
    judged = [q for q in CAN_QUANTITIES if verdicts.judged(q)]
    verdicts.require(judged[0] if judged else CAN_QUANTITIES[0])
    observe = max(site.seconds(verdicts.method(q)["observe"]) for q in judged)
    monitor = CanMonitor.for_bms(bms)
    monitor.reset(start_t=site.clock.now())
    with bms.listening(monitor):
        bms.hold(site.clock, observe)
        heartbeat = _heartbeat_seen_by_bms(bms)
    report = monitor.report(end_t=site.clock.now())
    missing = report.missing + ([heartbeat["message"]] if heartbeat.get("lost") else [])
    evidence = evidence_dir / f"{node}-can-conformance.json"
    findings = report.to_json() | {"heartbeat_at_bms": heartbeat, "missing": missing}
    evidence.write_text(json.dumps(findings, indent=2, default=str))
    files = [str(evidence)]

    verdicts.record(
        "bms.can.missing_messages",
        len(missing),
        node=node,
        evidence=files,
        missing=missing,
        required=report.required,
    )
    verdicts.record(
        "bms.can.range_violations",
        report.range_violation_count,
        node=node,
        evidence=files,
        signals=[f"{v.message}.{v.signal}" for v in report.range_violations],
    )
    received = {m: d for m, d in report.cycle_deviation().items() if m not in report.missing}
    if not received:
        verdicts.record_error(
            "bms.can.cycle_time_deviation",
            f"no required message received; missing: {', '.join(missing)}",
            node=node,
        )
    else:
        worst = max(received, key=lambda m: received[m])
        verdicts.record(
            "bms.can.cycle_time_deviation",
            received[worst],
            node=node,
            evidence=files,
            worst_message=worst,
            not_received=report.missing,
        )


def _heartbeat_seen_by_bms(bms) -> dict[str, Any]:
    """What the harness can say about the heartbeat it sent: how many, and whether the BMS says it
    lost it (only a BMS whose protocol has such a flag can say; the others cannot be asked)."""
    seen: dict[str, Any] = {
        "message": bms.map.heartbeat,
        "sent": bms.heartbeats_sent,
        "period_s": bms.heartbeat_period(),
    }
    try:
        seen["lost"] = bms.heartbeat_lost()
    except DeviceError as exc:
        seen["lost"], seen["error"] = None, str(exc)
    return seen


@pytest.mark.campaign("factory", "ci")
def test_bms_soc_at_full_charge(
    site, node, inverter, bms, analyzer, verdicts, evidence_dir, restore_after
):
    """The SoC the BMS reports is checked against a physical anchor: charged until the analyzer
    sees the pack take no more current, the battery is full, and the BMS must say 100 %. The
    charge is then coulomb-counted back out, so the battery ends where it started."""
    quantity = "bms.soc_error"
    method = verdicts.method(quantity)
    channel = f"{node}.battery.current"
    power = float(method["charge_power"]) * inverter.rated_power()
    poll, settle = site.seconds(method["poll"]), site.seconds(method["settle"])
    site.clock.sleep(poll)  # at rest, long enough for every BMS message to arrive once
    soc_start = bms.soc()
    charged = ChargeCounter(site.clock, analyzer, channel)  # from the power step on
    inverter.set_power(-power)
    site.clock.sleep(settle)
    start_current = charged.read()
    if start_current <= 0:
        inverter.set_power(0.0)
        verdicts.record_error(
            quantity, f"the battery took no charge ({start_current:g} A)", node=node
        )
        return
    threshold = float(method["taper"]) * start_current
    full = site.clock.wait_until(
        lambda: charged.read() < threshold,
        timeout=site.seconds(method["max_charge_time"]),
        poll=poll,
    )
    site.clock.sleep(poll)  # the BMS's next SoC frame, at full
    soc_full = bms.soc()
    out = ChargeCounter(site.clock, analyzer, channel)  # the same charge out again
    inverter.set_power(power)
    site.clock.sleep(settle)
    site.clock.wait_until(
        lambda: out.update() <= -charged.amp_hours,
        timeout=site.seconds(method["max_charge_time"]),
        poll=poll,
    )
    inverter.set_power(0.0)
    evidence = evidence_dir / f"{node}-soc-anchor.json"
    evidence.write_text(
        json.dumps(
            {
                "soc_reported_at_start_pct": soc_start,
                "soc_reported_at_full_pct": soc_full,
                "full": full,
                "charge_current_at_start_a": start_current,
                "taper_threshold_a": threshold,
                "charged_ah": charged.amp_hours,
                "discharged_ah": -out.amp_hours,
            },
            indent=2,
        )
    )
    if not full:
        verdicts.record_error(quantity, "the pack was not full within max_charge_time", node=node)
        return
    verdicts.record(
        quantity,
        abs(soc_full - 100.0),
        node=node,
        uncertainty=bms.resolution("soc") / 2,
        evidence=[str(evidence)],
        soc_at_full=soc_full,
        charged_ah=charged.amp_hours,
    )


class ChargeCounter:
    """Coulomb count of an analyzer's DC current channel (A, + charging) read at each call."""

    def __init__(self, clock, analyzer, channel: str) -> None:
        self.clock, self.analyzer, self.channel = clock, analyzer, channel
        self.amp_hours = 0.0
        self._t, self._i = clock.now(), analyzer.measure(channel)

    def read(self) -> float:
        """Read the current now, add the charge since the last reading (trapezoid); return A."""
        t, i = self.clock.now(), self.analyzer.measure(self.channel)
        self.amp_hours += (self._i + i) / 2 * (t - self._t) / 3600.0
        self._t, self._i = t, i
        return i

    def update(self) -> float:
        """Read the current now; return the charge counted so far, Ah (+ into the battery)."""
        self.read()
        return self.amp_hours
