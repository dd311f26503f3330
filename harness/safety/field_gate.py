"""The field gate: on a live site, a field step that changes anything asks first.

A commissioning engineer runs the field campaign from a laptop against units that are in
service: somebody's home battery, on a live grid. The campaign starts read-only (identity,
settings, telemetry); a step that writes (a dispatch round trip, say) first names the unit and
the change at the terminal and goes ahead only on the engineer's yes. Declined, unanswered, or
no terminal (CI, a service: :class:`~harness.devices.prompts.PromptService` fails at once, never
hangs), the step does not start and nothing is written. A virtual site changes nothing real
and is not asked, as the switching gate (harness/safety/switching.py) does.

Either way the gate goes through the write guard first, so the step is in the run's audit and
a dry run (or a safety block) keeps it from starting: its writes would not reach the unit, and
a measurement of a change that never happened would be a false verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from harness.devices.prompts import OperatorStepError, PromptService
from harness.transports import guard

TRANSPORT = "field-gate"
"""How the gate's own entries are named in the audit (``transport``)."""


class FieldStepRefused(Exception):
    """A field step that would change a unit may not run; the message says why."""


@dataclass
class FieldGate:
    """Asks before each changing step of a live site; a virtual site passes without a question."""

    virtual: bool
    prompts: PromptService

    def refusal(self, unit: str, change: str) -> str | None:
        """Why the step that makes ``change`` to ``unit`` must not run, or None when it may."""
        if self.virtual:
            announced = guard.permit(
                guard.WriteRequest(TRANSPORT, unit, f"step (virtual site, not asked): {change}")
            )
            return None if announced else self._kept_off(unit)
        try:
            answer = self.prompts.confirm(
                unit,
                f"Allow the next step to change {unit}: {change}? Enter allows it; "
                "'no' skips it and nothing is written",
            )
        except OperatorStepError as exc:
            return f"changes {unit}: not confirmed, nothing was written ({exc})"
        if answer is None:
            return self._kept_off(unit)
        return None

    @staticmethod
    def _kept_off(unit: str) -> str:
        return (
            f"changes {unit}: not run, a dry run (or a safety block) keeps every write off the "
            "wire, so the change could not be made"
        )

    @contextmanager
    def step(self, unit: str, change: str) -> Iterator[None]:
        """Run the block only if the step may run; else :class:`FieldStepRefused` before it."""
        reason = self.refusal(unit, change)
        if reason is not None:
            raise FieldStepRefused(reason)
        yield
