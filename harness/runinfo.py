"""Where a run writes its results, decided once and shared with xdist workers."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path


def default_out(reports: Path = Path("reports")) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = reports / stamp
    n = 1
    while out.exists():
        n += 1
        out = reports / f"{stamp}-{n}"
    return out


def point_latest(out: Path) -> None:
    """Make ``reports/latest`` point at ``out`` (atomically replaced)."""
    latest = out.parent / "latest"
    tmp = out.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(out.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:
        pass
