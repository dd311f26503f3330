"""The plant's topology, shared storage and PV from a site file (plant_config.py calls these).

Kept apart from plant_config.py so each of the site's sections is translated in one place. The
shared bank is product data of the site (no defects name it yet): a dc_bus site's homes have no
pack of their own, so their BMS endpoints report the bank, and their pack parameters are the
bank's (:func:`home_battery`).
"""

from __future__ import annotations

from harness.config.site import BatteryConfig, NodeConfig, Site
from virtual_devices.plant.params import BatteryParams
from virtual_devices.plant.pv import PvParams
from virtual_devices.plant.storage_params import SharedStorageParams


def home_battery(site: Site, node: NodeConfig) -> BatteryConfig:
    """The pack a home's BMS reports: its own, or (dc_bus) the shared bank."""
    if node.battery is not None:
        return node.battery
    storage = site.spec.shared_storage
    if storage is None:  # the site schema requires one or the other for a virtual BMS
        raise ValueError(f"{site.path}: node {node.name} has no battery and no shared storage")
    return storage.battery


def battery_params(cfg: BatteryConfig) -> BatteryParams:
    """A pack's parameters from its site section (no defects)."""
    return BatteryParams(
        cells_in_series=cfg.cells_in_series,
        capacity_ah=cfg.capacity,
        initial_soc_pct=cfg.initial_soc,
        resistance_ohm=cfg.resistance,
        ambient_c=cfg.ambient,
        thermal_capacity_j_per_c=cfg.thermal_capacity,
        thermal_resistance_c_per_w=1.0 / cfg.cooling,
        charge_voltage_limit_v=cfg.charge_voltage_limit,
        discharge_voltage_limit_v=cfg.discharge_voltage_limit,
        max_charge_current_a=cfg.max_charge_current,
        max_discharge_current_a=cfg.max_discharge_current,
    )


def shared_storage(site: Site) -> SharedStorageParams | None:
    """The site's dc_bus bank or hybrid bulk bank (None: ac_coupled)."""
    storage = site.spec.shared_storage
    if storage is None:
        return None
    share = 1.0 if storage.share is None else storage.share / 100.0
    return SharedStorageParams(battery_params(storage.battery), share)


def pv_params(node: NodeConfig) -> PvParams | None:
    """The home's PV array and PV inverter, if the site gives it one."""
    pv = node.pv
    if pv is None:
        return None
    inverter = pv.rating if pv.inverter_rating is None else pv.inverter_rating
    return PvParams(array_rating_w=pv.rating, inverter_rating_w=inverter, ambient_c=pv.ambient)
