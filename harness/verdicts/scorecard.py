"""Score runs of several vendors' units against one contract's scorecard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config.scorecard import Scorecard


@dataclass
class VendorScore:
    vendor: str
    folder: str
    categories: dict[str, float | None] = field(default_factory=dict)  # percent, None = no data
    counts: dict[str, str] = field(default_factory=dict)  # e.g. "5/6 clauses"
    total: float = 0.0
    failed: list[str] = field(default_factory=list)


def score_run(
    card: Scorecard,
    vendor: str,
    folder: str,
    verdicts: list[dict[str, Any]],
    external: dict[str, float] | None = None,
) -> VendorScore:
    """Per category: the credit-weighted share of its clause verdicts; total: weighted mean.

    A category with no clause in this run and no external score counts zero (an unproven
    capability earns nothing), and says so.
    """
    out = VendorScore(vendor, folder)
    weighted = 0.0
    for key, cat in card.categories.items():
        if cat.external:
            value = (external or {}).get(key)
            out.categories[key] = value
            out.counts[key] = "external" if value is not None else "no data"
        else:
            mine = [v for v in verdicts if cat.covers(v["quantity"])]
            credit = sum(card.credit.get(v["verdict"], 0.0) for v in mine)
            value = 100.0 * credit / len(mine) if mine else None
            out.categories[key] = value
            passed = sum(1 for v in mine if v["verdict"] in ("pass", "marginal"))
            out.counts[key] = f"{passed}/{len(mine)} clauses"
            out.failed += [
                f"{v['clause']} ({v['node'] or 'site'})"
                for v in mine
                if v["verdict"] not in ("pass", "marginal")
            ]
        weighted += cat.weight * (value or 0.0)
    out.total = weighted / sum(c.weight for c in card.categories.values())
    return out
