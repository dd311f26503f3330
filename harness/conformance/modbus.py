"""Modbus conformance of any device: a SunSpec device found by discovery, or any device that a
register map (``fixtures/maps/*.yaml``) describes.

Each finding is a :class:`Violation` (where: point and address; what was expected; what
happened). The checks, in the order they run:

1. SunSpec discovery chain (:func:`check_sunspec` only): the "SunS" marker at one of the usual
   bases, model 1 first, every model id defined by SunSpec (pysunspec2's definitions) or in the
   vendor range, every length L what the definition implies, the end marker 0xFFFF with L = 0.
2. Every declared point reads on its own (one request per point), and every run of adjacent
   points reads whole in requests of up to 125 registers.
3. Values valid for their type: a sunssf within -10..10 or "not implemented"; a point whose
   sunssf is not implemented (or invalid) is itself not implemented; enumerations hold one of
   their symbols, bitfields only defined bits; strings are UTF-8; values inside a declared range;
   SunSpec mandatory points implemented. The not-implemented pattern of an optional point is fine.
4. Read-only points refuse writes with ILLEGAL DATA ADDRESS. The probe writes back the registers
   just read, so a device that wrongly accepts it still keeps its state.
5. Writable points round-trip: the present value written back is accepted and reads back; a
   numeric point whose range is known also takes a value one resolution step away (inside the
   range), reads it back, and is restored. Enumerations and coils are written only with their
   present value: a different symbol is an operation (connect, start, open), not a value.
6. Out-of-range values (one step past each declared bound; the first number that is not a
   symbol) are answered with ILLEGAL DATA VALUE, and no writable point changes.
7. Illegal addresses are answered with ILLEGAL DATA ADDRESS: a read that runs past register
   65535 on any device; for a map that declares the whole device (``unmapped_illegal``, YAML
   maps) also reads past its end, of a hole inside it, and of a table it does not have (where
   ILLEGAL FUNCTION is right too). A SunSpec chain is not the whole device (vendor registers may
   follow it), so only the first probe applies there. Only reads: a write to an address the map
   does not declare could reach an undocumented register, so none is sent.
8. Request sizes: reads of 125 registers accepted, 126 refused with ILLEGAL DATA VALUE; writes
   of 123 accepted, 124 refused likewise. Quantity is checked before address (Modbus
   Application Protocol 1.1b3, 6.3 / 6.12), so a 125-read of a range the map does not fully
   cover may answer ILLEGAL DATA ADDRESS: the quantity was accepted. The size writes go out only
   over registers just read, with their present values.

Raw access. The probes use :class:`ModbusClient` directly (``read_holding``, ``write_registers``,
``write_coil``), never :meth:`MappedDevice.write`: its write guard refuses out-of-range values
and read-only points before they reach the wire, and sending them is the point of this check.

Safety. Values change only at points the map declares writable, by one resolution step inside
the known range, and every value changed is written back (a refused out-of-range write that
changed state anyway is undone too). :meth:`ModbusConformance.run` restores on any error.

SunSpec model access is generic: a model's "RW" point may be fixed on a given product. So
:func:`check_sunspec` tolerates a writable point whose present value is refused with ILLEGAL DATA
ADDRESS (the device says "not adjustable here"; listed as a note), except the points the caller
requires (the controls its driver uses). A YAML map is the device's own declaration: every point
it declares writable must accept writes (``strict_access``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import yaml

from harness.transports.modbus import (
    EXCEPTION_TEXT,
    MAX_READ_REGISTERS,
    MAX_WRITE_REGISTERS,
    MappedDevice,
    ModbusClient,
    ModbusError,
)
from harness.transports.regmap import (
    SUNSSF_RANGE,
    TYPES,
    Point,
    RegisterMap,
    Value,
    decode,
    encode,
)
from harness.transports.sunspec import (
    DEFAULT_BASES,
    END_MODEL_ID,
    SunSpecError,
    definition_length,
    discover,
    find_base,
)

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
VENDOR_MODELS = range(64000, 65535)  # SunSpec: model ids 64000..65534 are vendor-defined
STRUCTURAL = frozenset({"SunS", "end.ID", "end.L"})  # checked by the chain walk
MAX_MODELS = 128

Limits = Mapping[str, tuple[float | None, float | None]]


@dataclass(frozen=True)
class Violation:
    """One way a device departs from the protocol or from its own map."""

    check: str
    point: str | None
    address: int | None
    expected: str
    observed: str

    @property
    def where(self) -> str:
        if self.point and self.address is not None:
            return f"{self.point} @{self.address}"
        return self.point or (f"@{self.address}" if self.address is not None else "device")

    def __str__(self) -> str:
        return f"[{self.check}] {self.where}: expected {self.expected}; got {self.observed}"

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "point": self.point,
            "address": self.address,
            "expected": self.expected,
            "observed": self.observed,
        }


@dataclass
class ConformanceReport:
    """What a check found: violations, notes (what was tolerated or skipped), probe counts."""

    device: str
    map_name: str
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    probes: dict[str, int] = field(default_factory=dict)
    models: list[dict[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "map": self.map_name,
            "violation_count": len(self.violations),
            "violations": [v.to_json() for v in self.violations],
            "notes": list(self.notes),
            "probes": dict(self.probes),
            "models": list(self.models),
        }


@dataclass(frozen=True)
class ConformanceOptions:
    """How strictly the map's declarations are held (see the module docstring).

    ``limits`` adds or overrides declared ranges (min, max) by point name; ``required_writable``
    names writable points that must accept writes even when ``strict_access`` is off;
    ``check_mandatory`` requires mandatory points (SunSpec "M") to be implemented;
    ``unmapped_illegal`` says the map declares every register of the device, so addresses
    outside it must be refused.
    """

    strict_access: bool = True
    required_writable: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=dict)
    check_mandatory: bool = False
    unmapped_illegal: bool = True


class ModbusConformance:
    """Checks one device (``unit`` behind ``client``) against ``regmap``; :meth:`run` does it."""

    def __init__(
        self,
        client: ModbusClient,
        regmap: RegisterMap,
        unit: int = 1,
        *,
        name: str | None = None,
        options: ConformanceOptions | None = None,
    ) -> None:
        self.client = client
        self.regmap = regmap
        self.unit = unit
        self.options = options or ConformanceOptions()
        self.report = ConformanceReport(name or client.label or client.endpoint, regmap.name)
        self._raw: dict[str, list[int]] = {}
        self._fixed: set[str] = set()  # writable in the map, not adjustable on this unit

    # -- entry ------------------------------------------------------------------------------

    def run(self) -> list[Violation]:
        """Run every check; the device is left as it was found. Returns the violations."""
        self._read_points()
        self._read_runs()
        self._check_values()
        self._probe_read_only()
        writable = self._writable_implemented()
        original = {p.name: list(self._raw[p.name]) for p in writable}
        try:
            self._probe_writable(writable)
            self._probe_out_of_range([p for p in writable if p.name not in self._fixed])
        finally:
            self._restore(original)
        self._probe_addresses()
        self._probe_sizes()
        return self.report.violations

    # -- bookkeeping ------------------------------------------------------------------------

    def _violation(
        self, check: str, point: Point | str | None, expected: str, observed: str
    ) -> None:
        if isinstance(point, Point):
            violation = Violation(check, point.name, point.address, expected, observed)
        else:
            violation = Violation(check, point, None, expected, observed)
        self.report.violations.append(violation)

    def _at(self, check: str, address: int, expected: str, observed: str) -> None:
        self.report.violations.append(Violation(check, None, address, expected, observed))

    def _count(self, probe: str) -> None:
        self.report.probes[probe] = self.report.probes.get(probe, 0) + 1

    def _limits(self, point: Point) -> tuple[float | None, float | None]:
        return self.options.limits.get(point.name, (point.min, point.max))

    def _sf(self, point: Point) -> int | None:
        """The exponent of ``point`` from the registers read (None when unknown/invalid)."""
        if point.sf is None:
            return 0
        if isinstance(point.sf, int):
            return point.sf
        raw = self._raw.get(point.sf)
        if raw is None:
            return None
        value = decode(self.regmap.point(point.sf), raw)
        if not isinstance(value, float) or not SUNSSF_RANGE[0] <= value <= SUNSSF_RANGE[1]:
            return None
        return int(value)

    def _value(self, point: Point, raw: Sequence[int]) -> Value:
        sf = self._sf(point) if isinstance(point.sf, str) else None
        return decode(point, raw, sf)

    def _read_raw(self, point: Point) -> list[int]:
        if point.table == "coil":
            return [int(self.client.read_coils(point.address, 1, self.unit)[0])]
        return self.client.read_holding(point.address, point.size, self.unit)

    def _write_raw(self, point: Point, raw: Sequence[int]) -> None:
        if point.table == "coil":
            self.client.write_coil(point.address, bool(raw[0]), self.unit)
        else:
            self.client.write_registers(point.address, list(raw), self.unit)

    # -- 2. readable ------------------------------------------------------------------------

    def _read_points(self) -> None:
        for point in self.regmap:
            self._count("read point")
            try:
                self._raw[point.name] = self._read_raw(point)
            except ModbusError as exc:
                self._violation("readable", point, "the point's registers", _outcome(exc))

    def _read_runs(self) -> None:
        for start, end in _runs(self.regmap.points("holding")):
            for address, count in self.regmap.split(start, end - start, MAX_READ_REGISTERS):
                self._count("read run")
                try:
                    self.client.read_holding(address, count, self.unit)
                except ModbusError as exc:
                    self._at("readable", address, f"{count} mapped registers", _outcome(exc))

    # -- 3. values --------------------------------------------------------------------------

    def _check_values(self) -> None:
        for point in self.regmap:
            raw = self._raw.get(point.name)
            if raw is None or point.type == "pad" or point.name in STRUCTURAL:
                continue
            self._count("value")
            if point.type == "sunssf":
                self._check_sunssf(point, raw)
                continue
            implemented = _implemented(point, raw)
            if (
                self.options.check_mandatory
                and point.mandatory
                and not implemented
                and point.value is None
            ):
                self._violation(
                    "mandatory", point, "a value (mandatory point)", "the not-implemented pattern"
                )
            if not implemented:
                continue
            if isinstance(point.sf, str) and self._sf(point) is None:
                self._violation(
                    "scale_factor",
                    point,
                    f"its scale factor {point.sf} implemented and within -10..10",
                    f"{point.sf} = {_sunssf_text(self.regmap.point(point.sf), self._raw)}",
                )
                continue
            self._check_type(point, raw)

    def _check_sunssf(self, point: Point, raw: list[int]) -> None:
        value = decode(point, raw)
        if isinstance(value, float) and not SUNSSF_RANGE[0] <= value <= SUNSSF_RANGE[1]:
            self._violation(
                "scale_factor",
                point,
                "a sunssf within -10..10, or 0x8000 (not implemented)",
                f"{int(value)}",
            )

    def _check_type(self, point: Point, raw: list[int]) -> None:
        value = self._value(point, raw)
        if point.type == "string":
            data = b"".join(int(r).to_bytes(2, "big") for r in raw).rstrip(b"\x00")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self._violation("type", point, "a UTF-8 string", f"bytes {data!r}")
            return
        if not isinstance(value, float):
            return
        if point.symbols and point.type.startswith("enum"):
            if int(value) not in point.symbols.values():
                known = ", ".join(f"{k}={v}" for k, v in point.symbols.items())
                self._violation("type", point, f"one of its symbols ({known})", f"{value:g}")
            return
        if point.symbols and point.type.startswith("bitfield"):
            mask = sum(1 << bit for bit in point.symbols.values())
            if int(value) & ~mask:
                self._violation(
                    "type", point, f"only defined bits (mask 0x{mask:X})", f"0x{int(value):X}"
                )
            return
        low, high = self._limits(point)
        if (low is not None and value < low) or (high is not None and value > high):
            self._violation(
                "range", point, f"a value within {_range_text(low, high)}", f"{value:g}"
            )

    # -- 4. read-only -----------------------------------------------------------------------

    def _probe_read_only(self) -> None:
        for point in self.regmap:
            raw = self._raw.get(point.name)
            if point.writable or raw is None:
                continue
            self._count("write read-only")
            try:
                self._write_raw(point, raw)
            except ModbusError as exc:
                if exc.code != ILLEGAL_ADDRESS:
                    self._violation(
                        "read_only", point, "exception 2 (illegal data address)", _outcome(exc)
                    )
                continue
            self._violation(
                "read_only",
                point,
                "exception 2 (illegal data address): the point is read-only",
                "the write was accepted",
            )

    # -- 5. round trip ----------------------------------------------------------------------

    def _writable_implemented(self) -> list[Point]:
        out = []
        for point in self.regmap:
            raw = self._raw.get(point.name)
            if not point.writable or raw is None:
                continue
            if point.table == "holding" and not _implemented(point, raw):
                self.report.notes.append(f"{point.name}: writable, not implemented; not written")
                continue
            out.append(point)
        return out

    def _required(self, point: Point) -> bool:
        return self.options.strict_access or point.name in self.options.required_writable

    def _probe_writable(self, points: list[Point]) -> None:
        for point in points:
            original = self._raw[point.name]
            self._count("round trip")
            try:
                self._write_raw(point, original)
            except ModbusError as exc:
                if exc.code == ILLEGAL_ADDRESS and not self._required(point):
                    self._fixed.add(point.name)
                    self.report.notes.append(
                        f"{point.name}: not adjustable on this unit (its present value was "
                        "refused with exception 2)"
                    )
                else:
                    self._violation(
                        "round_trip",
                        point,
                        "its present value accepted (a writable point)",
                        _outcome(exc),
                    )
                    self._fixed.add(point.name)
                continue
            if not self._read_back(point, original, "its present value"):
                continue
            step = self._step_value(point)
            if step is None:
                continue
            value, raw = step
            self._count("round trip")
            try:
                self._write_raw(point, raw)
            except ModbusError as exc:
                self._violation(
                    "round_trip",
                    point,
                    f"{value:g} accepted (inside {_range_text(*self._limits(point))})",
                    _outcome(exc),
                )
                continue
            self._read_back(point, raw, f"{value:g}")
            try:
                self._write_raw(point, original)
            except ModbusError as exc:
                self._violation("restore", point, "its original value accepted", _outcome(exc))
                continue
            self._read_back(point, original, "its original value after restoring", "restore")

    def _read_back(self, point: Point, raw: Sequence[int], what: str, check: str = "") -> bool:
        try:
            now = self._read_raw(point)
        except ModbusError as exc:
            self._violation(check or "round_trip", point, f"{what} read back", _outcome(exc))
            return False
        if now != list(raw):
            self._violation(
                check or "round_trip",
                point,
                f"{what} read back ({_show(point, raw, self)})",
                _show(point, now, self),
            )
            return False
        return True

    def _numeric(self, point: Point) -> bool:
        kind = TYPES[point.type]
        return (
            point.table == "holding"
            and not point.symbols
            and bool(kind.fmt)
            and not point.type.startswith(("enum", "bitfield"))
            and point.type != "sunssf"
        )

    def _step_value(self, point: Point) -> tuple[float, list[int]] | None:
        """A value one resolution step from the present one, inside the known range."""
        if not self._numeric(point):
            return None
        low, high = self._limits(point)
        if low is None and high is None and not self.options.strict_access:
            return None  # a SunSpec point of unknown range: only its present value is safe
        present = self._value(point, self._raw[point.name])
        exponent = self._sf(point)
        if not isinstance(present, float) or exponent is None:
            return None
        lsb = 10.0**exponent
        for candidate in (present + lsb, present - lsb):
            candidate = round(candidate / lsb) * lsb
            if (low is not None and candidate < low) or (high is not None and candidate > high):
                continue
            try:
                return candidate, encode(point, candidate, exponent)
            except ValueError:
                continue
        return None

    # -- 6. out of range --------------------------------------------------------------------

    def _out_of_range_values(self, point: Point) -> list[tuple[str, list[int]]]:
        """(description, registers) of each out-of-range probe the point's type can hold."""
        exponent = self._sf(point)
        if point.table != "holding" or exponent is None:
            return []
        probes: list[tuple[str, float, int | None]] = []
        if point.symbols and point.type.startswith("enum"):
            used = set(point.symbols.values())
            candidate = next(i for i in range(len(used) + 1) if i not in used)
            probes.append((f"{candidate} (not a symbol)", float(candidate), None))
        elif self._numeric(point):
            lsb = 10.0**exponent
            low, high = self._limits(point)
            if high is not None:
                value = (math.floor(high / lsb + 1e-9) + 1) * lsb
                probes.append((f"{value:g} (above {high:g})", value, exponent))
            if low is not None:
                value = (math.ceil(low / lsb - 1e-9) - 1) * lsb
                probes.append((f"{value:g} (below {low:g})", value, exponent))
        out = []
        for text, value, sf in probes:
            try:
                out.append((text, encode(point, value, sf)))
            except ValueError:  # the type cannot hold it: nothing to send
                continue
        return out

    def _probe_out_of_range(self, points: list[Point]) -> None:
        for point in points:
            for text, raw in self._out_of_range_values(point):
                self._count("out of range")
                before = self._snapshot(points)
                try:
                    self._write_raw(point, raw)
                except ModbusError as exc:
                    if exc.code != ILLEGAL_VALUE:
                        self._violation(
                            "out_of_range",
                            point,
                            f"exception 3 (illegal data value) for {text}",
                            _outcome(exc),
                        )
                    changed = self._changed(before, points)
                    if changed:
                        self._violation(
                            "out_of_range",
                            point,
                            f"no change of state after refusing {text}",
                            "changed: " + ", ".join(changed),
                        )
                        self._restore(before)
                    continue
                changed = self._changed(before, points)
                self._violation(
                    "out_of_range",
                    point,
                    f"exception 3 (illegal data value) for {text}, nothing changed",
                    "accepted" + (f"; changed: {', '.join(changed)}" if changed else ""),
                )
                self._restore(before)

    def _snapshot(self, points: list[Point]) -> dict[str, list[int]]:
        out = {}
        for point in points:
            try:
                out[point.name] = self._read_raw(point)
            except ModbusError:
                continue
        return out

    def _changed(self, before: Mapping[str, list[int]], points: list[Point]) -> list[str]:
        after = self._snapshot(points)
        return [
            f"{name} {_show(self.regmap.point(name), raw, self)} -> "
            f"{_show(self.regmap.point(name), after.get(name, []), self)}"
            for name, raw in before.items()
            if after.get(name) != raw
        ]

    def _restore(self, original: Mapping[str, list[int]]) -> None:
        """Write back every point whose registers differ from ``original``; enumerations last
        (an enable written before its setpoint would act on the wrong value)."""
        points = [self.regmap.point(n) for n in original]
        points.sort(key=lambda p: (bool(p.symbols) or p.table == "coil", p.address))
        for point in points:
            try:
                if self._read_raw(point) == original[point.name]:
                    continue
                self._write_raw(point, original[point.name])
            except ModbusError as exc:
                self._violation("restore", point, "its original value written back", _outcome(exc))

    # -- 7. illegal addresses ---------------------------------------------------------------

    def _probe_addresses(self) -> None:
        self._expect_refused_read("holding", 0xFFFF, 2, (ILLEGAL_ADDRESS,))
        if not self.options.unmapped_illegal:
            return
        holding = self.regmap.points("holding")
        if holding:
            end = max(p.end for p in holding)
            if end <= 0xFFFF:
                self._expect_refused_read("holding", end, 1, (ILLEGAL_ADDRESS,))
                self._expect_refused_read("holding", end - 1, 2, (ILLEGAL_ADDRESS,))
            runs = _runs(holding)
            if len(runs) > 1:  # the first hole inside the map
                self._expect_refused_read("holding", runs[0][1], 1, (ILLEGAL_ADDRESS,))
        else:
            self._expect_refused_read("holding", 0, 1, (ILLEGAL_FUNCTION, ILLEGAL_ADDRESS))
        coils = self.regmap.points("coil")
        if coils:
            end = max(p.end for p in coils)
            if end <= 0xFFFF:
                self._expect_refused_read("coil", end, 1, (ILLEGAL_ADDRESS,))
        else:
            self._expect_refused_read("coil", 0, 1, (ILLEGAL_FUNCTION, ILLEGAL_ADDRESS))

    def _expect_refused_read(
        self, table: str, address: int, count: int, codes: tuple[int, ...]
    ) -> None:
        self._count("illegal address")
        expected = " or ".join(f"exception {c}" for c in codes)
        what = f"{expected} for a read of {count} unmapped {table} address(es)"
        try:
            if table == "coil":
                self.client.read_coils(address, count, self.unit)
            else:
                self.client.read_holding(address, count, self.unit)
        except ModbusError as exc:
            if exc.code not in codes:
                self._at("illegal_address", address, what, _outcome(exc))
            return
        self._at("illegal_address", address, what, "the read was answered with data")

    # -- 8. request sizes -------------------------------------------------------------------

    def _probe_sizes(self) -> None:
        holding = self.regmap.points("holding")
        runs = _runs(holding)
        start = holding[0].address if holding else 0
        full = any(a <= start and start + MAX_READ_REGISTERS <= b for a, b in runs)
        self._count("request size")
        try:
            self.client.read_holding(start, MAX_READ_REGISTERS, self.unit)
        except ModbusError as exc:
            if full or exc.code != ILLEGAL_ADDRESS:
                self._at(
                    "request_size",
                    start,
                    f"a read of {MAX_READ_REGISTERS} registers accepted",
                    _outcome(exc),
                )
        self._count("request size")
        self._expect_quantity_refused(
            start,
            f"read of {MAX_READ_REGISTERS + 1} registers",
            lambda: self.client.read_holding(
                start, MAX_READ_REGISTERS + 1, self.unit, enforce_limits=False
            ),
        )
        region = next(
            (a for a, b in runs if b - a >= MAX_WRITE_REGISTERS + 1),
            None,
        )
        if region is None:
            self.report.notes.append(
                "write size probes skipped: no run of 124 mapped registers to write back"
            )
            return
        try:
            present = self.client.read_holding(region, MAX_WRITE_REGISTERS + 1, self.unit)
        except ModbusError as exc:
            self.report.notes.append(f"write size probes skipped: {_outcome(exc)}")
            return
        self._count("request size")
        try:
            self.client.write_registers(region, present[:MAX_WRITE_REGISTERS], self.unit)
        except ModbusError as exc:
            if exc.code != ILLEGAL_ADDRESS:  # read-only registers inside: the size was accepted
                self._at(
                    "request_size",
                    region,
                    f"a write of {MAX_WRITE_REGISTERS} registers accepted (or refused for its "
                    "addresses, exception 2)",
                    _outcome(exc),
                )
        self._count("request size")
        self._expect_quantity_refused(
            region,
            f"write of {MAX_WRITE_REGISTERS + 1} registers",
            lambda: self.client.write_registers(region, present, self.unit, enforce_limits=False),
        )

    def _expect_quantity_refused(self, address: int, what: str, send: Callable[[], Any]) -> None:
        expected = f"exception 3 (illegal data value) for a {what}"
        try:
            send()
        except ModbusError as exc:
            if exc.code != ILLEGAL_VALUE:
                self._at("request_size", address, expected, _outcome(exc))
            return
        self._at("request_size", address, expected, "the request was carried out")


# -- SunSpec ----------------------------------------------------------------------------------


def check_sunspec(
    client: ModbusClient,
    unit: int = 1,
    *,
    name: str | None = None,
    bases: Sequence[int] = DEFAULT_BASES,
    required_writable: Collection[str] = (),
    limits: Limits | None = None,
) -> ConformanceReport:
    """Conformance of a SunSpec device: its discovery chain, then every point of its models.

    Ranges the models leave out come from ``sunspec_ranges.yaml`` (resolved against the
    device's own nameplate points) and ``limits``; ``required_writable`` are the controls that
    must accept writes (those a driver uses).
    """

    def read(address: int, count: int) -> list[int]:
        return client.read_holding(address, count, unit)

    report = ConformanceReport(name or client.label or client.endpoint, "sunspec")
    if not _walk_chain(read, bases, report):
        return report
    try:
        regmap = discover(read, bases).regmap
    except (SunSpecError, ModbusError) as exc:
        report.violations.append(
            Violation("discovery", None, None, "a model chain that can be laid out", str(exc))
        )
        return report
    ranges = sunspec_ranges(MappedDevice(client, regmap, unit))
    ranges.update(limits or {})
    options = ConformanceOptions(
        strict_access=False,
        required_writable=frozenset(required_writable),
        limits=ranges,
        check_mandatory=True,
        unmapped_illegal=False,
    )
    checker = ModbusConformance(client, regmap, unit, name=report.device, options=options)
    checker.run()
    checker.report.violations[:0] = report.violations
    checker.report.notes[:0] = report.notes
    checker.report.models = report.models
    checker.report.map_name = regmap.name
    return checker.report


def check_mapped(
    client: ModbusClient,
    regmap: RegisterMap,
    unit: int = 1,
    *,
    name: str | None = None,
    limits: Limits | None = None,
) -> ConformanceReport:
    """Conformance of a device described by its own register map (strict: see module doc)."""
    options = ConformanceOptions(strict_access=True, limits=dict(limits or {}))
    checker = ModbusConformance(client, regmap, unit, name=name, options=options)
    checker.run()
    return checker.report


def _walk_chain(
    read: Callable[[int, int], list[int]], bases: Sequence[int], report: ConformanceReport
) -> bool:
    """Walk the model chain, reporting what departs from SunSpec; False if it cannot be walked."""

    def fail(check: str, point: str | None, address: int | None, exp: str, obs: str) -> None:
        report.violations.append(Violation(check, point, address, exp, obs))

    try:
        base = find_base(read, bases)
    except SunSpecError as exc:
        where = ", ".join(str(b) for b in bases)
        fail("discovery", "SunS", None, f'"SunS" (0x5375 0x6E53) at one of {where}', str(exc))
        return False
    address = base + 2
    for index in range(MAX_MODELS + 1):
        if index == MAX_MODELS or address + 1 > 0xFFFF:
            fail("discovery", "end.ID", address, "the end marker 0xFFFF", "the chain runs on")
            return False
        try:
            model_id, length = read(address, 2)
        except ModbusError as exc:
            fail("discovery", None, address, "a model header (ID, L)", _outcome(exc))
            return False
        if model_id == END_MODEL_ID:
            if length != 0:
                fail("discovery", "end.L", address + 1, "L = 0 after the end marker", str(length))
            return True
        report.models.append({"id": model_id, "address": address, "length": length})
        if index == 0 and model_id != 1:
            fail("discovery", "model 1", address, "model 1 (common) first", f"model {model_id}")
        if address + 2 + length > 0x10000:
            fail(
                "model_length",
                f"model {model_id}",
                address,
                "a model that ends by 65535",
                str(length),
            )
            return False
        try:
            body = _read_long(read, address + 2, length)
        except ModbusError as exc:
            fail(
                "discovery",
                f"model {model_id}",
                address,
                f"{length} readable registers",
                _outcome(exc),
            )
            return False
        try:
            expected = definition_length(model_id, [model_id, length, *body])
        except SunSpecError as exc:
            fail(
                "model_length",
                f"model {model_id}",
                address,
                "a length the definition lays out",
                str(exc),
            )
            expected = length
        if expected is None:
            if model_id not in VENDOR_MODELS:
                fail(
                    "model_id",
                    f"model {model_id}",
                    address,
                    "a model id defined by SunSpec, or a vendor model 64000..65534",
                    str(model_id),
                )
            else:
                report.notes.append(f"model {model_id} at {address}: vendor model, not checked")
        elif expected != length:
            fail(
                "model_length",
                f"model {model_id}",
                address + 1,
                f"L = {expected} (pysunspec2 definition)",
                f"L = {length}",
            )
        address += 2 + length
    return False


def _read_long(read: Callable[[int, int], list[int]], address: int, count: int) -> list[int]:
    regs: list[int] = []
    while count > 0:
        n = min(count, MAX_READ_REGISTERS)
        regs.extend(read(address, n))
        address, count = address + n, count - n
    return regs


@cache
def _range_definitions() -> dict[str, dict[str, float | str]]:
    text = resources.files("harness.conformance").joinpath("sunspec_ranges.yaml").read_text("utf-8")
    data: dict[str, dict[str, float | str]] = yaml.safe_load(text)["ranges"]
    return data


def sunspec_ranges(device: MappedDevice) -> dict[str, tuple[float | None, float | None]]:
    """The ranges of ``sunspec_ranges.yaml`` for the points ``device`` has, bounds resolved
    against its present values (a bound naming an unimplemented point stays open)."""
    wanted = {n: spec for n, spec in _range_definitions().items() if n in device.regmap}
    refs = sorted(
        {
            str(b).lstrip("-")
            for spec in wanted.values()
            for b in spec.values()
            if isinstance(b, str) and str(b).lstrip("-") in device.regmap
        }
    )
    present = device.read_many(refs) if refs else {}

    def bound(b: float | str | None) -> float | None:
        if b is None or isinstance(b, (int, float)):
            return None if b is None else float(b)
        sign = -1.0 if b.startswith("-") else 1.0
        value = present.get(b.lstrip("-"))
        return sign * value if isinstance(value, float) else None

    return {n: (bound(s.get("min")), bound(s.get("max"))) for n, s in wanted.items()}


# -- helpers ----------------------------------------------------------------------------------


def _runs(points: Sequence[Point]) -> list[tuple[int, int]]:
    """(start, end) of each run of adjacent points, in address order."""
    runs: list[tuple[int, int]] = []
    for p in sorted(points, key=lambda p: p.address):
        if runs and runs[-1][1] == p.address:
            runs[-1] = (runs[-1][0], p.end)
        else:
            runs.append((p.address, p.end))
    return runs


def _implemented(point: Point, raw: Sequence[int]) -> bool:
    if point.table == "coil":
        return True
    return decode(replace(point, sf=None), raw) is not None


def _outcome(exc: ModbusError) -> str:
    if exc.code is not None:
        return f"exception {exc.code} ({EXCEPTION_TEXT.get(exc.code, 'unknown exception')})"
    return f"no valid answer: {exc.message}"


def _range_text(low: float | None, high: float | None) -> str:
    return f"{'-inf' if low is None else f'{low:g}'}..{'+inf' if high is None else f'{high:g}'}"


def _sunssf_text(point: Point, raw: Mapping[str, list[int]]) -> str:
    regs = raw.get(point.name)
    if regs is None:
        return "unreadable"
    value = decode(point, regs)
    return "0x8000 (not implemented)" if value is None else f"{int(value)}"


def _show(point: Point, raw: Sequence[int], checker: ModbusConformance) -> str:
    if len(raw) != point.size:
        return "nothing"
    try:
        value = checker._value(point, raw)
    except ValueError:
        value = None
    regs = " ".join(f"0x{r:04X}" for r in raw)
    return f"{value!r} [{regs}]" if value is not None else f"[{regs}]"
