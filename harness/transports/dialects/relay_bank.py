"""A relay-stepped RLC load bank's step maps: which relay switches which load step.

An IEEE 1547.1 anti-islanding load is often a bank of fixed R, L and C steps, binary-weighted,
each branch switched by its own relay controller (the SVP drives one through ICS 8064s). Which
relay carries which step is the bench's wiring, so it is site data (the load bank's options)::

    branches:
      resistive:  {resource: "TCPIP::10.1.32.63::inst0::INSTR", steps: {1: 250 W, 2: 500 W}}
      inductive:  {resource: "...", steps: {1: 250 var, 2: 500 var}}
      capacitive: {resource: "...", steps: {1: 250 var, 2: 500 var}}

The driver reads it to choose, per branch, the relays whose steps sum closest to a target; the
virtual controllers read it to know what load a closed relay adds. Both use this module, so the
map is decoded one way only. A target is reachable when the closest sum is within half the
smallest step (the branch's resolution) of it; anything else is refused, never approximated
silently.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.transports.dialects import DialectError

BRANCHES: Mapping[str, str] = {"resistive": "W", "inductive": "var", "capacitive": "var"}
"""Each branch and the unit its steps are rated in, at nominal voltage and frequency."""

MAX_STEPS = 16
"""Steps per branch searched exhaustively (2^16 sums): more than any 8064 controller switches."""

_VALUE = re.compile(r"^\s*([0-9.eE+]+)\s*(k?)(W|var)\s*$")
_RELAYS = re.compile(r"^\(@([0-9,\s]*)\)$")


class StepMapError(DialectError):
    """A malformed step map; ``loc`` is the field's path under the load bank's options."""

    def __init__(self, loc: tuple[str | int, ...], reason: str) -> None:
        self.loc = loc
        self.reason = reason
        super().__init__(f"{'.'.join(map(str, loc))}: {reason}")


def _size(text: Any, unit: str, loc: tuple[str | int, ...]) -> float:
    match = _VALUE.match(str(text))
    if match is None or match.group(3) != unit:
        raise StepMapError(loc, f"{text!r} is not a step size in {unit} (e.g. '250 {unit}')")
    try:
        value = float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    except ValueError:
        raise StepMapError(loc, f"{text!r} is not a number of {unit}") from None
    if value <= 0:
        raise StepMapError(loc, f"a step must be larger than 0 {unit}, got {text!r}")
    return value


@dataclass(frozen=True)
class Choice:
    """The relays chosen for a target, the load they give, and what is left over."""

    target: float
    relays: tuple[int, ...]
    achieved: float

    @property
    def residual(self) -> float:
        """Achieved minus target (negative: the bank sets less than asked)."""
        return self.achieved - self.target


@dataclass(frozen=True)
class Branch:
    """One branch: its controller's resource (None on a virtual bench) and relay -> step size."""

    name: str
    unit: str
    steps: Mapping[int, float]
    resource: str | None = None

    @property
    def resolution(self) -> float:
        """The smallest step: a reachable target is set to within half of it."""
        return min(self.steps.values())

    @property
    def capacity(self) -> float:
        return sum(self.steps.values())

    def load(self, closed: set[int] | tuple[int, ...]) -> float:
        """Load of the closed relays (a relay with no step wired to it adds nothing)."""
        return sum(self.steps.get(r, 0.0) for r in closed)

    def closest(self, target: float) -> Choice:
        """The relays whose steps sum closest to ``target`` (fewest relays on a tie)."""
        relays = sorted(self.steps)
        best: tuple[int, ...] = ()
        best_error = abs(target)
        for count in range(1, len(relays) + 1):
            for combo in itertools.combinations(relays, count):
                error = abs(self.load(combo) - target)
                if error < best_error - 1e-9:
                    best, best_error = combo, error
        return Choice(target, best, self.load(best))

    def choose(self, target: float) -> Choice:
        """:meth:`closest`, refusing a target the steps cannot reach within the resolution."""
        choice = self.closest(target)
        if abs(choice.residual) > self.resolution / 2 + 1e-9:
            raise DialectError(
                f"{self.name} branch cannot set {target:g} {self.unit}: the closest its steps "
                f"reach is {choice.achieved:g} {self.unit} (steps {self.resolution:g} .. "
                f"{self.capacity:g} {self.unit} in total, resolution {self.resolution:g})"
            )
        return choice


def parse_branches(
    options: Mapping[str, Any], where: tuple[str | int, ...] = ("options",)
) -> dict[str, Branch]:
    """The three branches from a load bank's site options; a :class:`StepMapError` names the
    field (``where`` is the options' own path, e.g. instruments.load_bank.options)."""
    raw = options.get("branches")
    if not isinstance(raw, dict):
        raise StepMapError(
            (*where, "branches"),
            f"a relay-stepped load bank needs its branches ({', '.join(BRANCHES)}), "
            "each with steps {relay: size}",
        )
    unknown = sorted(map(str, set(raw) - set(BRANCHES)))
    if unknown:
        raise StepMapError(
            (*where, "branches", unknown[0]),
            f"unknown branch {unknown[0]!r}; expected: {', '.join(BRANCHES)}",
        )
    out: dict[str, Branch] = {}
    for name, unit in BRANCHES.items():
        here = (*where, "branches", name)
        body = raw.get(name)
        if not isinstance(body, dict) or not isinstance(body.get("steps"), dict):
            raise StepMapError(
                (*here, "steps"), f"missing; expected {{relay number: size in {unit}}}"
            )
        if not body["steps"] or len(body["steps"]) > MAX_STEPS:
            raise StepMapError((*here, "steps"), f"expected 1 to {MAX_STEPS} relays")
        steps: dict[int, float] = {}
        for relay, size in body["steps"].items():
            if not isinstance(relay, int) or isinstance(relay, bool) or relay < 1:
                raise StepMapError(
                    (*here, "steps"), f"relay {relay!r} is not a relay number (1, 2 ..)"
                )
            steps[relay] = _size(size, unit, (*here, "steps", relay))
        resource = body.get("resource")
        out[name] = Branch(name, unit, steps, None if resource is None else str(resource))
    return out


def relay_list(relays: tuple[int, ...] | list[int]) -> str:
    """``(1, 3, 7)`` -> ``(@1,3,7)``: SCPI channel-list notation, as the controller takes it."""
    return "(@" + ",".join(str(r) for r in relays) + ")"


def parse_relay_list(text: str) -> tuple[int, ...]:
    """``(@1,3,7)`` -> ``(1, 3, 7)``; ``(@)`` -> ``()``."""
    match = _RELAYS.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a relay list such as (@1,3,7)")
    return tuple(int(part) for part in match.group(1).split(",") if part.strip())


@dataclass(frozen=True)
class RelayBankEndpoints:
    """Where each branch's controller answers: what a virtual site hands the driver in place of
    one VISA endpoint (a bench names the resources in the branches' options)."""

    resources: Mapping[str, str]
    timeout: float = 2.0
    transport: str = "visa"


def is_relay_bank(family: str) -> bool:
    """Whether the dialect ``family`` drives its load bank as relay-switched steps."""
    from harness.transports.dialects import available, load_dialect

    if family not in available():
        return False
    role = load_dialect(family).roles.get("load_bank")
    return role is not None and role.setting("style") == "relay_bank"
