"""manifest.json: the sha256 of every file of a run and of its inputs, so evidence cannot be
swapped unnoticed. ``verify`` names every changed, missing or unlisted file."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_files(out: Path) -> list[Path]:
    return sorted(
        p
        for p in out.rglob("*")
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
    )


def write_manifest(out: Path, inputs: list[Path]) -> Path:
    """Hash every file under ``out`` and every input file; written atomically."""
    body = {
        "algorithm": "sha256",
        "files": {str(p.relative_to(out)): sha256(p) for p in _run_files(out)},
        "inputs": {str(p): sha256(p) for p in sorted(set(inputs)) if p.is_file()},
    }
    path = out / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Problem:
    path: str
    what: str  # "changed", "missing", "not in manifest", "input changed", "input missing"

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def verify_manifest(out: Path, check_inputs: bool = True) -> list[Problem]:
    """Compare a run folder (and, optionally, the inputs where they were) with its manifest."""
    path = out / MANIFEST
    if not path.is_file():
        return [Problem(MANIFEST, "missing")]
    body = json.loads(path.read_text(encoding="utf-8"))
    problems: list[Problem] = []
    listed: dict[str, str] = body.get("files", {})
    for rel, digest in listed.items():
        file = out / rel
        if not file.is_file():
            problems.append(Problem(rel, "missing"))
        elif sha256(file) != digest:
            problems.append(Problem(rel, "changed"))
    for file in _run_files(out):
        rel = str(file.relative_to(out))
        if rel not in listed and not rel.startswith(REBUILT):
            problems.append(Problem(rel, "not in manifest"))
    if check_inputs:
        for name, digest in body.get("inputs", {}).items():
            file = Path(name)
            if not file.is_file():
                problems.append(Problem(name, "input missing"))
            elif sha256(file) != digest:
                problems.append(Problem(name, "input changed"))
    return problems


REBUILT = "rebuilt"
"""Subfolder where `harness report` writes what it rebuilds, so it never alters hashed evidence."""
