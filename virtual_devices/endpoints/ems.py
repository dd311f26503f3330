"""The virtual EMS on Modbus TCP: its mode and black-start command, its state, and the log of the
steps it took, through the map ``fixtures/maps/ems.yaml``.

Every command reaches the plant's :class:`~virtual_devices.plant.ems.Ems` at the plant's present
instant and is marked as a plant event, so the plant settles and refines its step there. A
command the EMS refuses (a black start that is not from a dead, shut-down site) is answered
ILLEGAL DATA VALUE and changes nothing. Writing a point's present value changes nothing either
(Command reads NONE; Mode its present mode), as a conformance probe expects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.transports.aioloop import LoopThread
from harness.transports.regmap import RegisterMap, Value
from harness.transports.yamlmap import load_yaml_map
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint, ServedUnit
from virtual_devices.plant.ems import (
    DISPATCH,
    NORMAL,
    PEAK_SHAVING,
    SELF_CONSUMPTION,
    SHUTDOWN,
    TOU,
    Ems,
)

DEFAULT_MAP = Path(__file__).resolve().parents[2] / "fixtures" / "maps" / "ems.yaml"
COMMAND, MODE, STATE, STEP, COUNT, THRESHOLD = (
    "Control.Command",
    "Control.Mode",
    "Status.State",
    "Status.Step",
    "Status.StepCount",
    "PeakShaving.Threshold",
)
SOC, SHED, SITE_POWER = "Status.AggregateSoc", "Status.ShedLoads", "Dispatch.SitePower"
_MODES = (SHUTDOWN, PEAK_SHAVING, SELF_CONSUMPTION, TOU, DISPATCH)
"""States that read back as themselves on Control.Mode (every other reads NORMAL)."""


def log_entries(regmap: RegisterMap) -> int:
    """How many log entries the map declares (``Log.<n>.Step`` / ``Log.<n>.Time`` from 1)."""
    n = 0
    while f"Log.{n + 1}.Step" in regmap and f"Log.{n + 1}.Time" in regmap:
        n += 1
    return n


class EmsEndpoint(ServedUnit):
    """A Modbus TCP server in front of the plant's EMS; ``now`` gives the plant's time and
    ``notify`` is the plant's ``mark_event``."""

    def __init__(
        self,
        ems: Ems,
        now: Callable[[], float],
        notify: Callable[[str], None],
        *,
        lock: threading.RLock,
        loop: LoopThread,
        unit: int = 1,
        map_path: Path = DEFAULT_MAP,
    ) -> None:
        self.ems = ems
        self.now = now
        self.notify = notify
        self.unit = unit
        self.regmap = load_yaml_map(map_path)
        for point in (COMMAND, MODE, STATE, STEP, COUNT, THRESHOLD, SOC, SHED, SITE_POWER):
            self.regmap.point(point)  # the map must name every point this EMS serves
        self.entries = log_entries(self.regmap)
        if self.entries == 0:
            raise ValueError(f"{map_path}: the map declares no Log.1.Step / Log.1.Time entry")
        self._steps = self.regmap.point(STEP).symbols
        self._states = self.regmap.point(STATE).symbols
        self._modes = self.regmap.point(MODE).symbols
        self._commands = self.regmap.point(COMMAND).symbols
        self._energy_modes = {float(self._modes[m]): m for m in (SELF_CONSUMPTION, TOU, DISPATCH)}
        self.server = ModbusServerEndpoint(self.regmap, unit, self, lock, loop)

    def _code(self, step: str | None) -> float:
        if step is None:
            return float(self._steps["NONE"])
        return float(self._steps[step.upper()])

    def read_points(self) -> Mapping[str, Value]:
        ems = self.ems
        mode = ems.state if ems.state in _MODES else NORMAL
        points: dict[str, Value] = {
            COMMAND: float(self._commands["NONE"]),
            MODE: float(self._modes[mode]),
            STATE: float(self._states[ems.state]),
            STEP: self._code(ems.current_step),
            COUNT: float(min(len(ems.log), self.entries)),
            THRESHOLD: round(ems.threshold_w / 1000.0, 2),
            SOC: round(ems.aggregate_soc_pct, 1),
            SHED: float(ems.shedder.shed_count),
            SITE_POWER: round(ems.site_power_w / 1000.0, 2),
        }
        for i in range(self.entries):
            entry: Any = ems.log[i] if i < len(ems.log) else None
            points[f"Log.{i + 1}.Step"] = self._code(entry.name if entry else None)
            points[f"Log.{i + 1}.Time"] = round(entry.at_s, 3) if entry else 0.0
        return points

    def write_point(self, name: str, value: Value) -> None:
        if not isinstance(value, float):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        t = self.now()
        if name == COMMAND:
            if value == self._commands["BLACK_START"]:
                self.ems.black_start(t)  # ValueError when refused: ILLEGAL DATA VALUE
                self.notify("ems.command:black_start")
            return  # NONE: nothing to do
        if name == MODE:
            if value == self._modes["SHUTDOWN"]:
                if self.ems.state != SHUTDOWN:
                    self.ems.shutdown(t)
                    self.notify("ems.mode:shutdown")
            elif value == self._modes["PEAK_SHAVING"]:
                if self.ems.state != PEAK_SHAVING:
                    self.ems.peak_shaving(t)  # ValueError unless NORMAL: ILLEGAL DATA VALUE
                    self.notify("ems.mode:peak_shaving")
            elif (mode := self._energy_modes.get(value)) is not None:
                if self.ems.state != mode:  # ValueError unless grid-tied: ILLEGAL DATA VALUE
                    switch = {
                        SELF_CONSUMPTION: self.ems.self_consumption,
                        TOU: self.ems.tou,
                        DISPATCH: self.ems.dispatch,
                    }[mode]
                    switch(t)
                    self.notify(f"ems.mode:{mode.lower()}")
            elif self.ems.state != NORMAL:
                self.ems.normal(t)
                self.notify("ems.mode:normal")
            return
        if name == THRESHOLD:
            self.ems.set_threshold(value * 1000.0)
            self.notify(f"ems.threshold:{value:g}kW")
            return
        if name == SITE_POWER:
            self.ems.set_site_power(value * 1000.0)
            self.notify(f"ems.site_power:{value:g}kW")
            return
        raise KeyError(name)
