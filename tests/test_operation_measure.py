"""Operation quantities taken from a capture: the fastest ramp over a window, the time to cover
part of a setpoint step, and the nearest-rank percentile."""

from __future__ import annotations

import numpy as np
import pytest

from harness.measure.operation import max_ramp, nearest_rank, step_latency
from harness.measure.trace import MeasurementError, Trace


def ramp_trace(rate: float, start: float = 1.0, end: float = 2.0, step: float = 0.001) -> Trace:
    """0 until ``start``, then rising at ``rate`` per s until ``end``, flat to 3 s."""
    t = np.arange(0.0, 3.0, step)
    v = np.clip((t - start) * rate, 0.0, (end - start) * rate)
    return Trace({"p": (t, v)}, resolution=step)


def test_max_ramp_finds_the_slope_of_a_linear_ramp_in_either_direction() -> None:
    ramp = max_ramp(ramp_trace(5000.0), "p", window=0.2)
    assert ramp.rate == pytest.approx(5000.0, rel=0.01)
    assert ramp.rising and 0.99 <= ramp.at <= 1.8
    t = np.arange(0.0, 3.0, 0.001)
    falling = Trace({"p": (t, np.where(t < 1.0, 2000.0, 0.0))}, resolution=0.001)
    step = max_ramp(falling, "p", window=0.2)
    assert step.rate == pytest.approx(2000.0 / 0.2) and not step.rising


def test_max_ramp_needs_a_capture_longer_than_its_window() -> None:
    with pytest.raises(MeasurementError, match="shorter than the ramp window"):
        max_ramp(ramp_trace(1.0), "p", window=5.0)
    with pytest.raises(ValueError, match="window must be > 0"):
        max_ramp(ramp_trace(1.0), "p", window=0.0)


def test_step_latency_is_the_time_to_cover_the_share_of_the_step() -> None:
    trace = ramp_trace(5000.0)  # 0 -> 5000 between 1 s and 2 s
    took = step_latency(trace, "p", since=0.5, target=5000.0, reach=0.9, until=3.0)
    assert took == pytest.approx(0.5 + 0.9, abs=0.0015)
    assert step_latency(trace, "p", since=0.5, target=5000.0, reach=0.9, until=1.5) is None
    t = np.arange(0.0, 3.0, 0.001)
    down = Trace({"p": (t, np.clip(2500.0 - (t - 1.0).clip(0) * 5000.0, 0, None))})
    took = step_latency(down, "p", since=1.0, target=0.0, reach=0.9, until=3.0)
    assert took == pytest.approx(0.45, abs=0.0015)


def test_nearest_rank_percentile() -> None:
    values = [0.4] * 8 + [1.2]
    assert nearest_rank(values, 99) == 1.2  # fewer than 100 values: the largest
    assert nearest_rank(list(range(1, 201)), 99) == 198
    assert nearest_rank([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError):
        nearest_rank([], 99)
