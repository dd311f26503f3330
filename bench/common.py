"""Report helpers shared by the benchmark scripts: a plain-text table, a percentage, and the
machine line every script ends with (latencies mean little without the load they ran under)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def pct(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole``, or "-" when there is no whole."""
    return f"{100.0 * part / whole:5.1f} %" if whole > 0 else "-"


def machine_line(load0: float) -> str:
    """CPU count and 1-minute load average at the start (``load0``) and now."""
    return (
        f"machine: {os.cpu_count()} CPUs; load average (1 min) {load0:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end"
    )
