"""The site clock: one per site, read by everything that timestamps (DESIGN section 4).

``RealClock`` is monotonic wall time for bench and field. ``SimClock`` is lock-step: simulated
time moves only when the harness sleeps or waits, and each move is handed to the registered
advancers (the virtual plant and its endpoints), which step themselves as finely as they need.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

Advancer = Callable[[float], None]
"""Called with the target time; must bring its participant's state up to that time."""


class Clock(ABC):
    """What scenarios and transports need from time."""

    @abstractmethod
    def now(self) -> float:
        """Seconds on the site timebase."""

    @abstractmethod
    def sleep(self, dt: float) -> None:
        """Let ``dt`` seconds of site time pass."""

    @abstractmethod
    def bus_time(self, timestamp: float) -> float:
        """Map a python-can message timestamp onto the site timebase."""

    def wait_until(self, predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
        """Wait until ``predicate()`` is true or ``timeout`` seconds of site time passed.

        Returns whether the predicate became true; the caller decides what a timeout means.
        """
        deadline = self.now() + timeout
        while True:
            if predicate():
                return True
            remaining = deadline - self.now()
            if remaining <= 0:
                return False
            self.sleep(min(poll, remaining))

    @property
    def simulated(self) -> bool:
        return False


class RealClock(Clock):
    """Monotonic wall time, for live sites."""

    def __init__(self) -> None:
        self._epoch_offset = time.time() - time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, dt: float) -> None:
        if dt > 0:
            time.sleep(dt)

    def bus_time(self, timestamp: float) -> float:
        # python-can interfaces stamp frames with epoch time.
        return timestamp - self._epoch_offset


class SimClock(Clock):
    """Lock-step simulated time for an in-process virtual site.

    ``lock`` is held while the advancers run, so endpoint threads that serve requests read a
    consistent state between steps, never in the middle of one.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._advancers: list[Advancer] = []
        self.lock = threading.RLock()
        self.wall_started = time.perf_counter()

    @property
    def simulated(self) -> bool:
        return True

    def add_advancer(self, advancer: Advancer) -> None:
        """Register a participant; advancers run in registration order on every move."""
        self._advancers.append(advancer)

    def now(self) -> float:
        return self._now

    def sleep(self, dt: float) -> None:
        if dt < 0:
            raise ValueError(f"cannot sleep a negative time ({dt} s)")
        self.advance_to(self._now + dt)

    def advance_to(self, target: float) -> None:
        with self.lock:
            for advancer in self._advancers:
                advancer(target)
            self._now = max(self._now, target)

    def bus_time(self, timestamp: float) -> float:
        # Virtual CAN nodes stamp frames with site time and the virtual bus preserves it.
        return timestamp
