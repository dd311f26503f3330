"""Plots of captured traces for the witness report, drawn with matplotlib (no display needed)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


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


def trace_png(
    path: Path,
    title: str,
    since: float | None = None,
    measured: float | None = None,
    limit: float | None = None,
) -> bytes:
    """One panel per channel; the start event, the limit and the measured instant marked."""
    times, channels = read_trace_csv(path)
    fig, axes = plt.subplots(
        len(channels), 1, sharex=True, figsize=(7.5, 1.6 * len(channels) + 0.6)
    )
    axes_list = list(axes) if len(channels) > 1 else [axes]
    for ax, (name, values) in zip(axes_list, channels.items(), strict=True):
        pts = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.0)
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if since is not None:
            ax.axvline(since, color="black", ls=":", lw=1)
            if limit is not None:
                ax.axvline(since + limit, color="red", ls="--", lw=1)
            if measured is not None:
                ax.axvline(since + measured, color="green", lw=1)
    axes_list[0].set_title(title, fontsize=9)
    axes_list[-1].set_xlabel(
        "analyzer time [s]  (dotted: start, red dashed: limit, green: measured)", fontsize=7
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
