"""Register maps and the one codec that reads and writes them.

A register map says where each point of a Modbus device lives, how wide it is, how it is scaled
and whether it may be written. Both sides use this module: the harness's client decodes what it
reads with it, and the virtual devices' servers encode what they serve with it, so a map is
decoded one way only and a scaling mistake cannot hide by being made twice in opposite directions.

Conventions (SunSpec's, applied to every map):

- values are floats in the unit of the point after scaling: ``value = raw * 10**sf``;
- a point whose registers hold the type's "not implemented" pattern decodes to ``None``, and
  ``None`` encodes to that pattern (int16 0x8000, uint16/enum16/bitfield16 0xFFFF, int32
  0x80000000, uint32/enum32/bitfield32 0xFFFFFFFF, 64-bit likewise, sunssf 0x8000, float NaN,
  string all NUL);
- accumulators (acc16/32/64) have no distinct pattern: SunSpec calls 0 "not implemented", but a
  fresh energy counter also reads 0, so 0 decodes to ``0.0`` here (pysunspec2 reports ``None``);
- an enumeration or bitfield decodes to its raw number as a float; :meth:`Point.symbol` names it.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

Value = float | str | None
"""A decoded point value: a number in the point's unit, a string, or None (not implemented)."""

Table = Literal["holding", "coil"]


@dataclass(frozen=True)
class _Kind:
    """How a point type sits in registers."""

    size: int | None  # registers; None when the point declares its own size (strings)
    fmt: str  # struct format of the big-endian value; "" for non-numeric types
    unimpl: int | None  # raw "not implemented" pattern, None when the type has none
    integral: bool = False  # values must be whole numbers (enums, bitfields, counts, sunssf)


TYPES: Mapping[str, _Kind] = MappingProxyType(
    {
        "int16": _Kind(1, "h", -0x8000),
        "uint16": _Kind(1, "H", 0xFFFF),
        "count": _Kind(1, "H", 0xFFFF, integral=True),
        "acc16": _Kind(1, "H", None),
        "enum16": _Kind(1, "H", 0xFFFF, integral=True),
        "bitfield16": _Kind(1, "H", 0xFFFF, integral=True),
        "sunssf": _Kind(1, "h", -0x8000, integral=True),
        "pad": _Kind(1, "", None),
        "int32": _Kind(2, "i", -0x80000000),
        "uint32": _Kind(2, "I", 0xFFFFFFFF),
        "acc32": _Kind(2, "I", None),
        "enum32": _Kind(2, "I", 0xFFFFFFFF, integral=True),
        "bitfield32": _Kind(2, "I", 0xFFFFFFFF, integral=True),
        "int64": _Kind(4, "q", -0x8000000000000000),
        "uint64": _Kind(4, "Q", 0xFFFFFFFFFFFFFFFF),
        "acc64": _Kind(4, "Q", None),
        "float32": _Kind(2, "f", None),
        "float64": _Kind(4, "d", None),
        "string": _Kind(None, "", None),
        "ipaddr": _Kind(2, "", None),
        "ipv6addr": _Kind(8, "", None),
        "eui48": _Kind(4, "", None),
        "bool": _Kind(1, "", None),  # one coil
    }
)

SUNSSF_RANGE = (-10, 10)
PAD_VALUE = 0x8000


class RangeError(ValueError):
    """A value outside what a point can hold or what its map declares."""


@dataclass(frozen=True)
class Point:
    """One named value of a device.

    ``address`` is the absolute 0-based PDU address (register, or coil when ``table`` is "coil").
    ``sf`` is the full name of the sunssf point that scales this one, or a fixed exponent.
    ``value`` is a constant the map itself defines (model ID and length, the SunSpec marker).
    """

    name: str
    address: int
    size: int
    type: str
    sf: str | int | None = None
    access: Literal["R", "RW"] = "R"
    mandatory: bool = False
    units: str | None = None
    min: float | None = None
    max: float | None = None
    symbols: Mapping[str, int] = field(default_factory=dict, compare=False)
    table: Table = "holding"
    value: float | str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        kind = TYPES.get(self.type)
        if kind is None:
            raise ValueError(f"{self.name}: unknown point type {self.type!r}")
        if kind.size is not None and self.size != kind.size:
            raise ValueError(
                f"{self.name}: type {self.type} takes {kind.size} registers, not {self.size}"
            )
        if self.size < 1:
            raise ValueError(f"{self.name}: size must be at least 1 register")
        if not 0 <= self.address <= 0xFFFF or self.address + self.size > 0x10000:
            raise ValueError(f"{self.name}: address {self.address} is outside 0..65535")
        if (self.table == "coil") != (self.type == "bool"):
            raise ValueError(f"{self.name}: coils have type bool and only coils do")
        if self.access not in ("R", "RW"):
            raise ValueError(f"{self.name}: access must be R or RW, not {self.access!r}")

    @property
    def writable(self) -> bool:
        return self.access == "RW"

    @property
    def end(self) -> int:
        """First address after the point."""
        return self.address + self.size

    def symbol(self, value: Value) -> str | None:
        """Name of an enumerated value, or None if the value has no symbol."""
        if value is None or isinstance(value, str):
            return None
        for name, number in self.symbols.items():
            if number == value:
                return name
        return None

    def limits_text(self) -> str:
        unit = f" {self.units}" if self.units else ""
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "+inf" if self.max is None else f"{self.max:g}"
        return f"{low}..{high}{unit}"


# --------------------------------------------------------------------------------------------
# codec


def _exponent(point: Point, sf: int | None) -> int | None:
    """The exponent that scales ``point``; None when it comes from an unimplemented sunssf."""
    if point.sf is None:
        return 0
    if isinstance(point.sf, int):
        return point.sf
    return sf


def _int_range(point: Point, kind: _Kind) -> tuple[int, int]:
    bits = 16 * point.size
    if kind.fmt.islower():
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        low, high = 0, (1 << bits) - 1
    if kind.unimpl == low:
        low += 1
    elif kind.unimpl == high:
        high -= 1
    if point.type == "sunssf":
        low, high = SUNSSF_RANGE
    return low, high


def _to_regs(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _to_bytes(regs: Sequence[int]) -> bytes:
    return b"".join(int(r & 0xFFFF).to_bytes(2, "big") for r in regs)


def _symbol_number(point: Point, value: str) -> int:
    if value in point.symbols:
        return point.symbols[value]
    known = ", ".join(point.symbols) or "none"
    raise ValueError(f"{point.name}: {value!r} is not one of its symbols ({known})")


def encode(point: Point, value: Value | bool, sf: int | None = None) -> list[int]:
    """Registers (or one coil as [0]/[1]) that hold ``value`` for ``point``.

    ``sf`` is the present value of the point's scale-factor point when ``point.sf`` names one.
    Raises ValueError (RangeError for out-of-range numbers) naming the point.
    """
    kind = TYPES[point.type]
    if point.type == "pad":
        return [PAD_VALUE] * point.size
    if point.type == "bool":
        if value is None:
            raise ValueError(f"{point.name}: a coil has no 'not implemented' state")
        if isinstance(value, str) or value not in (0, 1):
            raise RangeError(f"{point.name}: a coil is 0 or 1, not {value!r}")
        return [int(value)]
    if point.type in ("string", "ipv6addr", "eui48", "ipaddr"):
        return _encode_text(point, value)
    if value is None:
        if kind.fmt in ("f", "d"):
            return _to_regs(struct.pack(f">{kind.fmt}", math.nan))
        if kind.unimpl is None:  # accumulators: 0 is their "not implemented"
            return [0] * point.size
        return _to_regs(struct.pack(f">{kind.fmt}", kind.unimpl))
    if isinstance(value, str):
        if not point.symbols:
            raise ValueError(f"{point.name}: expected a number, got {value!r}")
        value = float(_symbol_number(point, value))
    number = float(value)
    if not math.isfinite(number):
        raise RangeError(f"{point.name}: {value!r} is not a finite number")
    exponent = _exponent(point, sf)
    if exponent is None:
        raise ValueError(f"{point.name}: scale factor {point.sf} is not known, cannot encode")
    if kind.fmt in ("f", "d"):
        scaled = number / 10.0**exponent if exponent else number
        return _to_regs(struct.pack(f">{kind.fmt}", scaled))
    if kind.integral and number != int(number):
        raise ValueError(f"{point.name}: {point.type} takes whole numbers, not {value!r}")
    scaled = number * 10**-exponent if exponent <= 0 else number / 10**exponent
    raw = round(scaled)
    low, high = _int_range(point, kind)
    if not low <= raw <= high:
        lo_v, hi_v = low * 10.0**exponent, high * 10.0**exponent
        raise RangeError(
            f"{point.name}: {value!r} does not fit a {point.type} with scale factor {exponent} "
            f"(representable {lo_v:g}..{hi_v:g})"
        )
    return _to_regs(struct.pack(f">{kind.fmt}", raw))


def _encode_text(point: Point, value: Value | bool) -> list[int]:
    width = 2 * point.size
    if value is None:
        if point.type == "eui48":
            return [0] + [0xFFFF] * 3
        return [0] * point.size
    if point.type == "ipaddr":
        try:
            return _to_regs(ipaddress.IPv4Address(value).packed)
        except ValueError:
            raise ValueError(f"{point.name}: {value!r} is not an IPv4 address") from None
    if point.type == "ipv6addr":
        try:
            return _to_regs(ipaddress.IPv6Address(value).packed)
        except ValueError:
            raise ValueError(f"{point.name}: {value!r} is not an IPv6 address") from None
    if not isinstance(value, str):
        raise ValueError(f"{point.name}: expected a string, got {value!r}")
    if point.type == "eui48":
        try:
            raw = bytes.fromhex(value.replace(":", "").replace("-", ""))
        except ValueError:
            raw = b""
        if len(raw) != 6:
            raise ValueError(f"{point.name}: {value!r} is not an EUI-48 such as 00:11:22:33:44:55")
        return _to_regs(b"\x00\x00" + raw)
    data = value.encode("utf-8")
    if len(data) > width:
        raise RangeError(f"{point.name}: {value!r} is {len(data)} bytes; the point holds {width}")
    return _to_regs(data.ljust(width, b"\x00"))


def decode(point: Point, regs: Sequence[int], sf: int | None = None) -> Value:
    """The value ``regs`` hold for ``point`` (None when not implemented).

    ``sf`` is the present value of the point's scale-factor point when ``point.sf`` names one;
    None there means that scale factor is itself not implemented, so the value is unknown.
    """
    if len(regs) != point.size:
        raise ValueError(f"{point.name}: expected {point.size} registers, got {len(regs)}")
    kind = TYPES[point.type]
    if point.type == "pad":
        return None
    if point.type == "bool":
        return 1.0 if regs[0] else 0.0
    data = _to_bytes(regs)
    if point.type == "string":
        if not data.strip(b"\x00"):
            return None
        return data.rstrip(b"\x00").decode("utf-8", errors="replace")
    if point.type == "ipaddr":
        return None if not any(data) else str(ipaddress.IPv4Address(data))
    if point.type == "ipv6addr":
        return None if not any(data) else str(ipaddress.IPv6Address(data))
    if point.type == "eui48":
        mac = data[2:]
        return None if mac == b"\xff" * 6 else ":".join(f"{b:02X}" for b in mac)
    (raw,) = struct.unpack(f">{kind.fmt}", data)
    if kind.fmt in ("f", "d"):
        if math.isnan(raw):
            return None
    elif kind.unimpl is not None and raw == kind.unimpl:
        return None
    exponent = _exponent(point, sf)
    if exponent is None:
        return None
    if exponent < 0:
        return float(raw) / float(10**-exponent)
    return float(raw) * float(10**exponent)


def check_limits(point: Point, value: Value | bool) -> None:
    """Raise RangeError naming the point when ``value`` is outside its declared min/max."""
    if value is None or isinstance(value, str) or (point.min is None and point.max is None):
        return
    number = float(value)
    if (point.min is not None and number < point.min) or (
        point.max is not None and number > point.max
    ):
        raise RangeError(
            f"{point.name}: {value!r} is outside the declared range {point.limits_text()}"
        )


# --------------------------------------------------------------------------------------------
# maps


@dataclass(frozen=True)
class Block:
    """A named address range read as one unit (a SunSpec model, including its ID and length)."""

    name: str
    address: int
    size: int
    model_id: int | None = None

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass(frozen=True)
class Span:
    """Consecutive registers or coils to transfer in one request, and the points inside."""

    table: Table
    address: int
    count: int
    points: tuple[Point, ...]


class RegisterMap:
    """The points of one device, by name and by address.

    Points may not overlap within a table; every named scale factor must exist and be a sunssf.
    """

    def __init__(self, name: str, points: Sequence[Point], blocks: Sequence[Block] = ()) -> None:
        self.name = name
        self._points: dict[str, Point] = {}
        for point in points:
            if point.name in self._points:
                raise ValueError(f"map {name}: point {point.name} is defined twice")
            self._points[point.name] = point
        self.blocks: tuple[Block, ...] = tuple(blocks)
        self._sorted: dict[Table, list[Point]] = {
            table: sorted((p for p in points if p.table == table), key=lambda p: p.address)
            for table in ("holding", "coil")
        }
        self._starts = {t: [p.address for p in ps] for t, ps in self._sorted.items()}
        for table, ordered in self._sorted.items():
            for before, after in itertools.pairwise(ordered):
                if after.address < before.end:
                    raise ValueError(
                        f"map {name}: {table} point {after.name} at {after.address} overlaps "
                        f"{before.name} ({before.address}..{before.end - 1})"
                    )
        for point in points:
            if isinstance(point.sf, str):
                target = self._points.get(point.sf)
                if target is None or target.type != "sunssf":
                    raise ValueError(
                        f"map {name}: {point.name} is scaled by {point.sf}, which is not a "
                        "sunssf point of the map"
                    )
        self._runs = {t: self._contiguous_runs(ps) for t, ps in self._sorted.items()}
        self._run_starts = {t: [r[0] for r in runs] for t, runs in self._runs.items()}

    # -- lookup ---------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._points

    def __iter__(self) -> Iterator[Point]:
        return iter(self._points.values())

    def __len__(self) -> int:
        return len(self._points)

    def __repr__(self) -> str:
        return f"RegisterMap({self.name!r}, {len(self)} points)"

    def point(self, name: str) -> Point:
        """The point called ``name``; KeyError that suggests near names if there is none."""
        try:
            return self._points[name]
        except KeyError:
            tail = name.rsplit(".", 1)[-1]
            near = [n for n in self._points if n.rsplit(".", 1)[-1] == tail][:5]
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise KeyError(f"map {self.name} has no point {name!r}{hint}") from None

    def sf_point(self, point: Point) -> Point | None:
        """The sunssf point that scales ``point``, if it is scaled by one."""
        return self._points[point.sf] if isinstance(point.sf, str) else None

    def points(self, table: Table = "holding") -> list[Point]:
        """Points of a table in address order."""
        return list(self._sorted[table])

    def at(self, address: int, count: int = 1, table: Table = "holding") -> list[Point]:
        """Points that overlap ``address .. address+count-1``, in address order."""
        ordered, starts = self._sorted[table], self._starts[table]
        i = bisect.bisect_right(starts, address) - 1
        i = max(i, 0)
        found = []
        while i < len(ordered) and ordered[i].address < address + count:
            if ordered[i].end > address:
                found.append(ordered[i])
            i += 1
        return found

    def block(self, key: str | int) -> Block:
        """A block by name or SunSpec model id, or the span of the points of a group prefix."""
        for block in self.blocks:
            if block.name == key or block.model_id == key:
                return block
        if isinstance(key, str):
            members = [p for p in self if p.name.startswith(key + ".") and p.table == "holding"]
            if members:
                start = min(p.address for p in members)
                return Block(key, start, max(p.end for p in members) - start)
        raise KeyError(f"map {self.name} has no model or group {key!r}")

    def with_limits(self, limits: Mapping[str, tuple[float | None, float | None]]) -> RegisterMap:
        """A copy whose named points declare the given (min, max).

        SunSpec definitions carry no ranges; a site or a driver adds them (e.g. WSet within the
        rated power) so that the write guard can hold writes to them.
        """
        for name in limits:
            self.point(name)
        points = [
            replace(p, min=limits[p.name][0], max=limits[p.name][1]) if p.name in limits else p
            for p in self
        ]
        return RegisterMap(self.name, points, self.blocks)

    # -- request planning -----------------------------------------------------------------

    @staticmethod
    def _contiguous_runs(ordered: list[Point]) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for p in ordered:
            if runs and runs[-1][1] == p.address:
                runs[-1] = (runs[-1][0], p.end)
            else:
                runs.append((p.address, p.end))
        return runs

    def spans(self, points: Sequence[Point], max_count: int, gap: int = 32) -> list[Span]:
        """Group ``points`` into requests of at most ``max_count`` registers (or coils).

        Points are merged into one request when the addresses between them are mapped (a
        device answers ILLEGAL_ADDRESS for holes) and lie within ``gap`` registers; a point is
        never split across two requests.
        """
        out: list[Span] = []
        for table in ("holding", "coil"):
            chosen = sorted(
                {p.name: p for p in points if p.table == table}.values(), key=lambda p: p.address
            )
            current: list[Point] = []
            for p in chosen:
                if current:
                    start = current[0].address
                    last_end = max(q.end for q in current)
                    same_run = self._run_of(table, start) == self._run_of(table, p.address)
                    if (
                        same_run
                        and p.address - last_end <= gap
                        and max(p.end, last_end) - start <= max_count
                    ):
                        current.append(p)
                        continue
                    out.append(self._span(table, current))
                current = [p]
            if current:
                out.append(self._span(table, current))
        return out

    def _run_of(self, table: Table, address: int) -> int:
        return bisect.bisect_right(self._run_starts[table], address) - 1

    @staticmethod
    def _span(table: Table, members: list[Point]) -> Span:
        start = members[0].address
        end = max(p.end for p in members)
        return Span(table, start, end - start, tuple(members))

    def split(
        self, address: int, count: int, max_count: int, table: Table = "holding"
    ) -> list[tuple[int, int]]:
        """Cut ``address .. address+count-1`` into requests of at most ``max_count``, never
        inside a point (a point wider than ``max_count`` is impossible in Modbus maps)."""
        pieces: list[tuple[int, int]] = []
        start, end = address, address + count
        while start < end:
            stop = min(start + max_count, end)
            if stop < end:
                inside = [p for p in self.at(stop - 1, 1, table) if p.end > stop]
                if inside and inside[0].address > start:
                    stop = inside[0].address
            pieces.append((start, stop - start))
            start = stop
        return pieces

    # -- whole-image codec ----------------------------------------------------------------

    def decode_registers(
        self,
        address: int,
        regs: Sequence[int],
        extra_sf: Mapping[str, int | None] | None = None,
        table: Table = "holding",
    ) -> dict[str, Value]:
        """Decode every point that lies wholly inside ``regs`` (read from ``address``).

        Scale factors come from the same registers when they are inside, else from ``extra_sf``.
        """
        end = address + len(regs)
        inside = [
            p for p in self.at(address, len(regs), table) if p.address >= address and p.end <= end
        ]
        sfs: dict[str, int | None] = dict(extra_sf or {})
        for p in inside:
            if p.type == "sunssf":
                raw = decode(p, regs[p.address - address : p.end - address])
                sfs[p.name] = None if raw is None else int(raw)
        values: dict[str, Value] = {}
        for p in inside:
            sf = sfs.get(p.sf) if isinstance(p.sf, str) else None
            values[p.name] = decode(p, regs[p.address - address : p.end - address], sf)
        return values

    def sf_values(self, values: Mapping[str, Value]) -> dict[str, int | None]:
        """Scale factors (by sunssf point name) found in a mapping of point values."""
        out: dict[str, int | None] = {}
        for p in self:
            if p.type == "sunssf":
                v = values.get(p.name, p.value)
                out[p.name] = None if v is None or isinstance(v, str) else int(v)
        return out
