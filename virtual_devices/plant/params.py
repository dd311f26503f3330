"""Parameters of the virtual plant: plain dataclasses in SI units.

Standards values (trip settings, enter-service window, delay and ramp) deliberately have no
defaults here: they come from a profile or contract file through the caller, so that a plant can
never silently run with settings nobody chose. Product values that only shape the physics (pack
resistance, thermal constants) carry typical defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from virtual_devices.plant.ems_params import EmsParams
from virtual_devices.plant.island_detection import IslandDetection
from virtual_devices.plant.island_params import GridFormingParams, LoadParams
from virtual_devices.plant.pv import PvParams
from virtual_devices.plant.storage_params import SharedStorageParams, check_topology

TRIP_FUNCTIONS: tuple[str, ...] = ("ov2", "ov1", "uv1", "uv2", "of2", "of1", "uf1", "uf2")
"""Trip function names: over/under voltage (threshold in pu), over/under frequency (in Hz)."""

DEFAULT_OCV_CURVE = Path(__file__).resolve().parent.parent / "data" / "lfp_ocv.yaml"
"""The LFP cell open-circuit-voltage table shipped with the virtual devices."""
DEFAULT_BMS_SETTINGS = Path(__file__).resolve().parent.parent / "data" / "bms_logic.yaml"
"""The BMS behaviour (derating, protections, contactor) shipped with the virtual devices."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class TripSetting:
    """One protective function: trip when beyond ``threshold`` for ``clearing_time_s``.

    ``threshold`` is in pu of nominal voltage for voltage functions and in Hz for frequency ones.
    """

    threshold: float
    clearing_time_s: float

    def __post_init__(self) -> None:
        _require(_finite(self.threshold), f"trip threshold must be a finite number: {self!r}")
        _require(
            _finite(self.clearing_time_s) and self.clearing_time_s >= 0,
            f"trip clearing time must be >= 0 s: {self!r}",
        )


@dataclass(frozen=True)
class EnterServiceParams:
    """The window the grid must stay in for ``delay_s`` before a unit energizes, and its ramp."""

    v_low_pu: float
    v_high_pu: float
    f_low_hz: float
    f_high_hz: float
    delay_s: float
    ramp_s: float

    def __post_init__(self) -> None:
        _require(self.v_low_pu <= self.v_high_pu, f"enter service: v_low > v_high in {self!r}")
        _require(self.f_low_hz <= self.f_high_hz, f"enter service: f_low > f_high in {self!r}")
        _require(self.delay_s >= 0 and self.ramp_s >= 0, f"enter service: negative time {self!r}")


@dataclass
class InverterParams:
    """A grid-following battery inverter.

    ``trips`` and ``enter_service`` are the unit's *settings* (what it reports and should do).
    Defect hooks make its behaviour deviate from them while the settings stay as configured, as a
    unit with a firmware fault would: ``anti_islanding_delay_s`` keeps energizing an island for
    that long instead of its detection time; ``trip_times_s`` maps trip functions to the clearing
    time the unit actually applies; ``enter_service_delay_s`` and ``enter_service_ramp_s`` are the
    delay and ramp period it actually applies; ``ignore_enter_service_window`` makes it run its
    enter-service delay on any live grid, inside the window or not. ``setpoint_ramp_w_per_s``
    defaults to rated power per second. ``grid_forming`` makes it a unit that can form an
    intentional island (see island_params.GridFormingParams).

    Operation (data/inverter_operation.yaml, defects in data/defects/operation.yaml):
    ``soc_reserve_pct`` (low, high) is the SoC band the unit operates its battery in: no
    discharge at or below ``low``, no charge at or above ``high`` (None: the battery's own
    limits only). Defect hooks: ``setpoint_ramp_gain`` makes the output move at that multiple of
    the setpoint ramp; ``dispatch_delay_s`` applies every setpoint that long after it was
    commanded; ``soc_floor_applied_pct`` is the SoC it actually discharges down to instead of
    ``low``.
    """

    rated_power_w: float
    nominal_voltage_v: float
    nominal_frequency_hz: float
    trips: dict[str, TripSetting]
    enter_service: EnterServiceParams
    anti_islanding_detection_s: float = 0.5
    efficiency: float = 0.96
    setpoint_ramp_w_per_s: float | None = None
    anti_islanding_delay_s: float | None = None
    trip_times_s: dict[str, float] = field(default_factory=dict)
    enter_service_delay_s: float | None = None
    enter_service_ramp_s: float | None = None
    ignore_enter_service_window: bool = False
    grid_forming: GridFormingParams | None = None
    soc_reserve_pct: tuple[float, float] | None = None
    setpoint_ramp_gain: float = 1.0
    dispatch_delay_s: float = 0.0
    soc_floor_applied_pct: float | None = None
    comm_loss_delay_s: float = 0.0
    """How much later than its timeout the unit reverts on a lost controller (defect
    ``comm_loss_delay``, data/defects/comm_faults.yaml; plant/comm_supervision.py)."""
    comm_loss_ignored: bool = False
    """The unit never reverts on a lost controller (defect ``comm_loss_ignored``)."""
    island_detection: IslandDetection | None = None
    """Anti-islanding detection time by island frequency (plant/island_detection.py,
    data/anti_islanding.yaml); None: ``anti_islanding_detection_s`` whatever the island."""

    def __post_init__(self) -> None:
        _require(
            self.rated_power_w > 0, f"inverter rated power must be > 0 W: {self.rated_power_w}"
        )
        if self.soc_reserve_pct is not None:
            low, high = self.soc_reserve_pct
            _require(
                0 <= low < high <= 100,
                f"SoC reserve must be 0 <= low < high <= 100 %: {self.soc_reserve_pct}",
            )
        _require(
            _finite(self.setpoint_ramp_gain) and self.setpoint_ramp_gain > 0,
            f"setpoint ramp gain must be > 0: {self.setpoint_ramp_gain}",
        )
        _require(
            _finite(self.dispatch_delay_s) and self.dispatch_delay_s >= 0,
            f"dispatch delay must be >= 0 s: {self.dispatch_delay_s}",
        )
        if self.soc_floor_applied_pct is not None:
            _require(
                0 <= self.soc_floor_applied_pct <= 100,
                f"applied SoC floor must be within 0..100 %: {self.soc_floor_applied_pct}",
            )
        _require(self.nominal_voltage_v > 0, "inverter nominal voltage must be > 0 V")
        _require(self.nominal_frequency_hz > 0, "inverter nominal frequency must be > 0 Hz")
        unknown = sorted(set(self.trips) - set(TRIP_FUNCTIONS))
        _require(not unknown, f"unknown trip functions {unknown}; known: {list(TRIP_FUNCTIONS)}")
        _require(
            0 < self.efficiency <= 1, f"inverter efficiency must be in (0, 1]: {self.efficiency}"
        )
        _require(self.anti_islanding_detection_s >= 0, "anti-islanding detection time must be >= 0")
        if self.anti_islanding_delay_s is not None:
            _require(self.anti_islanding_delay_s >= 0, "anti_islanding_delay_s must be >= 0")
        wrong = sorted(set(self.trip_times_s) - set(TRIP_FUNCTIONS))
        _require(not wrong, f"trip_times_s: unknown trip functions {wrong}")
        for fn, seconds in self.trip_times_s.items():
            _require(_finite(seconds) and seconds >= 0, f"trip_times_s[{fn!r}] must be >= 0 s")
        for name in ("enter_service_delay_s", "enter_service_ramp_s"):
            value = getattr(self, name)
            if value is not None:
                _require(_finite(value) and value >= 0, f"{name} must be >= 0 s: {value}")
        if self.setpoint_ramp_w_per_s is None:
            self.setpoint_ramp_w_per_s = self.rated_power_w
        _require(self.setpoint_ramp_w_per_s > 0, "setpoint ramp must be > 0 W/s")

    @property
    def ramp_rate_w_per_s(self) -> float:
        """The setpoint ramp as a plain float (rated power per second when not given)."""
        rate = self.setpoint_ramp_w_per_s
        return self.rated_power_w if rate is None else rate

    @property
    def applied_ramp_w_per_s(self) -> float:
        """The rate the output actually moves at: the setpoint ramp, or the defect's multiple."""
        return self.ramp_rate_w_per_s * self.setpoint_ramp_gain

    @property
    def soc_floor_pct(self) -> float | None:
        """The SoC the unit stops discharging at: its reserve's low end, or the defect's."""
        if self.soc_floor_applied_pct is not None:
            return self.soc_floor_applied_pct
        return None if self.soc_reserve_pct is None else self.soc_reserve_pct[0]

    @property
    def soc_ceiling_pct(self) -> float | None:
        """The SoC the unit stops charging at: its reserve's high end (None: none)."""
        return None if self.soc_reserve_pct is None else self.soc_reserve_pct[1]

    def trip_clearing_s(self, function: str) -> float:
        """The clearing time the unit applies for ``function``: its setting, or the defect's."""
        actual = self.trip_times_s.get(function)
        return self.trips[function].clearing_time_s if actual is None else actual

    @property
    def es_delay_s(self) -> float:
        """The enter-service delay the unit applies: its setting, or the defect's."""
        actual = self.enter_service_delay_s
        return self.enter_service.delay_s if actual is None else actual

    @property
    def es_ramp_s(self) -> float:
        """The enter-service ramp period the unit applies: its setting, or the defect's."""
        actual = self.enter_service_ramp_s
        return self.enter_service.ramp_s if actual is None else actual

    @property
    def island_clearing_s(self) -> float:
        """How long the unit energizes an island: the detection time, or the defect's delay."""
        if self.anti_islanding_delay_s is not None:
            return self.anti_islanding_delay_s
        return self.anti_islanding_detection_s

    def island_clearing_at_s(self, offset_hz: float) -> float:
        """How long the unit energizes an island ``offset_hz`` off nominal frequency: its
        detection curve's time there, or the defect's delay whatever the island."""
        if self.anti_islanding_delay_s is not None or self.island_detection is None:
            return self.island_clearing_s
        return self.island_detection.detection_s(offset_hz)


@dataclass(kw_only=True)
class BatteryParams:
    """A pack of series LFP cells and its BMS.

    Keyword-only because the pack's voltage and current limits (product data from the site file)
    have no sensible defaults, yet follow fields that do. Thermal defaults: about 40 kg of pack
    at about 1 kJ/(kg degC), cooled by natural convection at 8 W/degC (0.125 degC/W), so 1 C
    through 20 mOhm (200 W) settles 25 degC above ambient with a time constant near 1.4 h.
    ``bms_settings_file`` is what its BMS decides (virtual_devices/plant/bms_logic.py; None: a
    pack without BMS logic, limits at rated until full or empty). Defect hooks (data/defects/
    bms_faults.yaml): ``protection_delays_s`` (protection -> extra seconds before it responds),
    ``protections_disabled`` (protections that never respond) and ``ignore_heartbeat_loss``.
    """

    cells_in_series: int = 15
    capacity_ah: float = 100.0
    initial_soc_pct: float = 60.0
    resistance_ohm: float = 0.02
    soh_pct: float = 100.0
    ambient_c: float = 25.0
    thermal_resistance_c_per_w: float = 0.125
    thermal_capacity_j_per_c: float = 40000.0
    charge_voltage_limit_v: float
    discharge_voltage_limit_v: float
    max_charge_current_a: float
    max_discharge_current_a: float
    ocv_curve_file: Path = field(default_factory=lambda: DEFAULT_OCV_CURVE)
    bms_settings_file: Path | None = field(default_factory=lambda: DEFAULT_BMS_SETTINGS)
    protection_delays_s: dict[str, float] = field(default_factory=dict)
    protections_disabled: frozenset[str] = frozenset()
    ignore_heartbeat_loss: bool = False
    precharge_delay_s: float = 0.0
    """How much later than its precharge timeout the BMS gives up a failed precharge (the
    ``precharge_failure`` defect, data/defects/comm_faults.yaml)."""
    capacity_shortfall: float = 0.0
    """Fraction of ``capacity_ah`` the cells lack (the ``capacity_shortfall`` defect): the pack
    holds that much less charge while its nameplate (and what the units report) stays."""

    def __post_init__(self) -> None:
        self.ocv_curve_file = Path(self.ocv_curve_file)
        _require(self.cells_in_series >= 1, "a pack needs at least one cell in series")
        _require(self.capacity_ah > 0, "battery capacity must be > 0 Ah")
        _require(0 <= self.capacity_shortfall < 1, "capacity shortfall must be within [0, 1)")
        _require(0 <= self.initial_soc_pct <= 100, "initial SoC must be within 0..100 %")
        _require(0 < self.soh_pct <= 100, "SoH must be within (0, 100] %")
        _require(self.resistance_ohm >= 0, "pack resistance must be >= 0 ohm")
        _require(self.thermal_resistance_c_per_w > 0, "thermal resistance must be > 0 degC/W")
        _require(self.thermal_capacity_j_per_c > 0, "thermal capacity must be > 0 J/degC")
        _require(
            self.discharge_voltage_limit_v < self.charge_voltage_limit_v,
            "discharge voltage limit must be below the charge voltage limit",
        )
        _require(
            self.max_charge_current_a >= 0 and self.max_discharge_current_a >= 0,
            "current limits must be >= 0 A",
        )
        if self.bms_settings_file is not None:
            self.bms_settings_file = Path(self.bms_settings_file)
        for name, seconds in self.protection_delays_s.items():
            _require(_finite(seconds) and seconds >= 0, f"protection delay {name!r} must be >= 0 s")


@dataclass
class IslandLoadParams:
    """Parallel RLC load at the home bus, balanced at nominal frequency (IEEE 1547.1 islanding)."""

    power_w: float = 0.0
    quality_factor: float = 1.0

    def __post_init__(self) -> None:
        _require(self.power_w >= 0, f"island load power must be >= 0 W: {self.power_w}")
        _require(self.quality_factor >= 0, f"quality factor must be >= 0: {self.quality_factor}")


@dataclass
class NodeParams:
    """One home: an inverter and its battery pack, and its loads (see island_params)."""

    name: str
    inverter: InverterParams
    battery: BatteryParams
    loads: list[LoadParams] = field(default_factory=list)
    pv: PvParams | None = None
    """The home's PV array and PV inverter (virtual_devices/plant/pv.py), if it has one."""


@dataclass
class PlantParams:
    """The site: nominal grid, homes behind one PCC, the island load and the stepping policy.

    The plant steps ``coarse_step_s`` in steady state and ``fine_step_s`` for ``fine_window_s``
    after any event; discrete events (trip timers, detection deadlines) are always landed on
    exactly, whatever the step.
    """

    nominal_voltage_v: float
    nominal_frequency_hz: float
    nodes: list[NodeParams]
    island_load: IslandLoadParams = field(default_factory=IslandLoadParams)
    ems: EmsParams | None = None
    """The site controller (virtual_devices/plant/ems.py); None: a site without one."""
    topology: str = "ac_coupled"
    """How the inverters reach their storage (virtual_devices/plant/topology.py)."""
    shared_storage: SharedStorageParams | None = None
    """The dc_bus bank or hybrid bulk bank (None on an ac_coupled site); on a dc_bus site the
    homes' own ``battery`` parameters are not used."""
    coarse_step_s: float = 0.05
    fine_step_s: float = 0.001
    fine_window_s: float = 1.0
    steady_step_s: float = 0.5
    """The step once the plant has been quiet (no event) for ``steady_after_s`` while tied to
    the grid and no analyzer capture is open: an hours-long charge or rest at constant power
    then costs few steps (energy, SoC and heat are integrated exactly or nearly so at any step;
    BMS timers and inverter deadlines are still landed on exactly)."""
    steady_after_s: float = 5.0

    def __post_init__(self) -> None:
        _require(self.nominal_voltage_v > 0, "plant nominal voltage must be > 0 V")
        _require(self.nominal_frequency_hz > 0, "plant nominal frequency must be > 0 Hz")
        _require(
            0 < self.fine_step_s <= self.coarse_step_s, "need 0 < fine_step_s <= coarse_step_s"
        )
        _require(self.fine_window_s >= 0, "fine_window_s must be >= 0")
        _require(self.coarse_step_s <= self.steady_step_s, "need coarse_step_s <= steady_step_s")
        _require(self.steady_after_s >= 0, "steady_after_s must be >= 0")
        check_topology(self.topology, self.shared_storage)
        names = [node.name for node in self.nodes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        _require(not duplicates, f"duplicate node names: {duplicates}")
        for name in names:
            _require(
                bool(name) and "." not in name, f"node name must be non-empty, no '.': {name!r}"
            )
