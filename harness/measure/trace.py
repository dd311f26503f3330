"""A power-analyzer capture: the source of every time-critical quantity (DESIGN section 4).

Times are on the analyzer's own timebase (0 at capture start), as on a bench: a clearing time is
the distance between two instants found *in the data* (the breaker's edge and the voltage's
collapse), never the site clock's idea of when a command was sent.

Samples are read as sample-and-hold: a value holds from its time until the next sample. The
virtual plant records right-continuous samples at every (adaptive) step, and real analyzers
sample uniformly; either way a quantity found here is late by at most one sample interval, never
early. Means are time-weighted for the same reason, so fine steps around an event do not bias
them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class MeasurementError(RuntimeError):
    """A quantity cannot be taken from the capture (event missing, threshold never reached...)."""


@dataclass(frozen=True)
class EdgeEvent:
    """A named event: a transition of a two-state channel through ``threshold``."""

    channel: str
    rising: bool
    threshold: float = 0.5


DEFAULT_EVENTS: Mapping[str, EdgeEvent] = {
    "pcc_open": EdgeEvent("pcc.breaker", rising=False),
    "pcc_close": EdgeEvent("pcc.breaker", rising=True),
}
"""Events a scenario names; the breaker channel is 1 when closed (an auxiliary contact)."""


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class Trace:
    """Channels -> (times, values) with units; empty until filled (see :meth:`fill`).

    A driver hands out an empty trace when a capture starts and fills it when the capture ends,
    so ``with analyzer.capture(...) as trace:`` works and ``trace`` is usable after the block.
    """

    def __init__(
        self,
        data: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]] | None = None,
        units: Mapping[str, str] | None = None,
        events: Mapping[str, EdgeEvent] | None = None,
        source: str = "",
        resolution: float | None = None,
    ) -> None:
        self.events: dict[str, EdgeEvent] = dict(DEFAULT_EVENTS if events is None else events)
        self.source = source
        self._data: dict[str, tuple[Array, Array]] | None = None
        self._units: dict[str, str] = {}
        self._resolution: float | None = None
        if data is not None:
            self.fill(data, units, resolution)

    # -- filling and access --------------------------------------------------------------------

    def fill(
        self,
        data: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
        units: Mapping[str, str] | None = None,
        resolution: float | None = None,
    ) -> None:
        """Set the samples once; times must rise strictly and match their values in length.

        ``resolution`` is the instrument's stated time resolution, s (see :attr:`resolution`).
        """
        if self._data is not None:
            raise MeasurementError("trace already filled")
        if resolution is not None and not (math.isfinite(resolution) and resolution >= 0):
            raise MeasurementError(f"time resolution must be a finite number >= 0: {resolution}")
        checked: dict[str, tuple[Array, Array]] = {}
        for name, (times, values) in data.items():
            t = np.asarray(times, dtype=np.float64)
            v = np.asarray(values, dtype=np.float64)
            if t.ndim != 1 or t.shape != v.shape:
                raise MeasurementError(
                    f"channel {name}: {t.shape} times for {v.shape} values (need equal, 1-D)"
                )
            if t.size and not np.all(np.isfinite(t)):
                raise MeasurementError(f"channel {name}: non-finite sample times")
            if t.size > 1 and not np.all(np.diff(t) > 0):
                raise MeasurementError(f"channel {name}: sample times do not rise strictly")
            t.flags.writeable = False
            v.flags.writeable = False
            checked[name] = (t, v)
        self._units = {name: (units or {}).get(name, "") for name in checked}
        self._resolution = None if resolution is None else float(resolution)
        self._data = checked

    @property
    def filled(self) -> bool:
        return self._data is not None

    def _all(self) -> dict[str, tuple[Array, Array]]:
        if self._data is None:
            raise MeasurementError(
                "the trace is empty until its capture ends: use it after the `with` block"
            )
        return self._data

    def _get(self, channel: str) -> tuple[Array, Array]:
        data = self._all()
        try:
            t, v = data[channel]
        except KeyError:
            raise MeasurementError(
                f"channel {channel!r} not in the capture; captured: {', '.join(data) or 'none'}"
            ) from None
        if t.size == 0:
            raise MeasurementError(f"channel {channel!r} has no samples")
        return t, v

    @property
    def channels(self) -> list[str]:
        return list(self._all())

    def unit(self, channel: str) -> str:
        self._get(channel)
        return self._units[channel]

    def times(self, channel: str) -> Array:
        return self._get(channel)[0]

    def values(self, channel: str) -> Array:
        return self._get(channel)[1]

    @property
    def samples(self) -> int:
        """Samples in the longest channel."""
        return max((t.size for t, _ in self._all().values()), default=0)

    @property
    def start(self) -> float:
        return min((float(t[0]) for t, _ in self._all().values() if t.size), default=0.0)

    @property
    def end(self) -> float:
        return max((float(t[-1]) for t, _ in self._all().values() if t.size), default=0.0)

    @property
    def resolution(self) -> float:
        """Time resolution of instants found in this capture, s: the uncertainty of an event or
        threshold time (a transition happened at most this long before the sample showing it).

        The instrument's stated value when it gave one (a real analyzer's sample period; the
        virtual analyzer's is the plant's fine step, which it takes around every event), else
        the median sample interval of the capture.
        """
        data = self._all()
        if self._resolution is not None:
            return self._resolution
        gaps = [np.diff(t) for t, _ in data.values() if t.size > 1]
        return float(np.median(np.concatenate(gaps))) if gaps else 0.0

    @property
    def duration(self) -> float:
        """Seconds from the first to the last sample of any channel."""
        return self.end - self.start

    # -- events -----------------------------------------------------------------------------

    def edges(
        self, channel: str, rising: bool, threshold: float = 0.5, after: float | None = None
    ) -> Array:
        """Times of the samples where ``channel`` first shows the other side of ``threshold``."""
        t, v = self._get(channel)
        high = v >= threshold
        changed = (high[1:] != high[:-1]) & (high[1:] if rising else ~high[1:])
        times: Array = t[1:][changed]
        return times if after is None else times[times >= after]

    def event(self, name: str, after: float | None = None) -> float:
        """Time of the first occurrence of a named event (at or after ``after``, if given)."""
        try:
            spec = self.events[name]
        except KeyError:
            raise MeasurementError(
                f"unknown event {name!r}; known: {', '.join(sorted(self.events))}"
            ) from None
        times = self.edges(spec.channel, spec.rising, spec.threshold, after)
        if times.size == 0:
            _, v = self._get(spec.channel)
            edge = "rising" if spec.rising else "falling"
            hint = ""
            if (v[0] >= spec.threshold) == spec.rising:
                hint = (
                    "; it was already past the edge at the first sample: was the capture started "
                    "after the action, or at the same instant (no pre-trigger)?"
                )
            raise MeasurementError(
                f"event {name!r} ({edge} edge of {spec.channel} through {_fmt(spec.threshold)}) "
                f"is not in the capture: {spec.channel} went from {_fmt(v[0])} to {_fmt(v[-1])}"
                + (f", searched from t={_fmt(after)} s" if after is not None else "")
                + hint
            )
        return float(times[0])

    # -- thresholds -----------------------------------------------------------------------------

    def time_until(
        self,
        channels: str | Sequence[str],
        *,
        below: float | Sequence[float] | None = None,
        above: float | Sequence[float] | None = None,
        stays: bool = True,
        since: float | None = None,
    ) -> float:
        """Seconds from ``since`` until every channel is beyond its threshold.

        ``below``: value < threshold; ``above``: value > threshold; both: strictly between.
        A scalar threshold applies to every channel, a sequence gives one per channel. With
        ``stays=True`` the answer is the first instant from which the condition holds through
        the end of the capture (a dip that recovers does not count); with ``stays=False`` the
        first instant it holds at all. A condition already holding at ``since`` gives 0.
        ``since`` defaults to the start of the capture.
        """
        names = [channels] if isinstance(channels, str) else list(channels)
        if not names:
            raise ValueError("time_until needs at least one channel")
        if below is None and above is None:
            raise ValueError("time_until needs a threshold: below=..., above=... or both")
        lows = _per_channel(above, names, "above")
        highs = _per_channel(below, names, "below")
        series = [self._get(name) for name in names]
        origin = self.start if since is None else float(since)
        if origin > max(float(t[-1]) for t, _ in series):
            raise MeasurementError(f"since={_fmt(origin)} s is after the end of the capture")

        union = np.unique(np.concatenate([t for t, _ in series]))
        ok = np.ones(union.shape, dtype=bool)
        for (t, v), low, high in zip(series, lows, highs, strict=True):
            ok &= _held_condition(t, v, union, low, high)
        found = _settle_index(union, ok, origin, stays)
        if found is None:
            raise MeasurementError(self._never_message(names, series, lows, highs, origin, stays))
        return max(float(union[found]), origin) - origin

    def clearing_time(
        self,
        channels: str | Sequence[str],
        *,
        below: float | Sequence[float],
        since: float,
    ) -> tuple[float, bool]:
        """Seconds from ``since`` until every channel stays below its threshold, and whether the
        unit was still energizing when the capture ended.

        A unit that never ceases within the capture has cleared in *at least* the capture's
        remaining length: that lower bound is what a clause on a maximum clearing time judges.
        """
        try:
            return self.time_until(channels, below=below, since=since), False
        except MeasurementError:
            return self.end - since, True

    def _never_message(
        self,
        names: list[str],
        series: list[tuple[Array, Array]],
        lows: list[float | None],
        highs: list[float | None],
        origin: float,
        stays: bool,
    ) -> str:
        parts = []
        for name, (t, v), low, high in zip(names, series, lows, highs, strict=True):
            cond = _held_condition(t, v, t, low, high)
            if _settle_index(t, cond, origin, stays) is not None:
                continue
            window = v[max(int(np.searchsorted(t, origin, "right")) - 1, 0) :]
            unit = self._units.get(name, "")
            parts.append(
                f"{name} {_describe(low, high, unit)} "
                f"(from t={_fmt(origin)} s: min {_fmt(float(np.nanmin(window)))}, "
                f"max {_fmt(float(np.nanmax(window)))}, last {_fmt(float(v[-1]))} {unit})".rstrip()
            )
        verb = "never stays" if stays else "never gets"
        if not parts:  # each channel settles on its own, but never all at the same time
            return f"{', '.join(names)} {verb} beyond their thresholds at the same time"
        return f"{verb} beyond the threshold by the end of the capture: " + "; ".join(parts)

    # -- values -------------------------------------------------------------------------------

    def value_at(self, channel: str, t: float) -> float:
        """The value held at time ``t`` (the last sample at or before it)."""
        times, values = self._get(channel)
        if t < times[0] or t > times[-1]:
            raise MeasurementError(
                f"{channel}: t={_fmt(t)} s outside the capture "
                f"[{_fmt(float(times[0]))}, {_fmt(float(times[-1]))}] s"
            )
        return float(values[int(np.searchsorted(times, t, "right")) - 1])

    def mean(self, channel: str, start: float, end: float) -> float:
        """Time-weighted mean of ``channel`` over [start, end] (sample-and-hold)."""
        times, values = self._get(channel)
        if end < start:
            raise ValueError(f"mean over [{start}, {end}]: end before start")
        if start < times[0] or end > times[-1]:
            raise MeasurementError(
                f"{channel}: [{_fmt(start)}, {_fmt(end)}] s not inside the capture "
                f"[{_fmt(float(times[0]))}, {_fmt(float(times[-1]))}] s"
            )
        if end == start:
            return self.value_at(channel, start)
        inside = times[(times > start) & (times < end)]
        edges = np.concatenate(([start], inside, [end]))
        held = values[np.searchsorted(times, edges[:-1], "right") - 1]
        return float(np.sum(held * np.diff(edges)) / (end - start))

    # -- files ----------------------------------------------------------------------------------

    def to_csv(self, path: str | Path) -> Path:
        """Write one row per sample time (union of all channels); blank where a channel has none.

        Header: ``t [s]`` then ``<channel> [<unit>]``. Numbers are written exactly (repr).
        """
        data = self._all()
        path = Path(path)
        names = list(data)
        union = np.unique(np.concatenate([t for t, _ in data.values()] or [np.empty(0)]))
        columns: list[list[str]] = []
        for name in names:
            t, v = data[name]
            column = [""] * union.size
            for index, value in zip(np.searchsorted(union, t), v.tolist(), strict=True):
                column[int(index)] = repr(value)
            columns.append(column)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["t [s]", *(f"{name} [{self._units.get(name, '')}]" for name in names)])
            for row, t_value in enumerate(union.tolist()):
                writer.writerow([repr(t_value), *(column[row] for column in columns)])
        return path

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        events: Mapping[str, EdgeEvent] | None = None,
        resolution: float | None = None,
    ) -> Trace:
        """Read back what :meth:`to_csv` wrote (the CSV holds samples only, not the resolution)."""
        with Path(path).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows or not rows[0] or rows[0][0] != "t [s]":
            raise MeasurementError(f"{path}: not a trace CSV (first header cell must be 't [s]')")
        names: list[str] = []
        units: dict[str, str] = {}
        for cell in rows[0][1:]:
            name, _, unit = cell.rpartition(" [")
            names.append(name)
            units[name] = unit.rstrip("]")
        samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in names}
        for line, row in enumerate(rows[1:], start=2):
            try:
                t = float(row[0])
                for name, cell in zip(names, row[1:], strict=True):
                    if cell:
                        samples[name][0].append(t)
                        samples[name][1].append(float(cell))
            except ValueError as exc:
                raise MeasurementError(f"{path}:{line}: {exc}") from None
        return cls(samples, units, events, resolution=resolution)

    def __repr__(self) -> str:
        if self._data is None:
            return "Trace(<not filled>)"
        return f"Trace({', '.join(self.channels)}; {self.samples} samples, {self.duration:g} s)"


def _per_channel(
    threshold: float | Sequence[float] | None, names: list[str], what: str
) -> list[float | None]:
    if threshold is None:
        return [None] * len(names)
    if isinstance(threshold, str):
        raise TypeError(
            f"{what}={threshold!r}: thresholds are numbers in the channel's unit; "
            "convert per-unit or percent values with the nominal before asking"
        )
    if isinstance(threshold, (int, float)):
        values = [float(threshold)] * len(names)
    else:
        values = [float(x) for x in threshold]
        if len(values) != len(names):
            raise ValueError(f"{what}: {len(values)} thresholds for {len(names)} channels")
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"{what}: threshold must be a finite number, got {value}")
    return list(values)


def _held_condition(
    t: Array, v: Array, at: Array, low: float | None, high: float | None
) -> npt.NDArray[np.bool_]:
    """Whether the value held at each time in ``at`` is beyond the thresholds (False before t0)."""
    index = np.searchsorted(t, at, "right") - 1
    valid = index >= 0
    held = v[np.clip(index, 0, None)]
    ok = valid & ~np.isnan(held)
    if low is not None:
        ok &= held > low
    if high is not None:
        ok &= held < high
    return ok


def _settle_index(
    times: Array, ok: npt.NDArray[np.bool_], origin: float, stays: bool
) -> int | None:
    """Index of the first sample (counting the one held at ``origin``) meeting the condition;
    with ``stays``, the first from which it holds through the last sample."""
    first = max(int(np.searchsorted(times, origin, "right")) - 1, 0)
    window = ok[first:]
    if window.size == 0:
        return None
    if stays:
        failing = np.flatnonzero(~window)
        if failing.size == 0:
            return first
        if failing[-1] == window.size - 1:
            return None
        return first + int(failing[-1]) + 1
    hits = np.flatnonzero(window)
    return first + int(hits[0]) if hits.size else None


def _describe(low: float | None, high: float | None, unit: str) -> str:
    suffix = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return f"between {_fmt(low)} and {_fmt(high)}{suffix}"
    if high is not None:
        return f"below {_fmt(high)}{suffix}"
    return f"above {_fmt(low if low is not None else math.nan)}{suffix}"
