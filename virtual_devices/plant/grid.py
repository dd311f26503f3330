"""The grid source: an ideal voltage source behind the PCC, as a grid simulator presents it.

Every change is an event for the plant (it refines its step and logs it), so a setter notifies
through the callback the plant hands in. Setting a value equal to the present one changes nothing
and is not an event.
"""

from __future__ import annotations

from collections.abc import Callable


def _ignore(_event: str) -> None:
    """Default notification sink for a source used outside a plant."""


class GridSource:
    """Voltage and frequency setpoints and an output switch.

    ``voltage_v`` and ``frequency_hz`` are the programmed values, kept while the output is off;
    ``output_voltage_v`` is what the terminals carry (0 V when off).
    """

    def __init__(
        self, voltage_v: float, frequency_hz: float, notify: Callable[[str], None] = _ignore
    ) -> None:
        if voltage_v < 0 or frequency_hz <= 0:
            raise ValueError(
                f"grid source needs V >= 0 and f > 0, got {voltage_v} V {frequency_hz} Hz"
            )
        self._voltage_v = float(voltage_v)
        self._frequency_hz = float(frequency_hz)
        self._on = True
        self._notify = notify

    @property
    def voltage_v(self) -> float:
        return self._voltage_v

    @property
    def frequency_hz(self) -> float:
        return self._frequency_hz

    @property
    def output_on(self) -> bool:
        return self._on

    @property
    def output_voltage_v(self) -> float:
        return self._voltage_v if self._on else 0.0

    def set_voltage(self, v: float) -> None:
        if v < 0:
            raise ValueError(f"grid voltage must be >= 0 V, got {v}")
        if v != self._voltage_v:
            self._voltage_v = float(v)
            self._notify(f"grid_voltage:{v:g}")

    def set_frequency(self, hz: float) -> None:
        if hz <= 0:
            raise ValueError(f"grid frequency must be > 0 Hz, got {hz}")
        if hz != self._frequency_hz:
            self._frequency_hz = float(hz)
            self._notify(f"grid_frequency:{hz:g}")

    def set_output(self, on: bool) -> None:
        if bool(on) != self._on:
            self._on = bool(on)
            self._notify("grid_on" if on else "grid_off")
