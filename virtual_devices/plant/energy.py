"""Energy counters: active power integrated over the plant's steps, import and export apart.

A power analyzer's integrator (WP+ / WP-) and a settlement meter's registers both count energy
this way. The plant holds the power of each interval constant over the step (the operating point
at its start, as the battery and the recorder see it), so a counter's sum is exact for the
plant's own trajectory, whatever the step; a sample-and-hold integral of the analyzer's capture
of the same power gives the same number.

``gain`` is how the counter is calibrated: 1 counts the true energy; a meter with a gain error
(``1 +`` the ``gain_error`` defect) counts every watt-hour that many times.
"""

from __future__ import annotations

WS_PER_WH = 3600.0


class EnergyCounter:
    """Import (positive power) and export (negative power) energy, Wh, both counting up."""

    __slots__ = ("_export_ws", "_import_ws", "gain")

    def __init__(self, gain: float = 1.0) -> None:
        if not gain > 0:
            raise ValueError(f"an energy counter's gain must be > 0, not {gain}")
        self.gain = float(gain)
        self._import_ws = 0.0
        self._export_ws = 0.0

    def add(self, power_w: float, dt_s: float) -> None:
        """``power_w`` held for ``dt_s`` seconds (positive: imported, negative: exported)."""
        if power_w > 0.0:
            self._import_ws += power_w * dt_s
        elif power_w < 0.0:
            self._export_ws -= power_w * dt_s

    @property
    def import_wh(self) -> float:
        return self._import_ws * self.gain / WS_PER_WH

    @property
    def export_wh(self) -> float:
        return self._export_ws * self.gain / WS_PER_WH
