"""Plots of captured traces for the witness report, drawn with matplotlib (no display needed)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

# A plot is a few hundred pixels wide: more points than this per channel only cost drawing time.
# The decimation keeps each bucket's minimum and maximum, so a spike or a trip edge stays visible.
_MAX_BUCKETS = 800


def read_trace_csv(path: Path) -> tuple[list[float], dict[str, list[float | None]]]:
    """Columns of a Trace.to_csv file: time and one list per channel (None where blank)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    times = [float(r[0]) for r in body]
    channels: dict[str, list[float | None]] = {}
    for col, name in enumerate(header[1:], start=1):
        channels[name] = [float(r[col]) if r[col] else None for r in body]
    return times, channels


def envelope(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 x _MAX_BUCKETS points with each bucket's extremes, in time order."""
    if len(t) <= 2 * _MAX_BUCKETS:
        return t, v
    edges = np.linspace(0, len(t), _MAX_BUCKETS + 1).astype(int)
    keep: list[int] = []
    for lo, hi in pairwise(edges.tolist()):
        if hi <= lo:
            continue
        chunk = v[lo:hi]
        keep.extend(sorted({int(lo + np.argmin(chunk)), int(lo + np.argmax(chunk))}))
    idx = np.asarray(keep)
    return t[idx], v[idx]


def trace_png(
    path: Path,
    title: str,
    since: float | None = None,
    measured: float | Sequence[float] | None = None,
    limit: float | None = None,
) -> bytes:
    """One panel per channel; the start event, the limit and the measured instants marked."""
    marks = (
        [] if measured is None else [measured] if isinstance(measured, float | int) else measured
    )
    times, channels = read_trace_csv(path)
    t_all = np.asarray(times, dtype=float)
    rows = len(channels)
    height = 1.6 * rows + 0.6
    fig = Figure(figsize=(7.5, height))
    # Fixed margins instead of tight_layout, which measures every tick label and doubles the cost.
    fig.subplots_adjust(left=0.13, right=0.98, top=1 - 0.35 / height, bottom=0.45 / height)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, channels.items(), strict=True):
        v_all = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        present = ~np.isnan(v_all)
        t, v = envelope(t_all[present], v_all[present])
        ax.plot(t, v, lw=1.0)
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if since is not None:
            ax.axvline(since, color="black", ls=":", lw=1)
            if limit is not None:
                ax.axvline(since + limit, color="red", ls="--", lw=1)
            for value in marks:
                ax.axvline(since + value, color="green", lw=1)
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel(
        "analyzer time [s]  (dotted: start, red dashed: limit, green: measured)", fontsize=7
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
