"""Judge measurements against clauses.

A limit is a line; a measurement has an uncertainty. Inside the clause's marginal band (on the
passing side) or within the uncertainty of the limit on either side, the verdict is *marginal*:
the unit passed, but the witness should know it was close. Beyond the limit by more than the
uncertainty, it fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.config.contract import Clause, Contract
from harness.verdicts.model import ClauseVerdict, Measurement, Verdict
from harness.verdicts.scope import CampaignScope


def judge_value(clause: Clause, value: float, uncertainty: float = 0.0) -> Verdict:
    band = max(clause.marginal or 0.0, 0.0)
    verdicts = []
    if clause.max is not None:
        verdicts.append(_one_side(value - clause.max, band, uncertainty))
    if clause.min is not None:
        verdicts.append(_one_side(clause.min - value, band, uncertainty))
    return max(verdicts, key=lambda v: v.severity)


def _one_side(excess: float, band: float, uncertainty: float) -> Verdict:
    """``excess`` > 0 means beyond the limit."""
    if excess > uncertainty:
        return Verdict.FAIL
    if excess > -max(band, uncertainty):
        return Verdict.MARGINAL
    return Verdict.PASS


def _worst(clause: Clause, measurements: list[Measurement]) -> tuple[Measurement, Verdict]:
    judged = []
    for m in measurements:
        if m.error is not None or m.value is None:
            judged.append((m, Verdict.ERROR))
        else:
            judged.append((m, judge_value(clause, m.value, m.uncertainty)))
    return max(judged, key=lambda mv: (mv[1].severity, _distance(clause, mv[0])))


def _distance(clause: Clause, m: Measurement) -> float:
    if m.value is None:
        return 0.0
    d = []
    if clause.max is not None:
        d.append(m.value - clause.max)
    if clause.min is not None:
        d.append(clause.min - m.value)
    return max(d)


def evaluate(
    contract: Contract,
    nodes: Iterable[str],
    measurements: Iterable[Measurement],
    scope: CampaignScope | None = None,
) -> list[ClauseVerdict]:
    """Every clause once per node it applies to (or once for the site), in contract order.
    An unmeasured clause outside the run's campaign (``scope``) says so, and is out of scope."""
    node_names = list(nodes)
    by_key: dict[tuple[str, str | None], list[Measurement]] = {}
    for m in measurements:
        by_key.setdefault((m.quantity, m.node), []).append(m)
    out: list[ClauseVerdict] = []
    for clause in contract.clauses:
        targets: list[str | None] = list(node_names) if clause.scope == "node" else [None]
        for node in targets:
            found = by_key.get((clause.quantity, node), [])
            if clause.scope == "site" and not found:
                # A site clause may be fed by per-node measurements: the worst node counts.
                found = [m for (q, _), ms in by_key.items() if q == clause.quantity for m in ms]
            out.append(_verdict(clause, node, found, scope))
    return out


def _verdict(
    clause: Clause, node: str | None, found: list[Measurement], scope: CampaignScope | None
) -> ClauseVerdict:
    common: dict[str, Any] = dict(
        clause=clause.id,
        title=clause.title,
        quantity=clause.quantity,
        node=node,
        unit=clause.unit,
        limit=clause.limit_text,
        limit_min=clause.min,
        limit_max=clause.max,
        source=clause.source,
    )
    if not found:
        outside = scope is not None and clause.quantity in scope.outside
        return ClauseVerdict(
            **common,
            value=None,
            verdict=Verdict.NOT_COVERED,
            test=None,
            evidence=(),
            note=scope.note() if outside and scope else "no scenario measured this quantity",
            details={"out_of_scope": True} if outside else {},
        )
    m, verdict = _worst(clause, found)
    note = m.error or ""
    if m.uncertainty and verdict is not Verdict.ERROR:
        note = f"measurement uncertainty +-{m.uncertainty:g} {clause.unit}"
    return ClauseVerdict(
        **common,
        value=m.value,
        verdict=verdict,
        test=m.test,
        evidence=m.evidence,
        note=note,
        details=dict(m.details) | {"uncertainty": m.uncertainty},
    )


def overall(verdicts: Iterable[ClauseVerdict]) -> Verdict:
    worst = Verdict.PASS
    for v in verdicts:
        if v.verdict.severity > worst.severity:
            worst = v.verdict
    return worst
