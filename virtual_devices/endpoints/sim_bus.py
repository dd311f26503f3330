"""The device side of python-can's in-process ``virtual`` bus, with a light copy per receiver.

python-can's ``VirtualBus.send`` gives every other bus on the channel its own copy of the frame
through ``copy.deepcopy``, about 5 us a receiver: in a long simulated run of a cluster that is a
fifth of the virtual BMSs' whole cost. ``Message.__copy__`` plus a copy of the payload gives each
receiver its own frame, as before, for a fraction of that. Everything else is python-can's: the
channel registry, the queues, the receive side. The harness opens the standard ``virtual``
interface on the same channel and cannot tell the difference; only the virtual devices' own buses
are of this class.
"""

from __future__ import annotations

import copy
import queue
import time
from typing import Any

import can
from can.interfaces.virtual import VirtualBus


class SimBus(VirtualBus):
    """python-can's VirtualBus whose send copies a frame shallowly for each receiver."""

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self._check_if_open()
        timestamp = msg.timestamp if self.preserve_timestamps else time.time()
        all_sent = True
        for bus_queue in self.channel:
            if bus_queue is self.queue and not self.receive_own_messages:
                continue
            msg_copy = copy.copy(msg)
            msg_copy.data = bytearray(msg.data)  # __copy__ shares the payload; give each its own
            msg_copy.timestamp = timestamp
            msg_copy.channel = self.channel_id
            msg_copy.is_rx = bus_queue is not self.queue
            try:
                bus_queue.put(msg_copy, block=True, timeout=timeout)
            except queue.Full:
                all_sent = False
        if not all_sent:
            raise can.CanOperationError("Could not send message to one or more recipients")


def sim_bus(channel: str, **kwargs: Any) -> can.BusABC:
    """A device-side bus on the in-process ``virtual`` channel ``channel``."""
    return SimBus(channel=channel, **kwargs)
