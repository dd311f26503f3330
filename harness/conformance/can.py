"""CAN conformance: does the traffic on a bus match its DBC?

Works for any DBC (standard and extended ids, Intel and Motorola signals, multiplexed messages,
messages that name no sender): what the device must send is a list of message names, given by
the caller (the BMS map, or by default every message of a node, or every periodic message).

:class:`CanMonitor` decodes and checks **every** frame it is handed, so it can follow a bus live
(as a python-can ``Listener`` on a transport) or a recorded log (:meth:`CanMonitor.process_all`),
and its :meth:`CanMonitor.report` says, for an observation window:

- which required messages never arrived with their DBC length (DLC), and frames of a known id
  with another length (they are not the message the DBC defines, so they do not count);
- per message, the observed periods against the DBC cycle time (``GenMsgCycleTime``), including
  the silence from the last frame to the end of the window, so a message that stops mid-window
  fails instead of keeping its good early periods;
- every decoded signal value outside its declared ``[min|max]`` range (multiplexed messages:
  the signals of the page the frame carries);
- ids the DBC does not know (reported, not violations: a vendor may send more than agreed);
- the heartbeat message (the inverter's, or the harness standing in for it): how often it was on
  the bus and at which period. Whether the BMS *received* it can only be seen from the BMS's
  side (a heartbeat-loss flag, when its protocol has one); the scenario checks that.

The per-frame path (:meth:`CanMonitor.process`) is kept lean: one dict lookup, the decode, a
loop over the decoded values. A benchmark compares it with a bare cantools decode loop.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import can
from cantools.database import DecodeError
from cantools.database.can import Database, Message

from harness.devices.bms import DbcBms

_RANGE_EPS = 1e-9
"""Relative slack on a signal's range: scaled values are floats (0.1 * 1000 may not be 100)."""


def periodic_messages(db: Database, node: str | None = None) -> list[str]:
    """Messages with a DBC cycle time, of ``node`` when given (default: of any sender)."""
    return [m.name for m in db.messages if m.cycle_time and (node is None or node in m.senders)]


class _Entry:
    """Per-message rule and running statistics (slots: the per-frame path touches these)."""

    __slots__ = (
        "checks",
        "count",
        "decode",
        "decode_errors",
        "first_t",
        "last_data",
        "last_t",
        "last_violations",
        "length",
        "max_period",
        "message",
        "min_period",
        "multiplexed",
        "period_s",
        "ranges",
        "wrong_length",
    )

    def __init__(self, message: Message) -> None:
        self.message = message
        self.length = message.length
        self.period_s = message.cycle_time / 1000.0 if message.cycle_time else None
        self.decode: Callable[..., Any] = message.decode_simple
        self.multiplexed = message.is_multiplexed()
        self.ranges: dict[str, tuple[float, float]] = {}
        for sig in message.signals:
            if sig.minimum is None and sig.maximum is None:
                continue
            lo = -math.inf if sig.minimum is None else float(sig.minimum)
            hi = math.inf if sig.maximum is None else float(sig.maximum)
            slack = _RANGE_EPS * max(
                1.0, abs(lo) if math.isfinite(lo) else 0.0, abs(hi) if math.isfinite(hi) else 0.0
            )
            self.ranges[sig.name] = (lo - slack, hi + slack)
        self.checks = tuple((name, lo, hi) for name, (lo, hi) in self.ranges.items())
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first_t = 0.0
        self.last_t = 0.0
        self.min_period = math.inf
        self.max_period = -math.inf
        self.wrong_length: Counter[int] = Counter()
        self.decode_errors = 0
        self.last_data: bytearray | None = None
        self.last_violations: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class SignalViolation:
    """Values of one signal outside its declared range during the window."""

    message: str
    signal: str
    count: int
    first_t: float
    lowest: float
    highest: float
    minimum: float | None
    maximum: float | None
    unit: str


@dataclass(frozen=True)
class MessageFinding:
    """What was seen of one DBC message during the window."""

    name: str
    frame_id: int
    extended: bool
    required: bool
    length: int
    count: int
    """Frames with the DBC length (only these are the message the DBC defines)."""
    wrong_length: dict[int, int]
    """Observed length -> frames, for frames of this id with another length."""
    decode_errors: int
    period_s: float | None
    min_period: float | None
    max_period: float | None
    """Longest gap, including the silence from the last frame to the end of the window."""
    deviation_pct: float | None
    """Worst ``|period - cycle| / cycle`` in %; ``inf`` if seen fewer than twice; ``None``
    if the DBC gives no cycle time."""


@dataclass(frozen=True)
class ConformanceReport:
    """The findings of one observation window; every number is also in :meth:`to_json`."""

    start_t: float | None
    end_t: float | None
    frames: int
    messages: dict[str, MessageFinding]
    range_violations: list[SignalViolation]
    unknown_ids: dict[str, int]
    heartbeat: MessageFinding | None
    non_data_frames: int = 0

    @property
    def required(self) -> list[str]:
        return [m.name for m in self.messages.values() if m.required]

    @property
    def missing(self) -> list[str]:
        """Required messages never received with their DBC length."""
        return [m.name for m in self.messages.values() if m.required and m.count == 0]

    @property
    def range_violation_count(self) -> int:
        """Signal values outside their declared range (one per signal per frame)."""
        return sum(v.count for v in self.range_violations)

    def cycle_deviation(self) -> dict[str, float]:
        """Per required message with a cycle time: worst period deviation, % (inf: < 2 frames)."""
        return {
            m.name: m.deviation_pct
            for m in self.messages.values()
            if m.required and m.deviation_pct is not None
        }

    def worst_cycle_deviation(self) -> tuple[str, float] | None:
        deviations = self.cycle_deviation()
        if not deviations:
            return None
        name = max(deviations, key=lambda k: deviations[k])
        return name, deviations[name]

    def violations(self, tolerance_pct: float) -> list[str]:
        """Every way the traffic breaks the DBC, one sentence each (empty: conforming)."""
        out = [f"{name}: required, never received with its DBC length" for name in self.missing]
        for m in self.messages.values():
            for length, n in sorted(m.wrong_length.items()):
                out.append(f"{m.name}: {n} frame(s) of {length} bytes, DBC length {m.length}")
            if m.decode_errors:
                out.append(f"{m.name}: {m.decode_errors} frame(s) could not be decoded")
            deviation = m.deviation_pct
            if m.required and m.count and deviation is not None and deviation > tolerance_pct:
                out.append(
                    f"{m.name}: period deviates {_pct(deviation)} from "
                    f"{m.period_s:g} s (tolerance {tolerance_pct:g} %)"
                )
        for v in self.range_violations:
            out.append(
                f"{v.message}.{v.signal}: {v.count} value(s) outside "
                f"[{_num(v.minimum)}|{_num(v.maximum)}] {v.unit}".rstrip()
                + f" (seen {v.lowest:g} to {v.highest:g})"
            )
        return out

    def warnings(self, tolerance_pct: float) -> list[str]:
        """What is worth knowing but breaks nothing the BMS owes: unknown ids, the heartbeat."""
        out = [f"unknown id {ident}: {n} frame(s)" for ident, n in self.unknown_ids.items()]
        hb = self.heartbeat
        if hb is not None:
            if hb.count == 0:
                out.append(f"heartbeat {hb.name}: not on the bus; supervision cannot be judged")
            elif hb.deviation_pct is not None and hb.deviation_pct > tolerance_pct:
                out.append(
                    f"heartbeat {hb.name}: period deviates {_pct(hb.deviation_pct)} "
                    f"from {hb.period_s:g} s"
                )
        return out

    def to_json(self) -> dict[str, Any]:
        def finding(m: MessageFinding) -> dict[str, Any]:
            return {
                "id": f"0x{m.frame_id:X}",
                "extended": m.extended,
                "required": m.required,
                "length": m.length,
                "count": m.count,
                "wrong_length": {str(k): v for k, v in m.wrong_length.items()},
                "decode_errors": m.decode_errors,
                "cycle_s": m.period_s,
                "min_period_s": m.min_period,
                "max_period_s": m.max_period,
                "deviation_pct": _finite(m.deviation_pct),
            }

        return {
            "window": {"start_t": self.start_t, "end_t": self.end_t},
            "frames": self.frames,
            "missing": self.missing,
            "range_violations": [v.__dict__ for v in self.range_violations],
            "unknown_ids": self.unknown_ids,
            "heartbeat": finding(self.heartbeat) if self.heartbeat else None,
            "messages": {name: finding(m) for name, m in self.messages.items()},
        }


def _finite(value: float | None) -> float | str | None:
    """JSON has no infinity: say it in words."""
    if value is None or math.isfinite(value):
        return value
    return "inf (fewer than two frames)"


def _pct(value: float) -> str:
    return "without a period (fewer than two frames)" if math.isinf(value) else f"{value:.3g} %"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dataclass
class _Range:
    count: int
    first_t: float
    lowest: float
    highest: float


class CanMonitor(can.Listener):
    """Decodes and checks every frame it is handed against a DBC.

    ``required``: the messages the device must send (default: every periodic message of
    ``node``, or of any sender without one). ``heartbeat``: the message the device supervises
    (followed, never required of the device). ``timebase`` maps a frame's timestamp onto the
    site timebase (a transport's ``timebase``); ``None`` takes timestamps as they are.

    Use it as a python-can listener (``transport.add_listener(monitor)``) or feed a list of
    frames to :meth:`process_all`. Not locked: a reader thread may feed it while another reads
    the report, which then may miss the frame being processed at that instant.
    """

    def __init__(
        self,
        db: Database,
        required: Iterable[str] | None = None,
        *,
        node: str | None = None,
        heartbeat: str | None = None,
        timebase: Callable[[float], float] | None = None,
    ) -> None:
        self.db = db
        names = {m.name for m in db.messages}
        wanted = list(required) if required is not None else periodic_messages(db, node)
        unknown = [n for n in wanted if n not in names]
        if heartbeat is not None and heartbeat not in names:
            unknown.append(heartbeat)
        if unknown:
            raise KeyError(f"not in the CAN database: {', '.join(unknown)}")
        self.required = [n for n in wanted if n != heartbeat]
        self.heartbeat = heartbeat
        self.timebase = timebase
        self._entries = {m.name: _Entry(m) for m in db.messages}
        self._std = {
            m.frame_id: self._entries[m.name] for m in db.messages if not m.is_extended_frame
        }
        self._ext = {m.frame_id: self._entries[m.name] for m in db.messages if m.is_extended_frame}
        self.reset()

    @classmethod
    def for_bms(cls, bms: DbcBms) -> CanMonitor:
        """A monitor for a DBC BMS: its DBC, the messages its map requires, its heartbeat."""
        return cls(
            bms.database,
            bms.required,
            heartbeat=bms.map.heartbeat,
            timebase=bms.transport.timebase,
        )

    def reset(self, start_t: float | None = None) -> None:
        """Forget everything seen; a new window starts (at ``start_t`` on the site timebase)."""
        for entry in self._entries.values():
            entry.reset()
        self.frames = 0
        self.non_data_frames = 0
        self.unknown: Counter[tuple[int, bool]] = Counter()
        self._ranges: dict[tuple[str, str], _Range] = {}
        self.start_t = start_t

    # -- the per-frame path -------------------------------------------------------------------

    def on_message_received(self, msg: can.Message) -> None:
        self.process(msg)

    def process(self, msg: can.Message) -> None:
        """Decode and check one frame."""
        self.frames += 1
        if msg.is_error_frame or msg.is_remote_frame:
            self.non_data_frames += 1
            return
        ident = msg.arbitration_id
        entry = (self._ext if msg.is_extended_id else self._std).get(ident)
        if entry is None:
            self.unknown[ident, msg.is_extended_id] += 1
            return
        data = msg.data
        if len(data) != entry.length:
            entry.wrong_length[len(data)] += 1
            return
        t = msg.timestamp if self.timebase is None else self.timebase(msg.timestamp)
        if entry.count:
            period = t - entry.last_t
            if period < entry.min_period:
                entry.min_period = period
            if period > entry.max_period:
                entry.max_period = period
        else:
            entry.first_t = t
        entry.last_t = t
        entry.count += 1
        if data == entry.last_data:
            # A repeated payload has the same values: most frames of a healthy bus are repeats.
            for name, value in entry.last_violations:
                self._out_of_range(entry, name, value, t)
            return
        try:
            values = entry.decode(data, False)
        except (DecodeError, ValueError, KeyError):
            entry.decode_errors += 1
            entry.last_data = None
            return
        violations: list[tuple[str, float]] = []
        if entry.multiplexed:
            ranges = entry.ranges
            for name, value in values.items():
                bounds = ranges.get(name)
                if bounds is not None and not bounds[0] <= value <= bounds[1]:
                    violations.append((name, value))
        else:
            for name, lo, hi in entry.checks:
                value = values[name]
                if not lo <= value <= hi:
                    violations.append((name, value))
        entry.last_data = bytearray(data)  # a copy: the sender may reuse its buffer
        entry.last_violations = tuple(violations)
        for name, value in violations:
            self._out_of_range(entry, name, value, t)

    def process_all(self, frames: Iterable[can.Message]) -> int:
        """Process every frame of ``frames`` (a list, a python-can log reader); return the count."""
        process = self.process
        n = 0
        for msg in frames:
            process(msg)
            n += 1
        return n

    def _out_of_range(self, entry: _Entry, signal: str, value: float, t: float) -> None:
        key = (entry.message.name, signal)
        seen = self._ranges.get(key)
        if seen is None:
            self._ranges[key] = _Range(1, t, value, value)
        else:
            seen.count += 1
            seen.lowest = min(seen.lowest, value)
            seen.highest = max(seen.highest, value)

    # -- the report ---------------------------------------------------------------------------

    def report(self, end_t: float | None = None) -> ConformanceReport:
        """The window's findings; ``end_t`` (site timebase) closes it (default: the last frame).

        The silence from a message's last frame to ``end_t`` counts as a period, so a message
        that stopped shows up even if its earlier periods were perfect.
        """
        if end_t is None:
            seen = [e.last_t for e in self._entries.values() if e.count]
            end_t = max(seen) if seen else None
        messages = {
            name: self._finding(entry, name in self.required, end_t)
            for name, entry in self._entries.items()
            if name in self.required or entry.count or entry.wrong_length or name == self.heartbeat
        }
        heartbeat = messages.pop(self.heartbeat, None) if self.heartbeat else None
        violations = []
        for (msg_name, sig_name), r in self._ranges.items():
            sig = self.db.get_message_by_name(msg_name).get_signal_by_name(sig_name)
            violations.append(
                SignalViolation(
                    msg_name,
                    sig_name,
                    r.count,
                    r.first_t,
                    r.lowest,
                    r.highest,
                    None if sig.minimum is None else float(sig.minimum),
                    None if sig.maximum is None else float(sig.maximum),
                    sig.unit or "",
                )
            )
        unknown = {
            (f"0x{ident:08X} (extended)" if ext else f"0x{ident:03X}"): n
            for (ident, ext), n in sorted(self.unknown.items())
        }
        return ConformanceReport(
            start_t=self.start_t,
            end_t=end_t,
            frames=self.frames,
            messages=messages,
            range_violations=violations,
            unknown_ids=unknown,
            heartbeat=heartbeat,
            non_data_frames=self.non_data_frames,
        )

    def _finding(self, entry: _Entry, required: bool, end_t: float | None) -> MessageFinding:
        m = entry.message
        min_p = entry.min_period if entry.count > 1 else None
        max_p = entry.max_period if entry.count > 1 else None
        if entry.count and end_t is not None and end_t - entry.last_t > (max_p or 0.0):
            silence = end_t - entry.last_t
            # Silence only shows as a period once it is longer than the message's cycle.
            if entry.period_s is not None and silence > entry.period_s:
                max_p = silence
        deviation: float | None = None
        if entry.period_s is not None:
            if min_p is None or max_p is None:
                deviation = math.inf
            else:
                worst = max(abs(min_p - entry.period_s), abs(max_p - entry.period_s))
                deviation = worst / entry.period_s * 100.0
        return MessageFinding(
            name=m.name,
            frame_id=m.frame_id,
            extended=m.is_extended_frame,
            required=required,
            length=m.length,
            count=entry.count,
            wrong_length=dict(entry.wrong_length),
            decode_errors=entry.decode_errors,
            period_s=entry.period_s,
            min_period=min_p,
            max_period=max_p,
            deviation_pct=deviation,
        )


@dataclass
class Checked:
    """A report judged against a tolerance: what ``harness replay`` prints."""

    report: ConformanceReport
    tolerance_pct: float
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def judge(cls, report: ConformanceReport, tolerance_pct: float) -> Checked:
        return cls(
            report, tolerance_pct, report.violations(tolerance_pct), report.warnings(tolerance_pct)
        )

    @property
    def conforming(self) -> bool:
        return not self.violations
