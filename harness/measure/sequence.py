"""A sequence a device reports against the order a contract codifies (a black start's steps).

The steps kept are the longest run of reported steps that appears in the codified order
(a longest increasing subsequence of their codified positions), so one step taken too early
counts once, not once for every step it overtook. Every other reported step the contract names
is *out of order*; a codified step never reported is *missing*; a reported step the contract
does not name is *unexpected*; a step reported twice is *repeated*.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Deviation:
    """One departure from the codified order: what kind, which step, where it was reported."""

    kind: str  # out_of_order, missing, unexpected, repeated
    step: str
    position: int | None  # 1-based position in the reported sequence; None when missing

    def __str__(self) -> str:
        where = f" (reported as step {self.position})" if self.position is not None else ""
        return f"{self.kind.replace('_', ' ')}: {self.step}{where}"


def deviations(reported: Sequence[str], codified: Sequence[str]) -> list[Deviation]:
    """Every deviation of ``reported`` from ``codified``, in reported order, missing last."""
    rank = {step: i for i, step in enumerate(codified)}
    out: list[Deviation] = []
    seen: set[str] = set()
    candidates: list[tuple[int, int]] = []  # (reported index, codified rank)
    for i, step in enumerate(reported):
        if step not in rank:
            out.append(Deviation("unexpected", step, i + 1))
        elif step in seen:
            out.append(Deviation("repeated", step, i + 1))
        else:
            seen.add(step)
            candidates.append((i, rank[step]))
    kept = _longest_increasing(candidates)
    for i, _ in candidates:
        if i not in kept:
            out.append(Deviation("out_of_order", reported[i], i + 1))
    out.sort(key=lambda d: d.position or 0)
    out.extend(Deviation("missing", step, None) for step in codified if step not in seen)
    return out


def _longest_increasing(items: list[tuple[int, int]]) -> set[int]:
    """Reported indices of a longest subsequence whose codified ranks increase."""
    tails: list[int] = []  # smallest rank ending an increasing run of each length
    tail_at: list[int] = []  # position in ``items`` of that run's last element
    parent: list[int] = [-1] * len(items)
    for k, (_, r) in enumerate(items):
        j = bisect.bisect_left(tails, r)
        if j == len(tails):
            tails.append(r)
            tail_at.append(k)
        else:
            tails[j] = r
            tail_at[j] = k
        parent[k] = tail_at[j - 1] if j > 0 else -1
    kept: set[int] = set()
    k = tail_at[-1] if tail_at else -1
    while k >= 0:
        kept.add(items[k][0])
        k = parent[k]
    return kept
