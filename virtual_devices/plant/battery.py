"""A battery pack of series LFP cells: OCV curve, series resistance, coulomb counting, heat.

The pack is one equivalent cell string: terminal voltage = cells * OCV(SoC) + I * R (I positive
when charging). The inverter asks for DC power; the pack answers with the current that delivers
exactly that power at its terminals, so energy is conserved to floating point and the loss I^2 R
shows up as heat. Efficiency of conversion is the inverter's business, not the pack's.

Stepping is explicit: :meth:`Battery.step` integrates over ``dt`` with the operating point at the
start of the interval, then recomputes the operating point at the new state, so the values read
between steps are the ones that will apply over the next interval.

Heat: a first-order thermal model (virtual_devices/plant/thermal.py). The BMS
(virtual_devices/plant/bms_logic.py) derates the advertised current limits, raises warnings and
protection alarms and works the contactor; with the contactor open the pack carries no current.
What the BMS reports (cell voltages, temperature) is what it senses, which a fault-insertion unit
can drive; the pack's own state stays physical (``pack_temperature_c``).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable
from pathlib import Path

import yaml

from virtual_devices.plant.bms_logic import BmsLogic, load_bms_settings
from virtual_devices.plant.params import BatteryParams
from virtual_devices.plant.thermal import ThermalModel

PROTECTIONS: tuple[str, ...] = (
    "cell_overvoltage",
    "cell_undervoltage",
    "overtemp",
    "undertemp",
    "overcurrent",
)
"""Names a BMS may put in :attr:`Battery.protections`."""


class OcvCurve:
    """Cell open-circuit voltage versus SoC, linear between the points of a data table."""

    def __init__(self, soc_pct: list[float], cell_v: list[float], source: str = "<table>") -> None:
        if len(soc_pct) < 2 or len(soc_pct) != len(cell_v):
            raise ValueError(f"{source}: an OCV curve needs at least two [soc_pct, cell_v] points")
        for i in range(1, len(soc_pct)):
            if soc_pct[i] <= soc_pct[i - 1]:
                raise ValueError(f"{source}: SoC must rise strictly (point {i}: {soc_pct[i]} %)")
            if cell_v[i] <= cell_v[i - 1]:
                raise ValueError(f"{source}: OCV must rise strictly (point {i}: {cell_v[i]} V)")
        self._x = [float(x) for x in soc_pct]
        self._y = [float(y) for y in cell_v]
        self._slope = [
            (self._y[i + 1] - self._y[i]) / (self._x[i + 1] - self._x[i])
            for i in range(len(self._x) - 1)
        ]
        self._last = len(self._x) - 2

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(zip(self._x, self._y, strict=True))

    def __call__(self, soc_pct: float) -> float:
        """Cell OCV in V at ``soc_pct``; clamped to the table's ends outside its range."""
        x = self._x
        if soc_pct <= x[0]:
            return self._y[0]
        if soc_pct >= x[-1]:
            return self._y[-1]
        i = bisect.bisect_right(x, soc_pct) - 1
        if i > self._last:
            i = self._last
        return self._y[i] + self._slope[i] * (soc_pct - x[i])


@functools.lru_cache(maxsize=16)
def load_ocv_curve(path: Path) -> OcvCurve:
    """Read an OCV table (``points: [[soc_pct, cell_v], ...]``) from a YAML data file."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise ValueError(f"{path}: expected a mapping with a 'points' list of [soc_pct, cell_v]")
    socs: list[float] = []
    volts: list[float] = []
    for i, point in enumerate(data["points"]):
        if not (isinstance(point, list) and len(point) == 2):
            raise ValueError(f"{path}: point {i} must be [soc_pct, cell_v], got {point!r}")
        socs.append(float(point[0]))
        volts.append(float(point[1]))
    return OcvCurve(socs, volts, source=str(path))


def _ignore(_event: str) -> None:
    """Default event sink for a battery used outside a plant."""


class Battery:
    """The pack's physical state, its BMS and the limits it advertises.

    ``protections`` is the set of active protection alarms (see :data:`PROTECTIONS`) and
    ``warnings`` the set of warnings, both kept by the BMS; ``emit`` receives its discrete
    events (``<name>.bms.alarm:overtemp``, ``<name>.bms.contactor:open`` ...).
    """

    def __init__(
        self, params: BatteryParams, name: str = "battery", emit: Callable[[str], None] = _ignore
    ) -> None:
        self.params = params
        self.name = name
        self._emit = emit
        self._stepping = False
        self._deferred: list[str] = []
        self.ocv_curve = load_ocv_curve(Path(params.ocv_curve_file).resolve())
        self.thermal = ThermalModel(
            params.ambient_c,
            params.thermal_capacity_j_per_c,
            1.0 / params.thermal_resistance_c_per_w,
        )
        self.bms: BmsLogic | None = None
        if params.bms_settings_file is not None:
            self.bms = BmsLogic(
                load_bms_settings(Path(params.bms_settings_file).resolve()),
                params.max_charge_current_a,
                params.max_discharge_current_a,
                name=f"{name}.bms",
                emit=self._bms_event,
                extra_delays_s=params.protection_delays_s,
                disabled=params.protections_disabled,
                ignore_heartbeat_loss=params.ignore_heartbeat_loss,
                precharge_extra_s=params.precharge_delay_s,
            )
        self.protections: set[str] = self.bms.alarms if self.bms else set()
        self.warnings: set[str] = self.bms.warnings if self.bms else set()
        self._t = 0.0
        self._cells = params.cells_in_series
        self._r = params.resistance_ohm
        self._soc = params.initial_soc_pct
        self._soh = params.soh_pct
        held_ah = params.capacity_ah * (1.0 - params.capacity_shortfall)
        self._amp_s_per_pct = held_ah * params.soh_pct / 100.0 * 3600.0 / 100.0
        self._power_w = 0.0
        self._current_a = 0.0
        self._ocv_v = 0.0
        self.max_charge_power_w = 0.0
        self.max_discharge_power_w = 0.0
        self._solve()
        self._run_bms()

    # -- state ------------------------------------------------------------------------------

    @property
    def soc_pct(self) -> float:
        return self._soc

    @property
    def pack_temperature_c(self) -> float:
        """The pack's temperature from the thermal model, degC (what it physically is)."""
        return self.thermal.temperature_c

    @property
    def temperature_c(self) -> float:
        """The temperature the BMS senses and reports, degC (its sensor may be driven)."""
        bms = self.bms
        if bms is not None:
            driven = bms.overrides.get("temperature")
            if driven is not None:
                return driven
        return self.thermal.temperature_c

    @property
    def sensed_current_a(self) -> float:
        """The current the BMS's shunt reads, A (+ charging): the pack's, unless it is driven."""
        bms = self.bms
        if bms is not None:
            driven = bms.overrides.get("current")
            if driven is not None:
                return driven
        return self._current_a

    @property
    def contactor_closed(self) -> bool:
        return self.bms is None or self.bms.closed

    @property
    def contactor_state(self) -> float:
        """0 open, 1 precharging, 2 closed, 3 fault (as a CAN status signal numbers them)."""
        return 2.0 if self.bms is None else self.bms.contactor_state

    @property
    def heartbeat_lost(self) -> bool:
        """Whether the BMS has lost the inverter's heartbeat (a pack without BMS never does)."""
        return self.bms is not None and self.bms.heartbeat_lost

    @property
    def next_event(self) -> float:
        """Earliest instant a BMS timer expires (inf: none), for the plant to land a step on."""
        return math.inf if self.bms is None else self.bms.next_event

    def heartbeat(self, t: float) -> None:
        """The inverter's heartbeat reached the BMS at site time ``t``."""
        if self.bms is not None:
            self.bms.heartbeat(t)

    @property
    def soh_pct(self) -> float:
        return self._soh

    @property
    def current_a(self) -> float:
        """Pack current, A, positive when charging."""
        return self._current_a

    @property
    def open_circuit_voltage_v(self) -> float:
        return self._ocv_v

    @property
    def voltage_v(self) -> float:
        """Terminal voltage: OCV plus the drop (or rise) across the series resistance."""
        return self._ocv_v + self._current_a * self._r

    @property
    def power_w(self) -> float:
        """DC power drawn from the pack, W (positive = discharge), as last requested."""
        return self._power_w

    @property
    def cell_voltage_min_v(self) -> float:
        """Cells are modelled identical, so min and max are the mean cell's terminal voltage,
        unless a cell tap is driven: then the BMS sees that cell too."""
        cell = self.voltage_v / self._cells
        tap = self.bms.overrides.get("cell_voltage") if self.bms is not None else None
        return cell if tap is None or tap > cell else tap

    @property
    def cell_voltage_max_v(self) -> float:
        cell = self.voltage_v / self._cells
        tap = self.bms.overrides.get("cell_voltage") if self.bms is not None else None
        return cell if tap is None or tap < cell else tap

    # -- advertised limits -------------------------------------------------------------------

    @property
    def charge_voltage_limit_v(self) -> float:
        return self.params.charge_voltage_limit_v

    @property
    def discharge_voltage_limit_v(self) -> float:
        return self.params.discharge_voltage_limit_v

    @property
    def charge_current_limit_a(self) -> float:
        """Rated charge current, derated by the BMS; zero when full."""
        if self._soc >= 100.0:
            return 0.0
        rated = self.params.max_charge_current_a
        return rated if self.bms is None else rated * self.bms.limit_factor("charge")

    @property
    def discharge_current_limit_a(self) -> float:
        """Rated discharge current, derated by the BMS; zero when empty."""
        if self._soc <= 0.0:
            return 0.0
        rated = self.params.max_discharge_current_a
        return rated if self.bms is None else rated * self.bms.limit_factor("discharge")

    # -- dynamics ----------------------------------------------------------------------------

    def step(self, dt: float, dc_power_w: float) -> None:
        """Deliver ``dc_power_w`` (positive = discharge) for ``dt`` seconds.

        ``dt == 0`` only moves the operating point (a new power request at the same instant);
        BMS events raised during the last step are handed on then (the plant calls it once its
        clock reads the step's end).
        """
        if self._deferred:
            self._flush_events()
        if dc_power_w != self._power_w:
            self._power_w = dc_power_w
            self._solve()
            if dt <= 0.0:
                self._run_bms()
                return
        if dt <= 0.0:
            if self.bms is not None and self.bms.overrides_changed:
                self._run_bms()
            return
        current = self._current_a
        soc = self._soc + current * dt / self._amp_s_per_pct
        self._soc = 0.0 if soc < 0.0 else 100.0 if soc > 100.0 else soc
        self.thermal.step(dt, current * current * self._r)
        self._t += dt
        self._solve()
        self._stepping = True  # the plant's clock still reads the start of this step
        try:
            self._run_bms()
        finally:
            self._stepping = False

    def _bms_event(self, name: str) -> None:
        """A BMS event; one raised inside a step waits for the plant to reach the step's end."""
        if self._stepping:
            self._deferred.append(name)
        else:
            self._emit(name)

    def _flush_events(self) -> None:
        deferred, self._deferred = self._deferred, []
        for name in deferred:
            self._emit(name)

    def _run_bms(self) -> None:
        """Let the BMS see the present state; re-solve if its limits or contactor changed."""
        bms = self.bms
        if bms is not None and bms.update(self._t, self._sense, self._soc):
            self._solve()

    def _sense(self) -> tuple[float, float, float]:
        """The pack's own cell voltage, temperature and current (A, + charging)."""
        return self.voltage_v / self._cells, self.thermal.temperature_c, self._current_a

    def _solve(self) -> None:
        """Operating point at the present SoC: current for the requested power, power limits."""
        ocv = self._cells * self.ocv_curve(self._soc)
        self._ocv_v = ocv
        r = self._r
        power = self._power_w
        if self.bms is not None and not self.bms.closed:
            self._current_a = 0.0  # the contactor is open: no current, whatever is asked
            self.max_discharge_power_w = self.max_charge_power_w = 0.0
            return
        if power == 0.0:
            self._current_a = 0.0
        else:
            # P = -(OCV + I R) I  ->  R I^2 + OCV I + P = 0; the root near -P / OCV, in a form
            # that stays exact as R -> 0. Beyond the pack's maximum power the current saturates.
            disc = ocv * ocv - 4.0 * r * power
            self._current_a = -2.0 * power / (ocv + math.sqrt(disc if disc > 0.0 else 0.0))
        params = self.params
        i_dis = self.discharge_current_limit_a
        i_ch = self.charge_current_limit_a
        if r > 0.0:
            i_dis = min(i_dis, max(0.0, (ocv - params.discharge_voltage_limit_v) / r))
            i_ch = min(i_ch, max(0.0, (params.charge_voltage_limit_v - ocv) / r))
        else:
            i_dis = i_dis if ocv > params.discharge_voltage_limit_v else 0.0
            i_ch = i_ch if ocv < params.charge_voltage_limit_v else 0.0
        self.max_discharge_power_w = i_dis * (ocv - i_dis * r)
        self.max_charge_power_w = i_ch * (ocv + i_ch * r)
