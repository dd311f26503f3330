"""Performance defects (data/defects/performance.yaml) as the plant parameters they change.

Each makes the unit perform worse than its site entry says while everything it reports stays
the same (nameplate capacity, efficiency nowhere reported, cooling invisible), so only measuring
finds it: ``capacity_factor`` (cells short of the nameplate capacity), ``efficiency_loss``
(conversion efficiency lower, both directions), ``cooling_degraded`` (less heat carried to the
ambient), all given to a home's battery. ``gain_error`` belongs to the site's meter
(virtual_devices/endpoints/meter.py).
"""

from __future__ import annotations

from harness.config.errors import ConfigErrors
from harness.config.site import Site
from virtual_devices.defects import AppliedDefect, defects_for


def _fraction(site: Site, d: AppliedDefect | None, below: float = 1.0) -> float:
    """The defect's value as a fraction (its unit is %), 0 without it; must be in [0, below)."""
    if d is None:
        return 0.0
    fraction = d.value / 100.0
    if not 0.0 <= fraction < below:
        raise ConfigErrors.single(
            site.path,
            f"{d.kind}: {d.value:g} % is outside 0 .. {below * 100:g} %",
            None,
            "defects",
        )
    return fraction


def efficiency(site: Site, defects: list[AppliedDefect], node: str, rated: float) -> float:
    """The inverter's conversion efficiency: its site value, less ``efficiency_loss``."""
    d = defects_for(defects, node, "battery").get("efficiency_loss")
    actual = rated - _fraction(site, d, below=rated)
    return actual


def capacity_shortfall(site: Site, defects: list[AppliedDefect], node: str) -> float:
    """The fraction of nameplate capacity the pack's cells lack (0: none): 1 - capacity_factor."""
    d = defects_for(defects, node, "battery").get("capacity_factor")
    if d is None:
        return 0.0
    if not 0.0 < d.value <= 1.0:
        raise ConfigErrors.single(
            site.path, f"capacity_factor: {d.value:g} is outside (0, 1]", None, "defects"
        )
    return 1.0 - d.value


def cooling(site: Site, defects: list[AppliedDefect], node: str, rated: float) -> float:
    """The pack's cooling coefficient to ambient, W/degC, less ``cooling_degraded``."""
    d = defects_for(defects, node, "battery").get("cooling_degraded")
    return rated * (1.0 - _fraction(site, d))
