"""The benchmarks under bench/ still run: each, in its ``--quick`` mode, exits 0 and prints its table.

Benchmarks report, they do not fail CI, so nothing here asserts a speed: only that each script
measured what it says (its rows are there, with numbers in them; the CAN load test processed
every frame it sent, a check of its counting after a 1 s load and a drain). Each runs in a subprocess, as
``uv run python bench/<name>.py --quick`` would, and cleans up after itself (servers, child
process, temporary folders).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NUMBER = r"[-+]?[\d,]+(?:\.\d+)?"
EXPECTED = {
    "sim_speed": [
        rf"campaign as `harness run` runs it \((no|\d+) workers\)\s+{NUMBER}\s+\({NUMBER} s / ",
        rf"campaign simulated / wall \(verdicts\.json\)\s+{NUMBER}\s+\({NUMBER} s / {NUMBER} s\)",
        rf"plant alone: steady state, 60 s steady steps\s+{NUMBER}\s+\(120 steps",
        rf"in clock: plant physics\s+{NUMBER} s",
        rf"I/O: Modbus requests\s+{NUMBER} s",
    ],
    "timing_accuracy": [
        rf"island, detection 0\.2345 s, home-1\s+{NUMBER} ms\s+{NUMBER} ms\s+{NUMBER} us",
        rf"trip ov2 \(0\.16 s\), home-1\s+{NUMBER} ms",
        rf"max \|error\| vs truth.*\s+{NUMBER} ms\s+<= 1 ms",
    ],
    "can_monitor": [
        rf"bare cantools loop \(db\.decode_message\)\s+{NUMBER}\s+{NUMBER}\s+1\.00",
        rf"transport per-frame \(_on_frame\), no bus\s+{NUMBER}",
        rf"transport via virtual bus \(pump\)\s+{NUMBER}",
        r"conformance monitor",
        r"sent / processed\s+([\d,]+) / \1\s",  # every frame sent was processed
    ],
    "modbus_poll": [
        rf"\[1\] in process \(fleet poller\)\s+{NUMBER}/100\s+{NUMBER} ms\s+{NUMBER} ms",
        rf"\[2\] in process\s+{NUMBER}/100\s+{NUMBER} ms\s+{NUMBER} ms",
    ],
}


def _run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_runs_in_quick_mode(name: str) -> None:
    proc = _run(name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    missing = [p for p in EXPECTED[name] if not re.search(p, proc.stdout)]
    assert not missing, f"rows missing from bench/{name}.py output: {missing}\n{proc.stdout}"
    assert re.search(r"machine: \d+ CPUs; load average", proc.stdout), proc.stdout
