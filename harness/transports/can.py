"""CAN transport: a python-can bus decoded through a cantools database (DESIGN section 2).

One object per bus. It owns the decode of every frame (a DBC is decoded one way only, here), keeps
the latest value of every signal and per-message arrival statistics, and counts what it could not
understand. Two ways to feed it, sharing one on-frame function:

- :meth:`CanTransport.pump` drains whatever waits on the bus without blocking; a lock-step
  simulated clock calls it after each advance, so no thread and no wall-time wait is involved.
- :meth:`CanTransport.start` runs a python-can ``Notifier`` reader thread for real-time sites.

Timestamps: a frame's bus timestamp goes through ``timebase`` (the site clock's ``bus_time``) so
every value and statistic is on the site timebase.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, cast

import can
import cantools
from cantools.database import DecodeError
from cantools.database.can import Database, Message

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0
"""Longest a send may block on a full transmit queue before it raises."""


def load_database(path: str | Path) -> Database:
    """Load a DBC (or other cantools CAN format) in strict mode.

    Strict mode rejects overlapping signals and signals that do not fit their message, so a broken
    interface definition fails at load time instead of decoding garbage.
    """
    db = cantools.database.load_file(str(path), strict=True)
    if not isinstance(db, Database):
        raise TypeError(f"{path}: not a CAN database (got {type(db).__name__})")
    return db


def open_bus(interface: str, channel: str, bitrate: int | None = None, **kwargs: Any) -> can.BusABC:
    """Open a bus through python-can's interface registry (``virtual``, ``socketcan``, ``pcan``...).

    Configuration files (``~/can.ini``, ``CAN_*`` variables) are ignored: the site file is the only
    source of bus settings, so a run is reproducible on another laptop. A ``virtual`` bus never
    echoes its own frames and keeps the timestamp a sender gives (:meth:`CanTransport.send` always
    gives one), so frames of a simulated-time site carry site time instead of wall time.
    """
    if interface == "virtual":
        kwargs.setdefault("receive_own_messages", False)
        # What the harness sends carries the time it gives (site time on a lock-step site).
        kwargs.setdefault("preserve_timestamps", True)
    if bitrate is not None:
        kwargs["bitrate"] = bitrate
    return can.Bus(channel=channel, interface=interface, ignore_config=True, **kwargs)


@dataclass(frozen=True)
class SignalValue:
    """A decoded signal value and the site time of the frame that carried it."""

    value: float
    t: float


@dataclass(frozen=True)
class CycleStats:
    """Arrival statistics of one message, on the site timebase.

    Periods exist only between consecutive frames; a message seen fewer than twice has none, so
    ``min_period``/``max_period``/``mean_period`` are ``None`` and :meth:`deviation_pct` is
    ``inf``: an unobserved period cannot be shown to conform, and ``inf`` fails any maximum.
    """

    count: int = 0
    first_t: float | None = None
    last_t: float | None = None
    min_period: float | None = None
    max_period: float | None = None
    mean_period: float | None = None

    def deviation_pct(self, expected_period_s: float) -> float:
        """Worst ``|period - expected| / expected * 100`` over the observed periods."""
        if expected_period_s <= 0:
            raise ValueError(f"expected period must be positive, got {expected_period_s} s")
        if self.min_period is None or self.max_period is None:
            return math.inf
        worst = max(
            abs(self.min_period - expected_period_s),
            abs(self.max_period - expected_period_s),
        )
        return worst / expected_period_s * 100.0


class _Accumulator:
    """Mutable per-message statistics; the worst deviation is reached at the min or max period."""

    __slots__ = ("count", "first_t", "last_t", "max_period", "min_period")

    def __init__(self) -> None:
        self.count = 0
        self.first_t = 0.0
        self.last_t = 0.0
        self.min_period = math.inf
        self.max_period = -math.inf

    def add(self, t: float) -> None:
        if self.count:
            period = t - self.last_t
            self.min_period = min(self.min_period, period)
            self.max_period = max(self.max_period, period)
        else:
            self.first_t = t
        self.last_t = t
        self.count += 1

    def snapshot(self) -> CycleStats:
        if self.count == 0:
            return CycleStats()
        if self.count == 1:
            return CycleStats(1, self.first_t, self.last_t)
        mean = (self.last_t - self.first_t) / (self.count - 1)
        return CycleStats(
            self.count,
            self.first_t,
            self.last_t,
            self.min_period,
            self.max_period,
            mean,
        )


class CanTransport:
    """A bus plus its database: decoded latest values, cycle statistics, unknown ids.

    The transport owns the bus once handed over: :meth:`close` shuts it down. Frames with an id
    the database knows are counted in that message's statistics even when their payload fails to
    decode (the arrival is real; the payload error is counted in ``decode_errors``).
    """

    def __init__(self, bus: can.BusABC, db: Database, timebase: Callable[[float], float]) -> None:
        self.bus = bus
        self.db = db
        self.timebase = timebase
        self.unknown_ids: Counter[int] = Counter()
        self.decode_errors = 0
        self._lock = threading.Lock()
        self._by_id: dict[tuple[int, bool], Message] = {
            (m.frame_id, m.is_extended_frame): m for m in db.messages
        }
        self._latest: dict[str, tuple[dict[str, Any], float]] = {}
        self._stats: dict[str, _Accumulator] = {m.name: _Accumulator() for m in db.messages}
        self._listeners: tuple[can.Listener, ...] = ()
        self._multiplexed = {m.name for m in db.messages if m.is_multiplexed()}
        self._latest_mux: dict[str, dict[str, tuple[Any, float]]] = {}
        self._notifier: can.Notifier | None = None
        self._last_decoded: dict[str, tuple[bytes, dict[str, Any]]] = {}

    # -- receiving -----------------------------------------------------------------------------

    def _on_frame(self, msg: can.Message) -> None:
        """Decode one frame and update the state; shared by :meth:`pump` and the Notifier."""
        if not msg.is_error_frame and not msg.is_remote_frame:
            t = self.timebase(msg.timestamp)
            message = self._by_id.get((msg.arbitration_id, msg.is_extended_id))
            values: dict[str, Any] | None = None
            if message is not None:
                data = bytes(msg.data)
                last = self._last_decoded.get(message.name)
                if last is not None and last[0] == data:
                    values = last[1]  # a periodic frame mostly repeats its payload
                else:
                    try:
                        values = cast("dict[str, Any]", message.decode(data, False))
                    except (DecodeError, ValueError, KeyError):  # wrong length, bad payload
                        values = None
                    else:
                        self._last_decoded[message.name] = (data, values)
            with self._lock:
                if message is None:
                    self.unknown_ids[msg.arbitration_id] += 1
                else:
                    self._stats[message.name].add(t)
                    if values is None:
                        self.decode_errors += 1
                    else:
                        self._latest[message.name] = (values, t)
                        if message.name in self._multiplexed:  # each page keeps its own time
                            page = self._latest_mux.setdefault(message.name, {})
                            for name, value in values.items():
                                page[name] = (value, t)
        if self._listeners:  # most frames have none to go to
            self._notify(msg)

    def _notify(self, msg: can.Message) -> None:
        for listener in self._listeners:  # a tuple: add/remove replace it, never mutate it
            try:
                listener.on_message_received(msg)
            except Exception:
                log.exception("CAN listener %r failed on %s", listener, msg)

    def pump(self, max_frames: int | None = None) -> int:
        """Process every frame waiting on the bus without blocking; return how many.

        ``max_frames`` bounds the work on a bus that never goes quiet.
        """
        if self._notifier is not None:
            raise RuntimeError("pump() while the background reader runs: use one or the other")
        n = 0
        recv, on_frame = self.bus.recv, self._on_frame  # bound once: a pump takes many frames
        while max_frames is None or n < max_frames:
            msg = recv(timeout=0.0)
            if msg is None:
                break
            on_frame(msg)
            n += 1
        return n

    def advance(self, until: float) -> None:
        """SimClock advancer: after the plant and its nodes stepped to ``until``, take their frames.

        Register it after the virtual nodes, so it runs once they have transmitted.
        """
        self.pump()

    def start(self, poll_s: float = 0.1) -> None:
        """Read in a background Notifier thread (real-time sites). ``poll_s`` bounds stop()."""
        if self._notifier is None:
            self._notifier = can.Notifier(self.bus, [self._on_frame], timeout=poll_s)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the background reader, waiting at most ``timeout`` seconds for its thread."""
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.stop(timeout=timeout)

    @property
    def running(self) -> bool:
        return self._notifier is not None

    def add_listener(self, listener: can.Listener) -> None:
        """Also hand every frame to ``listener`` (e.g. a ``can.Logger`` for evidence).

        Every frame the bus carried for us, as it arrived (bus timestamp): each received frame,
        and each frame :meth:`send` transmitted (a capture shows both sides, as a bus logger
        would). The caller stops its listener; :meth:`close` does not.
        """
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: can.Listener) -> None:
        """Stop handing frames to ``listener`` (no error if it was not added)."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def close(self) -> None:
        """Stop the reader and shut the bus down."""
        self.stop()
        self.bus.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------------

    def send(
        self,
        message_name: str,
        signals: dict[str, float],
        timestamp: float | None = None,
        strict: bool = True,
    ) -> None:
        """Encode and transmit a database message.

        ``timestamp`` is what a timestamp-preserving (virtual) bus carries; give the site time in
        simulated time. Without it the frame is stamped with wall epoch time, as real interfaces
        and non-preserving virtual buses do. ``strict`` demands every signal, each within range.
        """
        message = self._message(message_name)
        data = message.encode(signals, strict=strict)
        frame = can.Message(
            arbitration_id=message.frame_id,
            is_extended_id=message.is_extended_frame,
            data=data,
            timestamp=time.time() if timestamp is None else timestamp,
            is_rx=False,
        )
        self.bus.send(frame, timeout=SEND_TIMEOUT_S)
        self._notify(frame)

    # -- reading the state ---------------------------------------------------------------------

    def latest(self, message: str, signal: str) -> SignalValue | None:
        """Last decoded value of ``message.signal``, or ``None`` if never received.

        A multiplexed message carries a signal only on its own page: the value and time are
        those of the last frame that carried it.
        """
        with self._lock:
            page = self._latest_mux.get(message)
            if page is not None and signal in page:
                value, t = page[signal]
                return SignalValue(float(value), t)
            entry = self._latest.get(message)
        if entry is None:
            if message not in self._stats:
                raise KeyError(f"message {message!r} is not in the CAN database")
            return None
        values, t = entry
        if signal not in values:
            if message in self._multiplexed and any(
                s.name == signal for s in self._message(message).signals
            ):
                return None  # its page has not been received yet
            raise KeyError(f"signal {signal!r} is not in message {message!r}")
        return SignalValue(float(values[signal]), t)

    def stats(self, message: str) -> CycleStats:
        """Arrival statistics of ``message`` so far (count 0 if never received)."""
        with self._lock:
            acc = self._stats.get(message)
            if acc is None:
                raise KeyError(f"message {message!r} is not in the CAN database")
            return acc.snapshot()

    def expected_period(self, message: str) -> float | None:
        """The message's cycle time from the database (``GenMsgCycleTime``), s; None if unset."""
        cycle_ms = self._message(message).cycle_time
        return cycle_ms / 1000.0 if cycle_ms else None

    def deviation_pct(self, message: str) -> float:
        """Worst period deviation of ``message`` from its database cycle time, %."""
        expected = self.expected_period(message)
        if expected is None:
            raise ValueError(f"message {message!r} has no cycle time (GenMsgCycleTime) in the DBC")
        return self.stats(message).deviation_pct(expected)

    def reset_stats(self, messages: Iterable[str] | None = None) -> None:
        """Forget arrival statistics (all messages, or the named ones) to start a new window."""
        with self._lock:
            for name in list(self._stats) if messages is None else messages:
                if name not in self._stats:
                    raise KeyError(f"message {name!r} is not in the CAN database")
                self._stats[name] = _Accumulator()

    def _message(self, name: str) -> Message:
        try:
            return self.db.get_message_by_name(name)
        except KeyError:
            raise KeyError(f"message {name!r} is not in the CAN database") from None


# -- capture: the traffic a scenario saw, as evidence -------------------------------------------

CAPTURE_INDEX = "can-capture.json"
"""Written next to the logs: which file is which bus, and how their times map to site time."""


class _SiteClock(Protocol):
    @property
    def simulated(self) -> bool: ...

    def now(self) -> float: ...


_ANCHORS: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def capture_offset(clock: _SiteClock) -> float:
    """Seconds added to a bus timestamp when it is written to a log file.

    Frames of a lock-step simulated site carry site time (seconds since the site started), but
    log formats and the tools that read them expect epoch time (BLF stores a calendar start
    date, ASC a "Begin Triggerblock" date). So site time is stored as the wall-clock moment the
    site started plus the site time: one constant per site (the same in every capture of a run),
    recorded in :data:`CAPTURE_INDEX`. Frames of a live site already carry epoch time (python-can
    interfaces stamp them so): offset 0.
    """
    if not clock.simulated:
        return 0.0
    anchor = _ANCHORS.get(clock)
    if anchor is None:
        anchor = _ANCHORS[clock] = round(time.time() - clock.now(), 3)
    return anchor


class _Shifted(can.Listener):
    """Hands a copy of every frame, its timestamp shifted by ``offset``, to ``writer``.

    A copy: the frame itself also goes to the transport's other listeners, unchanged.
    """

    def __init__(self, writer: can.Listener, offset: float) -> None:
        self.writer = writer
        self.offset = offset
        self.frames = 0

    def on_message_received(self, msg: can.Message) -> None:
        self.frames += 1
        copy = can.Message(  # one bus per file: no channel, so sent and received share channel 1
            timestamp=msg.timestamp + self.offset,
            arbitration_id=msg.arbitration_id,
            is_extended_id=msg.is_extended_id,
            is_remote_frame=msg.is_remote_frame,
            is_error_frame=msg.is_error_frame,
            dlc=msg.dlc,
            data=msg.data,
            is_fd=msg.is_fd,
            is_rx=msg.is_rx,
            bitrate_switch=msg.bitrate_switch,
            error_state_indicator=msg.error_state_indicator,
            check=False,
        )
        self.writer.on_message_received(copy)

    def stop(self) -> None:
        self.writer.stop()


@contextmanager
def capture(
    transports: Mapping[str, CanTransport], folder: Path, clock: _SiteClock
) -> Iterator[dict[str, list[Path]]]:
    """Record every frame of each transport (received and sent) as BLF and ASC in ``folder``.

    ``transports`` maps a name (e.g. ``home-1.bms``) to its transport; the files are
    ``<name>.blf`` and ``<name>.asc``, written through python-can's writers, plus
    :data:`CAPTURE_INDEX`. Timestamps: see :func:`capture_offset`. The writers are stopped (and
    the files complete) when the block ends, also when it raises.
    """
    folder.mkdir(parents=True, exist_ok=True)
    offset = capture_offset(clock)
    files: dict[str, list[Path]] = {}
    taps: dict[str, list[_Shifted]] = {}
    with ExitStack() as stack:
        for name, transport in transports.items():
            paths = [folder / f"{name}.blf", folder / f"{name}.asc"]
            files[name] = paths
            taps[name] = []
            for path, writer_cls in zip(paths, (can.BLFWriter, can.ASCWriter), strict=True):
                tap = _Shifted(writer_cls(path), offset)
                stack.callback(tap.stop)
                transport.add_listener(tap)
                stack.callback(transport.remove_listener, tap)
                taps[name].append(tap)
        start = clock.now()
        try:
            yield files
        finally:
            index = {
                "site_time_offset_s": offset,
                "note": "file timestamp = site time + site_time_offset_s",
                "site_time": {"start": start, "end": clock.now()},
                "buses": {
                    name: {
                        "files": [p.name for p in files[name]],
                        "frames": taps[name][0].frames,
                    }
                    for name in files
                },
            }
            (folder / CAPTURE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
