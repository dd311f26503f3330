"""A replay BMS: plays a recorded CAN log onto a bus in site time.

A capture from the field (or one a run left as evidence) becomes a regression case in CI: the
replay stands where a virtual BMS would stand, and the harness checks it exactly as it checks a
live unit. Frames keep their recorded spacing: frame ``i`` goes out at ``start_time + (t_i -
t_0)`` on the site clock, stamped with that time, when :meth:`ReplayBms.advance` reaches it (a
SimClock advancer, like :class:`~virtual_devices.endpoints.can_node.CanNode`).

Only what the device sent is replayed: frames the log marks as transmitted by the recorder
(``Tx``: the harness's own heartbeat in a capture it made) are left out unless ``include_tx``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import can

SEND_TIMEOUT_S = 1.0


def read_log(path: Path) -> list[can.Message]:
    """Every frame of a python-can readable log (BLF, ASC, CSV, TRC, ...), in file order."""
    with can.LogReader(path) as reader:
        return list(reader)


class ReplayBms:
    """Sends ``frames`` on ``bus`` with their recorded spacing; owns the bus once handed over.

    ``loop``: start again from the first frame after the last one (the gap between the last and
    the first frame is the log's mean frame spacing), so a short capture can stand in for a
    BMS during a long scenario.
    """

    def __init__(
        self,
        bus: can.BusABC,
        frames: Iterable[can.Message],
        start_time: float = 0.0,
        include_tx: bool = False,
        loop: bool = False,
    ) -> None:
        self.bus = bus
        recorded = [f for f in frames if (include_tx or f.is_rx) and not f.is_error_frame]
        if not recorded:
            raise ValueError("the log holds no frame to replay")
        t0 = recorded[0].timestamp
        self._offsets = [f.timestamp - t0 for f in recorded]
        if any(b < a for a, b in zip(self._offsets, self._offsets[1:], strict=False)):
            raise ValueError("the log's timestamps go backwards; cannot replay it in order")
        self._frames = recorded
        span = self._offsets[-1]
        gap = span / (len(recorded) - 1) if len(recorded) > 1 else 1.0
        self._cycle = span + gap if loop else math.inf
        self.start_time = start_time
        self._index = 0
        self._round = 0
        self.sent = 0

    @classmethod
    def from_log(cls, bus: can.BusABC, path: Path, **kwargs: object) -> ReplayBms:
        return cls(bus, read_log(path), **kwargs)  # type: ignore[arg-type]

    @property
    def finished(self) -> bool:
        return self._index >= len(self._frames) and math.isinf(self._cycle)

    def next_due(self) -> float:
        """Site time of the next frame (``inf`` once a non-looping log is played out)."""
        if self._index >= len(self._frames):
            if math.isinf(self._cycle):
                return math.inf
            self._index, self._round = 0, self._round + 1
        lap = self._round * self._cycle if self._round else 0.0  # 0 * inf is nan
        return self.start_time + lap + self._offsets[self._index]

    def advance(self, until: float) -> None:
        """Send every frame due up to ``until``, each stamped with its due time."""
        while (due := self.next_due()) <= until:
            recorded = self._frames[self._index]
            frame = can.Message(
                timestamp=due,
                arbitration_id=recorded.arbitration_id,
                is_extended_id=recorded.is_extended_id,
                is_remote_frame=recorded.is_remote_frame,
                dlc=recorded.dlc,
                data=recorded.data,
                is_fd=recorded.is_fd,
                bitrate_switch=recorded.bitrate_switch,
                check=False,
            )
            self.bus.send(frame, timeout=SEND_TIMEOUT_S)
            self._index += 1
            self.sent += 1

    def close(self) -> None:
        self.bus.shutdown()
