"""Trace: events and threshold times on synthetic captures with exactly known answers.

Sample times are multiples of 2**-10 s (about 1 ms) so every expected value is exact in binary
floating point and the assertions compare with ``==``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.measure.trace import EdgeEvent, MeasurementError, Trace

DT = 2.0**-10
N = 4096  # 4 s of capture


def times(n: int = N) -> np.ndarray:
    return np.arange(n, dtype=np.float64) * DT


def step(at: int, before: float, after: float, n: int = N) -> np.ndarray:
    values = np.full(n, before)
    values[at:] = after
    return values


def islanding(open_at: int = 1024, volt_zero_at: int = 1536, amps_zero_at: int = 1280) -> Trace:
    """Breaker opens at sample 1024 (1 s); voltage collapses at 1.5 s; current at 1.25 s."""
    t = times()
    return Trace(
        {
            "pcc.breaker": (t, step(open_at, 1.0, 0.0)),
            "pcc.voltage": (t, step(volt_zero_at, 240.0, 0.0)),
            "inverters.current": (t, step(amps_zero_at, 20.0, 0.0)),
        },
        units={"pcc.voltage": "V", "inverters.current": "A", "pcc.breaker": ""},
    )


def test_pcc_open_is_the_first_falling_edge_of_the_breaker() -> None:
    assert islanding().event("pcc_open") == 1.0


def test_pcc_close_is_the_rising_edge() -> None:
    t = times()
    breaker = step(1024, 1.0, 0.0)
    breaker[3072:] = 1.0
    trace = Trace({"pcc.breaker": (t, breaker)})
    assert trace.event("pcc_close") == 3.0
    assert trace.event("pcc_open") == 1.0
    with pytest.raises(MeasurementError, match=r"searched from t=1\.5"):
        trace.event("pcc_open", after=1.5)


def test_missing_event_is_a_clear_error() -> None:
    t = times()
    trace = Trace({"pcc.breaker": (t, np.ones(N)), "pcc.voltage": (t, np.full(N, 240.0))})
    with pytest.raises(MeasurementError, match=r"'pcc_open'.*pcc\.breaker went from 1 to 1"):
        trace.event("pcc_open")
    with pytest.raises(MeasurementError, match="unknown event 'lightning'"):
        trace.event("lightning")


def test_event_channel_not_captured() -> None:
    trace = Trace({"pcc.voltage": (times(), np.full(N, 240.0))})
    with pytest.raises(MeasurementError, match=r"'pcc\.breaker' not in the capture"):
        trace.event("pcc_open")


def test_custom_events() -> None:
    t = times()
    trace = Trace(
        {"gf.energizing": (t, step(100, 0.0, 1.0))},
        events={"gf_start": EdgeEvent("gf.energizing", rising=True)},
    )
    assert trace.event("gf_start") == 100 * DT


def test_time_until_below_from_the_event() -> None:
    trace = islanding()
    opened = trace.event("pcc_open")
    assert trace.time_until("pcc.voltage", below=12.0, since=opened) == 0.5
    assert trace.time_until("inverters.current", below=1.0, since=opened) == 0.25


def test_several_channels_all_below() -> None:
    trace = islanding()
    opened = trace.event("pcc_open")
    both = trace.time_until(["pcc.voltage", "inverters.current"], below=[12.0, 1.0], since=opened)
    assert both == 0.5  # the later of the two
    assert trace.time_until(["pcc.voltage", "inverters.current"], below=30.0, since=opened) == 0.5


def test_never_below_is_an_error_naming_the_channel() -> None:
    t = times()
    trace = Trace({"pcc.voltage": (t, np.full(N, 240.0))}, units={"pcc.voltage": "V"})
    with pytest.raises(MeasurementError, match=r"pcc\.voltage below 12 V.*min 240"):
        trace.time_until("pcc.voltage", below=12.0, since=1.0)


def test_dip_that_recovers_is_ignored_when_it_must_stay() -> None:
    t = times()
    volts = np.full(N, 240.0)
    volts[1100:1200] = 5.0  # a dip below the threshold that recovers
    volts[2048:] = 0.0  # the real collapse, at 2 s
    trace = Trace({"pcc.voltage": (t, volts)})
    assert trace.time_until("pcc.voltage", below=12.0, since=1.0, stays=True) == 1.0
    assert trace.time_until("pcc.voltage", below=12.0, since=1.0, stays=False) == 76 * DT


def test_dip_at_the_end_only_counts_if_it_lasts_to_the_end() -> None:
    t = times()
    volts = np.full(N, 240.0)
    volts[2000:2100] = 0.0
    trace = Trace({"pcc.voltage": (t, volts)})
    with pytest.raises(MeasurementError, match="never stays"):
        trace.time_until("pcc.voltage", below=12.0, since=0.0)


def test_channels_below_separately_but_never_together() -> None:
    t = times()
    a = np.full(N, 10.0)
    b = np.full(N, 10.0)
    a[1000:1100] = 0.0
    b[2000:2100] = 0.0
    trace = Trace({"a": (t, a), "b": (t, b)})
    assert trace.time_until("a", below=1.0, since=0.0, stays=False) == 1000 * DT
    with pytest.raises(MeasurementError, match="at the same time"):
        trace.time_until(["a", "b"], below=1.0, since=0.0, stays=False)


def test_condition_already_holding_at_since_is_zero() -> None:
    trace = islanding()
    assert trace.time_until("pcc.voltage", below=12.0, since=2.0) == 0.0
    assert trace.time_until("pcc.voltage", below=12.0, since=2.0 + DT / 2) == 0.0


def test_since_between_samples_counts_from_since() -> None:
    trace = islanding()
    assert trace.time_until("pcc.voltage", below=12.0, since=1.0 + DT / 2) == 0.5 - DT / 2


def test_above_and_band() -> None:
    t = times()
    freq = np.full(N, 58.0)
    freq[1024:] = 59.0
    freq[2048:] = 60.0
    trace = Trace({"f": (t, freq)})
    assert trace.time_until("f", above=58.5, since=0.0) == 1.0
    assert trace.time_until("f", above=59.5, below=60.5, since=0.0) == 2.0
    assert trace.time_until("f", above=58.5, below=59.5, since=0.0, stays=False) == 1.0


def test_different_time_axes_are_sample_and_hold() -> None:
    fast = times()
    slow = times()[::64]  # one sample every 62.5 ms
    trace = Trace(
        {"v": (fast, step(1500, 240.0, 0.0)), "i": (slow, step(30, 20.0, 0.0, slow.size))}
    )
    # v settles at 1500*DT, i at its 30th sample = 1920*DT; all-below is the later one.
    assert trace.time_until(["v", "i"], below=[1.0, 1.0], since=1.0) == 1920 * DT - 1.0
    assert trace.time_until(["v", "i"], below=1.0, since=1.0, stays=False) == 1920 * DT - 1.0


def test_time_until_argument_errors() -> None:
    trace = islanding()
    with pytest.raises(ValueError, match="threshold"):
        trace.time_until("pcc.voltage", since=0.0)
    with pytest.raises(TypeError, match="numbers in the channel's unit"):
        trace.time_until("pcc.voltage", below="0.05 pu", since=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 thresholds for 1 channels"):
        trace.time_until("pcc.voltage", below=[1.0, 2.0], since=0.0)
    with pytest.raises(MeasurementError, match="after the end"):
        trace.time_until("pcc.voltage", below=1.0, since=10.0)
    with pytest.raises(MeasurementError, match="'nope' not in the capture"):
        trace.time_until("nope", below=1.0, since=0.0)


def test_nan_samples_never_satisfy() -> None:
    t = times()
    volts = step(1024, 240.0, 0.0)
    volts[-1] = np.nan
    with pytest.raises(MeasurementError):
        Trace({"v": (t, volts)}).time_until("v", below=1.0, since=0.0)


def test_value_at_holds_the_last_sample() -> None:
    trace = islanding()
    assert trace.value_at("pcc.voltage", 1.5) == 0.0
    assert trace.value_at("pcc.voltage", 1.5 - DT / 2) == 240.0
    with pytest.raises(MeasurementError, match="outside the capture"):
        trace.value_at("pcc.voltage", 5.0)


def test_mean_is_time_weighted() -> None:
    # Non-uniform sampling: 0 V for one sample lasting 1 s, then 100 V sampled finely for 1 s.
    t = np.concatenate(([0.0], 1.0 + np.arange(1025) * DT))
    v = np.concatenate(([0.0], np.full(1025, 100.0)))
    trace = Trace({"v": (t, v)})
    assert trace.mean("v", 0.0, 2.0) == 50.0  # a plain sample mean would be ~99.9
    assert trace.mean("v", 0.5, 1.5) == 50.0
    assert trace.mean("v", 1.25, 1.25) == 100.0
    with pytest.raises(MeasurementError, match="not inside"):
        trace.mean("v", -1.0, 1.0)


def test_samples_duration_units_channels() -> None:
    trace = islanding()
    assert trace.samples == N
    assert trace.duration == (N - 1) * DT
    assert trace.unit("pcc.voltage") == "V"
    assert trace.channels == ["pcc.breaker", "pcc.voltage", "inverters.current"]


def test_resolution_stated_or_median_interval() -> None:
    assert islanding().resolution == DT
    t = np.concatenate((np.arange(10) * 0.05, 0.5 + np.arange(1, 101) * DT))  # coarse then fine
    assert Trace({"v": (t, np.zeros(t.size))}).resolution == DT
    assert Trace({"v": (t, np.zeros(t.size))}, resolution=0.001).resolution == 0.001
    with pytest.raises(MeasurementError, match="resolution"):
        Trace({"v": (t, np.zeros(t.size))}, resolution=-1.0)


def test_csv_round_trip(tmp_path: Path) -> None:
    trace = islanding()
    extra = Trace(
        {
            "v": (times(8), np.linspace(0.1, 0.8, 8)),
            "i": (times(8)[::2] + DT / 2, np.arange(4.0)),
        },
        units={"v": "V", "i": "A"},
    )
    for original in (trace, extra):
        path = original.to_csv(tmp_path / "trace.csv")
        back = Trace.from_csv(path)
        assert back.channels == original.channels
        for name in original.channels:
            assert np.array_equal(back.times(name), original.times(name))
            assert np.array_equal(back.values(name), original.values(name))
            assert back.unit(name) == original.unit(name)
    header = (tmp_path / "trace.csv").read_text().splitlines()[0]
    assert header == "t [s],v [V],i [A]"


def test_unfilled_trace_explains_itself() -> None:
    trace = Trace()
    assert not trace.filled
    with pytest.raises(MeasurementError, match="after the `with` block"):
        trace.event("pcc_open")
    trace.fill({"pcc.breaker": (times(), step(10, 1.0, 0.0))})
    assert trace.event("pcc_open") == 10 * DT
    with pytest.raises(MeasurementError, match="already filled"):
        trace.fill({})


def test_bad_samples_are_refused() -> None:
    with pytest.raises(MeasurementError, match="rise strictly"):
        Trace({"v": ([0.0, 1.0, 1.0], [1.0, 2.0, 3.0])})
    with pytest.raises(MeasurementError, match="times for"):
        Trace({"v": ([0.0, 1.0], [1.0])})


def test_clearing_time_is_a_lower_bound_when_the_unit_never_ceases():
    trace = Trace({"i": (np.array([0.0, 1.0, 2.0, 3.0]), np.array([10.0, 10.0, 0.0, 0.0]))})
    assert trace.clearing_time("i", below=1.0, since=1.0) == (pytest.approx(1.0), False)
    still = Trace({"i": (np.array([0.0, 1.0, 2.0]), np.array([10.0, 10.0, 10.0]))})
    assert still.clearing_time("i", below=1.0, since=0.5) == (pytest.approx(1.5), True)
