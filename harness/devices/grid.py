"""A programmable AC source reached over SCPI: the GridSimulator role, in any command dialect.

The site file's ``driver:`` names the dialect (``scpi``, the generic default, or a real family
such as ``chroma-61800``); the command strings come from harness/transports/dialects/<family>.yaml.
Every setting is confirmed through the instrument's error queue, so a value the source refused
(out of its range, a typo in a header) stops the run where it happened instead of leaving the
grid at an old setpoint while the scenario believes otherwise.
"""

from __future__ import annotations

from harness.devices.roles import DeviceError, GridSimulator
from harness.devices.scpi_driver import DialectDriver


class ScpiGridSimulator(DialectDriver, GridSimulator):
    """Set and read back voltage, frequency and output state; measure at the terminals."""

    role = "grid"

    def set_voltage(self, volts: float) -> None:
        self.write("set_voltage", value=float(volts))

    def set_frequency(self, hertz: float) -> None:
        self.write("set_frequency", value=float(hertz))

    def set_output(self, on: bool) -> None:
        on_text, off_text = self.commands.setting("boolean", ["ON", "OFF"])
        self.write("set_output", state=on_text if on else off_text)

    def voltage_setpoint(self) -> float:
        """Programmed voltage, V."""
        return self.ask_float("voltage_setpoint")

    def frequency_setpoint(self) -> float:
        """Programmed frequency, Hz."""
        return self.ask_float("frequency_setpoint")

    def output_on(self) -> bool:
        reply = self.ask("output_on").upper()
        if reply in self.commands.setting("true_replies", ["1", "ON"]):
            return True
        if reply in self.commands.setting("false_replies", ["0", "OFF"]):
            return False
        query = self.commands.op("output_on").render()
        raise DeviceError(f"{self.name}: {query!r} answered {reply!r}, not on/off")

    def voltage(self) -> float:
        """Measured output voltage, V rms."""
        return self.ask_float("voltage")

    def frequency(self) -> float:
        """Measured output frequency, Hz."""
        return self.ask_float("frequency")
