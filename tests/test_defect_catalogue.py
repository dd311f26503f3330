"""The defect catalogue (virtual_devices/data/defects/*.yaml) holds every kind the plant issue
names, under that name and for that device, and its documented copy (docs/defects.md) is the
catalogue as it is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.commands.defects import markdown
from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from tests.conftest import DefectSite
from tests.harness_runner import ROOT
from virtual_devices.defects import SITE_ROLES, catalogue, parse_defects

CLUSTER = ROOT / "fixtures/sites/virtual-cluster.yaml"

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


@pytest.mark.parametrize("kind", sorted(k for k, v in catalogue().items() if v.switch))
def test_a_switch_takes_0_or_1_and_nothing_else(defect_site: DefectSite, kind: str) -> None:
    body = catalogue()[kind]
    device = f"site.{body.role}" if body.role in SITE_ROLES else f"home-1.{body.role}"
    keys = {"protection": "overtemp", "order": "[precharge, positive_contactor]"}
    extra = "".join(f", {k}: {keys[k]}" for k in body.keys)
    on = load_site(defect_site(f"  - {{device: {device}, kind: {kind}, value: 1{extra}}}", CLUSTER))
    assert parse_defects(on)[0].value == 1.0
    bad = load_site(
        defect_site(f"  - {{device: {device}, kind: {kind}, value: 0.5{extra}}}", CLUSTER)
    )
    with pytest.raises(ConfigErrors, match=r"defects\[0\]\.value.*value is 1 \(on\) or 0 \(off\)"):
        parse_defects(bad)


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
