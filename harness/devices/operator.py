"""The ``operator`` driver: a role performed by a person, asked in the terminal.

Where a site has no controllable device for a step (a PCC breaker without a motor operator or a
Modbus I/O module, say), the site file names ``driver: operator`` with ``endpoint: {transport:
manual}``, and each action becomes an operator step (harness/devices/prompts.py): "Open the PCC
breaker now, then press Enter". Options (site file, the instrument's ``options``)::

    pcc_breaker:
      driver: operator
      endpoint: {transport: manual}
      options: {timeout: 300 s, label: PCC breaker, initially_closed: true}

A breaker worked by hand has no position sensor the harness can read, so :meth:`is_closed` is
the state the operator last confirmed (``initially_closed`` at the start). The time-critical
edge of a test is never this confirmation: it is the breaker's auxiliary contact on the power
analyzer's capture (``pcc.breaker``), as with an automated breaker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.clock import Clock
from harness.config.units import UnitError, to_unit
from harness.devices.prompts import DEFAULT_TIMEOUT_S, Answer, PromptService
from harness.devices.roles import Breaker, DeviceError, Identity


class OperatorBreaker(Breaker):
    """Opens and closes a breaker by asking the operator to."""

    def __init__(
        self, name: str, prompts: PromptService, label: str = "", initially_closed: bool = True
    ) -> None:
        self.name = name
        self.prompts = prompts
        self.label = label or name.replace("_", " ").replace("pcc", "PCC")
        self._closed = initially_closed

    @classmethod
    def from_options(cls, name: str, clock: Clock, options: Mapping[str, Any]) -> OperatorBreaker:
        known = {"timeout", "label", "initially_closed"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DeviceError(
                f"{name}: unknown operator option(s) {', '.join(unknown)}; "
                f"expected: {', '.join(sorted(known))}"
            )
        try:
            timeout = to_unit(options.get("timeout", f"{DEFAULT_TIMEOUT_S:g} s"), "s")
        except UnitError as exc:
            raise DeviceError(f"{name}: options.timeout: {exc}") from None
        if timeout <= 0:
            raise DeviceError(f"{name}: options.timeout must be > 0 s, got {timeout:g} s")
        return cls(
            name,
            PromptService(clock, timeout),
            label=str(options.get("label", "")),
            initially_closed=bool(options.get("initially_closed", True)),
        )

    @property
    def records(self) -> list[Answer]:
        """Every step the operator answered, in order."""
        return list(self.prompts.records)

    def identity(self) -> Identity:
        return Identity(
            manufacturer="(operated by hand)",
            model=f"{self.label} (operator steps)",
            extra={"driver": "operator", "timeout_s": f"{self.prompts.timeout_s:g}"},
        )

    def _step(self, closed: bool) -> None:
        verb = "Close" if closed else "Open"
        answer = self.prompts.confirm(self.name, f"{verb} the {self.label} now.")
        if answer is not None:  # None: a dry run did not ask, nothing changed
            self._closed = closed

    def open(self) -> None:
        self._step(False)

    def close(self) -> None:
        self._step(True)

    def is_closed(self) -> bool:
        """The state the operator last confirmed (nothing to read on a hand-worked breaker)."""
        return self._closed
