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
from virtual_devices import comm_faults_config
from virtual_devices import performance_config as performance
from virtual_devices.defects import AppliedDefect, defects_for
from virtual_devices.ems_config import ems_params
from virtual_devices.island_detection_config import island_detection
from virtual_devices.plant.bms_logic import load_bms_settings
from virtual_devices.plant.island_params import GridFormingParams, LoadParams
from virtual_devices.plant.operation import load_operation_settings
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
from virtual_devices.topology_config import home_battery, pv_params, shared_storage


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
        elif d.kind == "ignore_enter_service_window":  # a switch: 0 or 1 (defects.py)
            out["ignore_enter_service_window"] = d.value == 1.0
    if trip_times:
        out["trip_times_s"] = trip_times
    return out


OVERCURRENT = ("charge_overcurrent", "discharge_overcurrent")
"""The protections a ``protection_delay`` on ``overcurrent`` delays."""


def _bms_defects(site: Site, defects: list[AppliedDefect], node: str) -> dict[str, Any]:
    """The BMS's protection defects (data/defects/bms_faults.yaml) as BatteryParams keywords."""
    out: dict[str, Any] = {}
    delays: dict[str, float] = {}
    disabled: set[str] = set()
    known = load_bms_settings().names
    for d in defects:
        if d.node != node or d.role != "bms":
            continue
        if d.kind in ("protection_delay", "protection_disabled"):
            name = str(d.extra["protection"]).lower()
            names = OVERCURRENT if name == "overcurrent" else (name,)
            if not set(names) <= set(known):
                raise ConfigErrors.single(
                    site.path,
                    f"{d.kind}: unknown protection {d.extra['protection']!r}; "
                    f"expected one of: overcurrent, {', '.join(known)}",
                    None,
                    "defects",
                )
            if d.kind == "protection_delay":
                for one in names:
                    delays[one] = delays.get(one, 0.0) + d.value
                continue
            if d.value == 1.0:  # a switch: 0 or 1 (virtual_devices/defects.py)
                disabled.update(names)
        elif d.kind == "heartbeat_loss_ignored":  # a switch: 0 or 1 (defects.py)
            out["ignore_heartbeat_loss"] = d.value == 1.0
    if delays:
        out["protection_delays_s"] = delays
    if disabled:
        out["protections_disabled"] = frozenset(disabled)
    return out


OPERATION_DEFECTS = {
    "setpoint_ramp_gain": "setpoint_ramp_gain",
    "dispatch_delay": "dispatch_delay_s",
    "soc_floor_ignored": "soc_floor_applied_pct",
}
"""Defect kinds of an inverter's normal operation (data/defects/operation.yaml) -> the
InverterParams field each sets."""


def _operation(rated_power_w: float, defects: dict[str, AppliedDefect]) -> dict[str, Any]:
    """The inverter's setpoint ramp and SoC reserve (data/inverter_operation.yaml) and its
    operation defects, as InverterParams keywords."""
    settings = load_operation_settings()
    out: dict[str, Any] = {
        "setpoint_ramp_w_per_s": settings.ramp_w_per_s(rated_power_w),
        "soc_reserve_pct": settings.soc_reserve_pct,
    }
    for kind, name in OPERATION_DEFECTS.items():
        if (d := defects.get(kind)) is not None:
            out[name] = d.value
    return out


GRID_FORMING_DEFECTS = {"transfer_time": "transfer_delay_s", "standby_drain": "standby_drain_w"}
"""Defect kinds of a grid-forming inverter -> the GridFormingParams field each sets."""


def _grid_forming(
    site: Site, node: str, defects: dict[str, AppliedDefect]
) -> GridFormingParams | None:
    """The node's grid-forming parameters (None: grid-following only), with their defects."""
    cfg = site.node(node).inverter.virtual.grid_forming
    given = {kind: d for kind, d in defects.items() if kind in GRID_FORMING_DEFECTS}
    if cfg is None:
        if given:
            raise ConfigErrors.single(
                site.path,
                f"{', '.join(sorted(given))}: {node}.inverter cannot form an island (give it "
                "'virtual.grid_forming')",
                None,
                "defects",
            )
        return None
    return GridFormingParams(
        mode=cfg.mode,
        enabled=cfg.enabled,
        detection_s=cfg.detection,
        transfer_s=cfg.transfer,
        voltage_ramp_s=cfg.voltage_ramp,
        frequency_droop_pct=cfg.frequency_droop,
        reserve_soc_pct=cfg.reserve_soc,
        **{GRID_FORMING_DEFECTS[kind]: d.value for kind, d in given.items()},
    )


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
        battery = home_battery(site, node)
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
                    efficiency=performance.efficiency(
                        site, defects, node.name, inv.virtual.efficiency
                    ),
                    anti_islanding_delay_s=island.value if island else None,
                    island_detection=island_detection(
                        site, node.name, inv.virtual.anti_islanding_detection, inv_defects
                    ),
                    grid_forming=_grid_forming(site, node.name, inv_defects),
                    **_operation(inv.rated_power, inv_defects),
                    **_protection_defects(site, defects, node.name),
                    **comm_faults_config.inverter_options(site, inv_defects),
                ),
                battery=BatteryParams(
                    cells_in_series=battery.cells_in_series,
                    capacity_ah=battery.capacity,
                    capacity_shortfall=performance.capacity_shortfall(site, defects, node.name),
                    initial_soc_pct=battery.initial_soc,
                    resistance_ohm=battery.resistance,
                    ambient_c=battery.ambient,
                    thermal_capacity_j_per_c=battery.thermal_capacity,
                    thermal_resistance_c_per_w=1.0
                    / performance.cooling(site, defects, node.name, battery.cooling),
                    charge_voltage_limit_v=battery.charge_voltage_limit,
                    discharge_voltage_limit_v=battery.discharge_voltage_limit,
                    max_charge_current_a=battery.max_charge_current,
                    max_discharge_current_a=battery.max_discharge_current,
                    **_bms_defects(site, defects, node.name),
                    **comm_faults_config.battery_options(
                        site, defects_for(defects, node.name, "bms")
                    ),
                ),
                loads=[LoadParams(ld.name, ld.priority, ld.power) for ld in node.loads],
                pv=pv_params(node),
            )
        )
    load = site.spec.island_load
    return PlantParams(
        nominal_voltage_v=nominal_v,
        nominal_frequency_hz=nominal_f,
        nodes=nodes,
        island_load=IslandLoadParams(load.power, load.quality_factor),
        ems=ems_params(site, defects),
        topology=site.spec.site.topology,
        shared_storage=shared_storage(site),
    )
