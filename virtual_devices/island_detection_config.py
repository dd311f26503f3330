"""A virtual inverter's anti-islanding detection (data/anti_islanding.yaml) and its
``anti_islanding_blind_spot`` defect (data/defects/islanding.yaml) as the ``island_detection``
keyword of ``InverterParams``."""

from __future__ import annotations

from harness.config.errors import ConfigErrors
from harness.config.site import Site
from harness.config.units import UnitError, to_unit
from virtual_devices.defects import AppliedDefect
from virtual_devices.plant.island_detection import IslandDetection, load_island_detection

BLIND_SPOT = "anti_islanding_blind_spot"


def island_detection(
    site: Site, node: str, detection_s: float, defects: dict[str, AppliedDefect]
) -> IslandDetection:
    """The unit's curve: slowest ``detection_s`` (its site setting) at the data file's NDZ, or
    the defect's slowest time at the defect's offset."""
    curve = load_island_detection()
    d = defects.get(BLIND_SPOT)
    if d is None:
        return IslandDetection(curve, detection_s)
    where = f"defects ({node}.inverter {BLIND_SPOT})"
    if d.value < 0:
        raise ConfigErrors.single(
            site.path, f"{BLIND_SPOT}: {d.value:g} s is negative", None, where
        )
    try:
        offset = to_unit(d.extra["offset"], "Hz", require_unit=True)
    except UnitError as exc:
        raise ConfigErrors.single(site.path, f"{BLIND_SPOT}.offset: {exc}", None, where) from None
    return IslandDetection(curve, d.value, offset)
