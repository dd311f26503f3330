"""The scenario-facing verdict recorder: scenarios hand it quantities, never limits."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

from harness.config.contract import Contract
from harness.config.quantities import catalogue
from harness.verdicts.journal import Journal
from harness.verdicts.model import Measurement


class UnjudgedQuantity(LookupError):
    """The contract has no clause for a quantity, so there is nothing to measure it for."""


class VerdictRecorder:
    """Collects measurements of the running test and journals them at once."""

    def __init__(self, contract: Contract, journal: Journal | None, test: str = "") -> None:
        self.contract = contract
        self.journal = journal
        self.test = test
        self.measurements: list[Measurement] = []

    def for_test(self, test: str) -> VerdictRecorder:
        child = VerdictRecorder(self.contract, self.journal, test)
        child.measurements = self.measurements
        return child

    def judged(self, quantity: str) -> bool:
        return bool(self.contract.clauses_for(quantity))

    def require(self, quantity: str) -> None:
        """Raise UnjudgedQuantity when no clause judges ``quantity`` (the scenario is skipped)."""
        if not self.judged(quantity):
            raise UnjudgedQuantity(f"the contract has no clause for {quantity}")

    def method(self, quantity: str) -> dict[str, object]:
        """The measurement method's parameters from the catalogue, for a judged quantity."""
        self.require(quantity)
        return dict(catalogue()[quantity].parameters)

    def limit(self, quantity: str) -> float:
        """The widest limit any clause sets on ``quantity``: how long a scenario must observe."""
        self.require(quantity)
        values = [
            c.max if c.max is not None else c.min for c in self.contract.clauses_for(quantity)
        ]
        return max(v for v in values if v is not None)

    def window(self, quantity: str, factor: float = 2.0) -> float:
        """Observation time for a time quantity: long enough to see a unit just past its limit."""
        return self.limit(quantity) * factor

    def record(
        self,
        quantity: str,
        value: float,
        *,
        node: str | None = None,
        uncertainty: float = 0.0,
        evidence: Sequence[str | PathLike[str]] = (),
        **details: object,
    ) -> Measurement:
        qdef = catalogue()[quantity]
        m = Measurement(
            quantity=quantity,
            value=float(value),
            unit=qdef.unit,
            node=node,
            test=self.test,
            uncertainty=float(uncertainty),
            evidence=tuple(str(e) for e in evidence),
            details={k: _plain(v) for k, v in details.items()},
        )
        return self._add(m)

    def record_error(self, quantity: str, reason: str, *, node: str | None = None) -> Measurement:
        """The measurement could not be made; the clause's verdict becomes ``error``."""
        qdef = catalogue()[quantity]
        m = Measurement(quantity, None, qdef.unit, node, self.test, error=reason)
        return self._add(m)

    def _add(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        if self.journal is not None:
            self.journal.append(m)
        return m


def _plain(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
