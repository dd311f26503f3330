"""A relay-stepped RLC load bank: one relay controller per branch, fixed load steps per relay.

The :class:`LoadBank` role asks for active power, quality factor and the L and C detuning in %
of the balanced reactive power; a stepped bank can only close relays. So every change becomes
three targets (P W, Q_L var, Q_C var), each branch closes the relays whose steps sum closest to
its target (the SVP's closest-sum choice), and what the bank really set is read back from the
controllers and reported (:meth:`RelayLoadBank.setting`), residual included. A target a branch
cannot reach within half its smallest step is refused before any relay moves, so a test point
is never run on a load other than the one asked for without saying so.

The commands are the dialect's (harness/transports/dialects/ics-8064.yaml); the step maps and
each controller's resource are the site's (options.branches, read by relay_bank.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.devices.loadbank import LoadBank
from harness.devices.roles import DeviceError, Identity
from harness.devices.scpi_driver import DialectDriver
from harness.transports.dialects import Dialect, DialectError
from harness.transports.dialects.relay_bank import (
    Branch,
    Choice,
    RelayBankEndpoints,
    parse_branches,
    parse_relay_list,
    relay_list,
)


class RelayController(DialectDriver):
    """One branch's relay controller: open all, close a relay list, read the closed relays."""

    role = "load_bank"

    def open_all(self) -> None:
        self.write("open_all")

    def close(self, relays: tuple[int, ...]) -> None:
        self.write("close", relays=relay_list(relays))

    def closed(self) -> tuple[int, ...]:
        reply = self.ask("state")
        try:
            return parse_relay_list(reply)
        except ValueError as exc:
            raise DeviceError(f"{self.name}: {exc}") from None

    def set_relays(self, relays: tuple[int, ...]) -> None:
        """Exactly ``relays`` closed: open all, then close the chosen ones (whatever the
        controller does with relays a close command does not list)."""
        self.open_all()
        if relays:
            self.close(relays)


@dataclass(frozen=True)
class BranchSetting:
    """What one branch was asked for and what its closed relays give."""

    target: float
    achieved: float
    relays: tuple[int, ...]
    unit: str

    @property
    def residual(self) -> float:
        return self.achieved - self.target


class RelayLoadBank(LoadBank):
    """The three branches behind the LoadBank role."""

    def __init__(
        self, name: str, controllers: Mapping[str, RelayController], branches: Mapping[str, Branch]
    ) -> None:
        self.name = name
        self.controllers = dict(controllers)
        self.branches = dict(branches)
        self._power = 0.0
        self._q = 1.0
        self._inductive = 100.0
        self._capacitive = 100.0

    @classmethod
    def open(
        cls, name: str, endpoint: Any, options: Mapping[str, Any], dialect: Dialect | str
    ) -> RelayLoadBank:
        """Connect to every branch's controller (all relays opened); closed again on failure.

        ``endpoint`` is a virtual site's :class:`RelayBankEndpoints`, or the site's VISA endpoint,
        whose timeout applies and whose branches' resources come from ``options.branches``.
        """
        try:
            branches = parse_branches(options, ("instruments", name, "options"))
        except DialectError as exc:
            raise DeviceError(str(exc)) from None
        if isinstance(endpoint, RelayBankEndpoints):
            resources, timeout = dict(endpoint.resources), endpoint.timeout
        else:
            resources = {b: br.resource for b, br in branches.items() if br.resource is not None}
            timeout = float(getattr(endpoint, "timeout", 2.0))
        missing = [b for b in branches if b not in resources]
        if missing:
            raise DeviceError(
                f"instruments.{name}.options.branches.{missing[0]}.resource: missing "
                "(the VISA resource of that branch's relay controller)"
            )
        controllers: dict[str, RelayController] = {}
        try:
            for branch in branches:
                controllers[branch] = RelayController.open(
                    f"{name}.{branch}", resources[branch], timeout_s=timeout, dialect=dialect
                )
            bank = cls(name, controllers, branches)
            for controller in controllers.values():
                controller.open_all()
        except BaseException:
            for controller in controllers.values():
                controller.disconnect()
            raise
        return bank

    # -- what the bank is asked for ----------------------------------------------------------

    def _targets(
        self, power: float, q: float, inductive: float, capacitive: float
    ) -> dict[str, float]:
        balanced = q * power
        return {
            "resistive": power,
            "inductive": balanced * inductive / 100.0,
            "capacitive": balanced * capacitive / 100.0,
        }

    def _apply(self, power: float, q: float, inductive: float, capacitive: float) -> None:
        """Choose every branch first (a refusal leaves the bank as it was), then switch."""
        if power < 0 or q < 0:
            raise DeviceError(f"{self.name}: needs P >= 0 and Q >= 0, got {power:g} W, Q {q:g}")
        choices: dict[str, Choice] = {}
        for branch, target in self._targets(power, q, inductive, capacitive).items():
            try:
                choices[branch] = self.branches[branch].choose(target)
            except DialectError as exc:
                raise DeviceError(f"{self.name}: {exc}") from None
        for branch, choice in choices.items():
            self.controllers[branch].set_relays(choice.relays)
        self._power, self._q, self._inductive, self._capacitive = power, q, inductive, capacitive

    def set_power(self, watts: float) -> None:
        self._apply(float(watts), self._q, self._inductive, self._capacitive)

    def set_quality_factor(self, q: float) -> None:
        self._apply(self._power, float(q), self._inductive, self._capacitive)

    def set_reactive(self, inductive_pct: float, capacitive_pct: float) -> None:
        self._apply(self._power, self._q, float(inductive_pct), float(capacitive_pct))

    def balance(self, power: float, quality_factor: float, capacitive_pct: float = 100.0) -> None:
        """Every knob at once: one relay change per branch, not three."""
        self._apply(float(power), float(quality_factor), 100.0, float(capacitive_pct))

    # -- what the bank really set -------------------------------------------------------------

    def setting(self) -> dict[str, BranchSetting]:
        """Per branch: the target, what the closed relays (read back) give, and the relays."""
        targets = self._targets(self._power, self._q, self._inductive, self._capacitive)
        out: dict[str, BranchSetting] = {}
        for branch, controller in self.controllers.items():
            relays = controller.closed()
            spec = self.branches[branch]
            out[branch] = BranchSetting(targets[branch], spec.load(relays), relays, spec.unit)
        return out

    def power(self) -> float:
        """Resistive power the closed relays give at nominal voltage, W."""
        return self.setting()["resistive"].achieved

    def quality_factor(self) -> float:
        """The quality factor the bank was set for (the achieved one follows from reactive())."""
        return self._q

    def reactive(self) -> tuple[float, float]:
        """Achieved Q_L and Q_C in % of the balanced value (quality factor x target power)."""
        balanced = self._q * self._power
        if balanced == 0:
            return self._inductive, self._capacitive
        now = self.setting()
        return (
            now["inductive"].achieved / balanced * 100.0,
            now["capacitive"].achieved / balanced * 100.0,
        )

    # -- Device -------------------------------------------------------------------------------

    def identity(self) -> Identity:
        first = self.controllers["resistive"].identity()
        return Identity(
            first.manufacturer,
            first.model,
            first.serial,
            first.firmware,
            extra={"dialect": self.controllers["resistive"].dialect.family, "branches": "R, L, C"},
        )

    def disconnect(self) -> None:
        for controller in self.controllers.values():
            controller.disconnect()
