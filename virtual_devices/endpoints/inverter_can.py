"""The virtual inverter's side of its BMS's CAN bus: the heartbeat the BMS supervises.

On a real site the inverter, not the harness, sends the heartbeat (domain facts: "the inverter
sends a heartbeat"); so does the virtual inverter, on the BMS's own virtual bus, at the
heartbeat message's DBC cycle time, from the start of the site. Every signal of the heartbeat
message counts up by one per frame and wraps past its maximum (an alive counter, as the
high-voltage layout's ``AliveCounter``); a message without signals has an empty payload.

``connected`` is the CAN cable between inverter and BMS: unplugged (a fault-insertion unit's
relay, ``virtual_devices/endpoints/fault_insertion.py``), nothing reaches the bus; the schedule
runs on, so frames resume on their cycle when it is plugged back in. Like
:class:`~virtual_devices.endpoints.can_node.CanNode` it has no thread and no wall clock: whoever
owns time calls :meth:`advance`, and each frame carries its exact due time.
"""

from __future__ import annotations

import can
from cantools.database.can import Database

SEND_TIMEOUT_S = 1.0


class InverterHeartbeat:
    """Sends ``message`` of ``db`` on ``bus`` every cycle while connected; owns the bus."""

    def __init__(
        self, bus: can.BusABC, db: Database, message: str, start_time: float = 0.0
    ) -> None:
        self.bus = bus
        self.message = db.get_message_by_name(message)
        if not self.message.cycle_time:
            raise ValueError(f"heartbeat {message!r} has no cycle time in the DBC")
        self.period_s = self.message.cycle_time / 1000.0
        self.connected = True
        self.sent = 0
        self._start = start_time
        self._k = 1
        self._counters = {s.name: 0 for s in self.message.signals}
        self._wrap = {
            s.name: int(s.maximum) + 1 if s.maximum is not None else 256
            for s in self.message.signals
        }
        stop_listening = getattr(bus, "stop_listening", None)
        if callable(stop_listening):
            stop_listening()  # it drops the BMS's frames unread: a SimBus need not queue them

    def next_due(self) -> float:
        """Site time of the next frame (sent or, unplugged, skipped)."""
        return self._start + self._k * self.period_s

    def advance(self, until: float) -> None:
        """Send every frame due in ``(last, until]``; drain what the bus brought (the BMS's)."""
        while (due := self.next_due()) <= until:
            if self.connected:
                self._send(due)
            self._k += 1
        while self.bus.recv(timeout=0.0) is not None:
            pass  # the inverter's own use of the BMS frames is not modelled

    def _send(self, due: float) -> None:
        message = self.message
        data = message.encode(dict(self._counters), strict=False) if self._counters else b""
        frame = can.Message(
            arbitration_id=message.frame_id,
            is_extended_id=message.is_extended_frame,
            data=data.ljust(message.length, b"\0"),
            timestamp=due,
        )
        self.bus.send(frame, timeout=SEND_TIMEOUT_S)
        self.sent += 1
        for name, value in self._counters.items():
            self._counters[name] = (value + 1) % self._wrap[name]

    def close(self) -> None:
        self.bus.shutdown()
