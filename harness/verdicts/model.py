"""What a measurement and a verdict are, as written to the journal and to verdicts.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"
    NOT_COVERED = "not_covered"
    ERROR = "error"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    Verdict.PASS: 0,
    Verdict.MARGINAL: 1,
    Verdict.NOT_COVERED: 2,
    Verdict.ERROR: 3,
    Verdict.FAIL: 4,
}


@dataclass(frozen=True)
class Measurement:
    """One value of a quantity, measured by one test on one node (None for site-wide)."""

    quantity: str
    value: float | None
    unit: str
    node: str | None
    test: str
    uncertainty: float = 0.0
    evidence: tuple[str, ...] = ()
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["evidence"] = list(self.evidence)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        data["evidence"] = tuple(data.get("evidence", ()))
        return cls(**data)


@dataclass(frozen=True)
class ClauseVerdict:
    clause: str
    title: str
    quantity: str
    node: str | None
    value: float | None
    unit: str
    limit: str
    verdict: Verdict
    test: str | None
    evidence: tuple[str, ...]
    source: str | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    limit_min: float | None = None
    limit_max: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["evidence"] = list(self.evidence)
        return out
