"""The safety supervisor: watches BMS alarms and cell temperatures throughout a run.

On a simulated clock it checks after every advance (so a trip interrupts the scenario at the
simulated instant it happens); on a live site a daemon thread polls. A trip blocks further writes
(except the safe state's own) and is reported as the scenario's failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from harness.config.site import SafetyConfig
from harness.devices.roles import DeviceError


class SafetyTrip(RuntimeError):
    """The supervisor stopped the run; the message says which limit on which unit."""


class Supervisor:
    def __init__(self, bench: Any, limits: SafetyConfig, on_trip: Callable[[str], None]) -> None:
        self.bench = bench
        self.limits = limits
        self.on_trip = on_trip
        self.tripped: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str | None:
        """The first limit violated now, or None. Reads only what the units already reported."""
        expected = getattr(self.bench, "expected_alarms", {})  # a fault test provokes them
        for name, node in self.bench.nodes.items():
            bms = node.bms
            provoked = expected.get(name, frozenset())
            try:
                alarms = set(bms.alarms()) - provoked
                if self.limits.trip_on_alarms is not None:
                    alarms &= set(self.limits.trip_on_alarms)
            except DeviceError:
                alarms = set()  # not reported yet: heartbeat/staleness is another check's job
            if alarms:
                return f"{name}.bms reports {', '.join(sorted(alarms))}"
            if self.limits.max_cell_temperature is not None and "overtemp" not in provoked:
                try:
                    temp = float(bms.value("temperature"))
                except (DeviceError, KeyError):
                    continue
                if temp > self.limits.max_cell_temperature:
                    return (
                        f"{name}.bms temperature {temp:.1f} degC above the site's limit "
                        f"{self.limits.max_cell_temperature:g} degC"
                    )
        return None

    def _trip(self, reason: str) -> None:
        if self.tripped is None:
            self.tripped = reason
            self.on_trip(reason)

    def after_advance(self, _until: float) -> None:
        """SimClock advancer: check, and stop the scenario right here on a violation."""
        if self.tripped is not None:
            return
        reason = self.check()
        if reason is not None:
            self._trip(reason)
            raise SafetyTrip(f"safety supervisor tripped: {reason}")

    def start_polling(self, period_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(period_s):
                reason = self.check()
                if reason is not None:
                    self._trip(reason)
                    return

        self._thread = threading.Thread(target=loop, name="safety-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
