"""The virtual inverter's SunSpec Modbus face: one plant node (inverter + battery) as models
1 (common), 701 (AC measurements), 702 (capacity), 703 (enter service), 704 (AC controls),
713 (storage capacity) and 802 (battery).

The layout comes from pysunspec2's definitions (:func:`build_sunspec_map`); this module only says
which plant quantity feeds which point and which writes reach the plant. Anything the plant does
not model is served as "not implemented", never invented. Scale factors are chosen from the
ratings so that every value fits its register with the finest resolution.

Operation settings are served as the unit holds them, read-only (a write is answered
ILLEGAL_ADDRESS: "not adjustable on this unit"): 704 ``WRmp``, its setpoint ramp in % of rated
power per second, and 802 ``SoCRsvMin`` / ``SocRsvMax``, its SoC reserve. A defect changes what
the unit does, never these.

Writes that reach the plant: 704 ``WSetEna`` / ``WSetMod`` / ``WSet`` / ``WSetPct`` (the active
power setpoint, within +-rated power; each reads back the setting last written, as SunSpec
controls do), 802 ``CtrlHb`` (stored and read back) and ``AlmRst`` (the plant latches no alarm,
so a reset is accepted and has nothing to do). Writes to other writable points are answered
ILLEGAL_ADDRESS: this virtual inverter does not implement those controls (802 ``SetOp`` and
``SetInvState`` are served as the present state, CONNECT and STARTED/STANDBY/STOPPED).

Communication-loss supervision (virtual_devices/plant/comm_supervision.py) through 704's
reversion points: ``WSetRvrtTms`` (s, 0 = none) is the timeout, ``WSetRvrt`` (W, within
+-rated) the safe setpoint applied while ``WSetEnaRvrt`` is ENABLED (DISABLED: the setpoint
control reverts to disabled, 0 W); ``WSetRvrtRem`` counts down. Every request addressed to the
unit, read or write, restarts the timer; the reversion itself shows in the output (701 ``W``),
while the 704 controls read back as last written.

Intentional islanding (a grid-forming plant unit, virtual_devices/plant/grid_forming.py): 702
``IntIslandCatRtg`` rates INT_ISL_CAPABLE (plus ISOCH_CAPABLE in isochronous mode; nothing for a
grid-following unit); 702 ``IntIslandCat`` is the setting, writable with any subset of the
rated bits (others: ILLEGAL_VALUE), and intentional islanding is on while it holds
INT_ISL_CAPABLE; 701 ``DERMode`` reports GRID_FORMING while the unit holds an island.

Defect hooks (catalogue: ``virtual_devices/data/defects/modbus.yaml``; :func:`defect_options`
turns a site's defects into the keyword arguments below):

- ``power_reading_gain``: the reported active power (W, WL1) is the plant's power times the gain,
  as a miscalibrated power measurement would report it;
- ``scale_factor_error=(point, offset)``: the sunssf that scales ``point`` is published as the
  true exponent plus ``offset`` while the raw values stay those of the true one, so every point
  it scales reads 10**offset times its true value (an offset that leaves -10..10 is published
  as it is, as a broken firmware would);
- ``accept_beyond``: writes to a ranged setpoint (WSet, WSetPct) up to this fraction of the
  range's span past either end are accepted and applied instead of refused.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from harness.transports.aioloop import LoopThread
from harness.transports.regmap import RegisterMap, Value, encode
from harness.transports.sunspec import build_sunspec_map, choose_sf
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint, ServedUnit

MODELS = (1, 701, 702, 703, 704, 713, 802)
_RANGED = ("DERCtlAC.WSet", "DERCtlAC.WSetPct", "DERCtlAC.WSetRvrt")
_REVERSION = ("DERCtlAC.WSetEnaRvrt", "DERCtlAC.WSetRvrt", "DERCtlAC.WSetRvrtTms")

# Plant inverter states -> 701 symbols (InvSt, ConnSt, St). OFF while an enter-service delay
# runs is reported STARTING: the unit is on its way into service.
_INV_STATE = {"ON": "RUNNING", "OFF": "OFF", "TRIPPED": "FAULT"}
_IDENTITY_KEYS = {
    "Mn": ("Mn", "manufacturer"),
    "Md": ("Md", "model"),
    "SN": ("SN", "serial"),
    "Vr": ("Vr", "firmware", "version"),
    "Opt": ("Opt", "options"),
}


class EnterServiceLike(Protocol):
    """The plant's enter-service settings (read-only here, as every member below)."""

    @property
    def v_low_pu(self) -> float: ...
    @property
    def v_high_pu(self) -> float: ...
    @property
    def f_low_hz(self) -> float: ...
    @property
    def f_high_hz(self) -> float: ...
    @property
    def delay_s(self) -> float: ...
    @property
    def ramp_s(self) -> float: ...


class InverterParamsLike(Protocol):
    @property
    def rated_power_w(self) -> float: ...
    @property
    def nominal_voltage_v(self) -> float: ...
    @property
    def nominal_frequency_hz(self) -> float: ...
    @property
    def enter_service(self) -> EnterServiceLike: ...


class InverterLike(Protocol):
    @property
    def power_w(self) -> float: ...
    @property
    def current_a(self) -> float: ...
    @property
    def state(self) -> str: ...
    @property
    def setpoint_w(self) -> float: ...
    @property
    def params(self) -> InverterParamsLike: ...

    def set_power_setpoint(self, w: float) -> None: ...


class BatteryParamsLike(Protocol):
    @property
    def capacity_ah(self) -> float: ...
    @property
    def cells_in_series(self) -> int: ...


class BatteryLike(Protocol):
    @property
    def voltage_v(self) -> float: ...
    @property
    def current_a(self) -> float: ...
    @property
    def soc_pct(self) -> float: ...
    @property
    def soh_pct(self) -> float: ...
    @property
    def temperature_c(self) -> float: ...
    @property
    def charge_current_limit_a(self) -> float: ...
    @property
    def discharge_current_limit_a(self) -> float: ...
    @property
    def cell_voltage_min_v(self) -> float: ...
    @property
    def cell_voltage_max_v(self) -> float: ...
    @property
    def params(self) -> BatteryParamsLike: ...


class NodeLike(Protocol):
    @property
    def inverter(self) -> InverterLike: ...
    @property
    def battery(self) -> BatteryLike: ...


class PlantLike(Protocol):
    @property
    def bus_voltage_v(self) -> float: ...
    @property
    def bus_frequency_hz(self) -> float: ...


def _identity_value(identity: Mapping[str, str] | object, point: str) -> str | None:
    for key in _IDENTITY_KEYS[point]:
        value = identity.get(key) if isinstance(identity, Mapping) else getattr(identity, key, None)
        if value:
            return str(value)
    return None


class SunSpecInverterEndpoint(ServedUnit):
    """A Modbus TCP server presenting one plant node as a SunSpec inverter with storage."""

    def __init__(
        self,
        node: NodeLike,
        plant: PlantLike,
        identity: Mapping[str, str] | object,
        *,
        lock: threading.RLock,
        loop: LoopThread,
        unit: int = 1,
        power_reading_gain: float = 1.0,
        scale_factor_error: tuple[str, float] | None = None,
        accept_beyond: float = 0.0,
        energy_rating_wh: float | None = None,
        base: int = 40000,
    ) -> None:
        self.node = node
        self.plant = plant
        self.unit = unit
        self.power_reading_gain = power_reading_gain
        if accept_beyond < 0:
            raise ValueError(f"accept_beyond must be >= 0, not {accept_beyond:g}")
        self.accept_beyond = accept_beyond
        inv = node.inverter.params
        self._rated = float(inv.rated_power_w)
        self._vnom = float(inv.nominal_voltage_v)
        bat = node.battery
        self._capacity_ah = float(bat.params.capacity_ah)
        # The energy rating is product data; without it, capacity times the pack voltage when
        # the endpoint is built is the nameplate estimate (it does not drift with the SoC).
        self._wh_rating = (
            float(energy_rating_wh)
            if energy_rating_wh is not None
            else self._capacity_ah * float(bat.voltage_v)
        )
        self._identity = {k: _identity_value(identity, k) for k in _IDENTITY_KEYS}
        self._wset_enabled = False
        self._wset_mode = 1  # WATTS
        self._wset_w = 0.0
        self._wset_pct = 0.0
        self._ctrl_hb: float | None = None
        self._set_op = 1.0  # CONNECT: the battery is connected and stays so
        self._island_cat: int | None = None  # 702 IntIslandCat as last written
        self._reversion = {name: 0.0 for name in _REVERSION}  # 704 reversion, as last written
        self._limits = {
            name: self._widened(low, high)
            for name, (low, high) in (
                ("DERCtlAC.WSet", (-self._rated, self._rated)),
                ("DERCtlAC.WSetPct", (-100.0, 100.0)),
                ("DERCtlAC.WSetRvrt", (-self._rated, self._rated)),
            )
        }
        self.regmap: RegisterMap = build_sunspec_map(MODELS, base).with_limits(self._limits)
        for key, value in self._identity.items():  # fail at construction, not on first read
            encode(self.regmap.point(f"common.{key}"), value)
        self._fixed_sf = self._scale_factors()
        self._sf_error: tuple[str, int] | None = None
        if scale_factor_error is not None:
            self._sf_error = self._sf_error_target(*scale_factor_error)
        self.server = ModbusServerEndpoint(self.regmap, unit, self, lock, loop)

    # -- scale factors ----------------------------------------------------------------------

    def _scale_factors(self) -> dict[str, int]:
        rated_a = 2.0 * self._rated / self._vnom
        bat = self.node.battery
        pack_v = 2.0 * max(float(bat.voltage_v), 1.0)
        bat_a = 2.0 * max(
            float(bat.charge_current_limit_a), float(bat.discharge_current_limit_a), 1.0
        )
        u16 = 65534
        return {
            "DERMeasureAC.A_SF": choose_sf(rated_a, finest=-2),
            "DERMeasureAC.V_SF": choose_sf(2.0 * self._vnom, limit=u16, finest=-1),
            "DERMeasureAC.Hz_SF": -2,
            "DERMeasureAC.PF_SF": -3,
            "DERCapacity.W_SF": choose_sf(2.0 * self._rated, limit=u16, finest=0),
            "DERCapacity.VA_SF": choose_sf(2.0 * self._rated, limit=u16, finest=0),
            "DERCapacity.V_SF": choose_sf(2.0 * self._vnom, limit=u16, finest=-1),
            "DERCapacity.A_SF": choose_sf(rated_a, limit=u16, finest=-2),
            "DEREnterService.V_SF": -1,
            "DEREnterService.Hz_SF": -2,
            "DERCtlAC.WSet_SF": 0,
            "DERCtlAC.WSetPct_SF": -1,
            "DERStorageCapacity.WH_SF": choose_sf(self._wh_rating, limit=u16, finest=0),
            "DERStorageCapacity.Pct_SF": -1,
            "battery.AHRtg_SF": choose_sf(self._capacity_ah, limit=u16, finest=-1),
            "battery.WHRtg_SF": choose_sf(self._wh_rating, limit=u16, finest=0),
            "battery.WChaDisChaMax_SF": choose_sf(pack_v * bat_a, limit=u16, finest=0),
            "battery.SoC_SF": -1,
            "battery.SoH_SF": -1,
            "battery.V_SF": choose_sf(pack_v, limit=u16, finest=-2),
            "battery.CellV_SF": -3,
            "battery.A_SF": choose_sf(bat_a, finest=-2),
            "battery.AMax_SF": choose_sf(bat_a, limit=u16, finest=-2),
            "battery.W_SF": choose_sf(pack_v * bat_a, finest=0),
        }

    def _widened(self, low: float, high: float) -> tuple[float, float]:
        """The range the device accepts: the declared one, widened by the accept_beyond defect."""
        extra = self.accept_beyond * (high - low)
        return low - extra, high + extra

    def _sf_error_target(self, point: str, offset: float) -> tuple[str, int]:
        """The sunssf point that the scale_factor_error defect misreports, and by how much."""
        target = self.regmap.point(point)
        if target.type != "sunssf":
            if not isinstance(target.sf, str):
                raise ValueError(f"scale_factor_error: {point} is not scaled by a sunssf point")
            target = self.regmap.point(target.sf)
        if offset != int(offset):
            raise ValueError(f"scale_factor_error: offset {offset!r} is not a whole exponent")
        return target.name, int(offset)

    def raw_overrides(self) -> Mapping[str, Sequence[int]]:
        """Registers served as they are (see ModbusServerEndpoint): the misreported sunssf."""
        if self._sf_error is None:
            return {}
        name, offset = self._sf_error
        true_sf = self.read_points().get(name)
        if true_sf is None or isinstance(true_sf, str):
            return {}
        return {name: [(int(true_sf) + offset) & 0xFFFF]}

    def _w_sf(self) -> int:
        # Follows the gain so that an injected defect still fits the register.
        return choose_sf(1.5 * self._rated * max(1.0, abs(self.power_reading_gain)), finest=0)

    # -- provider ---------------------------------------------------------------------------

    def read_points(self) -> Mapping[str, Value]:
        values: dict[str, Value] = dict(self._fixed_sf)
        values.update(self._common())
        values.update(self._measure_ac())
        values.update(self._capacity())
        values.update(self._enter_service())
        values.update(self._controls())
        values.update(self._storage())
        values.update(self._operation())
        return values

    def _common(self) -> dict[str, Value]:
        out: dict[str, Value] = {f"common.{k}": v for k, v in self._identity.items()}
        out["common.DA"] = float(self.unit)
        return out

    def _inv_state(self) -> str:
        inv: Any = self.node.inverter
        state = str(inv.state)
        if state == "OFF" and getattr(inv, "enter_service_due", None) is not None:
            return "STARTING"
        return _INV_STATE.get(state, "OFF")

    def _inv_started(self) -> str:
        state = self._inv_state()
        if state == "RUNNING":
            return "INVERTER_STARTED"
        return "INVERTER_STANDBY" if state == "STARTING" else "INVERTER_STOPPED"

    def _measure_ac(self) -> dict[str, Value]:
        inv = self.node.inverter
        m = self.regmap.point("DERMeasureAC.InvSt").symbols
        conn = self.regmap.point("DERMeasureAC.ConnSt").symbols
        st = self.regmap.point("DERMeasureAC.St").symbols
        mode = self.regmap.point("DERMeasureAC.DERMode").symbols
        on = inv.state == "ON"
        forming = bool(getattr(inv, "forming", False))
        w = float(inv.power_w) * self.power_reading_gain
        var = float(getattr(inv, "reactive_power_var", 0.0))
        va = math.hypot(w, var)
        pf = math.copysign(abs(w) / va, w) if va > 0 else 1.0
        v = float(self.plant.bus_voltage_v)
        w_sf = self._w_sf()
        return {
            "DERMeasureAC.ACType": float(
                self.regmap.point("DERMeasureAC.ACType").symbols["SINGLE_PHASE"]
            ),
            "DERMeasureAC.St": float(st["ON" if on else "OFF"]),
            "DERMeasureAC.InvSt": float(m[self._inv_state()]),
            "DERMeasureAC.ConnSt": float(conn["CONNECTED" if on else "DISCONNECTED"]),
            "DERMeasureAC.Alrm": 0.0,
            "DERMeasureAC.DERMode": float(
                1 << mode["GRID_FORMING" if forming else "GRID_FOLLOWING"]
            ),
            "DERMeasureAC.W": w,
            "DERMeasureAC.VA": va,
            "DERMeasureAC.Var": var,
            "DERMeasureAC.PF": pf,
            "DERMeasureAC.A": float(inv.current_a),
            "DERMeasureAC.LNV": v,
            "DERMeasureAC.Hz": float(self.plant.bus_frequency_hz),
            "DERMeasureAC.WL1": w,
            "DERMeasureAC.VAL1": va,
            "DERMeasureAC.VarL1": var,
            "DERMeasureAC.PFL1": pf,
            "DERMeasureAC.AL1": float(inv.current_a),
            "DERMeasureAC.VL1": v,
            "DERMeasureAC.W_SF": w_sf,
            "DERMeasureAC.VA_SF": w_sf,
            "DERMeasureAC.Var_SF": w_sf,
        }

    def _capacity(self) -> dict[str, Value]:
        rated_a = self._rated / self._vnom
        return {
            "DERCapacity.WMaxRtg": self._rated,
            "DERCapacity.VAMaxRtg": self._rated,
            "DERCapacity.WChaRteMaxRtg": self._rated,
            "DERCapacity.WDisChaRteMaxRtg": self._rated,
            "DERCapacity.VNomRtg": self._vnom,
            "DERCapacity.AMaxRtg": rated_a,
            "DERCapacity.WMax": self._rated,
            "DERCapacity.VAMax": self._rated,
            "DERCapacity.VNom": self._vnom,
            "DERCapacity.AMax": rated_a,
            "DERCapacity.IntIslandCatRtg": float(self._island_rating()),
            "DERCapacity.IntIslandCat": float(self._island_setting()),
        }

    def _island_rating(self) -> int:
        """702 IntIslandCatRtg: the intentional-island categories the unit can operate in."""
        gf = getattr(self.node.inverter.params, "grid_forming", None)
        if gf is None:
            return 0
        bits = self.regmap.point("DERCapacity.IntIslandCatRtg").symbols
        rating = 1 << bits["INT_ISL_CAPABLE"]
        return rating | (1 << bits["ISOCH_CAPABLE"]) if gf.mode == "isochronous" else rating

    def _island_setting(self) -> int:
        """702 IntIslandCat: the rated categories while intentional islanding is on, else 0."""
        if self._island_cat is not None:
            return self._island_cat
        return self._island_rating() if getattr(self.node.inverter, "island_enabled", False) else 0

    def _write_island_setting(self, value: float) -> None:
        rating = self._island_rating()
        if value != int(value) or int(value) & ~rating:
            raise ValueError(f"IntIslandCat {value:g}: only the rated categories {rating}")
        bits = self.regmap.point("DERCapacity.IntIslandCat").symbols
        self._island_cat = int(value)
        inverter: Any = self.node.inverter
        if rating:
            inverter.set_island_enabled(bool(self._island_cat & (1 << bits["INT_ISL_CAPABLE"])))

    def _enter_service(self) -> dict[str, Value]:
        es = self.node.inverter.params.enter_service
        due = getattr(self.node.inverter, "enter_service_due", None)
        now = getattr(self.plant, "t", None)
        remaining = None if due is None or now is None else max(0.0, float(due) - float(now))
        return {
            "DEREnterService.ES": float(self.regmap.point("DEREnterService.ES").symbols["ENABLED"]),
            "DEREnterService.ESVHi": 100.0 * es.v_high_pu,
            "DEREnterService.ESVLo": 100.0 * es.v_low_pu,
            "DEREnterService.ESHzHi": es.f_high_hz,
            "DEREnterService.ESHzLo": es.f_low_hz,
            "DEREnterService.ESDlyTms": float(round(es.delay_s)),
            "DEREnterService.ESRmpTms": float(round(es.ramp_s)),
            "DEREnterService.ESDlyRemTms": None if remaining is None else float(round(remaining)),
        }

    def _operation(self) -> dict[str, Value]:
        """704 WRmp and 802 SoCRsvMin / SocRsvMax: the unit's settings (None: not modelled)."""
        params = self.node.inverter.params
        ramp = getattr(params, "ramp_rate_w_per_s", None)
        reserve = getattr(params, "soc_reserve_pct", None)
        return {
            "DERCtlAC.WRmp": None if ramp is None else float(round(100.0 * ramp / self._rated)),
            "battery.SoCRsvMin": None if reserve is None else float(reserve[0]),
            "battery.SocRsvMax": None if reserve is None else float(reserve[1]),
        }

    def on_request(self) -> None:
        """A request addressed to this unit arrived: its communication-loss timer restarts."""
        comm = getattr(self.node.inverter, "comm", None)
        now = getattr(self.plant, "t", None)
        if comm is not None and now is not None:
            comm.heard(float(now))

    def _remaining(self) -> float | None:
        comm = getattr(self.node.inverter, "comm", None)
        now = getattr(self.plant, "t", None)
        if comm is None or now is None:
            return None
        left = comm.remaining(float(now))
        return 0.0 if left is None else float(math.ceil(left))

    def _write_reversion(self, name: str, value: float) -> None:
        if name == "DERCtlAC.WSetEnaRvrt" and value not in (0.0, 1.0):
            raise ValueError(f"WSetEnaRvrt is 0 (DISABLED) or 1 (ENABLED), not {value:g}")
        if name == "DERCtlAC.WSetRvrtTms" and value < 0:
            raise ValueError(f"WSetRvrtTms {value:g} is negative")
        if name == "DERCtlAC.WSetRvrt":
            self._check_range(name, value)
        self._reversion[name] = value
        inverter: Any = self.node.inverter
        timeout = self._reversion["DERCtlAC.WSetRvrtTms"]
        enabled = self._reversion["DERCtlAC.WSetEnaRvrt"] == 1.0
        inverter.configure_comm_supervision(
            enabled=timeout > 0,
            timeout_s=timeout,
            safe_setpoint_w=self._reversion["DERCtlAC.WSetRvrt"] if enabled else 0.0,
        )

    def _controls(self) -> dict[str, Value]:
        supervised = hasattr(self.node.inverter, "comm")
        return {
            **(dict(self._reversion) if supervised else {}),
            "DERCtlAC.WSetRvrtRem": self._remaining() if supervised else None,
            "DERCtlAC.WSetEna": 1.0 if self._wset_enabled else 0.0,
            "DERCtlAC.WSetMod": float(self._wset_mode),
            "DERCtlAC.WSet": self._wset_w,
            "DERCtlAC.WSetPct": self._wset_pct,
            "DERCtlAC.AntiIslEna": float(
                self.regmap.point("DERCtlAC.AntiIslEna").symbols["ENABLED"]
            ),
        }

    def _storage(self) -> dict[str, Value]:
        bat = self.node.battery
        soc, soh = float(bat.soc_pct), float(bat.soh_pct)
        v, a = float(bat.voltage_v), float(bat.current_a)
        cha = self.regmap.point("battery.ChaSt").symbols
        charge_state = "CHARGING" if a > 0.01 else "DISCHARGING" if a < -0.01 else "HOLDING"
        now = getattr(self.plant, "t", None)
        return {
            "DERStorageCapacity.WHRtg": self._wh_rating,
            "DERStorageCapacity.WHAvail": self._wh_rating * soc / 100.0,
            "DERStorageCapacity.SoC": soc,
            "DERStorageCapacity.SoH": soh,
            "DERStorageCapacity.Sta": 0.0,  # OK
            "battery.AHRtg": self._capacity_ah,
            "battery.WHRtg": self._wh_rating,
            "battery.WChaRteMax": float(bat.charge_current_limit_a) * v,
            "battery.WDisChaRteMax": float(bat.discharge_current_limit_a) * v,
            "battery.SoC": soc,
            "battery.SoH": soh,
            "battery.ChaSt": float(cha[charge_state]),
            "battery.LocRemCtl": float(self.regmap.point("battery.LocRemCtl").symbols["REMOTE"]),
            "battery.Hb": None if now is None else float(int(now) % 65535),
            "battery.CtrlHb": self._ctrl_hb,
            "battery.AlmRst": 0.0,
            "battery.Typ": float(self.regmap.point("battery.Typ").symbols["LITHIUM_ION"]),
            "battery.State": float(self.regmap.point("battery.State").symbols["CONNECTED"]),
            "battery.SetOp": self._set_op,
            "battery.SetInvState": float(
                self.regmap.point("battery.SetInvState").symbols[self._inv_started()]
            ),
            "battery.Evt1": 0.0,
            "battery.Evt2": 0.0,
            "battery.EvtVnd1": 0.0,
            "battery.EvtVnd2": 0.0,
            "battery.V": v,
            "battery.CellVMax": float(bat.cell_voltage_max_v),
            "battery.CellVMin": float(bat.cell_voltage_min_v),
            "battery.A": a,  # as the plant reports it: positive = charging
            "battery.AChaMax": float(bat.charge_current_limit_a),
            "battery.ADisChaMax": float(bat.discharge_current_limit_a),
            "battery.W": v * a,
        }

    def write_point(self, name: str, value: Value) -> None:
        if not isinstance(value, float):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        if name == "DERCtlAC.WSetEna":
            if value not in (0.0, 1.0):
                raise ValueError(f"WSetEna is 0 (DISABLED) or 1 (ENABLED), not {value:g}")
            self._wset_enabled = value == 1.0
            self._apply_setpoint()
            return
        elif name == "DERCtlAC.WSetMod":
            if value not in (0.0, 1.0):
                raise ValueError(f"WSetMod is 0 (W_MAX_PCT) or 1 (WATTS), not {value:g}")
            self._wset_mode = int(value)
        elif name == "DERCtlAC.WSet":
            self._check_range(name, value)
            self._wset_w = value
        elif name == "DERCtlAC.WSetPct":
            self._check_range(name, value)
            self._wset_pct = value
        elif name == "DERCapacity.IntIslandCat":
            self._write_island_setting(value)
            return
        elif name in _REVERSION and hasattr(self.node.inverter, "comm"):
            self._write_reversion(name, value)
            return
        elif name == "battery.CtrlHb":
            self._ctrl_hb = value
            return
        elif name == "battery.AlmRst":
            if value not in (0.0, 1.0):
                raise ValueError(f"AlmRst is 0 or 1, not {value:g}")
            return
        else:
            raise KeyError(name)
        if self._wset_enabled:
            self._apply_setpoint()

    def _check_range(self, name: str, value: float) -> None:
        low, high = self._limits[name]
        if not low <= value <= high:
            raise ValueError(f"{name} {value:g} is outside {low:g}..{high:g}")

    def _apply_setpoint(self) -> None:
        """Disabled: no setpoint (0 W). Enabled: WSet in WATTS mode, WSetPct of rated else.

        While disabled, WSet / WSetPct / WSetMod are stored and take effect on enabling.
        """
        if not self._wset_enabled:
            target = 0.0
        elif self._wset_mode == 1:
            target = self._wset_w
        else:
            target = self._wset_pct / 100.0 * self._rated
        self.node.inverter.set_power_setpoint(target)


def defect_options(defects: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`SunSpecInverterEndpoint` for one inverter's defects.

    ``defects`` maps kind -> applied defect (``virtual_devices.defects.defects_for``); kinds
    this endpoint does not implement (e.g. plant behaviour) are left to others.
    """
    options: dict[str, Any] = {}
    if (d := defects.get("power_reading_gain")) is not None:
        options["power_reading_gain"] = float(d.value)
    if (d := defects.get("scale_factor_error")) is not None:
        options["scale_factor_error"] = (str(d.extra["point"]), float(d.value))
    if (d := defects.get("accept_invalid_writes")) is not None:
        options["accept_beyond"] = float(d.value)
    return options
