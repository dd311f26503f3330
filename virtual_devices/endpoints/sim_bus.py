"""The device side of python-can's in-process ``virtual`` bus, with a light copy per receiver.

python-can's ``VirtualBus.send`` gives every other bus on the channel its own copy of the frame
through ``copy.deepcopy``, about 5 us a receiver: in a long simulated run of a cluster that is a
fifth of the virtual BMSs' whole cost. A new ``Message`` built from the frame's fields, with its
own copy of the payload, gives each receiver its own frame, as before, for a fraction of that.

A node that only sends (the virtual inverter's heartbeat) calls :meth:`SimBus.stop_listening`
so that no sender copies frames for it. Everything else is python-can's: the channel registry,
the queues, the receive side. The harness opens the standard ``virtual`` interface on the same
channel and cannot tell the difference; only the virtual devices' own buses are of this class.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import can
from can.interfaces.virtual import VirtualBus, channels, channels_lock


class SimBus(VirtualBus):
    """python-can's VirtualBus whose send builds a light copy of a frame for each receiver, and
    which can stop listening while it keeps sending."""

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self._check_if_open()
        timestamp = msg.timestamp if self.preserve_timestamps else time.time()
        all_sent = True
        own = self.queue
        for bus_queue in self.channel:
            if bus_queue is own and not self.receive_own_messages:
                continue
            msg_copy = can.Message(
                timestamp=timestamp,
                arbitration_id=msg.arbitration_id,
                is_extended_id=msg.is_extended_id,
                is_remote_frame=msg.is_remote_frame,
                is_error_frame=msg.is_error_frame,
                channel=self.channel_id,
                dlc=msg.dlc,
                data=bytearray(msg.data),  # each receiver its own payload
                is_fd=msg.is_fd,
                is_rx=bus_queue is not own,
                bitrate_switch=msg.bitrate_switch,
                error_state_indicator=msg.error_state_indicator,
                check=False,
            )
            try:
                bus_queue.put(msg_copy, block=True, timeout=timeout)
            except queue.Full:
                all_sent = False
        if not all_sent:
            raise can.CanOperationError("Could not send message to one or more recipients")

    def stop_listening(self) -> None:
        """Take this bus's queue off the channel: it still sends, nothing is queued for it.

        For a node that drops what it receives unread (the inverter's heartbeat sender), so
        no sender copies frames for it. Idempotent; :meth:`shutdown` still frees the channel.
        """
        self._check_if_open()
        with channels_lock:
            if self.queue in self.channel:
                self.channel.remove(self.queue)

    def shutdown(self) -> None:
        with channels_lock:
            listening = self.queue in self.channel
        if listening:
            super().shutdown()
            return
        # Off the channel, python-can's shutdown would not find the queue to remove; the
        # channel's last listener may already have dropped it from the registry.
        can.BusABC.shutdown(self)
        if self._open:
            self._open = False
            with channels_lock:
                if not self.channel and channels.get(self.channel_id) is self.channel:
                    del channels[self.channel_id]


def sim_bus(channel: str, **kwargs: Any) -> can.BusABC:
    """A device-side bus on the in-process ``virtual`` channel ``channel``."""
    return SimBus(channel=channel, **kwargs)
