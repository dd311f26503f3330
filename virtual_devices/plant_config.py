"""The plant's physical parameters from a site file, its settings profile and its defects.

Standards values (trip settings, enter service) come from the profile the site names; the
virtual devices' own behaviour from the site file; defects change the parameters they name.
"""

from __future__ import annotations

from typing import Any

from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.settings import Settings
from harness.config.site import Site
from virtual_devices.defects import AppliedDefect, defects_for
from virtual_devices.plant.params import (
    TRIP_FUNCTIONS,
    BatteryParams,
    EnterServiceParams,
    InverterParams,
    IslandLoadParams,
    NodeParams,
    PlantParams,
    TripSetting,
)


def _settings(site: Site) -> Settings:
    if site.spec.site.settings is None:
        raise ConfigErrors.single(
            site.path, "a virtual site needs 'site.settings' (a profile)", None, "site.settings"
        )
    settings = load_contract(site.resolve(site.spec.site.settings)).settings
    if settings is None or settings.trips is None or settings.enter_service is None:
        raise ConfigErrors.single(
            site.resolve(site.spec.site.settings),
            "profile has no 'settings' with trips and enter_service",
        )
    return settings


def _protection_defects(site: Site, defects: list[AppliedDefect], node: str) -> dict[str, Any]:
    """The inverter's protection and enter-service defects as InverterParams keywords."""
    out: dict[str, Any] = {}
    trip_times: dict[str, float] = {}
    for d in defects:
        if d.node != node or d.role != "inverter":
            continue
        if d.kind == "trip_time":
            function = str(d.extra["function"]).lower()
            if function not in TRIP_FUNCTIONS:
                raise ConfigErrors.single(
                    site.path,
                    f"trip_time: unknown function {d.extra['function']!r}; "
                    f"expected one of: {', '.join(TRIP_FUNCTIONS)}",
                    None,
                    "defects",
                )
            trip_times[function] = d.value
        elif d.kind == "enter_service_delay":
            out["enter_service_delay_s"] = d.value
        elif d.kind == "ramp_rate":
            out["enter_service_ramp_s"] = d.value
        elif d.kind == "ignore_enter_service_window":
            if d.value not in (0.0, 1.0):
                raise ConfigErrors.single(
                    site.path,
                    f"ignore_enter_service_window: value is 1 (ignores the window) or 0, "
                    f"not {d.value:g}",
                    None,
                    "defects",
                )
            out["ignore_enter_service_window"] = d.value == 1.0
    if trip_times:
        out["trip_times_s"] = trip_times
    return out


def plant_params(site: Site, defects: list[AppliedDefect]) -> PlantParams:
    """Translate the site file (and its defects) into the plant's physical parameters."""
    settings = _settings(site)
    assert settings.trips is not None and settings.enter_service is not None
    es = settings.enter_service
    enter = EnterServiceParams(
        es.voltage_low, es.voltage_high, es.frequency_low, es.frequency_high, es.delay, es.ramp
    )
    trips: dict[str, TripSetting] = {
        str(fn): TripSetting(settings.trip_threshold(fn), s.clearing_time)
        for fn, s in settings.trips.items()
    }
    nominal_v = site.spec.site.nominal_voltage
    nominal_f = site.spec.site.nominal_frequency
    nodes = []
    for node in site.spec.nodes:
        inv = node.inverter
        inv_defects = defects_for(defects, node.name, "inverter")
        island = inv_defects.get("anti_islanding_delay")
        battery = node.battery
        assert battery is not None
        nodes.append(
            NodeParams(
                name=node.name,
                inverter=InverterParams(
                    rated_power_w=inv.rated_power,
                    nominal_voltage_v=nominal_v,
                    nominal_frequency_hz=nominal_f,
                    trips=dict(trips),
                    enter_service=enter,
                    anti_islanding_detection_s=inv.virtual.anti_islanding_detection,
                    efficiency=inv.virtual.efficiency,
                    anti_islanding_delay_s=island.value if island else None,
                    **_protection_defects(site, defects, node.name),
                ),
                battery=BatteryParams(
                    cells_in_series=battery.cells_in_series,
                    capacity_ah=battery.capacity,
                    initial_soc_pct=battery.initial_soc,
                    resistance_ohm=battery.resistance,
                    ambient_c=battery.ambient,
                    charge_voltage_limit_v=battery.charge_voltage_limit,
                    discharge_voltage_limit_v=battery.discharge_voltage_limit,
                    max_charge_current_a=battery.max_charge_current,
                    max_discharge_current_a=battery.max_discharge_current,
                ),
            )
        )
    load = site.spec.island_load
    return PlantParams(
        nominal_voltage_v=nominal_v,
        nominal_frequency_hz=nominal_f,
        nodes=nodes,
        island_load=IslandLoadParams(load.power, load.quality_factor),
    )
