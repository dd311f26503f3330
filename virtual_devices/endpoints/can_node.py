"""A virtual CAN node: transmits database messages on their schedule, in site time.

The node does not run a thread or read a wall clock. Whoever owns time (the lock-step SimClock, or
a real-time loop in ``harness site up``) calls :meth:`CanNode.advance` with the new site time; the
node sends every frame that fell due since the last call, each stamped with its exact due time,
so a timestamp-preserving virtual bus carries site time to the harness. It also drains what it
receives (the inverter heartbeat) so the BMS can supervise it, noting each arrival on site time
(see :meth:`CanNode.receive`).

Defects are injected from outside: a ``periods_s`` override for a wrong cycle time, a shorter
``messages`` list or a ``stops_s`` time for a missing message, and a ``values`` provider
returning out-of-range values, which are encoded anyway (non-strict; beyond the bits they
saturate).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import can
from cantools.database.can import Database, Message, Signal

ValueProvider = Callable[[str], dict[str, float]]
"""Message name -> signal values, called at send time."""

SEND_TIMEOUT_S = 1.0


def default_messages(db: Database, node: str) -> list[str]:
    """Names of the messages whose senders include ``node``, in database order."""
    return [m.name for m in db.messages if node in m.senders]


def _signal_default(signal: Signal) -> float:
    """The initial value of a signal (or 0), brought into its declared range."""
    value = float(signal.initial) if isinstance(signal.initial, (int, float)) else 0.0
    if signal.minimum is not None:
        value = max(value, float(signal.minimum))
    if signal.maximum is not None:
        value = min(value, float(signal.maximum))
    return value


def _representable(signal: Signal) -> tuple[float, float]:
    """Scaled values the signal's bits can hold (the raw integer range, scaled)."""
    if signal.is_signed:
        raw_lo, raw_hi = -(1 << (signal.length - 1)), (1 << (signal.length - 1)) - 1
    else:
        raw_lo, raw_hi = 0, (1 << signal.length) - 1
    a = float(signal.conversion.raw_to_scaled(raw_lo, False))  # type: ignore[arg-type]
    b = float(signal.conversion.raw_to_scaled(raw_hi, False))  # type: ignore[arg-type]
    return min(a, b), max(a, b)


class _Schedule:
    """Due times of one message: start + k * period, k >= 1 (multiplied, never accumulated)."""

    __slots__ = ("k", "message", "period", "start")

    def __init__(self, message: Message, period: float, start: float) -> None:
        self.message = message
        self.period = period
        self.start = start
        self.k = 1

    @property
    def due(self) -> float:
        return self.start + self.k * self.period


class CanNode:
    """Transmits ``messages`` of ``db`` on ``bus``; the node owns the bus once handed over."""

    def __init__(
        self,
        bus: can.BusABC,
        db: Database,
        messages: list[str],
        values: ValueProvider,
        periods_s: dict[str, float] | None = None,
        start_time: float = 0.0,
        stops_s: dict[str, float] | None = None,
    ) -> None:
        self.bus = bus
        self.db = db
        self.values = values
        self.last_received: dict[str, float] = {}
        self.received_count: dict[str, int] = {}
        self.sent_count: dict[str, int] = {}
        self._now = start_time
        self.sending_at = start_time
        """Due time of the frame being encoded (a value provider may depend on it)."""
        periods = dict(periods_s or {})
        unknown = set(periods) - set(messages)
        if unknown:
            raise ValueError(f"period overrides for messages this node does not send: {unknown}")
        self._stops = dict(stops_s or {})
        unknown = set(self._stops) - set(messages)
        if unknown:
            raise ValueError(f"stop times for messages this node does not send: {unknown}")
        self._schedules: list[_Schedule] = []
        for name in messages:
            try:
                message = db.get_message_by_name(name)
            except KeyError:
                raise KeyError(f"message {name!r} is not in the CAN database") from None
            period = periods.get(name)
            if period is None:
                if not message.cycle_time:
                    raise ValueError(f"message {name!r} has no cycle time in the DBC; give one")
                period = message.cycle_time / 1000.0
            if period <= 0:
                raise ValueError(f"message {name!r}: period must be positive, got {period} s")
            self._schedules.append(_Schedule(message, period, start_time))
            self.sent_count[name] = 0
        self._defaults = {
            s.message.name: {sig.name: _signal_default(sig) for sig in s.message.signals}
            for s in self._schedules
        }
        self._limits = {
            s.message.name: {sig.name: _representable(sig) for sig in s.message.signals}
            for s in self._schedules
        }
        self._by_id = {(m.frame_id, m.is_extended_frame): m.name for m in db.messages}
        self._next_due = min((s.due for s in self._schedules), default=math.inf)
        """Earliest due time of any schedule, kept current by :meth:`advance` (the only place
        a schedule moves)."""
        self._last_payload: dict[str, tuple[dict[str, float], bytes]] = {}
        """Per message, the provider's last values and their payload: a pack at rest sends the
        same values frame after frame, and checking, clamping and encoding them is most of a
        frame's cost."""

    @property
    def now(self) -> float:
        """Site time the node has been advanced to."""
        return self._now

    def period(self, message: str) -> float:
        """The period this node sends ``message`` with, s."""
        for s in self._schedules:
            if s.message.name == message:
                return s.period
        raise KeyError(f"this node does not send {message!r}")

    def next_due(self) -> float:
        """Site time of the next frame due (``inf`` if the node sends nothing).

        A plant stepping in lock-step can stop exactly there, so each frame carries the state
        of its own due time rather than the state at the end of a long step.
        """
        return self._next_due

    def advance(self, until: float) -> None:
        """Send every frame due in ``(last, until]`` in time order (a SimClock advancer)."""
        self.receive(until)
        if until < self._next_due:  # most of the clock's short steps: nothing falls due
            self._now = max(self._now, until)
            self.receive()
            return
        heap = [(s.due, i) for i, s in enumerate(self._schedules) if s.due <= until]
        heapq.heapify(heap)
        while heap:
            due, i = heapq.heappop(heap)
            schedule = self._schedules[i]
            self._transmit(schedule.message, due)
            schedule.k += 1
            if schedule.due <= until:
                heapq.heappush(heap, (schedule.due, i))
        self._next_due = min((s.due for s in self._schedules), default=math.inf)
        self._now = max(self._now, until)
        self.receive()

    def encode(self, message: Message) -> bytes:
        """Payload of ``message`` from the value provider, defaults filling the gaps."""
        name = message.name
        provided = self.values(name)
        last = self._last_payload.get(name)
        if last is not None and last[0] == provided:
            return last[1]  # the same values as last time: the same (checked, clamped) payload
        signals: dict[str, Any] = dict(self._defaults[name])
        limits = self._limits[name]
        for signal, value in provided.items():
            if signal not in limits:
                raise KeyError(f"value provider gave {signal!r}, not a signal of {name!r}")
            lo, hi = limits[signal]
            signals[signal] = min(max(float(value), lo), hi)
        payload = message.encode(signals, strict=False)
        self._last_payload[name] = (dict(provided), payload)
        return payload

    def _transmit(self, message: Message, due: float) -> None:
        stop = self._stops.get(message.name)
        if stop is not None and due >= stop:
            return  # the message has stopped (a defect): its schedule runs on, silent
        self.sending_at = due
        frame = can.Message(
            arbitration_id=message.frame_id,
            is_extended_id=message.is_extended_frame,
            data=self.encode(message),
            timestamp=due,
        )
        self.bus.send(frame, timeout=SEND_TIMEOUT_S)
        self.sent_count[message.name] += 1

    def receive(self, until: float | None = None) -> int:
        """Drain frames addressed to the bus; remember when each known message last arrived.

        A frame arrived between the node's present time and ``until``: at its own timestamp
        when that lies in between (site time, carried by a timestamp-preserving bus), else at
        the node's present time (a sender's wall-clock stamp says nothing about site time).
        """
        lo = self._now
        hi = lo if until is None else max(lo, until)
        n = 0
        while (msg := self.bus.recv(timeout=0.0)) is not None:
            n += 1
            name = self._by_id.get((msg.arbitration_id, msg.is_extended_id))
            if name is not None:
                t = msg.timestamp
                self.last_received[name] = t if lo <= t <= hi else lo
                self.received_count[name] = self.received_count.get(name, 0) + 1
        return n

    def close(self) -> None:
        self.bus.shutdown()
