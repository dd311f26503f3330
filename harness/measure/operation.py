"""Quantities of normal operation taken from a capture: the fastest ramp over a window, the time a
unit takes to cover part of a setpoint step, and a nearest-rank percentile.

Values are read sample-and-hold (see :mod:`harness.measure.trace`): a real analyzer samples
uniformly and the virtual one at every plant step, so neither biases these toward early.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.measure.trace import MeasurementError, Trace


@dataclass(frozen=True)
class Ramp:
    """The fastest change of a channel over ``window`` s: ``rate`` in the channel's unit per
    second (absolute), ``at`` the window's start (capture time), ``rising`` its direction."""

    rate: float
    at: float
    rising: bool
    window: float


def max_ramp(trace: Trace, channel: str, window: float, step: float | None = None) -> Ramp:
    """The largest |change| of ``channel`` over any interval of ``window`` s, per second.

    The held values are read on a grid of ``step`` (default: the capture's time resolution, at
    most window / 100), so an interval's ends fall at most one grid step from where the
    largest change is.
    """
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"ramp window must be > 0 s: {window}")
    times, values = trace.times(channel), trace.values(channel)
    grid_step = min(step or trace.resolution or window / 100, window / 100)
    lag = max(1, round(window / grid_step))
    grid_step = window / lag
    span = float(times[-1] - times[0])
    if span < window:
        raise MeasurementError(
            f"{channel}: the capture ({span:g} s) is shorter than the ramp window ({window:g} s)"
        )
    grid = times[0] + grid_step * np.arange(int(span / grid_step) + 1)
    held = values[np.searchsorted(times, grid, "right") - 1]
    change = held[lag:] - held[:-lag]
    i = int(np.argmax(np.abs(change)))
    return Ramp(abs(float(change[i])) / window, float(grid[i]), bool(change[i] > 0), window)


def step_latency(
    trace: Trace, channel: str, since: float, target: float, reach: float, until: float
) -> float | None:
    """Seconds from ``since`` until ``channel`` has covered ``reach`` of the step from its value
    at ``since`` to ``target``, looking no later than ``until``; None if it did not by then."""
    start = trace.value_at(channel, since)
    threshold = start + reach * (target - start)
    try:
        if target > start:
            took = trace.time_until(channel, above=threshold, stays=False, since=since)
        else:
            took = trace.time_until(channel, below=threshold, stays=False, since=since)
    except MeasurementError:
        return None
    return took if since + took <= until else None


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    """The ``percentile`` of ``values`` by nearest rank: the smallest value with at least that
    share of the values at or below it (with fewer than 100 values, p99 is the largest)."""
    if not values:
        raise ValueError("a percentile of no values")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100]: {percentile}")
    ordered = sorted(values)
    rank = math.ceil(percentile / 100 * len(ordered))
    return float(ordered[rank - 1])
