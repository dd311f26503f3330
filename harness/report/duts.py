"""What ran on which unit: every device's identity, written once per run as duts.json."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.devices.absent import is_present
from harness.devices.roles import Device, DeviceError

DUTS = "duts.json"


def _identity(device: Device) -> dict[str, Any]:
    try:
        return {k: v for k, v in asdict(device.identity()).items() if v}
    except DeviceError as exc:
        return {"error": str(exc)}


def collect(bench: Any) -> dict[str, dict[str, Any]]:
    """Identity of every node's units and of every instrument, keyed like the site file."""
    out: dict[str, dict[str, Any]] = {}
    for name, node in bench.nodes.items():
        out[f"{name}.inverter"] = _identity(node.inverter)
        out[f"{name}.bms"] = _identity(node.bms)
    for key in ("grid", "analyzer", "load_bank", "pcc_breaker"):
        device = getattr(bench, key, None)
        if device is not None and is_present(device):
            out[key] = _identity(device)
    return out


def write(out: Path, duts: dict[str, dict[str, Any]], worker: str = "main") -> None:
    """One file per pytest process (xdist workers each hold their own connections)."""
    out.mkdir(parents=True, exist_ok=True)
    name = DUTS if worker == "main" else f"duts-{worker}.json"
    (out / name).write_text(json.dumps(duts, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read(out: Path) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("duts*.json")):
        merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged
