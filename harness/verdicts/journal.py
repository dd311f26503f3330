"""Append-only journal of measurements, one JSON object per line, flushed as they are made.

Each pytest process (the controller or an xdist worker) writes its own file, so a run that is
killed keeps everything measured until then and workers never interleave writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from harness.verdicts.model import Measurement


class Journal:
    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.jsonl"
        self._fh = self.path.open("a", encoding="utf-8")

    def append(self, measurement: Measurement) -> None:
        self._fh.write(json.dumps(measurement.to_json(), sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_journals(directory: Path) -> Iterator[Measurement]:
    """Every measurement of every journal in ``directory``; a torn last line is skipped."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                yield Measurement.from_json(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
