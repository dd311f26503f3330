"""Parameters of a site's shared storage: the one bank of a ``dc_bus`` site, the bulk bank of a
``hybrid`` one (virtual_devices/plant/topology.py says how each is wired).

Kept apart from params.py so that module can name it without importing the battery model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtual_devices.plant.params import BatteryParams

TOPOLOGIES: tuple[str, ...] = ("ac_coupled", "dc_bus", "hybrid")
"""How the homes' inverters reach their storage (harness/config/site.py SiteInfo.topology)."""


@dataclass
class SharedStorageParams:
    """The shared bank and, on a hybrid site, the fixed share of every home's DC power it carries
    (0 < share < 1; the rest comes from the home's own pack). A dc_bus bank carries it all."""

    battery: BatteryParams
    share: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.share) and 0.0 < self.share <= 1.0):
            raise ValueError(f"shared storage share must be in (0, 1]: {self.share}")


def check_topology(topology: str, storage: SharedStorageParams | None) -> None:
    """A plant's topology and its shared storage go together; raise ValueError if they do not."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {topology!r}; expected one of: {', '.join(TOPOLOGIES)}")
    if topology == "ac_coupled":
        if storage is not None:
            raise ValueError("an ac_coupled plant has no shared storage (each home has its own)")
        return
    if storage is None:
        raise ValueError(f"a {topology} plant needs its shared storage")
    if topology == "dc_bus" and storage.share != 1.0:
        raise ValueError(
            f"a dc_bus bank carries all the homes' DC power (share 1), not {storage.share}"
        )
    if topology == "hybrid" and storage.share >= 1.0:
        raise ValueError("a hybrid bulk bank carries a fixed share < 1 of each home's DC power")
