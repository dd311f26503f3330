"""The communication-loss and precharge defects (data/defects/comm_faults.yaml) as plant
parameter keywords: ``InverterParams`` for the inverter's, ``BatteryParams`` for the BMS's."""

from __future__ import annotations

from typing import Any

from harness.config.errors import ConfigErrors
from harness.config.site import Site
from virtual_devices.defects import AppliedDefect


def inverter_options(site: Site, defects: dict[str, AppliedDefect]) -> dict[str, Any]:
    """``comm_loss_delay`` and ``comm_loss_ignored`` of one inverter (its defects by kind)."""
    out: dict[str, Any] = {}
    if (d := defects.get("comm_loss_delay")) is not None:
        if d.value < 0:
            raise ConfigErrors.single(
                site.path, f"comm_loss_delay: {d.value:g} s is negative", None, "defects"
            )
        out["comm_loss_delay_s"] = d.value
    if (d := defects.get("comm_loss_ignored")) is not None:
        out["comm_loss_ignored"] = d.value == 1.0  # a switch: 0 or 1 (virtual_devices/defects.py)
    return out


def battery_options(site: Site, defects: dict[str, AppliedDefect]) -> dict[str, Any]:
    """``precharge_failure`` of one BMS (its defects by kind)."""
    if (d := defects.get("precharge_failure")) is None:
        return {}
    if d.value < 0:
        raise ConfigErrors.single(
            site.path, f"precharge_failure: {d.value:g} s is negative", None, "defects"
        )
    return {"precharge_delay_s": d.value}
