"""The code base stays ruff- and mypy-clean (the configuration is in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["harness", "virtual_devices", "testplans", "tests", "bench"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )


def test_ruff_clean():
    paths = [p for p in PATHS if (ROOT / p).exists()]
    proc = _run("ruff", "check", *paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run("ruff", "format", "--check", *paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean():
    proc = _run("mypy", "--cache-dir", "/tmp/harness-mypy-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
