"""The defect catalogue (virtual_devices/data/defects/*.yaml) holds every kind the plant issue
names, under that name and for that device, and its documented copy (docs/defects.md) is the
catalogue as it is."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.commands.defects import markdown
from tests.harness_runner import ROOT
from virtual_devices.defects import catalogue

NAMED = {
    "inverter": [
        "anti_islanding_delay",
        "transfer_time",
        "enter_service_delay",
        "ignore_enter_service_window",
        "ramp_rate",
        "trip_time",
        "power_reading_gain",
        "scale_factor_error",
        "accept_invalid_writes",
        "comm_loss_ignored",
    ],
    "bms": [
        "cycle_time",
        "missing_message",
        "soc_offset",
        "protection_disabled",
        "protection_delay",
        "heartbeat_loss_ignored",
        "precharge_failure",
    ],
    "ems": [
        "black_start_order",
        "soc_band_ignored",
        "peak_shaving_target_offset",
        "ramp_uncoordinated",
    ],
    "battery": ["capacity_factor", "efficiency_loss", "cooling_degraded"],
    "meter": ["gain_error"],
}
"""The public names of the plant issue's defect kinds, by the device they apply to."""
KEYS = {
    "trip_time": ("function",),
    "scale_factor_error": ("point",),
    "cycle_time": ("message",),
    "missing_message": ("message",),
    "protection_disabled": ("protection",),
    "protection_delay": ("protection",),
}


def test_every_named_kind_is_in_the_catalogue_for_its_device() -> None:
    kinds = catalogue()
    wrong = {
        name: kinds[name].role if name in kinds else "missing"
        for role, names in NAMED.items()
        for name in names
        if name not in kinds or kinds[name].role != role
    }
    assert wrong == {}
    for name, keys in KEYS.items():
        assert kinds[name].keys == keys, name


def test_every_kind_says_what_it_does_and_its_unit() -> None:
    for name, kind in catalogue().items():
        assert len(kind.description) > 40, name
        assert kind.unit is not None, name


def test_the_documented_catalogue_is_up_to_date() -> None:
    doc = ROOT / "docs/defects.md"
    assert doc.read_text(encoding="utf-8") == markdown(), (
        "docs/defects.md is stale: run `uv run harness defects --markdown docs/defects.md`"
    )


def test_the_command_lists_the_catalogue() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "defects"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    for kinds in NAMED.values():
        for name in kinds:
            assert name in out, name
