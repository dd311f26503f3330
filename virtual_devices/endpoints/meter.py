"""The virtual settlement meter at the PCC: SunSpec models 1 (common) and 203 (three-phase
meter, wye) on a real Modbus TCP server.

The layout comes from pysunspec2's definitions (:func:`build_sunspec_map`); this module only says
which plant quantity feeds which point. The site is single-phase, so the meter is wired on phase
A: the totals and phase A carry the PCC's values, phases B and C and the quantities the plant
does not model (reactive and apparent energy, power factor) are served as "not implemented".
Power is positive when the site imports from the grid, as at the PCC.

The energy registers (TotWhImp, TotWhExp, 1 Wh resolution) are the meter's own counter
(:class:`virtual_devices.plant.energy.EnergyCounter`), integrated by the plant on every step
alongside the power analyzer's. The ``meter_energy_gain`` defect (data/defects/performance.yaml)
is that counter's calibration: it counts every watt-hour ``gain`` times, while the power it
shows stays true, as a meter with a wrong energy constant would. Nothing is writable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from harness.transports.aioloop import LoopThread
from harness.transports.regmap import RegisterMap, Value, encode
from harness.transports.sunspec import build_sunspec_map, choose_sf
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint, ServedUnit
from virtual_devices.plant.energy import EnergyCounter

MODELS = (1, 203)
_IDENTITY = ("Mn", "Md", "SN", "Vr")


class MeterEndpoint(ServedUnit):
    """A Modbus TCP server presenting the PCC as a SunSpec three-phase meter."""

    def __init__(
        self,
        power_w: Callable[[], float],
        voltage_v: Callable[[], float],
        frequency_hz: Callable[[], float],
        counter: EnergyCounter,
        identity: Mapping[str, str],
        *,
        max_power_w: float,
        nominal_voltage_v: float,
        lock: threading.RLock,
        loop: LoopThread,
        unit: int = 1,
        base: int = 40000,
    ) -> None:
        """``power_w``, ``voltage_v`` and ``frequency_hz`` read the PCC now; ``counter`` is the
        meter's own energy counter (the caller has the plant feed it); ``max_power_w`` sizes
        the power and current scale factors."""
        self._power = power_w
        self._voltage = voltage_v
        self._frequency = frequency_hz
        self.counter = counter
        self.unit = unit
        self.regmap: RegisterMap = build_sunspec_map(MODELS, base)
        self._identity = {k: identity.get(k) or None for k in _IDENTITY}
        for key, value in self._identity.items():  # fail at construction, not on first read
            encode(self.regmap.point(f"common.{key}"), value)
        self._sf: dict[str, Value] = {
            "ac_meter_abcn.A_SF": choose_sf(2.0 * max_power_w / nominal_voltage_v, finest=-2),
            "ac_meter_abcn.V_SF": choose_sf(2.0 * nominal_voltage_v, finest=-1),
            "ac_meter_abcn.Hz_SF": -2,
            "ac_meter_abcn.W_SF": choose_sf(2.0 * max_power_w, finest=0),
            "ac_meter_abcn.TotWh_SF": 0,
        }
        self.server = ModbusServerEndpoint(self.regmap, unit, self, lock, loop)

    def read_points(self) -> Mapping[str, Value]:
        v = float(self._voltage())
        w = float(self._power())
        a = abs(w) / v if v > 1e-6 else 0.0
        values: dict[str, Value] = dict(self._sf)
        values.update({f"common.{k}": value for k, value in self._identity.items()})
        values["common.DA"] = float(self.unit)
        values.update(
            {
                "ac_meter_abcn.A": a,
                "ac_meter_abcn.AphA": a,
                "ac_meter_abcn.PhV": v,
                "ac_meter_abcn.PhVphA": v,
                "ac_meter_abcn.Hz": float(self._frequency()),
                "ac_meter_abcn.W": w,
                "ac_meter_abcn.WphA": w,
                "ac_meter_abcn.TotWhImp": float(round(self.counter.import_wh)),
                "ac_meter_abcn.TotWhImpPhA": float(round(self.counter.import_wh)),
                "ac_meter_abcn.TotWhExp": float(round(self.counter.export_wh)),
                "ac_meter_abcn.TotWhExpPhA": float(round(self.counter.export_wh)),
                "ac_meter_abcn.Evt": 0.0,
            }
        )
        return values

    def write_point(self, name: str, value: Value) -> None:
        raise KeyError(name)  # a settlement meter takes no writes


class PccPlant(Protocol):
    """The parts of the plant a meter at the PCC reads."""

    @property
    def pcc_power_w(self) -> float: ...
    @property
    def bus_voltage_v(self) -> float: ...
    @property
    def bus_frequency_hz(self) -> float: ...
    @property
    def pcc_counters(self) -> list[EnergyCounter]: ...


def meter_at_pcc(
    plant: PccPlant,
    identity: Mapping[str, str],
    defects: Mapping[str, Any],
    *,
    max_power_w: float,
    nominal_voltage_v: float,
    lock: threading.RLock,
    loop: LoopThread,
) -> MeterEndpoint:
    """A meter endpoint on the plant's PCC with its own energy counter, fed by the plant on
    every step; ``defects`` (kind -> applied defect, for ``site.meter``) may give it a gain
    error (``gain_error``, in %)."""
    error = defects.get("gain_error")
    counter = EnergyCounter(1.0 if error is None else 1.0 + float(error.value) / 100.0)
    plant.pcc_counters.append(counter)
    return MeterEndpoint(
        lambda: plant.pcc_power_w,
        lambda: plant.bus_voltage_v,
        lambda: plant.bus_frequency_hz,
        counter,
        identity,
        max_power_w=max_power_w,
        nominal_voltage_v=nominal_voltage_v,
        lock=lock,
        loop=loop,
    )
