"""Property-based *stateful* testing of a site in operation, with hypothesis.

The property: whatever sequence of commands an operator or an EMS sends

- an active-power setpoint to any inverter, charging or discharging, within and at the edges of
  its rating,
- opening the PCC breaker (the site islands),
- closing it again and waiting until every inverter is back in service, at most as long as the
  contract's enter-service settings allow,
- letting time pass,

after every step every home

(a) keeps its state of charge inside the contract's SoC band, and
(b) keeps its battery current inside the charge and discharge current limits its own BMS
    advertises,

as the devices show it: SoC and limits from the BMS (CAN), the battery's DC current from the power
analyzer, commands and states through the inverter (Modbus) and the PCC breaker. A comparison is a
*violation* only when the reading is beyond its limit by more than the reading's uncertainty;
within the uncertainty it is *doubtful*, which makes the clause marginal, never failed.

Hypothesis drives a ``RuleBasedStateMachine`` (:meth:`DispatchCampaign.machine`) whose rules are
those commands and whose invariant is the property; it shrinks a failing sequence to a minimal one
and replays it last. That replay is kept as :attr:`StatefulResult.minimal` and written as a
step-by-step script a vendor can follow with any Modbus or CAN tool (:meth:`StatefulResult.script`).
Like the write fuzzer (:mod:`harness.conformance.fuzz`), it runs without a database, without a
deadline and, by default, derandomized, so the same site gives the same sequences and verdicts.

Every sequence starts from a known state (PCC closed, every unit in service past its enter-service
ramp, every setpoint 0 W and settled), so a shrunk sequence fails again when replayed. A device
that stops answering ends the run at once (:attr:`StatefulResult.error`): it is not a property
failure, and there is nothing to shrink.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from harness.clock import Clock
from harness.config.units import to_unit
from harness.devices.roles import Breaker, DeviceError, Inverter, PowerAnalyzer

T = TypeVar("T")
Key = tuple[str, str, str]
"""(node, "soc" or "current", side): one limit of one home."""

SOC = "soc"
CURRENT = "current"


class LimitReportingBms(Protocol):
    """What the property reads from a BMS: its SoC and the current limits it advertises."""

    def soc(self) -> float: ...

    def value(self, quantity: str) -> float: ...

    def resolution(self, quantity: str) -> float: ...


class InvariantBroken(AssertionError):
    """A reading after a step is beyond its limit by more than its uncertainty."""


class _Abort(BaseException):
    """A device failed: leave hypothesis at once (a BaseException, so it is not shrunk)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


# -- the comparisons -----------------------------------------------------------------------------


def classify(excess: float, uncertainty: float) -> str:
    """``violation`` beyond the limit by more than the uncertainty, ``doubtful`` within the
    uncertainty of it (either side), else ``inside``."""
    if excess > uncertainty:
        return "violation"
    if excess > -uncertainty:
        return "doubtful"
    return "inside"


@dataclass(frozen=True)
class Check:
    """One reading compared with one limit; ``excess`` > 0 is beyond it."""

    node: str
    kind: str
    """``soc`` or ``current``."""
    side: str
    """``below`` / ``above`` (the SoC band) or ``charge`` / ``discharge`` (the current limits)."""
    measured: float
    limit: float
    excess: float
    uncertainty: float

    @property
    def key(self) -> Key:
        return (self.node, self.kind, self.side)

    @property
    def outcome(self) -> str:
        return classify(self.excess, self.uncertainty)

    def describe(self) -> str:
        u = f"(uncertainty {self.uncertainty:.3g})"
        if self.kind == SOC:
            return (
                f"{self.node}: SoC {self.measured:g} % {self.side} the SoC band's "
                f"{'low' if self.side == 'below' else 'high'} edge {self.limit:g} % by "
                f"{self.excess:.3g} % {u}"
            )
        return (
            f"{self.node}: {self.side} current {self.measured:.4g} A beyond the {self.side} "
            f"current limit the BMS advertises, {self.limit:.4g} A, by {self.excess:.3g} A {u}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "kind": self.kind,
            "side": self.side,
            "measured": self.measured,
            "limit": self.limit,
            "excess": self.excess,
            "uncertainty": self.uncertainty,
            "outcome": self.outcome,
        }


def soc_checks(node: str, soc: float, band: tuple[float, float], uncertainty: float) -> list[Check]:
    """The SoC against both edges of the band (%)."""
    low, high = band
    return [
        Check(node, SOC, "below", soc, low, low - soc, uncertainty),
        Check(node, SOC, "above", soc, high, soc - high, uncertainty),
    ]


def current_checks(
    node: str, current: float, charge_limit: float, discharge_limit: float, uncertainty: float
) -> list[Check]:
    """The battery current (A, positive = charging) against the limit of the way it flows."""
    if current > 0:
        side, magnitude, limit = "charge", current, charge_limit
    elif current < 0:
        side, magnitude, limit = "discharge", -current, discharge_limit
    else:
        return []
    return [Check(node, CURRENT, side, magnitude, limit, magnitude - limit, uncertainty)]


@dataclass
class Tally:
    """Every comparison of a run: the distinct limits seen violated or doubtful, and the closest
    approach to each limit (largest excess beyond its uncertainty)."""

    violations: dict[Key, Check] = field(default_factory=dict)
    doubtful: dict[Key, Check] = field(default_factory=dict)
    closest: dict[Key, Check] = field(default_factory=dict)
    checks: int = 0

    def add(self, checks: Sequence[Check]) -> list[Check]:
        """Count ``checks``; return the violations among them."""
        broken = []
        for check in checks:
            self.checks += 1
            best = self.closest.get(check.key)
            if best is None or check.excess - check.uncertainty > best.excess - best.uncertainty:
                self.closest[check.key] = check
            outcome = check.outcome
            if outcome == "violation":
                self.violations.setdefault(check.key, check)
                broken.append(check)
            elif outcome == "doubtful":
                self.doubtful.setdefault(check.key, check)
        return broken

    def count(self, node: str, kind: str) -> tuple[int, int]:
        """(value, uncertainty) of one home's count: the limits of ``kind`` seen beyond or within
        the uncertainty of, and how many of those only within it. A verdict then fails exactly
        when a limit was seen violated, and is marginal when one was only doubtful."""
        beyond = {k for k in self.violations if k[:2] == (node, kind)}
        near = {k for k in self.doubtful if k[:2] == (node, kind)} - beyond
        return len(beyond) + len(near), len(near)


# -- what is driven ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One home as the property reaches it."""

    name: str
    inverter: Inverter
    bms: LimitReportingBms
    rated_w: float
    channel: str
    """The analyzer's DC current channel of the battery (A, positive = charging)."""
    accuracy: float
    """The analyzer's stated accuracy on ``channel``, fraction of reading."""
    soc_resolution: float
    limit_resolution: float


def units_of(site: Any) -> list[Unit]:
    """Every home of a bench; raises DeviceError when a BMS driver reports no current limits."""
    out = []
    for name, node in site.nodes.items():
        bms = node.bms
        if not all(callable(getattr(bms, m, None)) for m in ("soc", "value", "resolution")):
            raise DeviceError(f"{name}: the {type(bms).__name__} driver reports no current limits")
        channel = f"{name}.battery.current"
        out.append(
            Unit(
                name=name,
                inverter=node.inverter,
                bms=bms,
                rated_w=node.inverter.rated_power(),
                channel=channel,
                accuracy=site.analyzer.accuracy(channel),
                soc_resolution=bms.resolution("soc"),
                limit_resolution=max(
                    bms.resolution("charge_current_limit"),
                    bms.resolution("discharge_current_limit"),
                ),
            )
        )
    return out


@dataclass(frozen=True)
class Plan:
    """The method's parameters for one run, in SI units."""

    max_examples: int
    max_steps: int
    derandomize: bool
    seed: int | None
    setpoints: tuple[float, ...]
    wait: tuple[float, float]
    check_every: float
    settle: float
    poll: float
    enter_service_timeout: float | None
    """Longest wait for every unit to be back in service; None: islanding is not drawn."""
    enter_service_ramp: float

    @classmethod
    def from_method(
        cls,
        method: Mapping[str, Any],
        campaign: str | None,
        enter_service: tuple[float, float] | None,
    ) -> Plan:
        """``method`` as in quantities.d/stateful.yaml; ``enter_service`` is the contract's
        (delay, ramp) in s, None when it has none (then the site is never islanded)."""

        def pick(key: str) -> Any:
            value = method[key]
            if isinstance(value, Mapping):
                return value.get(campaign or "default", value["default"])
            return value

        def seconds(key: str) -> float:
            return to_unit(pick(key), "s")

        factor = float(pick("enter_service_factor"))
        return cls(
            max_examples=int(pick("max_examples")),
            max_steps=int(pick("max_steps")),
            derandomize=bool(pick("derandomize")),
            seed=None if pick("seed") is None else int(pick("seed")),
            setpoints=tuple(float(f) for f in pick("setpoints")),
            wait=(seconds("wait_min"), seconds("wait_max")),
            check_every=seconds("check_every"),
            settle=seconds("settle"),
            poll=seconds("poll"),
            enter_service_timeout=enter_service[0] * factor if enter_service else None,
            enter_service_ramp=enter_service[1] if enter_service else 0.0,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "max_examples": self.max_examples,
            "max_steps": self.max_steps,
            "derandomize": self.derandomize,
            "seed": self.seed,
            "setpoints": list(self.setpoints),
            "wait_s": list(self.wait),
            "check_every_s": self.check_every,
            "settle_s": self.settle,
            "enter_service_timeout_s": self.enter_service_timeout,
        }


@dataclass
class Step:
    """One command of a sequence, what it did on the devices and what was read after it."""

    action: str
    args: dict[str, Any]
    at: float
    """Site time since the sequence began, s."""
    does: str = ""
    readings: dict[str, dict[str, float]] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)

    def call(self) -> str:
        """The step as a call of the state machine, as hypothesis prints one."""
        if self.action == "start":
            return "state = DispatchMachine()"
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"state.{self.action}({args})"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "args": self.args,
            "at_s": self.at,
            "does": self.does,
            "readings": self.readings,
            "broken": self.broken,
        }


@dataclass
class StatefulResult:
    """Outcome of a run; ``minimal`` is the shrunk failing sequence (empty: none failed)."""

    plan: Plan
    band: tuple[float, float] | None
    examples: int = 0
    steps: int = 0
    tally: Tally = field(default_factory=Tally)
    failure: str | None = None
    error: str | None = None
    minimal: list[Step] = field(default_factory=list)
    seed: int | None = None
    sequences: list[list[Step]] = field(default_factory=list)
    """Every sequence run, shrinking included, in order."""
    reproduced: bool = True
    """False: hypothesis replayed the failing sequence and it did not fail the same way."""

    def count(self, node: str, kind: str) -> tuple[int, int]:
        return self.tally.count(node, kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "property": (
                "after every step, every home's SoC (BMS, CAN) inside the contract's SoC band and "
                "its battery current (power analyzer) inside the charge and discharge current "
                "limits its BMS advertises (CAN), beyond the measuring uncertainty"
            ),
            "soc_band_pct": list(self.band) if self.band else None,
            "settings": self.plan.to_json()
            | {"seed_used": self.seed, "hypothesis": version("hypothesis")},
            "examples": self.examples,
            "steps": self.steps,
            "checks": self.tally.checks,
            "violations": [c.to_json() for c in self.tally.violations.values()],
            "within_uncertainty": [c.to_json() for c in self.tally.doubtful.values()],
            "closest_approach": [c.to_json() for c in self.tally.closest.values()],
            "failure": self.failure,
            "reproduced": self.reproduced if self.failure else None,
            "error": self.error,
            "minimal_failing_sequence": [s.to_json() for s in self.minimal],
            "sequences": [
                [f"t={s.at:g} s {s.call()}" + (" BROKEN" if s.broken else "") for s in seq]
                for seq in self.sequences
            ],
        }

    def script(self, title: str) -> str:
        """The minimal failing sequence as a readable script: each call of the state machine
        (as hypothesis prints it), what it did on the devices, and what was read after it."""
        how = "derandomized" if self.plan.derandomize else f"seed {self.seed}"
        lines = [
            f"# {title}: the minimal failing sequence, shrunk by hypothesis "
            f"{version('hypothesis')} ({how}).",
            "# After every step the harness read each home's SoC and current limits from its BMS",
            "# (CAN) and its battery current from the power analyzer's DC channel.",
            f"# Failure: {self.failure}",
            "# Times are site seconds since the sequence began.",
            "",
        ]
        if not self.reproduced:
            lines[-1:-1] = [
                "# NOT REPRODUCED: replayed, this sequence did not fail the same way. The failure",
                "# depends on a state the site had reached before it (e.g. a SoC moved by earlier",
                "# sequences), which the start of a sequence does not restore: this is the",
                "# sequence in which it was seen; its first readings show the state it began in.",
            ]
        for step in self.minimal:
            at = f"#   at t={step.at:g} s: "
            did = step.does.split("; ")
            lines += [step.call(), at + did[0]]
            lines += ["#" + " " * (len(at) - 1) + part for part in did[1:]]
            for node, values in step.readings.items():
                lines.append(f"#   read {node}: " + _readings_text(values))
            lines += [f"#   BROKEN: {text}" for text in step.broken]
            lines.append("")
        return "\n".join(lines)

    def write(self, folder: Path, stem: str, title: str) -> list[Path]:
        """``<stem>.json`` and, when a sequence failed, ``<stem>-minimal.txt`` (the script)."""
        import json

        paths = [folder / f"{stem}.json"]
        paths[0].write_text(json.dumps(self.to_json(), indent=2))
        if self.minimal:
            paths.append(folder / f"{stem}-minimal.txt")
            paths[1].write_text(self.script(title))
        return paths


def _readings_text(values: Mapping[str, float]) -> str:
    return (
        f"SoC {values['soc_pct']:g} %, battery current {values['current_a']:.4g} A, "
        f"limits charge {values['charge_limit_a']:g} A / "
        f"discharge {values['discharge_limit_a']:g} A"
    )


# -- the campaign ---------------------------------------------------------------------------------


class DispatchCampaign:
    """Runs the property on ``units`` through their devices; ``pcc`` None: never islands."""

    def __init__(
        self,
        clock: Clock,
        units: Sequence[Unit],
        analyzer: PowerAnalyzer,
        pcc: Breaker | None,
        band: tuple[float, float] | None,
        plan: Plan,
        *,
        current_limits: bool = True,
    ) -> None:
        """``band`` None: SoC is read, not judged; ``current_limits`` False: nor is current."""
        self.clock = clock
        self.current_limits = current_limits
        self.units = list(units)
        self.analyzer = analyzer
        self.pcc = pcc if plan.enter_service_timeout is not None else None
        self.band = band
        self.plan = plan
        self.result = StatefulResult(plan, band)
        self.islanded = False
        self._by_name = {u.name: u for u in self.units}
        self._logs = self.result.sequences
        self._t0 = 0.0
        self._ramp_until = -math.inf

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> tuple[dict[str, dict[str, float]], list[Check]]:
        """Every home's readings and their comparisons with the limits."""
        readings: dict[str, dict[str, float]] = {}
        checks: list[Check] = []
        for unit in self.units:
            soc = unit.bms.soc()
            charge = unit.bms.value("charge_current_limit")
            discharge = unit.bms.value("discharge_current_limit")
            current = self.analyzer.measure(unit.channel)
            readings[unit.name] = {
                "soc_pct": soc,
                "current_a": current,
                "charge_limit_a": charge,
                "discharge_limit_a": discharge,
            }
            if self.band is not None:
                checks += soc_checks(unit.name, soc, self.band, unit.soc_resolution / 2)
            if self.current_limits:
                uncertainty = unit.accuracy * abs(current) + unit.limit_resolution / 2
                checks += current_checks(unit.name, current, charge, discharge, uncertainty)
        return readings, checks

    def check(self, note: str = "") -> None:
        """The invariant: read, count, and raise InvariantBroken on a violation."""
        readings, checks = self._guard(self.read)
        broken = self.result.tally.add(checks)
        step = self._logs[-1][-1]
        step.readings = readings
        if broken:
            step.broken += [c.describe() + note for c in broken]
            raise InvariantBroken("; ".join(step.broken))

    # -- commands -----------------------------------------------------------------------------

    def operate(self, setpoints: Mapping[str, float]) -> str:
        """Every inverter to its fraction of rated power at once, then ``settle``."""
        done = [self._set(node, fraction) for node, fraction in setpoints.items()]
        self.clock.sleep(self.plan.settle)
        return "; ".join(done) + f"; then {self.plan.settle:g} s"

    def dispatch(self, node: str, fraction: float) -> str:
        """One inverter to a fraction of its rated power, then ``settle``."""
        done = self._set(node, fraction)
        self.clock.sleep(self.plan.settle)
        return f"{done}; then {self.plan.settle:g} s"

    def _set(self, node: str, fraction: float) -> str:
        unit = self._by_name[node]
        watts = round(fraction * unit.rated_w)
        unit.inverter.set_power(watts)
        way = "discharge" if watts > 0 else "charge" if watts < 0 else "idle"
        return (
            f"{node}.inverter active-power setpoint {watts:+d} W "
            f"({way}, {fraction:+.3g} of its rated {unit.rated_w:g} W)"
        )

    def island(self) -> str:
        assert self.pcc is not None
        self.pcc.open()
        self.islanded = True
        return "PCC breaker: open (the site islands)"

    def reconnect(self) -> str:
        assert self.pcc is not None
        self.pcc.close()
        self.islanded = False
        return "PCC breaker: close; " + self._await_service()

    def wait(self, seconds: float) -> str:
        """Let ``seconds`` pass, checking the invariant every ``check_every`` meanwhile."""
        self._logs[-1][-1].does = f"wait {seconds:g} s"  # said before a check inside may break
        start = self.clock.now()
        end = start + seconds
        while (left := end - self.clock.now()) > 1e-9:
            self.clock.sleep(min(self.plan.check_every, left))
            if end - self.clock.now() > 1e-9:
                self.check(f" (after {self.clock.now() - start:g} s of the wait)")
        return f"wait {seconds:g} s"

    def _await_service(self) -> str:
        """Wait until every unit reports ON, at most the enter-service timeout."""
        timeout = self.plan.enter_service_timeout or 0.0
        start = self.clock.now()
        self.clock.wait_until(self._in_service, timeout=timeout, poll=self.plan.poll)
        took = self.clock.now() - start
        self._ramp_until = self.clock.now() + self.plan.enter_service_ramp
        out = [u.name for u in self.units if u.inverter.state() != "ON"]
        if out:
            return f"not back in service after {took:g} s (at most {timeout:g} s): {', '.join(out)}"
        return f"every inverter back in service (ON) after {took:g} s (at most {timeout:g} s)"

    def _in_service(self) -> bool:
        return all(u.inverter.state() == "ON" for u in self.units)

    # -- sequences ----------------------------------------------------------------------------

    def begin(self) -> None:
        """A new sequence, from the known state (see the module docstring)."""
        self.result.examples += 1
        step = Step("start", {}, 0.0)
        self._logs.append([step])
        step.does = self._guard(self._known_state)
        self._t0 = self.clock.now()
        self.check()  # hypothesis checks invariants only once the initialize rule has run

    def _known_state(self) -> str:
        done = []
        if self.pcc is not None and not self.pcc.is_closed():
            self.pcc.close()
            done.append("PCC breaker: close; " + self._await_service())
        elif self.plan.enter_service_timeout is not None and not self._in_service():
            done.append(self._await_service())
        self.islanded = False
        for unit in self.units:
            unit.inverter.set_power(0.0)
        rest = max(self.plan.settle, self._ramp_until - self.clock.now())
        self.clock.sleep(rest)
        done.append(f"every setpoint 0 W, PCC closed, then {rest:g} s at rest")
        return "; ".join(done)

    def step(self, action: str, **args: Any) -> None:
        """Run one command of the sequence and log it."""
        self.result.steps += 1
        step = Step(action, args, self.clock.now() - self._t0)
        self._logs[-1].append(step)
        command: Callable[..., str] = getattr(self, action)
        step.does = self._guard(lambda: command(**args))

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except InvariantBroken:
            raise
        except Exception as exc:
            raise _Abort(exc) from exc

    # -- hypothesis ---------------------------------------------------------------------------

    def machine(self) -> type[RuleBasedStateMachine]:
        """The state machine hypothesis drives: the commands as rules, the property as invariant."""
        campaign = self
        plan = self.plan
        nodes = st.sampled_from([u.name for u in self.units])
        # Rounded (to 0.1 % of rating, 0.1 s) so that the script reads like a procedure.
        fractions = st.one_of(
            st.sampled_from(plan.setpoints), st.floats(-1.0, 1.0).map(lambda f: round(f, 3) + 0.0)
        )
        waits = st.one_of(
            st.sampled_from(plan.wait),
            st.floats(*plan.wait).map(lambda s: min(max(round(s, 1), plan.wait[0]), plan.wait[1])),
        )
        setpoints = st.fixed_dictionaries({u.name: fractions for u in self.units})
        can_island = self.pcc is not None

        class DispatchMachine(RuleBasedStateMachine):
            def __init__(self) -> None:
                super().__init__()
                campaign.begin()

            @initialize(setpoints=setpoints)
            def operate(self, setpoints: dict[str, float]) -> None:
                campaign.step("operate", setpoints=setpoints)

            @rule(node=nodes, fraction=fractions)
            def dispatch(self, node: str, fraction: float) -> None:
                campaign.step("dispatch", node=node, fraction=fraction)

            @precondition(lambda self: can_island and not campaign.islanded)
            @rule()
            def island(self) -> None:
                campaign.step("island")

            @precondition(lambda self: campaign.islanded)
            @rule()
            def reconnect(self) -> None:
                campaign.step("reconnect")

            @rule(seconds=waits)
            def wait(self, seconds: float) -> None:
                campaign.step("wait", seconds=seconds)

            @invariant()
            def soc_in_band_and_current_within_bms_limits(self) -> None:
                campaign.check()

        return DispatchMachine

    def run(self) -> StatefulResult:
        """Run the property; device failures end it as :attr:`StatefulResult.error`."""
        machine = self.machine()
        if not self.plan.derandomize:
            self.result.seed = (
                self.plan.seed if self.plan.seed is not None else secrets.randbits(32)
            )
            machine = hypothesis_seed(self.result.seed)(machine)
        config = settings(
            max_examples=self.plan.max_examples,
            stateful_step_count=self.plan.max_steps,
            deadline=None,
            database=None,
            derandomize=self.plan.derandomize,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            print_blob=False,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
        )
        try:
            run_state_machine_as_test(machine, settings=config)
        except _Abort as abort:
            return self._device_failed(abort)
        except Exception as exc:  # the property failed: hypothesis replayed the minimal sequence
            self.result.failure = _first_line(exc)
            self.result.reproduced = not isinstance(exc, Flaky)
            self.result.minimal = minimal_sequence(self._logs)
        try:  # leave the site as a sequence starts: in service, past the ramps, at rest
            self._guard(self._known_state)
        except _Abort as abort:
            return self._device_failed(abort)
        return self.result

    def _device_failed(self, abort: _Abort) -> StatefulResult:
        """A device error is the run's error; anything else (a bug, a safety trip) propagates."""
        if not isinstance(abort.cause, (DeviceError, OSError, TimeoutError)):
            raise abort.cause from None
        self.result.error = _first_line(abort.cause)
        return self.result


def minimal_sequence(logs: Sequence[list[Step]]) -> list[Step]:
    """The last sequence that broke the property during its steps (hypothesis replays the
    shrunk one last); failing that, the last that started broken (the state it inherited)."""
    broke = [log for log in logs if any(s.broken for s in log)]
    during = [log for log in broke if not log[0].broken]
    return (during or broke or [[]])[-1]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        text = "; ".join(_first_line(e) for e in exc.exceptions)
    return text.splitlines()[0]
