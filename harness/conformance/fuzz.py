"""Property-based fuzzing of a Modbus device's writable points, with hypothesis.

The property: whatever sequence of writes a client sends to the chosen points (values inside
and outside their ranges and symbols, in any order), the device

- never accepts a value outside a point's declared range or symbols (ILLEGAL DATA VALUE is the
  answer, and nothing changes),
- reads back what it accepted, and leaves the other points as they were,
- always holds valid values in every fuzzed point.

Hypothesis draws the sequences (boundary values one resolution step past each bound are drawn
often, so a device that is lax by a hair is found), shrinks a failing one to a minimal
sequence, and replays it last; that replay is kept as :attr:`FuzzResult.minimal`, in registers
and addresses, so a vendor can reproduce it with any Modbus tool.

Like the conformance check, the writes go through the raw client (the write guard of
:class:`MappedDevice` would refuse the invalid values before the wire). Every example starts
from, and ends by restoring, the device's original values (numbers before enumerations, so an
enable never acts on a stale setpoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import strategies as st

from harness.transports.modbus import ModbusClient, ModbusError
from harness.transports.regmap import TYPES, Point, RegisterMap, Value, decode, encode

Limits = Mapping[str, tuple[float | None, float | None]]


@dataclass(frozen=True)
class PointSpec:
    """What the fuzzer may write to one point, in raw (unscaled) integers."""

    point: Point
    exponent: int
    valid: tuple[int, int] | tuple[int, ...]  # (low, high) raw bounds, or the symbols
    type_range: tuple[int, int]
    enumerated: bool

    def is_valid(self, raw: int) -> bool:
        if self.enumerated:
            return raw in self.valid
        low, high = self.valid
        return low <= raw <= high

    def value(self, raw: int) -> float:
        return round(raw * 10.0**self.exponent, max(0, -self.exponent))


@dataclass(frozen=True)
class WriteStep:
    """One write of a sequence and how the device answered it."""

    point: str
    address: int
    registers: tuple[int, ...]
    value: float
    valid: bool
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "address": self.address,
            "function": 16,
            "registers": list(self.registers),
            "value": self.value,
            "valid": self.valid,
            "outcome": self.outcome,
        }


@dataclass
class FuzzResult:
    """Outcome of a run: the invalid values accepted (distinct), the shrunk failing sequence."""

    device: str
    unit: int
    examples: int = 0
    steps: int = 0
    invalid_accepted: dict[tuple[str, float], str] = field(default_factory=dict)
    failure: str | None = None
    minimal: list[WriteStep] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "unit": self.unit,
            "examples": self.examples,
            "steps": self.steps,
            "invalid_write_accepted": len(self.invalid_accepted),
            "invalid_accepted": [
                {"point": p, "value": v, "answer": a} for (p, v), a in self.invalid_accepted.items()
            ],
            "failure": self.failure,
            "minimal_failing_sequence": [s.to_json() for s in self.minimal],
            "skipped_points": self.skipped,
        }


class _Broken(AssertionError):
    """A property of the device failed during one example."""


class WriteFuzzer:
    """Fuzzes writes to ``points`` of the device ``unit`` behind ``client``, described by
    ``regmap``, with ranges from the map or ``limits``."""

    def __init__(
        self,
        client: ModbusClient,
        regmap: RegisterMap,
        points: Sequence[str],
        unit: int = 1,
        *,
        limits: Limits | None = None,
    ) -> None:
        self.client = client
        self.regmap = regmap
        self.unit = unit
        self.limits = dict(limits or {})
        self.result = FuzzResult(client.label or client.endpoint, unit)
        self.specs = [s for s in (self._spec(n) for n in points) if s is not None]

    # -- specs ------------------------------------------------------------------------------

    def _read(self, point: Point) -> list[int]:
        return self.client.read_holding(point.address, point.size, self.unit)

    def _spec(self, name: str) -> PointSpec | None:
        if name not in self.regmap:
            self.result.skipped.append(f"{name}: not in the device's map")
            return None
        point = self.regmap.point(name)
        kind = TYPES[point.type]
        if not point.writable or point.table != "holding" or point.size > 2 or not kind.fmt:
            self.result.skipped.append(f"{name}: not a writable number")
            return None
        exponent = 0
        if isinstance(point.sf, int):
            exponent = point.sf
        elif isinstance(point.sf, str):
            sf = decode(self.regmap.point(point.sf), self._read(self.regmap.point(point.sf)))
            if not isinstance(sf, float):
                self.result.skipped.append(f"{name}: its scale factor is not implemented")
                return None
            exponent = int(sf)
        if decode(point, self._read(point), exponent) is None:
            self.result.skipped.append(f"{name}: not implemented by the device")
            return None
        type_range = _raw_range(point)
        if point.symbols:
            return PointSpec(
                point, exponent, tuple(sorted(point.symbols.values())), type_range, True
            )
        low, high = self.limits.get(name, (point.min, point.max))
        lsb = 10.0**exponent
        raw_low = type_range[0] if low is None else max(type_range[0], math.ceil(low / lsb - 1e-9))
        raw_high = (
            type_range[1] if high is None else min(type_range[1], math.floor(high / lsb + 1e-9))
        )
        return PointSpec(point, exponent, (raw_low, raw_high), type_range, False)

    # -- strategy ---------------------------------------------------------------------------

    def strategy(self, max_steps: int) -> st.SearchStrategy[list[tuple[int, int]]]:
        """Sequences of (spec index, raw value), half of the values drawn outside the valid set."""
        per_point = [st.tuples(st.just(i), _values(spec)) for i, spec in enumerate(self.specs)]
        return st.lists(st.one_of(per_point), min_size=1, max_size=max_steps)

    # -- execution --------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, list[int]]:
        """Registers of every fuzzed point, in as few requests as the map allows."""
        out: dict[str, list[int]] = {}
        for span in self.regmap.spans([s.point for s in self.specs], 125):
            regs = self.client.read_holding(span.address, span.count, self.unit)
            for p in span.points:
                out[p.name] = regs[p.address - span.address : p.end - span.address]
        return out

    def _restore(self, original: Mapping[str, list[int]]) -> None:
        present = self._snapshot()
        for spec in sorted(self.specs, key=lambda s: (s.enumerated, s.point.address)):
            name = spec.point.name
            if present[name] != original[name]:
                self.client.write_registers(spec.point.address, original[name], self.unit)

    def _step(self, spec: PointSpec, raw: int, log: list[WriteStep]) -> None:
        point = spec.point
        regs = encode(point, spec.value(raw), spec.exponent)
        valid = spec.is_valid(raw)
        before = self._snapshot()
        try:
            self.client.write_registers(point.address, regs, self.unit)
            outcome = "accepted"
        except ModbusError as exc:
            if exc.code is None:
                raise
            outcome = f"exception {exc.code}"
        after = self._snapshot()
        self.result.steps += 1
        log.append(
            WriteStep(point.name, point.address, tuple(regs), spec.value(raw), valid, outcome)
        )
        if outcome == "accepted" and not valid:
            self.result.invalid_accepted.setdefault((point.name, spec.value(raw)), outcome)
            raise _Broken(
                f"{point.name} accepted {spec.value(raw):g}, outside its valid values "
                f"({_valid_text(spec)})"
            )
        expected = dict(before)
        if outcome == "accepted":
            expected[point.name] = regs
        changed = [n for n in expected if after[n] != expected[n]]
        if changed:
            raise _Broken(
                f"after writing {point.name} = {spec.value(raw):g} ({outcome}): "
                + ", ".join(f"{n} reads {after[n]}, expected {expected[n]}" for n in changed)
            )
        for other in self.specs:
            value = decode(other.point, after[other.point.name], other.exponent)
            if not _holds(other, value):
                raise _Broken(f"{other.point.name} holds {value!r}, outside {_valid_text(other)}")

    def run(self, max_examples: int, max_steps: int, *, derandomize: bool = True) -> FuzzResult:
        """Run the property; afterwards the device holds its original values again."""
        if not self.specs:
            return self.result
        original = self._snapshot()
        logs: list[list[WriteStep]] = []

        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=derandomize,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @given(self.strategy(max_steps))
        def writes_keep_the_device_valid(sequence: list[tuple[int, int]]) -> None:
            log: list[WriteStep] = []
            logs.append(log)
            self.result.examples += 1
            try:
                for index, raw in sequence:
                    self._step(self.specs[index], raw, log)
            finally:
                self._restore(original)

        try:
            writes_keep_the_device_valid()
        except Exception as exc:  # the property failed: hypothesis re-raised the minimal example
            self.result.failure = _first_line(exc)
            self.result.minimal = logs[-1] if logs else []
        finally:
            self._restore(original)
        return self.result


def fuzz_writes(
    client: ModbusClient,
    regmap: RegisterMap,
    points: Sequence[str],
    unit: int = 1,
    *,
    limits: Limits | None = None,
    max_examples: int = 25,
    max_steps: int = 6,
    derandomize: bool = True,
) -> FuzzResult:
    """Run :class:`WriteFuzzer` once (see the module docstring)."""
    fuzzer = WriteFuzzer(client, regmap, points, unit, limits=limits)
    return fuzzer.run(max_examples, max_steps, derandomize=derandomize)


# -- helpers ----------------------------------------------------------------------------------


def _raw_range(point: Point) -> tuple[int, int]:
    """Raw integers the point's type can hold, without its not-implemented pattern."""
    kind = TYPES[point.type]
    bits = 16 * point.size
    low, high = (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind.fmt.islower() else (0, (1 << bits) - 1)
    )
    if kind.unimpl == low:
        low += 1
    elif kind.unimpl == high:
        high -= 1
    return low, high


def _values(spec: PointSpec) -> st.SearchStrategy[int]:
    t_low, t_high = spec.type_range
    if spec.enumerated:
        symbols = list(spec.valid)
        outside = [v for v in (max(symbols) + 1, min(symbols) - 1) if t_low <= v <= t_high]
        invalid = st.integers(t_low, t_high).filter(lambda v: v not in symbols)
        return st.one_of(
            st.sampled_from(symbols),
            st.sampled_from(outside) if outside else st.nothing(),
            invalid,
        )
    low, high = spec.valid
    near = [v for v in (high + 1, low - 1) if t_low <= v <= t_high]
    options = [st.integers(low, high), st.sampled_from((low, high))]
    if near:
        options.append(st.sampled_from(near))
    if high < t_high:
        options.append(st.integers(high + 1, t_high))
    if low > t_low:
        options.append(st.integers(t_low, low - 1))
    return st.one_of(options)


def _holds(spec: PointSpec, value: Value) -> bool:
    if not isinstance(value, float):
        return False
    raw = round(value / 10.0**spec.exponent)
    return spec.is_valid(raw)


def _valid_text(spec: PointSpec) -> str:
    if spec.enumerated:
        names = {v: k for k, v in spec.point.symbols.items()}
        return "one of " + ", ".join(f"{names[v]}={v}" for v in spec.valid)
    low, high = spec.valid
    return f"{spec.value(int(low)):g}..{spec.value(int(high)):g}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        text = "; ".join(_first_line(e) for e in exc.exceptions)
    return text.splitlines()[0]
