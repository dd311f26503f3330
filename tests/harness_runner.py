"""Run the `harness` command line in a subprocess, as a user would, and read what it left."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "fixtures/sites/virtual-home.yaml"
CONTRACT = ROOT / "fixtures/contracts/example.yaml"


@dataclass
class Result:
    code: int
    out: str
    folder: Path

    def verdicts(self) -> list[dict[str, Any]]:
        return json.loads((self.folder / "verdicts.json").read_text())["verdicts"]

    def run(self) -> dict[str, Any]:
        return json.loads((self.folder / "verdicts.json").read_text())["run"]

    def by_clause(self) -> dict[tuple[str, str | None], dict[str, Any]]:
        return {(v["clause"], v["node"]): v for v in self.verdicts()}


def harness(
    *args: str | Path, cwd: Path = ROOT, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(tmp_path: Path, site: Path = SITE, contract: Path = CONTRACT, *extra: str) -> Result:
    """``harness run``, in one process unless ``extra`` asks for workers: the suite already
    runs its tests in parallel, and a worker per home on top would only oversubscribe."""
    out = tmp_path / "results"
    options = extra[: extra.index("--")] if "--" in extra else extra
    workers = () if "-n" in options else ("-n", "0")
    proc = harness("run", "--site", site, "--contract", contract, "--out", out, *workers, *extra)
    return Result(proc.returncode, proc.stdout + proc.stderr, out)


def site_with(tmp_path: Path, extra_yaml: str, name: str = "site.yaml", base: Path = SITE) -> Path:
    """A copy of ``base`` next to it (so relative paths resolve), its ``defects: []`` replaced by
    ``extra_yaml``. The caller removes it (the ``defect_site`` fixture does)."""
    text = base.read_text()
    assert "defects: []" in text, f"{base} has no empty defect list to replace"
    path = base.parent / f".test-{uuid.uuid4().hex[:12]}-{name}"
    path.write_text(text.replace("defects: []", extra_yaml))
    return path
