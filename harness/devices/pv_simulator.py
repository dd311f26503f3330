"""The ``pv_simulator`` role and its SCPI driver (any dialect that serves it): the DC source that
stands in for the homes' PV arrays, so a scenario can drive PV as a bench does.

A solar-array simulator programs an I-V curve; the harness sets the curve's level as the
irradiance it corresponds to (W/m^2), or lets the source play its stored day profile. The role
lives here until roles.py adopts it, as the load bank's and the chamber's do. Every write is
confirmed through the instrument's error queue (see DialectDriver), so a refused level stops the
scenario instead of leaving the arrays where they were.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Self

from harness.devices.roles import Device, DeviceError
from harness.devices.scpi_driver import DialectDriver
from harness.transports.dialects import GENERIC, Dialect


class PvSimulator(Device):
    @abstractmethod
    def set_irradiance(self, w_per_m2: float) -> None:
        """Hold the arrays at this plane-of-array irradiance, W/m^2."""

    @abstractmethod
    def irradiance(self) -> float:
        """The irradiance the arrays see now, W/m^2 (the held level or the profile's)."""

    @abstractmethod
    def follow_profile(self) -> None:
        """Release the held level: the arrays follow the stored day profile again."""

    @abstractmethod
    def power(self) -> float:
        """DC power the simulated arrays deliver now, W."""


class ScpiPvSimulator(DialectDriver, PvSimulator):
    """PV simulator commands as the dialect names them (generic: ``SOUR:IRR``, ``MEAS:POW?``;
    AMETEK TerraSAS: ``SOUR:IRR 1000, (@1)`` then ``SOUR:EXEC (@1)``).

    A family that addresses output channels gets the site's ``options.channel`` (default 1) in
    every command; one that applies a level on an execute command gets it after each level, and
    one that restarts its profile with a reset gets that first (the dialect says which)."""

    role = "pv_simulator"
    channel: int = 1

    @classmethod
    def open(
        cls,
        name: str,
        resource: str,
        timeout_s: float = 2.0,
        dialect: Dialect | str = GENERIC,
        options: Mapping[str, Any] | None = None,
    ) -> Self:
        driver = super().open(name, resource, timeout_s, dialect)
        channel = (options or {}).get("channel", 1)
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 1:
            driver.disconnect()
            raise DeviceError(f"{name}: options.channel must be a channel number, got {channel!r}")
        driver.channel = channel
        return driver

    def _do(self, operation: str, **values: object) -> None:
        self.write(operation, channel=self.channel, **values)

    def set_irradiance(self, w_per_m2: float) -> None:
        level = round(w_per_m2) if self.commands.setting("integer_levels") else float(w_per_m2)
        self._do("set_irradiance", value=level)
        if self.commands.has("execute"):
            self._do("execute")

    def irradiance(self) -> float:
        return self.ask_float("irradiance", channel=self.channel)

    def follow_profile(self) -> None:
        if self.commands.has("profile_reset"):
            self._do("profile_reset")
        self._do("follow_profile")

    def power(self) -> float:
        return self.ask_float("power", channel=self.channel)

    def set_output(self, on: bool) -> None:
        """Switch the simulated arrays' output (families that have an output switch)."""
        spelled = self.commands.setting("boolean", ["1", "0"])
        self._do("set_output", state=spelled[0] if on else spelled[1])

    def output_on(self) -> bool:
        reply = self.ask("output_on", channel=self.channel).upper()
        if reply in self.commands.setting("true_replies", ["1"]):
            return True
        if reply in self.commands.setting("false_replies", ["0"]):
            return False
        raise DeviceError(f"{self.name}: output state {reply!r} is neither on nor off")
